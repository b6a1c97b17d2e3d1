#!/usr/bin/env bash
# vlmbench and mlx-vlm on the same checkpoint file, in one script: the same prompt lengths (the
# same random ids: both use vlmbench's seeded generator), the same generation length, EOS ignored.
# Writes OUT_DIR/{vlmbench,mlx-vlm}.json, prints the ratio tables, draws the charts.
#
#   tools/bench/side_by_side.sh MODEL_DIR [LENGTHS] [GEN] [DTYPE] [OUT_DIR]
#   e.g. tools/bench/side_by_side.sh ckpt 64,256,1024 32 float32 charts/cpu-tiny
#
# VLMBENCH_BIN (default target/release/vlmbench) and VLMBENCH_REFERENCE_PYTHON (default: the venv
# from tools/reference/setup.sh) choose the two programs.
set -euo pipefail
cd "$(dirname "$0")/../.."
model="${1:?usage: side_by_side.sh MODEL_DIR [LENGTHS] [GEN] [DTYPE] [OUT_DIR]}"
lengths="${2:-64,256,1024}"
gen="${3:-32}"
dtype="${4:-float32}"
out="${5:-side-by-side}"
bin="${VLMBENCH_BIN:-target/release/vlmbench}"
[ -x "$bin" ] || { echo "error: $bin not found: cargo build --release first, or set VLMBENCH_BIN" >&2; exit 1; }
py="${VLMBENCH_REFERENCE_PYTHON:-$(tools/reference/setup.sh | tail -n 1)}"
mkdir -p "$out"
rm -f "$out/vlmbench.json"
"$bin" sweep --model "$model" --lengths "$lengths" --gen "$gen" --dtype "$dtype" --label vlmbench --out "$out/vlmbench.json" >/dev/null
"$py" tools/reference/bench_reference.py --model "$model" --lengths "$lengths" --gen "$gen" --dtype "$dtype" \
  --out "$out/mlx-vlm.json" 2> >(grep -v -e 'UserWarning' -e 'warnings.warn' >&2)
"$bin" compare "$out/mlx-vlm.json" "$out/vlmbench.json" | tee "$out/compare.md"
"$bin" chart "$out/mlx-vlm.json" "$out/vlmbench.json" --out-dir "$out"
