#!/usr/bin/env bash
# Runs ON a GPU machine (after the stash call): two checks on VLMBENCH_PREFILL (issue #10).
#  1. Tiny PLE checkpoint, float32 (TF32 off), 600-token prompt: greedy tokens with `mlx`,
#     `paced`, and `mlx` cut into command buffers of 10 operations (MLX_MAX_OPS_PER_BUFFER):
#     does where the graph is cut change the result?
#  2. The same checkpoint, prompts of 63-602 tokens: vlmbench's first token (twice) and mlx-vlm's
#     top 3 (twice, tools/gpu/ple_reference.py), against the CPU's.
#     Then MLX's fused attention, RoPE and RMS norm, GPU against CPU, at those shapes (tools/gpu/kv_heads_check.py).
#  3. 31B-shaped checkpoint: decode speed after a 512-token prompt with `mlx` and `dequant`
#     prefill, alternated (does the prefill choice change the decode rate that follows?);
#     CHECK_DECODE=0 skips it.
#   tools/gpu/check-prefill.sh CARRIED_DIR
set -uo pipefail
h="${1:?usage: check-prefill.sh CARRIED_DIR}"
source "$h/tools/gpu/device-setup.sh" env || exit 1
bin="$h/vlmbench"; log="$OUT/log.txt"
export MLX_PTX_CACHE_DIR=/tmp/ptx-check CUDA_CACHE_PATH=/tmp/nv-check
step() { echo "== $(date -u +%T) $*" | tee -a "$log"; }

step "tiny ple, float32, 600-token prompt: mlx vs paced, TF32 off, and mlx with 10-op command buffers"
"$bin" make-tiny /tmp/tiny-ple --variant ple > /dev/null 2>> "$log"
prompt="$(for i in $(seq 12); do printf 'Describe a quiet harbour at dawn, the boats and the gulls. '; done)"
export MLX_ENABLE_TF32=0
for run in mlx paced mlx-ops10; do
  ops=$([ "$run" = mlx-ops10 ] && echo 10 || echo "")
  env ${ops:+MLX_MAX_OPS_PER_BUFFER=$ops} VLMBENCH_PREFILL=${run%-ops10} "$bin" generate -m /tmp/tiny-ple -p "$prompt" \
    --max-tokens 64 --ignore-eos --temperature 0 --dtype float32 --json > "/tmp/t-$run.json" 2>> "$log"
done
unset MLX_ENABLE_TF32
python3 - <<'PY' | tee -a "$log"
import json
runs = {r: json.load(open(f"/tmp/t-{r}.json"))["token_ids"] for r in ("mlx", "paced", "mlx-ops10")}
for r, ids in runs.items():
    first = next((i for i, (x, y) in enumerate(zip(ids, runs["mlx"])) if x != y), None)
    print(f"{r}: first tokens {ids[:8]}, first difference from mlx at step {first}")
PY

step "tiny ple, float32: vlmbench's first token and mlx-vlm's top 3 on the GPU (twice), prompts of 63-602 tokens"
# make-tiny draws the same weights on either device: the CPU-made file's sha256 begins 0553d7e07288a385.
echo "model.safetensors sha256 $(sha256sum /tmp/tiny-ple/model.safetensors | cut -c1-16) (CPU-made: 0553d7e07288a385)" | tee -a "$log"
echo "first tokens on the CPU (equal to mlx-vlm's top 1 there): 349, 115, 375, 278" | tee -a "$log"
for n in 1 4 8 12; do
  p="$(for i in $(seq $n); do printf 'Describe a quiet harbour at dawn, the boats and the gulls. '; done)"
  for run in 1 2; do
    MLX_ENABLE_TF32=0 VLMBENCH_PREFILL=mlx "$bin" generate -m /tmp/tiny-ple -p "$p" --max-tokens 1 --temperature 0 \
      --dtype float32 --json > "/tmp/ids-$n-$run.json" 2>> "$log"
    python3 -c "import json; d=json.load(open('/tmp/ids-$n-$run.json')); print('vlmbench run $run:', len(d['prompt_ids']), 'prompt tokens, first token', d['token_ids'])" | tee -a "$log"
  done
done
source "$h/tools/gpu/python-setup.sh" "$h/whl" || exit 1
step "MLX's fused attention, RoPE and RMS norm on the GPU against the CPU stream (1 and 2 heads)"
MLX_ENABLE_TF32=0 python3 "$h/tools/gpu/kv_heads_check.py" 2>&1 | grep -v -i warn | tee -a "$log"
for run in 1 2; do
  MLX_ENABLE_TF32=0 python3 "$h/tools/gpu/ple_reference.py" /tmp/tiny-ple /tmp/ids-{1,4,8,12}-1.json 2>&1 | grep -v -i warn | tee -a "$log"
done

[ "${CHECK_DECODE:-1}" = 1 ] || exit 0
step "31B-shaped: decode after a 512-token prompt, prefill mlx / dequant alternated"
model=/tmp/gemma-4-31b-random
[ -f "$model/config.json" ] || "$bin" make-tiny --preset gemma-4-31b "$model" > /dev/null 2>> "$log"
i=0
for choice in mlx dequant mlx dequant; do
  i=$((i + 1)); rm -f /tmp/s-$i.json  # a new file each time: sweep resumes from an existing one
  VLMBENCH_PREFILL=$choice "$bin" sweep -m "$model" --lengths 512 --gen 128 --dtype bfloat16 --label "$choice" \
    --out /tmp/s-$i.json > /dev/null 2>> "$log"
  python3 -c "import json; m=json.load(open('/tmp/s-$i.json'))['measurements'][0]; print('$choice:', f\"prefill {m['prefill_tps']:.0f} tok/s, decode {m['decode_tps']:.1f} tok/s, peak {m['peak_memory_bytes'] / 1e9:.2f} GB\")" | tee -a "$log"
done
