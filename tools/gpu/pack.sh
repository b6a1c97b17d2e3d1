#!/usr/bin/env bash
# Packs what the GPU machine needs to run vlmbench on CUDA into .gpu/ (git-ignored), in pieces
# that fit the device tool's 64 MiB-per-call limit. See docs/gpu.md for the whole recipe.
#
#   tools/gpu/pack.sh            # release build + CUDA MLX library + JIT headers
#
# Produces:
#   .gpu/libmlx.part-aa, .gpu/libmlx.part-ab   stripped CUDA libmlx.so, xz -9, split in two (~34 MB each)
#   .gpu/runtime.tar.xz                        mlx_cuda_13.libs, mlx/share and the JIT headers (cccl, cute, cutlass, mlx)
#   .gpu/vlmbench                              the release binary (stripped; built here against the CPU wheel)
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
version=0.32.2
cache="${VLMBENCH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vlmbench}"
wheel="$cache/mlx-$version/cuda"
out=.gpu

if [ ! -f "$wheel/mlx/lib/libmlx.so" ]; then
  echo "fetching mlx-cuda-13==$version into $wheel" >&2
  tmp="$(mktemp -d)"
  python3 -m pip download -q --no-deps --only-binary=:all: --disable-pip-version-check "mlx-cuda-13==$version" -d "$tmp"
  python3 -m zipfile -e "$tmp"/mlx_cuda_13-*.whl "$tmp/unpacked"
  mkdir -p "$(dirname "$wheel")" && rm -rf "$wheel" && mv "$tmp/unpacked" "$wheel" && rm -rf "$tmp"
fi

cargo build --release --bin vlmbench
mkdir -p "$out"
strip --strip-unneeded -o "$out/vlmbench" "${CARGO_TARGET_DIR:-target}/release/vlmbench"

if [ ! -f "$out/libmlx.part-ab" ] || [ "$wheel/mlx/lib/libmlx.so" -nt "$out/libmlx.part-ab" ]; then
  strip --strip-unneeded -o "$out/libmlx.so" "$wheel/mlx/lib/libmlx.so"
  xz -9 -T2 -f "$out/libmlx.so"
  rm -f "$out"/libmlx.part-*
  split -b 34m "$out/libmlx.so.xz" "$out/libmlx.part-"
  rm -f "$out/libmlx.so.xz"
fi
tar -C "$wheel" -cJf "$out/runtime.tar.xz" mlx_cuda_13.libs mlx/share \
  mlx/include/cccl mlx/include/cute mlx/include/cutlass mlx/include/mlx
# crt/ headers the device image's CUDA lacks (see device-setup.sh).
[ -f "$out"/nvidia_cuda_crt-13.0.88-*.whl ] || python3 -m pip download -q --no-deps --only-binary=:all: \
  --disable-pip-version-check nvidia-cuda-crt==13.0.88 -d "$out"
ls -l "$out"
