#!/usr/bin/env bash
# Runs ON the GPU machine, from the repository root. Two phases, because the CUDA library needs
# two calls of the device tool (64 MiB each):
#   tools/gpu/device-setup.sh stash      # call 1, carrying .gpu/libmlx.part-aa: keep it in /tmp
#   source tools/gpu/device-setup.sh env # call 2, carrying the rest: reassemble, set the loader path
# After `env`, ./.gpu/vlmbench runs on the GPU (LD_LIBRARY_PATH overrides the binary's RUNPATH).
set -uo pipefail
root=/tmp/vlmbench-gpu
case "${1:-}" in
  stash)
    mkdir -p "$root" && cp .gpu/libmlx.part-aa "$root/" && ls -l "$root"
    ;;
  env)
    mkdir -p "$root/wheel/mlx/lib"
    if [ ! -f "$root/wheel/mlx/lib/libmlx.so" ]; then
      [ -f "$root/libmlx.part-aa" ] || { echo "error: $root/libmlx.part-aa missing: run the stash call first (the machine was given back in between?)"; return 1 2>/dev/null || exit 1; }
      cat "$root/libmlx.part-aa" .gpu/libmlx.part-ab | xz -d > "$root/wheel/mlx/lib/libmlx.so"
      tar -C "$root/wheel" -xJf .gpu/runtime.tar.xz
    fi
    nv="$(python3 -c 'import nvidia, os; print(os.path.dirname(list(nvidia.__path__)[0]))')/nvidia"
    export LD_LIBRARY_PATH="$root/wheel/mlx/lib:$root/wheel/mlx_cuda_13.libs:$nv/cu13/lib:$nv/cudnn/lib:$nv/nccl/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export CUDA_HOME="$nv/cu13"
    # The image's CUDA headers lack crt/ (mma.h includes crt/mma.h), so NVRTC cannot compile MLX's
    # sm90 quantized GEMM. nvidia-cuda-crt (pip, 134 KB) supplies them; pack.sh puts its wheel in .gpu/.
    crt_wheel="$(ls .gpu/nvidia_cuda_crt-*.whl /tmp/h/nvidia_cuda_crt-*.whl 2>/dev/null | head -1)"
    if [ ! -f "$CUDA_HOME/include/crt/mma.h" ] && [ -n "$crt_wheel" ]; then
      python3 -m zipfile -e "$crt_wheel" "$root/crt" && mkdir -p "$CUDA_HOME/include/crt" \
        && cp -n "$root/crt/nvidia/cu13/include/crt/"* "$CUDA_HOME/include/crt/"
    fi
    [ ! -f .gpu/vlmbench ] || chmod +x .gpu/vlmbench
    ;;
  *)
    echo "usage: $0 stash | env" >&2; exit 2 ;;
esac
