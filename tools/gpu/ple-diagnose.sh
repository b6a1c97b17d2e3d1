#!/usr/bin/env bash
# Runs ON a GPU machine (after the stash call): localizes the open PLE bug (wrong, varying tokens on
# CUDA for the tiny PLE checkpoint; charts/gpu/h100-paced/README.md) in one call:
#  1. tools/gpu/check-prefill.sh without its decode part (vlmbench's and mlx-vlm's first tokens
#     against the CPU's, MLX's attention/RoPE/RMS norm GPU against CPU);
#  2. vlmbench with the sliding window widened past the prompt (config edit only): CPU tokens
#     63 -> [312, 175, 312, 136], 210 -> [254, 254, 254, 278];
#  3. tools/gpu/qmm_check.py: MLX's quantized_matmul and quantized embedding at small shapes;
#  4. tools/gpu/ple_bisect.py: the first mlx-vlm module whose GPU output differs from the CPU's,
#     on the prompts of 63 and 210 tokens (CARRIED_DIR/tools/ids-{1,4}.json: `vlmbench generate
#     --json` output made on the CPU, carried along).
#  qmm_models (not in the default list): tools/gpu/qmm_check.py --model-shapes.
#  5. verify: vlmbench's tokens (64 after 602 prompt tokens, and the first after 63-406) against
#     the CPU's, with the default kernels and with VLMBENCH_KERNELS=mlx.
# Parts run in the order given (default: all, in this order); Python runs unbuffered, so a
# part cut off by the time limit still leaves what it printed.
#   tools/gpu/ple-diagnose.sh CARRIED_DIR [PART...]
set -uo pipefail
h="${1:?usage: ple-diagnose.sh CARRIED_DIR [check|window|qmm|qmm_models|bisect|verify]...}"; shift
parts="${*:-check window qmm bisect verify}"
source "$h/tools/gpu/device-setup.sh" env || exit 1
source "$h/tools/gpu/python-setup.sh" "$h/whl" || exit 1
log="$OUT/log.txt"
step() { echo "== $(date -u +%T) $*" | tee -a "$log"; }

check() {
  CHECK_DECODE=0 bash "$h/tools/gpu/check-prefill.sh" "$h"
}
window() {
  step "vlmbench, sliding window 4096 (CPU: 63 -> [312, 175, 312, 136], 210 -> [254, 254, 254, 278])"
  rm -rf /tmp/tiny-ple-w && cp -r /tmp/tiny-ple /tmp/tiny-ple-w
  python3 -c "import json; p='/tmp/tiny-ple-w/config.json'; c=json.load(open(p)); c.get('text_config', c)['sliding_window']=4096; json.dump(c, open(p, 'w'))"
  for n in 1 4; do
    p="$(for i in $(seq $n); do printf 'Describe a quiet harbour at dawn, the boats and the gulls. '; done)"
    for run in 1 2; do
      MLX_ENABLE_TF32=0 VLMBENCH_PREFILL=mlx "$h/vlmbench" generate -m /tmp/tiny-ple-w -p "$p" --max-tokens 4 \
        --temperature 0 --dtype float32 --json 2>> "$log" \
        | python3 -c "import json,sys; d=json.load(sys.stdin); print('window 4096 run $run:', len(d['prompt_ids']), d['token_ids'])" | tee -a "$log"
    done
  done
}
qmm() {
  step "MLX quantized_matmul / quantized embedding, GPU against CPU"
  MLX_ENABLE_TF32=0 python3 -u "$h/tools/gpu/qmm_check.py" 2>&1 | grep --line-buffered -v -i warn | tee -a "$log"
}
qmm_models() {
  step "MLX quantized_matmul at Gemma-4-31B shapes, 2-2048 rows, against float32 on the device"
  MLX_ENABLE_TF32=0 python3 -u "$h/tools/gpu/qmm_check.py" --model-shapes 2>&1 | grep --line-buffered -v -i warn | tee -a "$log"
}
bisect() {
  step "mlx-vlm per-module bisect, GPU against CPU"
  for n in 1 4; do
    MLX_ENABLE_TF32=0 python3 -u "$h/tools/gpu/ple_bisect.py" /tmp/tiny-ple "$h/tools/ids-$n.json" 2>&1 | grep --line-buffered -v -i warn | tee -a "$log"
  done
}

verify() {
  step "vlmbench (padded short products) against the CPU's tokens: kernels default and mlx"
  local want="278, 278, 278, 278, 278, 278, 278, 278, 278, 278, 249, 131, 140, 117, 295, 57, 171, 141, 359, 272, 158, 189, 226, 363, 109, 158, 380, 128, 208, 349, 158, 263, 99, 99, 86, 64, 150, 152, 234, 234, 373, 366, 70, 279, 215, 194, 102, 274, 274, 274, 316, 236, 291, 328, 187, 187, 34, 155, 22, 131, 131, 131, 131, 131"
  for kernels in gemv mlx; do
    for n in 1 4 8 12; do
      p="$(for i in $(seq $n); do printf 'Describe a quiet harbour at dawn, the boats and the gulls. '; done)"
      MLX_ENABLE_TF32=0 VLMBENCH_KERNELS=$kernels "$h/vlmbench" generate -m /tmp/tiny-ple -p "$p" --max-tokens 64 \
        --ignore-eos --temperature 0 --dtype float32 --json 2>> "$log" > /tmp/v.json
      WANT="$want" python3 -c "
import json, os; d = json.load(open('/tmp/v.json')); ids = d['token_ids']
cpu = {63: 349, 210: 115, 406: 375, 602: 278}[len(d['prompt_ids'])]
line = f'kernels $kernels, {len(d[\"prompt_ids\"])} prompt tokens: first token {ids[0]} (CPU {cpu})'
if len(d['prompt_ids']) == 602:
    want = [int(t) for t in os.environ['WANT'].split(', ')]
    line += f', 64 tokens equal to the CPU\'s: {ids == want}'
print(line)" | tee -a "$log"
    done
  done
}

[ -f /tmp/tiny-ple/config.json ] || "$h/vlmbench" make-tiny /tmp/tiny-ple --variant ple > /dev/null 2>> "$log"
for part in $parts; do "$part"; done
