#!/usr/bin/env bash
# Runs ON the GPU machine, from the repository root (issue #25): llama.cpp's prebuilt CUDA build
# beside vlmbench on the same Gemma-4-31B-shaped weights, through tools/llama/side_by_side.sh
# --gpu cuda. What it needs comes in three device calls (tools/gpu/pack-llama.sh makes the parts):
#
#   tools/gpu/llama-side-by-side.sh stash     # calls 1 and 2, carrying .gpu/bundle.part-aa, then -ab
#   tools/gpu/llama-side-by-side.sh prepare   # call 3, carrying .gpu/bundle.part-ac: unpack, the
#                                             # checkpoint, its Q4_1 GGUF, llama.cpp's first load
#   tools/gpu/llama-side-by-side.sh run [P N R ROUNDS]   # the alternated rounds, into
#                                             # $OUT/gpu-31b-llama.tar.gz; carrying .gpu/h/whl
#                                             # (the reference's wheels) adds mlx-vlm
# (`prepare && run` fit one call when device time is short.)
#
# The checkpoint is `vlmbench make-tiny --preset gemma-4-31b` (random 4-bit weights, group size 64)
# and the GGUF its lossless Q4_1 export (`vlmbench convert --to-gguf`): both programs multiply the
# same numbers. llama.cpp's libggml-cuda.so holds compute 9.0 PTX only: its first load compiles
# the kernels it uses (the driver's JIT cache, enlarged here, keeps them for the later calls).
set -uo pipefail
root=/tmp/vlmbench-gpu
model=$root/gemma-4-31b-random
gguf=$model.q4_1.gguf
export CUDA_CACHE_MAXSIZE=4294967296
log() { echo "== $(date -u +%T) $*" >&2; }

environment() {
  # device-setup.sh reads the MLX parts from .gpu/ and $root.
  mkdir -p .gpu && cp -n "$root"/libmlx.part-ab "$root"/runtime.tar.xz "$root"/nvidia_cuda_crt-*.whl .gpu/ 2>/dev/null
  source tools/gpu/device-setup.sh env || return 1
  export PATH="$root/llama:$PATH" VLMBENCH_LLAMA_DIR="$root/llama/node-llama-cpp-3.22.1"
  export VLMBENCH_BIN="$root/vlmbench"
}

case "${1:-}" in
  stash)
    mkdir -p "$root" && cp .gpu/bundle.part-* "$root/" && ls -l "$root" && nvidia-smi -L
    ;;
  prepare)
    [ -f "$root/bundle.part-aa" ] && [ -f "$root/bundle.part-ab" ] || { echo "error: $root/bundle.part-aa or -ab missing: run the stash calls first (was the machine given back in between?)" >&2; exit 1; }
    if [ ! -f "$root/vlmbench" ]; then
      log "unpacking"
      cat "$root/bundle.part-aa" "$root/bundle.part-ab" .gpu/bundle.part-ac | tar -C "$root" -xf - || exit 1
      mkdir -p "$root/llama" && xz -dc "$root/llama-gpu.tar.xz" | tar -C "$root/llama" -xf - || exit 1
      xz -dc "$root/vlmbench.xz" > "$root/vlmbench" && chmod +x "$root/vlmbench"
    fi
    environment || exit 1
    node --version && "$VLMBENCH_BIN" --version
    if [ ! -f "$model/config.json" ]; then
      log "make-tiny --preset gemma-4-31b"
      "$VLMBENCH_BIN" make-tiny --preset gemma-4-31b "$model" >&2 || exit 1
    fi
    if [ ! -f "$gguf" ]; then
      log "convert --to-gguf q4_1"
      "$VLMBENCH_BIN" convert --to-gguf "$gguf.partial" --model "$model" --gguf-type q4_1 >&2 && mv "$gguf.partial" "$gguf" || exit 1
    fi
    ls -l "$gguf"
    log "llama.cpp's first load on the GPU (compiles its PTX)"
    timeout "${JIT_SECONDS:-420}" node tools/llama/bench.mjs --gpu cuda --gguf "$gguf" --model-dir "$model" -p 512 -n 8 -r 1 --no-warmup
    log "done (rc $?)"
    ;;
  run)
    environment || exit 1
    p="${2:-512}"; n="${3:-128}"; r="${4:-2}"; rounds="${5:-3}"
    # The device tool brings back at most 8 files: the folder travels as one archive.
    rm -rf "$root/gpu-31b-llama"
    third=()
    if [ -d .gpu/h/whl ]; then  # the reference's wheels carried: mlx-vlm as the third program
      source tools/gpu/python-setup.sh .gpu/h/whl || exit 1
      export VLMBENCH_REFERENCE_PYTHON="$(command -v python3)"
      third=(--mlx-vlm)
    fi
    tools/llama/side_by_side.sh "$model" "$gguf" "$root/gpu-31b-llama" -p "$p" -n "$n" -r "$r" --rounds "$rounds" --gpu cuda "${third[@]}"
    rc=$?
    tar -C "$root" -czf "$OUT/gpu-31b-llama.tar.gz" gpu-31b-llama && exit "$rc"
    ;;
  *)
    echo "usage: $0 stash | prepare | run [P N R ROUNDS]" >&2; exit 2 ;;
esac
