#!/usr/bin/env bash
# Runs ON the GPU machine: vlmbench's own CUDA paths (issue #10: 4-bit GEMV kernel, fused GELU gate
# and soft-cap) against MLX's stock kernels (VLMBENCH_KERNELS=mlx) and against mlx-vlm.
#   1. `vlmbench kernels`: error and time per 4-bit matrix shape of a Gemma-4-31B decode step.
#   2. Same greedy tokens: 64 tokens of each tiny checkpoint (dense, moe, ple) in float32 and
#      bfloat16, VLMBENCH_KERNELS=mlx vs ours.
#   3. The 31B-shaped checkpoint side by side: vlmbench (ours), vlmbench (VLMBENCH_KERNELS=mlx) and
#      mlx-vlm 0.7.10, same prompt ids and token counts, one script, one file.
#   tools/gpu/kernels-31b.sh CARRIED_DIR   (holds vlmbench, whl/, tools/ from this checkout)
set -uo pipefail
export PYTHONUNBUFFERED=1
h="${1:?usage: kernels-31b.sh CARRIED_DIR}"
source "$h/tools/gpu/device-setup.sh" env || exit 1
bin="$h/vlmbench"; chmod +x "$bin"
log="$OUT/log.txt"
step() { echo "== $(date -u +%T) $*" | tee -a "$log"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$log"

step "kernels: bf16 4-bit GEMV, MLX vs vlmbench"
"$bin" kernels | tee "$OUT/kernels.md" | tee -a "$log"
"$bin" kernels --json > "$OUT/kernels.json" 2>> "$log"

step "same greedy tokens over 64 steps (tiny checkpoints)"
for variant in dense moe ple; do
  dir=/tmp/tiny-$variant
  [ -f "$dir/config.json" ] || "$bin" make-tiny "$dir" --variant "$variant" > /dev/null 2>> "$log"
  for dtype in float32 bfloat16; do
    for kernels in mlx vlmbench; do
      VLMBENCH_KERNELS=$kernels "$bin" generate -m "$dir" -p "Describe a quiet harbour at dawn." --max-tokens 64 \
        --ignore-eos --temperature 0 --dtype $dtype --json > "/tmp/tokens-$kernels.json" 2>> "$log"
    done
    python3 - "$variant $dtype" /tmp/tokens-mlx.json /tmp/tokens-vlmbench.json <<'PY' | tee -a "$OUT/tokens.txt" | tee -a "$log"
import json, sys
try:
    a, b = (json.load(open(p))["token_ids"] for p in sys.argv[2:4])
except Exception as e:
    print(f"{sys.argv[1]}: no result ({e}); see the log"); sys.exit()
first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
print(f"{sys.argv[1]}: {len(a)} vs {len(b)} tokens, identical={a == b}, first difference at step {first}")
PY
  done
done

source "$h/tools/gpu/python-setup.sh" "$h/whl" || exit 1
model=/tmp/gemma-4-31b-random
if [ ! -f "$model/config.json" ]; then
  step "make-tiny --preset gemma-4-31b"
  "$bin" make-tiny --preset gemma-4-31b "$model" >> "$log" 2>&1
fi
step "side by side: vlmbench (own kernels) 512,1024 gen 128"
"$bin" sweep -m "$model" --lengths 512,1024 --gen 128 --dtype bfloat16 --label vlmbench --out "$OUT/sbs-vlmbench.json" 2>&1 | tail -3 | tee -a "$log"
step "side by side: vlmbench VLMBENCH_KERNELS=mlx 512,1024 gen 128"
VLMBENCH_KERNELS=mlx "$bin" sweep -m "$model" --lengths 512,1024 --gen 128 --dtype bfloat16 --label "vlmbench (MLX kernels)" --out "$OUT/sbs-vlmbench-mlx-kernels.json" 2>&1 | tail -3 | tee -a "$log"
step "side by side: mlx-vlm 512,1024 gen 128"
python3 "$h/tools/reference/bench_reference.py" --model "$model" --lengths 512,1024 --gen 128 --dtype bfloat16 --out "$OUT/sbs-mlx-vlm.json" 2>&1 | grep -v -i warn | tee -a "$log"
step "vlmbench bench pp512 tg128 x5, own kernels and VLMBENCH_KERNELS=mlx"
"$bin" bench -m "$model" -p 512 -n 128 -r 5 -o json > "$OUT/bench-vlmbench.json" 2>> "$log"
VLMBENCH_KERNELS=mlx "$bin" bench -m "$model" -p 512 -n 128 -r 5 -o json > "$OUT/bench-vlmbench-mlx-kernels.json" 2>> "$log"
for f in sbs-vlmbench sbs-vlmbench-mlx-kernels; do
  "$bin" compare "$OUT/sbs-mlx-vlm.json" "$OUT/$f.json" > "$OUT/compare-$f.md" 2>> "$log"; cat "$OUT/compare-$f.md" | tee -a "$log"
done
step done
