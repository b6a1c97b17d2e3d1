#!/usr/bin/env bash
# End-to-end check of the reference tooling: venv, three tiny checkpoints, the run matrix.
#
#   tools/reference/selftest.sh [WORK_DIR]      (default: a fresh temp dir; kept, path printed)
#
# Builds dense/moe/ple, then runs gemma4_run.py: a text prompt on each variant in float32 and
# bfloat16, an image prompt on dense and ple in both dtypes, and a 40-id --prompt-ids run with
# --max-tokens 24 (prompt + generation > sliding_window 16) on each variant. Validates every JSON.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WORK="${1:-$(mktemp -d -t vlmbench-ref-selftest.XXXXXX)}"
mkdir -p "$WORK/models" "$WORK/runs"

t=$SECONDS
PY="$("$HERE/setup.sh" | tail -n 1)"
echo "selftest: setup $((SECONDS - t)) s -> $PY" >&2

for v in dense moe ple; do
    t=$SECONDS
    "$PY" "$HERE/build_tiny_gemma4.py" "$WORK/models/$v" --variant "$v" > "$WORK/models/$v.keys.txt"
    echo "selftest: build $v $((SECONDS - t)) s" >&2
done
"$PY" "$HERE/make_test_image.py" "$WORK/test.png" >/dev/null

IDS="$("$PY" -c "print(','.join(str(x) for x in [2] + [280 + (i * 37) % 95 for i in range(39)]))")"
run() {  # name, args...
    local name="$1"; shift
    local t=$SECONDS
    "$PY" "$HERE/gemma4_run.py" --out "$WORK/runs/$name.json" "$@"
    echo "selftest: run $name $((SECONDS - t)) s" >&2
}
for v in dense moe ple; do
    for d in float32 bfloat16; do
        run "$v-text-$d" --model "$WORK/models/$v" --dtype "$d" --max-tokens 16 \
            --prompt "Hello there, what is the capital of France?"
        run "$v-ids40-$d" --model "$WORK/models/$v" --dtype "$d" --max-tokens 24 --ignore-eos --prompt-ids "$IDS"
    done
done
for v in dense ple; do
    for d in float32 bfloat16; do
        run "$v-image-$d" --model "$WORK/models/$v" --dtype "$d" --max-tokens 16 \
            --prompt "Describe this image." --image "$WORK/test.png"
    done
done

"$PY" - "$WORK/runs" <<'PY'
import json, sys
from pathlib import Path
bad = 0
for f in sorted(Path(sys.argv[1]).glob("*.json")):
    r = json.loads(f.read_text())
    n = len(r["generated_ids"])
    ok = (r["first_step_logits"] is not None and len(r["first_step_logits"]) == 384 and len(r["steps"]) == n
          and r["stats"]["prompt_tokens"] == r["prompt_len"] and r["stats"]["generation_tokens"] == n
          and not r.get("warnings")
          and (r["finish_reason"] == "stop" or n == r["max_tokens"])
          and (("images" not in r) or r["num_image_tokens"] > 0))
    bad += not ok
    print(f"{'ok ' if ok else 'BAD'} {f.stem:22s} prompt {r['prompt_len']:3d}  gen {n:2d} {r['finish_reason']:6s} "
          f"ids {r['generated_ids'][:8]}")
print(f"{len(list(Path(sys.argv[1]).glob('*.json'))) - bad} passed, {bad} failed")
sys.exit(1 if bad else 0)
PY
echo "selftest: outputs in $WORK" >&2
