#!/usr/bin/env bash
# Are a tensor-parallel rank's products right on the GPU? The two-rank NCCL token check of issue #12
# disagreed with one GPU from the first token, very likely through MLX's CUDA GEMM at 64 inputs (one
# quantization group), which vlmbench now pads. One of 4 ranks of gemma-4-31b-mini has that shape
# (o_proj of the sliding layers reads 2 heads x 32 = 64 inputs), so its greedy tokens on the GPU,
# against the CPU's, test the per-rank arithmetic without a second GPU (the all-reduce aside).
#   tools/gpu/rank-shape-tokens.sh prepare DIR    here, on the CPU: DIR/mini-r4 (the checkpoint: make-tiny
#                                                 presets draw on the GPU where there is one, so it is
#                                                 carried) and DIR/cpu-tokens.json (vlmbench's, which must
#                                                 equal mlx-vlm's when VLMBENCH_REFERENCE_PYTHON is set)
#   tools/gpu/rank-shape-tokens.sh check DIR      on the GPU machine, DIR holding vlmbench, whl/ and tools/
#                                                 too: vlmbench (each kernel choice) and mlx-vlm, float32
#                                                 with TF32 off, against DIR/cpu-tokens.json; into $OUT
set -uo pipefail
mode="${1:?usage: rank-shape-tokens.sh prepare|check DIR}"; h="${2:?usage: rank-shape-tokens.sh prepare|check DIR}"
prompt="$(for i in 1 2 3 4; do printf 'Describe a quiet harbour at dawn, the boats and the gulls. '; done)"
gen=(generate -m "$h/mini-r4" -p "$prompt" --max-tokens 32 --ignore-eos --temperature 0 --dtype float32 --json)
ref() { "${py:-python3}" "$h/tools/reference/gemma4_run.py" --model "$h/mini-r4" --prompt "$prompt" --max-tokens 32 --dtype float32 --ignore-eos --out "$1"; }
ids() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(json.dumps(d.get('token_ids', d.get('generated_ids'))))" "$1"; }
case $mode in
prepare)
  bin="${VLMBENCH_BIN:-target/release/vlmbench}"
  rm -rf "$h/mini-r4" && "$bin" make-tiny --preset gemma-4-31b-mini --one-rank-of 4 "$h/mini-r4" > /dev/null 2>&1 || exit 1
  "$bin" "${gen[@]}" > /tmp/rank-cpu.json 2> /dev/null || { echo "error: vlmbench generate failed on the CPU"; exit 1; }
  ids /tmp/rank-cpu.json > "$h/cpu-tokens.json"
  if [ -n "${VLMBENCH_REFERENCE_PYTHON:-}" ]; then
    mkdir -p "$h/tools/reference" && cp tools/reference/gemma4_run.py "$h/tools/reference/"
    py="$VLMBENCH_REFERENCE_PYTHON" ref /tmp/rank-ref.json > /dev/null 2>&1
    [ "$(ids /tmp/rank-ref.json)" = "$(cat "$h/cpu-tokens.json")" ] && echo "CPU: vlmbench == mlx-vlm" || echo "error: CPU: vlmbench != mlx-vlm"
  fi
  echo "CPU tokens: $(cat "$h/cpu-tokens.json")" ;;
check)
  source "$h/tools/gpu/device-setup.sh" env || exit 1
  source "$h/tools/gpu/python-setup.sh" "$h/whl" || exit 1
  export MLX_PTX_CACHE_DIR=/tmp/ptx CUDA_CACHE_PATH=/tmp/nv MLX_ENABLE_TF32=0
  cpu="$(cat "$h/cpu-tokens.json")"; echo "CPU: $cpu" | tee "$OUT/rank-tokens.txt"
  for k in vlmbench gemv mlx; do
    VLMBENCH_KERNELS=$k "$h/vlmbench" "${gen[@]}" > "$OUT/vlmbench-$k.json" 2> "$OUT/vlmbench-$k.err"
    got="$(ids "$OUT/vlmbench-$k.json")"; echo "vlmbench $k GPU equal to CPU: $([ "$got" = "$cpu" ] && echo yes || echo NO) $got"
  done | tee -a "$OUT/rank-tokens.txt"
  ref "$OUT/mlx-vlm.json" > "$OUT/mlx-vlm.log" 2>&1
  got="$(ids "$OUT/mlx-vlm.json")"; echo "mlx-vlm GPU equal to CPU: $([ "$got" = "$cpu" ] && echo yes || echo NO) $got" | tee -a "$OUT/rank-tokens.txt"
  "$h/vlmbench" doctor 2>&1 | grep -i "group" | tee -a "$OUT/rank-tokens.txt" ;;
*) echo "usage: rank-shape-tokens.sh prepare|check DIR" >&2; exit 2 ;;
esac
