#!/usr/bin/env bash
# Runs ON the GPU machine: cold start of vlmbench on the Gemma-4-31B-shaped checkpoint, with and
# without a PTX cache carried from another machine (issue #10: first token on a fresh machine).
#   tools/gpu/cold-start.sh CARRIED_DIR fill   # fresh machine, empty cache: time the first call, then
#                                              # pack the filled cache into $OUT/ptx-cache.tar.xz
#   tools/gpu/cold-start.sh CARRIED_DIR use TAR # another fresh machine: unpack TAR, time the first call
# Each call is a new process; the NVIDIA driver's own cache (CUDA_CACHE_PATH) starts empty.
set -uo pipefail
h="${1:?usage: cold-start.sh CARRIED_DIR fill|use [TAR]}"; mode="${2:?fill or use}"
source "$h/tools/gpu/device-setup.sh" env || exit 1
bin="$h/vlmbench"; chmod +x "$bin"
model=/tmp/gemma-4-31b-random; log="$OUT/cold-$mode.txt"
export MLX_PTX_CACHE_DIR=/tmp/ptx-ship CUDA_CACHE_PATH=/tmp/nv-cache-$mode
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a "$log"
[ -f "$model/config.json" ] || "$bin" make-tiny --preset gemma-4-31b "$model" > /dev/null 2>> "$log"
if [ "$mode" = use ]; then
  rm -rf "$MLX_PTX_CACHE_DIR" && mkdir -p "$MLX_PTX_CACHE_DIR" && tar -C "$MLX_PTX_CACHE_DIR" -xJf "${3:?TAR}"
  echo "carried PTX cache: $(ls "$MLX_PTX_CACHE_DIR" | wc -l) files, $(du -sh "$MLX_PTX_CACHE_DIR" | cut -f1)" | tee -a "$log"
fi
for run in 1 2; do
  t0=$(date +%s%N)
  "$bin" bench -m "$model" -p 512 -n 8 -r 1 --no-warmup -o json > "$OUT/cold-$mode-$run.json" 2>> "$log"
  echo "$mode run $run: process wall $(( ($(date +%s%N) - t0) / 1000000 )) ms" | tee -a "$log"
  python3 -c "import json,sys; rows=json.load(open(sys.argv[1])); [print(f\"  {r['test']}: {r['tps_mean']:.1f} tok/s, ttft {r.get('ttft_s_mean')}\") for r in rows]" "$OUT/cold-$mode-$run.json" | tee -a "$log"
done
if [ "$mode" = fill ]; then
  tar -C "$MLX_PTX_CACHE_DIR" -cJf "$OUT/ptx-cache.tar.xz" . && ls -l "$OUT/ptx-cache.tar.xz" | tee -a "$log"
fi
