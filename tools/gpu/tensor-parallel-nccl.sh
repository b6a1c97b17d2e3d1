#!/usr/bin/env bash
# Runs ON a 2-GPU machine, after `source tools/gpu/device-setup.sh env` (docs/gpu.md): the tiny
# dense checkpoint decoded greedily for 32 tokens by one process on one GPU and by two
# tensor-parallel ranks over NCCL (one GPU each, MLX's variables: MLX_RANK, MLX_WORLD_SIZE,
# NCCL_HOST_IP, NCCL_PORT), in float32 and bfloat16. Writes every output under $OUT/tp-nccl/ and
# prints whether rank 0's tokens equal the single process's, and how far their log-probabilities are.
# VLMBENCH_BIN (default ./.gpu/vlmbench) and TP_DTYPES (default "float32 bfloat16") override.
set -uo pipefail
bin="${VLMBENCH_BIN:-./.gpu/vlmbench}"
out="${OUT:-/tmp/out}/tp-nccl"
mkdir -p "$out"
nvidia-smi -L > "$out/gpus.txt" 2>&1
"$bin" make-tiny /tmp/tiny-tp --force > "$out/make-tiny.txt" 2>&1 || { cat "$out/make-tiny.txt"; exit 1; }
for dtype in ${TP_DTYPES:-float32 bfloat16}; do
  args=(generate --model /tmp/tiny-tp --prompt "Describe the picture in one sentence." --max-tokens 32
        --ignore-eos --temperature 0 --dtype "$dtype" --json --logprobs 1)
  CUDA_VISIBLE_DEVICES=0 timeout 300 "$bin" "${args[@]}" > "$out/single-$dtype.json" 2> "$out/single-$dtype.err"
  echo "single $dtype: exit $?"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  for r in 0 1; do
    CUDA_VISIBLE_DEVICES=$r MLX_RANK=$r MLX_WORLD_SIZE=2 NCCL_HOST_IP=127.0.0.1 NCCL_PORT=$port \
      timeout 300 "$bin" "${args[@]}" --tensor-parallel nccl > "$out/rank$r-$dtype.json" 2> "$out/rank$r-$dtype.err" &
  done
  wait
  python3 - "$out" "$dtype" <<'EOF'
import json, sys
out, dtype = sys.argv[1], sys.argv[2]
def run(name):
    try:
        return json.load(open(f"{out}/{name}-{dtype}.json"))
    except Exception as e:
        return f"unreadable ({e}): " + open(f"{out}/{name}-{dtype}.err").read()[-2000:]
single, rank0 = run("single"), run("rank0")
if isinstance(single, str) or isinstance(rank0, str):
    print(f"{dtype}: single GPU {single if isinstance(single, str) else 'ok'}; 2 NCCL ranks {rank0 if isinstance(rank0, str) else 'ok'}")
    sys.exit()
print(f"{dtype}: single GPU {single['token_ids']}")
print(f"{dtype}: 2 NCCL ranks {rank0['token_ids']}")
print(f"{dtype}: identical: {single['token_ids'] == rank0['token_ids']}")
# The sampled token's log-probability on both sides, up to the first token where they part.
same = []
for a, b in zip(single["logprobs"], rank0["logprobs"]):
    if a["id"] != b["id"]:
        break
    same.append((a["logprob"], b["logprob"]))
if same:
    print(f"{dtype}: max |logprob difference| over {len(same)} agreeing steps: {max(abs(a - b) for a, b in same):.2e}")
EOF
done
