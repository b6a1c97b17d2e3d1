#!/usr/bin/env bash
# This session's second GPU call (not committed): MLX's CUDA graph batching vs decode, whole model
# and one of 2 ranks.
set -uo pipefail
h=/tmp/h
source $h/tools/gpu/device-setup.sh env || exit 1
export MLX_PTX_CACHE_DIR=/tmp/ptx CUDA_CACHE_PATH=/tmp/nv
for n in 1 2; do
  m=/tmp/m$n; a=(); [ $n = 1 ] || a=(--one-rank-of $n)
  [ -f $m/config.json ] || $h/vlmbench make-tiny --preset gemma-4-31b "${a[@]}" $m > /dev/null 2>&1
done
settings=(default ops200 ops200-mb100k ops50 ops20 graphs-off)
envof() { case $1 in default) ;; ops200) echo MLX_MAX_OPS_PER_BUFFER=200;; ops200-mb100k) echo MLX_MAX_OPS_PER_BUFFER=200 MLX_MAX_MB_PER_BUFFER=100000;;
  ops50) echo MLX_MAX_OPS_PER_BUFFER=50;; ops20) echo MLX_MAX_OPS_PER_BUFFER=20;; graphs-off) echo MLX_USE_CUDA_GRAPHS=0;; esac; }
for r in 1 2; do for s in "${settings[@]}"; do for n in 1 2; do
  env $(envof $s) $h/vlmbench bench -m /tmp/m$n -p 512 -n 128 -r 2 -o json > $OUT/graphs-$s-$n-round$r.json 2> $OUT/graphs-$s-$n-round$r.err
  python3 -c "import json,sys; [print(f\"$s one-of-$n round $r {x['test']}: {x['tps_mean']:.1f} tok/s host {x.get('decode_host_ms')} peak {x['peak_memory_bytes']/1e9:.2f} GB\") for x in json.load(open(sys.argv[1]))]" $OUT/graphs-$s-$n-round$r.json
done; done; done
