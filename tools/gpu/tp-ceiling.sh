#!/usr/bin/env bash
# Runs ON a one-GPU machine, after `source tools/gpu/device-setup.sh env`: the ceiling of N-way
# tensor-parallel Gemma-4-31B on this GPU. It writes the 31B-shaped random checkpoint and the shapes
# one of N ranks computes with (`make-tiny --one-rank-of N`: heads, KV heads and MLP units divided
# by N, embeddings and LM head whole, exactly the slices `--tensor-parallel` loads), benches them
# alternately (`bench -p 512 -n 128 -r 2`, ROUNDS rounds) and prints each rank shape's rate over the
# whole model's. A rank's step also waits for two all-reduces per layer, so N GPUs can decode at
# most that much faster than one; the all-reduces are not in it.
#   tools/gpu/tp-ceiling.sh VLMBENCH_BINARY [RANKS...]      (RANKS default: 2 4 8)
#   PRESET=gemma-4-31b-mini OUT=/tmp/x tools/gpu/tp-ceiling.sh ...   a dry run on a CPU
set -uo pipefail
bin="${1:?usage: tp-ceiling.sh VLMBENCH_BINARY [RANKS...]}"; shift
[ $# -gt 0 ] || set -- 2 4 8
ranks=("$@")
rounds="${ROUNDS:-2}"
preset="${PRESET:-gemma-4-31b}"
log="$OUT/ceiling-log.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$log"
write() {  # DIR [make-tiny args...]
  local dir=$1; shift
  [ -f "$dir/config.json" ] || "$bin" make-tiny --preset "$preset" "$@" "$dir" >> "$log" 2>&1 \
    || { echo "error: make-tiny $* failed (see $log)"; exit 1; }
}
write /tmp/$preset-random
for n in "${ranks[@]}"; do write "/tmp/$preset-rank-of-$n" --one-rank-of "$n"; done
for r in $(seq 1 "$rounds"); do
  for n in 1 "${ranks[@]}"; do
    model=/tmp/$preset-random; [ "$n" = 1 ] || model="/tmp/$preset-rank-of-$n"
    echo "== $(date -u +%T) round $r: one of $n" | tee -a "$log"
    "$bin" bench -m "$model" -p 512 -n 128 -r 2 -o json > "$OUT/ceiling-$n-round$r.json" 2>> "$log" \
      || echo "error: bench of one of $n failed (see $log)"
  done
done
python3 "$(dirname "$0")/tp_ceiling_table.py" "$OUT" "$rounds" "${ranks[@]}" | tee "$OUT/ceiling.md"
