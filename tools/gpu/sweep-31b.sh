#!/usr/bin/env bash
# Runs ON the GPU machine after bench-31b.sh (same warm machine: the checkpoint is still in /tmp):
# a prompt-length sweep of both programs for the charts. Writes under $OUT.
#   tools/gpu/sweep-31b.sh CARRIED_DIR [LENGTHS] [GEN]
set -uo pipefail
export PYTHONUNBUFFERED=1
h="${1:?usage: sweep-31b.sh CARRIED_DIR [LENGTHS] [GEN]}"
lengths="${2:-128,256,512,1024,2048,4096}"
gen="${3:-32}"
source "$h/tools/gpu/device-setup.sh" env || exit 1
source "$h/tools/gpu/python-setup.sh" "$h/whl" || exit 1
bin="$h/vlmbench"; model=/tmp/gemma-4-31b-random; log="$OUT/log.txt"
[ -f "$model/config.json" ] || { echo "error: $model is gone (machine given back?): run bench-31b.sh first"; exit 1; }
export MLX_PTX_CACHE_DIR=/tmp/ptx-vlmbench
echo "== $(date -u +%T) vlmbench sweep $lengths gen $gen" | tee -a "$log"
"$bin" sweep -m "$model" --lengths "$lengths" --gen "$gen" --dtype bfloat16 --label vlmbench --out "$OUT/sweep-vlmbench.json" 2>&1 | tail -3 | tee -a "$log"
echo "== $(date -u +%T) mlx-vlm sweep" | tee -a "$log"
python3 "$h/tools/reference/bench_reference.py" --model "$model" --lengths "$lengths" --gen "$gen" --dtype bfloat16 \
  --out "$OUT/sweep-mlx-vlm.json" 2>&1 | grep -v -i warn | tee -a "$log"
echo "== $(date -u +%T) done" | tee -a "$log"
