#!/usr/bin/env bash
# Runs ON the GPU machine, from the repository root: trains the demo model
# (tools/demo/train_demo_gemma4.py: the machine's PyTorch and transformers on CUDA; mlx-vlm from the
# carried wheels prepares the inputs, checks the graph and converts) and brings it back as
# $OUT/demo-gemma4.tar.gz. Needs what `tools/gpu/llama-side-by-side.sh stash, stash, prepare`
# unpacked into /tmp/vlmbench-gpu (vlmbench and the CUDA libmlx), and carries .gpu/h/whl (mlx,
# mlx-vlm and mlx-lm wheels for cp312, docs/gpu.md). NOT run yet: no GPU machine was lent.
#   tools/demo/train-on-gpu.sh [SCENES] [SECONDS]     # defaults: 4000 scenes, 420 s in all
set -uo pipefail
root=/tmp/vlmbench-gpu
scenes="${1:-4000}"; budget="${2:-420}"
began=$(date +%s)
[ -x "$root/vlmbench" ] || { echo "error: $root/vlmbench missing: run tools/gpu/llama-side-by-side.sh stash, stash, prepare first" >&2; exit 1; }
mkdir -p .gpu && cp -n "$root"/libmlx.part-ab "$root"/runtime.tar.xz "$root"/nvidia_cuda_crt-*.whl .gpu/ 2>/dev/null
source tools/gpu/device-setup.sh env || exit 1
source tools/gpu/python-setup.sh .gpu/h/whl || exit 1
data=/tmp/demo-scenes
[ -f "$data/pairs.jsonl" ] || "$root/vlmbench" make-scenes "$data" --scenes "$scenes" --seed 1 --training || exit 1
out=/tmp/demo/gemma4-demo
python3 -c "import mlx.core as mx; print('mlx', mx.__version__, mx.default_device())"
left=$(( budget - ($(date +%s) - began) ))
python3 tools/demo/train_demo_gemma4.py "$data" "$out" --time-budget "$left" --save-seconds 40
rc=$?
tar -C /tmp/demo -czf "$OUT/demo-gemma4.tar.gz" . && ls -l "$OUT" && exit "$rc"
