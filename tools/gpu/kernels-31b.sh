#!/usr/bin/env bash
# Runs ON a fresh GPU machine: vlmbench's GEMV as precompiled PTX (issue #10), in one call:
#   1. cold start: the first `bench -p 512 -n 8` of a new process on the Gemma-4-31B-shaped
#      checkpoint with nothing cached, then a new process with an empty NVIDIA driver cache but
#      the MLX PTX cache the first one filled (as if carried to a fresh machine), for each kernel choice;
#   2. `vlmbench kernels`: error and GB/s per decode shape, and whether MLX's PTX cache is used;
#   3. greedy tokens over 64 steps on the tiny checkpoints, float32 and bfloat16: VLMBENCH_KERNELS
#      mlx vs vlmbench and gemv vs vlmbench (gemv is the default; vlmbench adds the fused GELU gate
#      and soft-cap);
#   4. decode and prefill of the 31B-shaped checkpoint with VLMBENCH_KERNELS = mlx, gemv, vlmbench,
#      and mlx-vlm 0.7.10 side by side (same prompt ids, one script).
#   5. (prefill) MLX's quantized_matmul vs dequantize + matmul at prefill shapes; (ncu) a kernel census
#      of the default decode step.
#   tools/gpu/kernels-31b.sh CARRIED_DIR [cold] [checks] [speed] [carried] [prefill] [ncu]   (default: the first three; one
#   device call has 10 minutes, so cold+checks and speed go in two calls on the same warm machine)
#   CARRIED_DIR holds vlmbench, whl/ and tools/ from this checkout. Shorter runs: COLD_KERNELS=vlmbench,
#   BENCH_REPS=2, SBS_LENGTHS=512, BENCH_TIERS="gemv mlx".
set -uo pipefail
export PYTHONUNBUFFERED=1
h="${1:?usage: kernels-31b.sh CARRIED_DIR [cold] [checks] [speed]}"; shift
parts="${*:-cold checks speed}"
want() { [[ " $parts " == *" $1 "* ]]; }
source "$h/tools/gpu/device-setup.sh" env || exit 1
bin="$h/vlmbench"; chmod +x "$bin"
log="$OUT/log.txt"
step() { echo "== $(date -u +%T) $*" | tee -a "$log"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$log"
model=/tmp/gemma-4-31b-random
summary() {
  python3 -c "import json,sys; rows=json.load(open(sys.argv[1])); [print(f\"  {r['test']}: {r['tps_mean']:.1f} tok/s, ttft {r.get('ttft_s_mean')}, host ms/step {r.get('decode_host_ms')}\") for r in rows]" "$1" | tee -a "$log"
}

if [ ! -f "$model/config.json" ]; then
  step "make-tiny --preset gemma-4-31b (its own PTX cache and driver cache, thrown away)"
  MLX_PTX_CACHE_DIR=/tmp/ptx-make CUDA_CACHE_PATH=/tmp/nv-make "$bin" make-tiny --preset gemma-4-31b "$model" >> "$log" 2>&1
fi

if want cold; then
step "cold start: first process, nothing cached"
for kernels in ${COLD_KERNELS:-vlmbench mlx}; do
  export MLX_PTX_CACHE_DIR=/tmp/ptx-cold-$kernels CUDA_CACHE_PATH=/tmp/nv-cold-$kernels
  t0=$(date +%s%N)
  VLMBENCH_KERNELS=$kernels "$bin" bench -m "$model" -p 512 -n 8 -r 1 --no-warmup -o json > "$OUT/cold-empty-$kernels.json" 2>> "$log"
  echo "$kernels, empty caches: process wall $(( ($(date +%s%N) - t0) / 1000000 )) ms" | tee -a "$log"; summary "$OUT/cold-empty-$kernels.json"
  # Same PTX cache (as if carried), empty driver cache: what a fresh machine with a shipped cache sees.
  export CUDA_CACHE_PATH=/tmp/nv-cold-$kernels-2
  t0=$(date +%s%N)
  VLMBENCH_KERNELS=$kernels "$bin" bench -m "$model" -p 512 -n 8 -r 1 --no-warmup -o json > "$OUT/cold-carried-$kernels.json" 2>> "$log"
  echo "$kernels, carried PTX cache ($(ls $MLX_PTX_CACHE_DIR | wc -l) files), empty driver cache: process wall $(( ($(date +%s%N) - t0) / 1000000 )) ms" | tee -a "$log"; summary "$OUT/cold-carried-$kernels.json"
done
tar -C /tmp/ptx-cold-vlmbench -cJf "$OUT/ptx-cache.tar.xz" . 2>> "$log"
fi
# The later parts use the cache the first process filled (no second minute of NVRTC).
export MLX_PTX_CACHE_DIR=/tmp/ptx-cold-vlmbench CUDA_CACHE_PATH=/tmp/nv-cold-vlmbench

if want checks; then

step "kernels: bf16 4-bit GEMV, MLX vs vlmbench"
"$bin" kernels | tee "$OUT/kernels.md" | tee -a "$log"
"$bin" kernels --json > "$OUT/kernels.json" 2>> "$log"

step "same greedy tokens over 64 steps (tiny checkpoints)"
for variant in dense moe ple; do
  dir=/tmp/tiny-$variant
  [ -f "$dir/config.json" ] || "$bin" make-tiny "$dir" --variant "$variant" > /dev/null 2>> "$log"
  for dtype in float32 bfloat16; do
    for kernels in mlx gemv vlmbench; do
      VLMBENCH_KERNELS=$kernels "$bin" generate -m "$dir" -p "Describe a quiet harbour at dawn." --max-tokens 64 \
        --ignore-eos --temperature 0 --dtype $dtype --json > "/tmp/tokens-$kernels.json" 2>> "$log"
    done
    python3 - "$variant $dtype" /tmp/tokens-mlx.json /tmp/tokens-gemv.json /tmp/tokens-vlmbench.json <<'PY' | tee -a "$OUT/tokens.txt" | tee -a "$log"
import json, sys
def ids(p):
    try:
        return json.load(open(p))["token_ids"]
    except Exception as e:
        return f"no result ({e})"
mlx, gemv, ours = (ids(p) for p in sys.argv[2:5])
def cmp(a, b):
    if isinstance(a, str) or isinstance(b, str):
        return f"{a if isinstance(a, str) else b}"
    first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
    return f"identical={a == b} ({len(a)} tokens, first difference at step {first})"
print(f"{sys.argv[1]}: gemv vs mlx {cmp(gemv, mlx)}; vlmbench vs mlx {cmp(ours, mlx)}")
PY
  done
done

fi

if want speed; then
step "31B decode/prefill: pp512 tg128 x${BENCH_REPS:-3} per kernel choice"
for kernels in ${BENCH_TIERS:-gemv mlx vlmbench}; do
  VLMBENCH_KERNELS=$kernels "$bin" bench -m "$model" -p 512 -n 128 -r "${BENCH_REPS:-3}" -o json > "$OUT/bench-$kernels.json" 2>> "$log"
  echo "VLMBENCH_KERNELS=$kernels" | tee -a "$log"; summary "$OUT/bench-$kernels.json"
done

source "$h/tools/gpu/python-setup.sh" "$h/whl" || exit 1
step "side by side: vlmbench (default kernels) 512,1024 + image, gen 128"
img="$h/tools/astronaut.jpg"
"$bin" sweep -m "$model" --lengths "${SBS_LENGTHS:-512,1024}" --image "$img" --gen 128 --dtype bfloat16 --label vlmbench --out "$OUT/sbs-vlmbench.json" 2>&1 | tail -4 | tee -a "$log"
step "side by side: mlx-vlm 512,1024 + image, gen 128"
python3 "$h/tools/reference/bench_reference.py" --model "$model" --lengths "${SBS_LENGTHS:-512,1024}" --image "$img" --gen 128 --dtype bfloat16 --out "$OUT/sbs-mlx-vlm.json" 2>&1 | grep -v -i warn | tee -a "$log"
"$bin" compare "$OUT/sbs-mlx-vlm.json" "$OUT/sbs-vlmbench.json" > "$OUT/compare.md" 2>> "$log"; cat "$OUT/compare.md" | tee -a "$log"
fi
# `prefill`: MLX's quantized_matmul against dequantize + bfloat16 matmul at prefill shapes.
if want prefill; then
  source "$h/tools/gpu/python-setup.sh" "$h/whl" || exit 1
  step "prefill products: quantized_matmul vs dequantize + matmul"
  python3 "$h/tools/gpu/prefill_matmul.py" --lengths 512,2048 --json "$OUT/prefill-matmul.json" 2>&1 | tee -a "$log"
fi
# `ncu`: Nsight Compute census of 2000 decode kernels of the default kernel choice.
if want ncu; then
  step "ncu: 2000 decode kernels, default kernel choice"
  timeout 200 /usr/local/cuda/bin/ncu --csv --page raw --metrics gpu__time_duration.sum,dram__bytes_read.sum \
    --launch-skip 8000 --launch-count 2000 "$bin" bench -m "$model" -p 0 -n 16 -r 1 --no-warmup \
    > /tmp/ncu-gemv.csv 2> /tmp/ncu.err; echo "rc $?" | tee -a "$log"; tail -3 /tmp/ncu.err | tee -a "$log"
  python3 "$h/tools/gpu/ncu_decode_summary.py" /tmp/ncu-gemv.csv | tee -a "$log"
  xz -9 -c /tmp/ncu-gemv.csv > "$OUT/ncu-gemv.csv.xz"
fi
# `carried` (instead of `cold`, after the other parts): only the fresh-process measurement, with the
# PTX cache the earlier parts filled and an empty driver cache (saves the minute of NVRTC).
if want carried; then
  step "cold start with the PTX cache of the earlier parts (as if carried), empty driver cache"
  export CUDA_CACHE_PATH=/tmp/nv-carried
  t0=$(date +%s%N)
  "$bin" bench -m "$model" -p 512 -n 8 -r 1 --no-warmup -o json > "$OUT/cold-carried-vlmbench.json" 2>> "$log"
  echo "vlmbench, carried PTX cache ($(ls $MLX_PTX_CACHE_DIR | wc -l) files), empty driver cache: process wall $(( ($(date +%s%N) - t0) / 1000000 )) ms" | tee -a "$log"; summary "$OUT/cold-carried-vlmbench.json"
  tar -C "$MLX_PTX_CACHE_DIR" -cJf "$OUT/ptx-cache.tar.xz" . 2>> "$log"
fi

step done
