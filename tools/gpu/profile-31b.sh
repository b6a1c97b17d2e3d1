#!/usr/bin/env bash
# Runs ON a fresh GPU machine (after the stash call): makes the 31B-shaped checkpoint, measures
# the cold first call of both programs in the order opposite to bench-31b.sh (mlx-vlm first, each
# with its own empty PTX cache), then records one stretch of decode kernels of each program with
# Nsight Compute (duration and DRAM bytes per kernel) to compare the decode step. Writes under $OUT.
#   tools/gpu/profile-31b.sh CARRIED_DIR
set -uo pipefail
export PYTHONUNBUFFERED=1
h="${1:?usage: profile-31b.sh CARRIED_DIR}"
source "$h/tools/gpu/device-setup.sh" env || exit 1
source "$h/tools/gpu/python-setup.sh" "$h/whl" || exit 1
bin="$h/vlmbench"; chmod +x "$bin"; ref="$h/tools/reference/bench_reference.py"
model=/tmp/gemma-4-31b-random; log="$OUT/log.txt"
step() { echo "== $(date -u +%T) $*" | tee -a "$log"; }
timed() { local t0; t0=$(date +%s%N); "$@"; local rc=$?; echo "   wall $(( ($(date +%s%N) - t0) / 1000000 )) ms (rc $rc): ${*:1:3}" >> "$log"; return $rc; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$log"
[ -f "$model/config.json" ] || { step make-tiny; timed "$bin" make-tiny --preset gemma-4-31b "$model" > /dev/null 2>&1; }
step "mlx-vlm cold first (fresh PTX cache)"
timed env MLX_PTX_CACHE_DIR=/tmp/ptx-mlxvlm python3 "$ref" --model "$model" --lengths 512 --gen 8 \
  --out "$OUT/cold-first-mlx-vlm.json" > /tmp/c.log 2>&1; grep -v -i warn /tmp/c.log | tail -3 | tee -a "$log"
step "vlmbench cold second (fresh PTX cache)"
timed env MLX_PTX_CACHE_DIR=/tmp/ptx-vlmbench "$bin" bench -m "$model" -p 512 -n 0 -r 1 --no-warmup -o json \
  > "$OUT/cold-second-vlmbench.json" 2>> "$log"
ncu=/usr/local/cuda/bin/ncu; metrics=gpu__time_duration.sum,dram__bytes_read.sum
step "ncu vlmbench decode"
MLX_PTX_CACHE_DIR=/tmp/ptx-vlmbench timeout 150 $ncu --csv --page raw --metrics $metrics --launch-skip 8000 --launch-count 2000 \
  "$bin" bench -m "$model" -p 0 -n 16 -r 1 --no-warmup > "$OUT/ncu-vlmbench.csv" 2> /tmp/n1.err; echo "rc $?" | tee -a "$log"; tail -3 /tmp/n1.err | tee -a "$log"
step "ncu mlx-vlm decode"
MLX_PTX_CACHE_DIR=/tmp/ptx-mlxvlm timeout 170 $ncu --csv --page raw --metrics $metrics --launch-skip 8000 --launch-count 2000 \
  python3 "$ref" --model "$model" --lengths 1 --gen 16 --out /tmp/r.json > "$OUT/ncu-mlx-vlm.csv" 2> /tmp/n2.err; echo "rc $?" | tee -a "$log"; grep -v -i warn /tmp/n2.err | tail -3 | tee -a "$log"
step done
