#!/usr/bin/env bash
# llama.cpp for the CPU speed anchor (issue #24): a pinned, cached install of the npm package
# node-llama-cpp 3.22.1 and its prebuilt CPU binaries.
#
#   tools/llama/setup.sh        -> last stdout line: the install dir (holds node_modules/)
#
# Why node-llama-cpp and not llama-cpp-python: its platform package (@node-llama-cpp/linux-x64 on
# this machine) carries prebuilt binaries, so nothing is compiled (llama-cpp-python's sdist builds
# llama.cpp with CMake: minutes on 2 cores, and a compiler). The CPU package has one
# libggml-cpu-<microarch>.so per x86 level (haswell, skylakex, icelake, zen4, sapphirerapids, ...),
# and ggml picks the best one for the CPU at load time, as llama.cpp's own release builds do. Its
# libllama knows the gemma3, gemma3n and gemma4 architectures, so the same GGUF files vlmbench reads
# load as they are.
#
# How: `npm install --ignore-scripts --omit=optional` of exactly node-llama-cpp@3.22.1 plus exactly
# the matching CPU binary package for this platform, into
# ${VLMBENCH_CACHE_DIR:-~/.cache/vlmbench}/llama.cpp/node-llama-cpp-3.22.1. --ignore-scripts skips
# node-llama-cpp's postinstall (which could download or build llama.cpp); --omit=optional leaves out
# the CUDA and Vulkan packages (hundreds of MB); tools/llama/bench.mjs asks for `build: "never"`, so
# a missing prebuilt binary is an error, never a compile. The ordinary npm client and its
# configured registry are used. One caller at a time (flock); a stamp makes a second call a check.
# Everything except the final path goes to stderr.
set -euo pipefail

VERSION=3.22.1
die() { echo "tools/llama/setup.sh: error: $*" >&2; exit 1; }
log() { echo "tools/llama/setup.sh: $*" >&2; }

command -v node >/dev/null 2>&1 || die "node not found: install Node.js 20 or newer (Debian: apt-get install -y nodejs npm)"
command -v npm >/dev/null 2>&1 || die "npm not found: install npm (Debian: apt-get install -y npm)"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || die "node $(node --version) is too old: node-llama-cpp $VERSION needs Node.js 20 or newer"

# The CPU-only prebuilt package of this platform (the names node-llama-cpp's own loader uses).
platform="$(node -p 'process.platform + "-" + process.arch')"
case "$platform" in
  linux-x64) binpkg=linux-x64 ;;
  linux-arm64) binpkg=linux-arm64 ;;
  linux-arm) binpkg=linux-armv7l ;;
  linux-riscv64) binpkg=linux-riscv64 ;;
  darwin-arm64) binpkg=mac-arm64-metal ;;
  darwin-x64) binpkg=mac-x64 ;;
  win32-x64) binpkg=win-x64 ;;
  win32-arm64) binpkg=win-arm64 ;;
  *) die "node-llama-cpp $VERSION has no prebuilt binaries for $platform" ;;
esac

ROOT="${VLMBENCH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vlmbench}/llama.cpp"
DIR="$ROOT/node-llama-cpp-$VERSION"
mkdir -p "$ROOT"
exec 9>"$ROOT/.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi

stamp="node-llama-cpp@$VERSION @node-llama-cpp/$binpkg@$VERSION"
installed_version() {
  node -p "require('$1/node_modules/$2/package.json').version" 2>/dev/null || true
}
if [ -f "$DIR/.installed" ] && [ "$(cat "$DIR/.installed")" = "$stamp" ] \
  && [ "$(installed_version "$DIR" node-llama-cpp)" = "$VERSION" ] \
  && [ "$(installed_version "$DIR" "@node-llama-cpp/$binpkg")" = "$VERSION" ]; then
  echo "$DIR"
  exit 0
fi

log "installing node-llama-cpp $VERSION and @node-llama-cpp/$binpkg $VERSION (prebuilt, no compiler) into $DIR"
rm -rf "$DIR.partial"
mkdir -p "$DIR.partial"
trap 'rm -rf "$DIR.partial"' EXIT
cat > "$DIR.partial/package.json" <<EOF
{
  "name": "vlmbench-llama-cpp",
  "private": true,
  "description": "llama.cpp for vlmbench's CPU speed anchor (tools/llama/setup.sh)",
  "type": "module"
}
EOF
(
  cd "$DIR.partial"
  NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --ignore-scripts --omit=optional --save-exact \
    --no-audit --no-fund --loglevel=error \
    "node-llama-cpp@$VERSION" "@node-llama-cpp/$binpkg@$VERSION" >&2
) || die "npm install of node-llama-cpp@$VERSION failed (is the npm registry reachable?)"
[ "$(installed_version "$DIR.partial" node-llama-cpp)" = "$VERSION" ] || die "npm installed no node-llama-cpp $VERSION"
bins="$DIR.partial/node_modules/@node-llama-cpp/$binpkg/bins"
[ -d "$bins" ] || die "@node-llama-cpp/$binpkg $VERSION has no bins/ folder: no prebuilt binaries"
echo "$stamp" > "$DIR.partial/.installed"
rm -rf "$DIR"
mv "$DIR.partial" "$DIR"
trap - EXIT
log "installed: $(cd "$DIR/node_modules/@node-llama-cpp/$binpkg/bins" && ls | tr '\n' ' ')"
echo "$DIR"
