#!/usr/bin/env bash
# The CPU side by side on the small (E2B-shaped, random 4-bit) checkpoint, both programs in one
# script on the same file (issue #8): same prompt ids, same token counts, EOS ignored.
#   1. both in float32 (vlmbench's CPU default; mlx-vlm with every floating parameter cast);
#   2. each program's default: vlmbench float32, mlx-vlm as published (bfloat16 scales/biases).
#   tools/bench/cpu-small.sh [CHECKPOINT] [OUT_DIR]   (checkpoint written by make-tiny if missing)
set -euo pipefail
cd "$(dirname "$0")/../.."
model="${1:-/tmp/gemma-4-e2b-random}"
out="${2:-charts/cpu-e2b}"
bin="${VLMBENCH_BIN:-target/release/vlmbench}"
py="${VLMBENCH_REFERENCE_PYTHON:-$(tools/reference/setup.sh | tail -n 1)}"
lengths=16,32; gen=8
[ -f "$model/config.json" ] || "$bin" make-tiny --preset gemma-4-e2b "$model"
mkdir -p "$out"
{ date -u; uname -m; nproc; grep -m1 "model name" /proc/cpuinfo; "$bin" --version; } > "$out/machine.txt"
"$bin" sweep --model "$model" --lengths $lengths --gen $gen --dtype float32 --label vlmbench --out "$out/vlmbench.json" > /dev/null
"$py" tools/reference/bench_reference.py --model "$model" --lengths $lengths --gen $gen --dtype float32 \
  --label "mlx-vlm (float32)" --out "$out/mlx-vlm-float32.json" 2> >(grep -v -i warn >&2)
"$py" tools/reference/bench_reference.py --model "$model" --lengths $lengths --gen $gen \
  --label "mlx-vlm (default, bfloat16)" --out "$out/mlx-vlm-default.json" 2> >(grep -v -i warn >&2)
"$bin" compare "$out/mlx-vlm-float32.json" "$out/vlmbench.json" | tee "$out/compare-float32.md"
"$bin" compare "$out/mlx-vlm-default.json" "$out/vlmbench.json" | tee "$out/compare-default.md"
"$bin" chart "$out/mlx-vlm-default.json" "$out/mlx-vlm-float32.json" "$out/vlmbench.json" --out-dir "$out"
