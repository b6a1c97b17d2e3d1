#!/usr/bin/env bash
# The CPU speed tables of the README, from nothing: vlmbench beside llama.cpp (and MLX's own
# Python stack) on the same weights, one script, alternated rounds (issue #24).
#
#   tools/bench/cpu-vs-llama.sh [gemma3|e2b|all] [OUT_ROOT]     (default: all, charts)
#
# gemma3: the real Gemma 3 270M (tools/real-weights/fetch_gemma3_270m.sh: llama.cpp reads the
#         Q4_K_M GGUF, vlmbench its lossless import): 64 prompt tokens + 32 generated (the issue's
#         figures) with mlx-lm as the third program, then llama-bench's 512 + 128 without it
#         (mlx-lm's float32 CPU path needs about a minute for one 512-token prompt).
# e2b:    Gemma 4 E2B's shapes with random 4-bit weights, written by
#         `vlmbench make-tiny --preset gemma-4-e2b` and exported by `vlmbench convert --to-gguf`
#         as Q4_1 (the same numbers: each MLX affine group of 64 is two Q4_1 blocks with its scale
#         and bias), with mlx-vlm 0.7.10 as the third program in float32 (--mlx-vlm=float32; its published
#         bfloat16 CPU path had not finished one warm-up generation of 64 + 16 tokens after 15 minutes).
# Each table: tools/llama/side_by_side.sh, 3 alternated rounds of (llama.cpp, vlmbench[, mlx-*]),
# into OUT_ROOT/cpu-gemma3-270m-64-32/, OUT_ROOT/cpu-gemma3-270m-512-128/ and OUT_ROOT/cpu-e2b-llama/.
# Run it on a quiet machine: machine.txt records the load and warns when other work shared the CPU.
# Environment: VLMBENCH_BIN (default: cargo build --release), VLMBENCH_CACHE_DIR.
set -euo pipefail
cd "$(dirname "$0")/../.."
die() { echo "cpu-vs-llama.sh: error: $*" >&2; exit 1; }
which="${1:-all}"
out="${2:-charts}"
case "$which" in gemma3|e2b|all) ;; *) die "the first argument is gemma3, e2b or all, not '$which'" ;; esac
if [ -z "${VLMBENCH_BIN:-}" ]; then
  cargo build --release --locked --bin vlmbench >&2 || die "cargo build --release failed"
  VLMBENCH_BIN="$PWD/target/release/vlmbench"
fi
export VLMBENCH_BIN
cache="${VLMBENCH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vlmbench}"

if [ "$which" != e2b ]; then
  model="$(tools/real-weights/fetch_gemma3_270m.sh | tail -n 1)"
  gguf="$cache/gemma3-270m/gemma-3-270m-q4_k_m.gguf"
  tools/llama/side_by_side.sh "$model" "$gguf" "$out/cpu-gemma3-270m-64-32" -p 64 -n 32 -r 3 --rounds 3 --mlx-lm --int8
  tools/llama/side_by_side.sh "$model" "$gguf" "$out/cpu-gemma3-270m-512-128" -p 512 -n 128 -r 2 --rounds 3 --int8
fi

if [ "$which" != gemma3 ]; then
  e2b="$cache/gemma-4-e2b-random"
  if [ ! -f "$e2b/config.json" ]; then
    "$VLMBENCH_BIN" make-tiny --preset gemma-4-e2b "$e2b.partial" >&2
    mv "$e2b.partial" "$e2b"
  fi
  [ -f "$e2b.q4_1.gguf" ] || {
    "$VLMBENCH_BIN" convert --to-gguf "$e2b.q4_1.gguf.partial" --model "$e2b" --gguf-type q4_1 >&2
    mv "$e2b.q4_1.gguf.partial" "$e2b.q4_1.gguf"
  }
  tools/llama/side_by_side.sh "$e2b" "$e2b.q4_1.gguf" "$out/cpu-e2b-llama" -p 64 -n 16 -r 2 --rounds 3 --mlx-vlm=float32 --int8
fi
