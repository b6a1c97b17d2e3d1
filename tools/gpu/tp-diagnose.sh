#!/usr/bin/env bash
# Runs ON a 2-GPU machine, after `source tools/gpu/device-setup.sh env` (docs/gpu.md): issue #12's
# open NCCL questions, each answered by runs of the same binary, results under $OUT:
#   tokens   tiny dense float32, 2 NCCL ranks against one GPU, with MLX's stock kernels
#            (VLMBENCH_KERNELS=mlx) and with vlmbench's (default): $OUT/tokens-{mlx,vlmbench}/
#   default  the 31B-shaped checkpoint, bench -p 512 -n 128 -r 2 on one GPU and on 2 NCCL ranks,
#            scaling charts drawn: $OUT/default/
#   graphs   the same with MLX's CUDA graphs off (MLX_USE_CUDA_GRAPHS=0): $OUT/graphs-off/
#   tools/gpu/tp-diagnose.sh VLMBENCH_BINARY tokens|default|graphs...
set -uo pipefail
bin="${1:?usage: tp-diagnose.sh VLMBENCH_BINARY tokens|default|graphs...}"
shift
here="$(cd "$(dirname "$0")" && pwd)"
base="$OUT"
for step in "$@"; do
  start=$SECONDS
  case "$step" in
    tokens)
      for k in mlx vlmbench; do
        OUT="$base/tokens-$k" VLMBENCH_BIN="$bin" VLMBENCH_KERNELS=$k TP_DTYPES=float32 \
          bash "$here/tensor-parallel-nccl.sh" > "$base/tokens-$k.txt" 2>&1
        tail -3 "$base/tokens-$k.txt" | sed "s/^/$k: /"
      done
      ;;
    default)
      mkdir -p "$base/default" && OUT="$base/default" bash "$here/tp-31b.sh" "$bin"
      ;;
    graphs)
      mkdir -p "$base/graphs-off" && OUT="$base/graphs-off" MLX_USE_CUDA_GRAPHS=0 bash "$here/tp-31b.sh" "$bin"
      ;;
    *)
      echo "unknown step $step: use tokens, default or graphs" >&2; exit 2 ;;
  esac
  echo "$step: $((SECONDS - start)) s"
done
