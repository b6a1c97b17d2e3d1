#!/usr/bin/env bash
# Runs ON a 2-GPU machine, after `source tools/gpu/device-setup.sh env`: the Gemma-4-31B-shaped
# checkpoint (written here if missing) benched on one GPU and as two tensor-parallel ranks over NCCL
# (issue #12), `bench -p 512 -n 128 -r 2`, into $OUT/tp31b-{single,rank0,rank1}.{json,err}, then the
# scaling charts of the two runs ($OUT/scaling.png, $OUT/scaling_memory.png).
#   tools/gpu/tp-31b.sh VLMBENCH_BINARY
set -uo pipefail
bin="${1:?usage: tp-31b.sh VLMBENCH_BINARY}"
model=/tmp/gemma-4-31b-random
[ -f "$model/config.json" ] || "$bin" make-tiny --preset gemma-4-31b "$model" > /dev/null 2> "$OUT/make-31b.err"
args=(bench -m "$model" -p 512 -n 128 -r 2 -o json)
CUDA_VISIBLE_DEVICES=0 "$bin" "${args[@]}" > "$OUT/tp31b-single.json" 2> "$OUT/tp31b-single.err"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
for r in 0 1; do
  CUDA_VISIBLE_DEVICES=$r MLX_RANK=$r MLX_WORLD_SIZE=2 NCCL_HOST_IP=127.0.0.1 NCCL_PORT=$port \
    "$bin" "${args[@]}" --tensor-parallel nccl > "$OUT/tp31b-rank$r.json" 2> "$OUT/tp31b-rank$r.err" &
done
wait
grep -h "t/s" "$OUT"/tp31b-single.err "$OUT"/tp31b-rank0.err
"$bin" chart "$OUT/tp31b-single.json" "$OUT/tp31b-rank0.json" --out-dir "$OUT" 2> "$OUT/chart.err" || cat "$OUT/chart.err"
