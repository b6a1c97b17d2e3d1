#!/usr/bin/env bash
# Runs ON a fresh GPU machine (after the stash call): vlmbench's kernels on the Gemma-4-31B-shaped
# checkpoint (issue #10). Parts run in the order given:
#   cold     the first `bench -p 512 -n 8` of a new process with nothing cached, then a new process
#            with an empty NVIDIA driver cache but the MLX PTX cache the first filled, per kernel choice;
#   kernels  `vlmbench kernels`: error and GB/s per decode shape, and whether MLX's PTX cache is used;
#   tokens   greedy tokens over 64 steps on the tiny checkpoints, gemv and vlmbench against mlx
#            (TOKEN_DTYPES, default "float32 bfloat16"; TOKEN_TIERS, default "gemv vlmbench");
#   prefill_tokens  the same after a 300+ token prompt, per VLMBENCH_PREFILL choice (float32);
#   speed    pp512/tg128 per kernel choice (BENCH_TIERS, default "gemv mlx vlmbench"; BENCH_REPS),
#            decode host time per step included;
#   sbs      vlmbench (default kernels) and mlx-vlm 0.7.10 in one script: same checkpoint, same
#            prompt ids (SBS_LENGTHS, default 512,1024) and one image prompt; vlmbench once per
#            VLMBENCH_PREFILL choice in SBS_PREFILL (default "default": the variable unset);
#   prefill  prefill of the checkpoint with each VLMBENCH_PREFILL choice (speed, peak memory);
#   products MLX's quantized_matmul vs dequantize + matmul at prefill shapes, against float32
#            (`vlmbench kernels --rows 512` and tools/gpu/prefill_matmul.py);
#   ncu      Nsight Compute census of 2000 decode kernels of the default kernel choice;
#   carried  a fresh process with the PTX cache the earlier parts filled and an empty driver cache.
#   tools/gpu/kernels-31b.sh CARRIED_DIR [part...]   (default: kernels tokens speed sbs)
# CARRIED_DIR holds vlmbench, whl/, tools/ (with astronaut.jpg) from this checkout (VLMBENCH_BIN: measure
# another build instead of CARRIED_DIR/vlmbench, e.g. a kernel experiment). One device call
# has 10 minutes; the tokens part alone took 4.5 minutes with both dtypes and three tiers.
set -uo pipefail
export PYTHONUNBUFFERED=1
h="${1:?usage: kernels-31b.sh CARRIED_DIR [part...]}"; shift
parts="${*:-kernels tokens speed sbs}"
source "$h/tools/gpu/device-setup.sh" env || exit 1
bin="${VLMBENCH_BIN:-$h/vlmbench}"; chmod +x "$bin"
log="$OUT/log.txt"
step() { echo "== $(date -u +%T) $*" | tee -a "$log"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$log"
model=/tmp/gemma-4-31b-random
summary() {
  python3 -c "import json,sys; rows=json.load(open(sys.argv[1])); [print(f\"  {r['test']}: {r['tps_mean']:.1f} tok/s, ttft {r.get('ttft_s_mean')}, peak {r['peak_memory_bytes'] / 1e9:.2f} GB, host ms/step {r.get('decode_host_ms')}\") for r in rows]" "$1" | tee -a "$log"
}
python_ready=
python_env() { [ -n "$python_ready" ] || { source "$h/tools/gpu/python-setup.sh" "$h/whl" && python_ready=1; }; }

if [ ! -f "$model/config.json" ]; then
  step "make-tiny --preset gemma-4-31b (its own PTX cache and driver cache, thrown away)"
  MLX_PTX_CACHE_DIR=/tmp/ptx-make CUDA_CACHE_PATH=/tmp/nv-make "$bin" make-tiny --preset gemma-4-31b "$model" >> "$log" 2>&1
fi
# Every part after `cold` shares one PTX cache (no second minute of NVRTC).
shared_caches() { export MLX_PTX_CACHE_DIR=/tmp/ptx-cold-vlmbench CUDA_CACHE_PATH=/tmp/nv-cold-vlmbench; }
shared_caches

part_cold() {
  step "cold start: first process, nothing cached"
  for kernels in ${COLD_KERNELS:-gemv mlx}; do
    export MLX_PTX_CACHE_DIR=/tmp/ptx-cold-$kernels CUDA_CACHE_PATH=/tmp/nv-cold-$kernels
    rm -rf "$MLX_PTX_CACHE_DIR"
    local t0=$(date +%s%N)
    VLMBENCH_KERNELS=$kernels "$bin" bench -m "$model" -p 512 -n 8 -r 1 --no-warmup -o json > "$OUT/cold-empty-$kernels.json" 2>> "$log"
    echo "$kernels, empty caches: process wall $(( ($(date +%s%N) - t0) / 1000000 )) ms" | tee -a "$log"; summary "$OUT/cold-empty-$kernels.json"
    # Same PTX cache (as if carried), empty driver cache: what a fresh machine with a shipped cache sees.
    export CUDA_CACHE_PATH=/tmp/nv-cold-$kernels-2
    t0=$(date +%s%N)
    VLMBENCH_KERNELS=$kernels "$bin" bench -m "$model" -p 512 -n 8 -r 1 --no-warmup -o json > "$OUT/cold-carried-$kernels.json" 2>> "$log"
    echo "$kernels, carried PTX cache ($(ls $MLX_PTX_CACHE_DIR | wc -l) files), empty driver cache: process wall $(( ($(date +%s%N) - t0) / 1000000 )) ms" | tee -a "$log"; summary "$OUT/cold-carried-$kernels.json"
  done
  [ ! -d /tmp/ptx-cold-gemv ] || cp -rn /tmp/ptx-cold-gemv/. /tmp/ptx-cold-vlmbench/
  shared_caches
}

part_kernels() {
  step "kernels: bf16 4-bit GEMV, MLX vs vlmbench"
  "$bin" kernels | tee "$OUT/kernels.md" | tee -a "$log"
  "$bin" kernels --json > "$OUT/kernels.json" 2>> "$log"
}

# same_tokens LABEL BASE OTHER...: compares /tmp/tokens-OTHER.json's greedy ids with /tmp/tokens-BASE.json's.
same_tokens() {
  python3 - "$@" <<'PY' | tee -a "$log"
import json, sys
def run(tier):
    try:
        return json.load(open(f"/tmp/tokens-{tier}.json"))
    except Exception as e:
        return f"no result ({e})"
base = run(sys.argv[2])
def cmp(a, b):
    if isinstance(a, str) or isinstance(b, str):
        return f"{a if isinstance(a, str) else b}"
    x, y = a["token_ids"], b["token_ids"]
    first = next((i for i, (p, q) in enumerate(zip(x, y)) if p != q), None)
    line = f"identical={x == y} ({len(x)} tokens, first difference at step {first})"
    # With --logprobs: the largest log-probability difference of the sampled token up to the first
    # difference (the same distribution's value on both sides).
    la, lb = a.get("logprobs"), b.get("logprobs")
    if la and lb:
        n = len(x) if first is None else first + 1
        d = max(abs(p["logprob"] - q["logprob"]) for p, q in zip(la[:n], lb[:n]) if p["id"] == q["id"]) if n else 0
        line += f", max |logprob difference| {d:.2e}"
    return line
print(f"{sys.argv[1]}: " + "; ".join(f"{t} vs {sys.argv[2]} {cmp(run(t), base)}" for t in sys.argv[3:]))
PY
}

part_tokens() {
  step "same greedy tokens over 64 steps (tiny checkpoints), against VLMBENCH_KERNELS=mlx"
  local variant dtype kernels
  for variant in dense moe ple; do
    local dir=/tmp/tiny-$variant
    [ -f "$dir/config.json" ] || "$bin" make-tiny "$dir" --variant "$variant" > /dev/null 2>> "$log"
    for dtype in ${TOKEN_DTYPES:-float32 bfloat16}; do
      for kernels in mlx ${TOKEN_TIERS:-gemv vlmbench}; do
        VLMBENCH_KERNELS=$kernels "$bin" generate -m "$dir" -p "Describe a quiet harbour at dawn." --max-tokens 64 \
          --ignore-eos --temperature 0 --dtype $dtype --json --logprobs 1 > "/tmp/tokens-$kernels.json" 2>> "$log"
      done
      same_tokens "$variant $dtype" mlx ${TOKEN_TIERS:-gemv vlmbench}
    done
  done
}

part_prefill_tokens() {
  step "same greedy tokens over 64 steps after a 300+ token prompt (tiny, float32), VLMBENCH_PREFILL against mlx"
  local variant choice prompt
  prompt="$(for i in $(seq 12); do printf 'Describe a quiet harbour at dawn, the boats and the gulls. '; done)"
  for variant in dense moe ple; do
    local dir=/tmp/tiny-$variant
    [ -f "$dir/config.json" ] || "$bin" make-tiny "$dir" --variant "$variant" > /dev/null 2>> "$log"
    # mlx twice: a difference between two identical runs is the device's, not the choice's.
    for choice in mlx mlx-again paced dequant; do
      VLMBENCH_PREFILL=${choice%-again} "$bin" generate -m "$dir" -p "$prompt" --max-tokens 64 --ignore-eos \
        --temperature 0 --dtype float32 --json > "/tmp/tokens-prefill-$choice.json" 2>> "$log"
    done
    python3 -c "import json; print('prompt tokens:', json.load(open('/tmp/tokens-prefill-mlx.json'))['stats']['prompt_tokens'])" 2>&1 | tee -a "$log"
    same_tokens "$variant float32" prefill-mlx prefill-mlx-again prefill-paced prefill-dequant
  done
}

part_speed() {
  step "31B decode/prefill: pp512 tg128 x${BENCH_REPS:-3} per kernel choice"
  local kernels
  for kernels in ${BENCH_TIERS:-gemv mlx vlmbench}; do
    VLMBENCH_KERNELS=$kernels "$bin" bench -m "$model" -p 512 -n 128 -r "${BENCH_REPS:-3}" -o json > "$OUT/bench-$kernels.json" 2>> "$log"
    echo "VLMBENCH_KERNELS=$kernels" | tee -a "$log"; summary "$OUT/bench-$kernels.json"
  done
}

part_sbs() {
  python_env || return 1
  local img="$h/tools/astronaut.jpg" lengths="${SBS_LENGTHS:-512,1024}" choice
  for choice in ${SBS_PREFILL:-default}; do
    step "side by side: vlmbench (default kernels, prefill: $choice) $lengths + image, gen 128"
    local setting=(VLMBENCH_PREFILL="$choice")
    [ "$choice" != default ] || setting=(-u VLMBENCH_PREFILL)
    env "${setting[@]}" "$bin" sweep -m "$model" --lengths "$lengths" --image "$img" --gen 128 --dtype bfloat16 \
      --label "vlmbench-$choice" --out "$OUT/sbs-vlmbench-$choice.json" 2>&1 | tail -4 | tee -a "$log"
  done
  step "side by side: mlx-vlm $lengths + image, gen 128"
  python3 "$h/tools/reference/bench_reference.py" --model "$model" --lengths "$lengths" --image "$img" --gen 128 --dtype bfloat16 --out "$OUT/sbs-mlx-vlm.json" 2>&1 | grep -v -i warn | tee -a "$log"
  for choice in ${SBS_PREFILL:-default}; do
    "$bin" compare "$OUT/sbs-mlx-vlm.json" "$OUT/sbs-vlmbench-$choice.json" > "$OUT/compare-$choice.md" 2>> "$log"
    cat "$OUT/compare-$choice.md" | tee -a "$log"
  done
}

part_prefill() {
  local choice
  for choice in mlx paced dequant; do
    step "prefill of the checkpoint: VLMBENCH_PREFILL=$choice (peak memory in the JSON)"
    VLMBENCH_PREFILL=$choice "$bin" bench -m "$model" -p 512,2048 -n 0 -r 2 -o json > "$OUT/prefill-$choice.json" 2>> "$log"; summary "$OUT/prefill-$choice.json"
  done
}

part_products() {
  step "vlmbench kernels --rows 512: dequantized product and MLX's quantized_matmul against float32"
  "$bin" kernels --rows 512 | tee -a "$log"
  python_env || return 1
  step "prefill products: quantized_matmul vs dequantize + matmul"
  python3 "$h/tools/gpu/prefill_matmul.py" --lengths 512,2048 --json "$OUT/prefill-matmul.json" 2>&1 | tee -a "$log"
}

part_ncu() {
  step "ncu: 2000 decode kernels, default kernel choice"
  timeout "${NCU_TIMEOUT:-200}" /usr/local/cuda/bin/ncu --csv --page raw --metrics gpu__time_duration.sum,dram__bytes_read.sum \
    --launch-skip 8000 --launch-count 2000 "$bin" bench -m "$model" -p 0 -n 16 -r 1 --no-warmup \
    > "$OUT/ncu-gemv.csv" 2> /tmp/ncu.err; echo "rc $?" | tee -a "$log"; tail -3 /tmp/ncu.err | tee -a "$log"
  python3 "$h/tools/gpu/ncu_decode_summary.py" "$OUT/ncu-gemv.csv" | tee -a "$log"
}

part_carried() {
  step "cold start with the PTX cache of the earlier parts (as if carried), empty driver cache"
  export CUDA_CACHE_PATH=/tmp/nv-carried
  local t0=$(date +%s%N)
  "$bin" bench -m "$model" -p 512 -n 8 -r 1 --no-warmup -o json > "$OUT/cold-carried-vlmbench.json" 2>> "$log"
  echo "vlmbench, carried PTX cache ($(ls $MLX_PTX_CACHE_DIR | wc -l) files), empty driver cache: process wall $(( ($(date +%s%N) - t0) / 1000000 )) ms" | tee -a "$log"; summary "$OUT/cold-carried-vlmbench.json"
  tar -C "$MLX_PTX_CACHE_DIR" -cJf "$OUT/ptx-cache.tar.xz" . 2>> "$log"
  shared_caches
}

for part in $parts; do
  declare -F "part_$part" > /dev/null || { echo "unknown part: $part" | tee -a "$log"; continue; }
  "part_$part"
done
step done
