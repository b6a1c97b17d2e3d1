#!/usr/bin/env bash
# Runs ON the GPU machine: generates the Gemma-4-31B-shaped random 4-bit checkpoint with vlmbench,
# then measures vlmbench and mlx-vlm on that same file: cold first calls (each with its own empty
# MLX PTX cache), llama-bench rows, and a side-by-side at equal token counts. Writes under $OUT.
#   tools/gpu/bench-31b.sh CARRIED_DIR     (holds vlmbench, whl/, tools/ from this checkout)
#   SKIP_COLD=1 tools/gpu/bench-31b.sh ... skips the cold first calls (about 3 minutes of device time)
set -uo pipefail
export PYTHONUNBUFFERED=1
h="${1:?usage: bench-31b.sh CARRIED_DIR}"
source "$h/tools/gpu/device-setup.sh" env || exit 1
source "$h/tools/gpu/python-setup.sh" "$h/whl" || exit 1
bin="$h/vlmbench"; chmod +x "$bin"
ref="$h/tools/reference/bench_reference.py"
model=/tmp/gemma-4-31b-random
log="$OUT/log.txt"
step() { echo "== $(date -u +%T) $*" | tee -a "$log"; }
# Wall time of one command, to the log (GNU time is not on every image).
timed() { local t0; t0=$(date +%s%N); "$@"; local rc=$?; echo "   wall $(( ($(date +%s%N) - t0) / 1000000 )) ms (rc $rc): ${*:1:3}" >> "$log"; return $rc; }
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import mlx.core as mx, mlx_vlm; print('python mlx', mx.__version__, mx.default_device(), 'cuda', mx.cuda.is_available(), 'mlx-vlm', mlx_vlm.__version__)"
  "$bin" --version
} 2>&1 | tee -a "$log"
if [ ! -f "$model/config.json" ]; then
  step "make-tiny --preset gemma-4-31b"
  timed "$bin" make-tiny --preset gemma-4-31b "$model" >> "$log" 2>&1
fi
du -sh "$model" | tee -a "$log"
if [ -z "${SKIP_COLD:-}" ]; then
step "vlmbench cold pp512 (fresh PTX cache)"
timed env MLX_PTX_CACHE_DIR=/tmp/ptx-vlmbench "$bin" bench -m "$model" -p 512 -n 0 -r 1 --no-warmup -o json > "$OUT/cold-vlmbench.json" 2>> "$log"
step "vlmbench second process pp512 (PTX cache filled by the first)"
timed env MLX_PTX_CACHE_DIR=/tmp/ptx-vlmbench "$bin" bench -m "$model" -p 512 -n 0 -r 1 --no-warmup -o json > "$OUT/cold2-vlmbench.json" 2>> "$log"
step "mlx-vlm cold (fresh PTX cache): warm-up = first call, then pp512+tg8"
timed env MLX_PTX_CACHE_DIR=/tmp/ptx-mlxvlm python3 "$ref" --model "$model" --lengths 512 --gen 8 \
  --out "$OUT/cold-mlx-vlm.json" > /tmp/cold-mlx-vlm.log 2>&1; grep -v -i warn /tmp/cold-mlx-vlm.log | tail -5 | tee -a "$log"
fi
export MLX_PTX_CACHE_DIR=/tmp/ptx-vlmbench
step "vlmbench bench pp512,pp1024,tg128 x3"
"$bin" bench -m "$model" -p 512,1024 -n 128 -r 3 -o json > "$OUT/bench-vlmbench.json" 2>> "$log"
step "side by side: vlmbench sweep 512,1024 gen 128"
"$bin" sweep -m "$model" --lengths 512,1024 --gen 128 --dtype bfloat16 --label vlmbench --out "$OUT/sbs-vlmbench.json" 2>&1 | tail -3 | tee -a "$log"
step "side by side: mlx-vlm 512,1024 gen 128"
python3 "$ref" --model "$model" --lengths 512,1024 --gen 128 --dtype bfloat16 --out "$OUT/sbs-mlx-vlm.json" 2>&1 | grep -v -i warn | tee -a "$log"
step done
