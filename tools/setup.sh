#!/usr/bin/env bash
# Installs what building vlmbench needs beyond Rust and Python: CMake (builds mlx-c) and libclang
# (bindgen reads the mlx-c headers), pip and venv for Python. Idempotent: does nothing when both are present.
# The MLX library itself is fetched by the build (mlx-sys/build.rs), with pip, into a cache.
set -euo pipefail

have_libclang() {
  [ -n "${LIBCLANG_PATH:-}" ] && return 0
  # libclang.so or libclang-17.so, not libclang-cpp.so (a different library bindgen cannot use).
  ldconfig -p 2>/dev/null | grep -Eq 'libclang(-[0-9.]+)?\.so' && return 0
  compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null && return 0
  compgen -G '/usr/lib/llvm-*/lib/libclang-[0-9]*.so*' >/dev/null && return 0
  [ "$(uname -s)" = Darwin ] && xcrun --find clang >/dev/null 2>&1 && return 0
  return 1
}

missing=()
command -v cmake >/dev/null || missing+=(cmake)
have_libclang || missing+=(libclang-dev)
if ! python3 -m pip --version >/dev/null 2>&1; then
  missing+=(python3-pip)
fi
# The parity tests' Python reference lives in a venv (tools/reference/setup.sh).
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(uname -s)" = Darwin ]; then
  echo "error: missing ${missing[*]}: install CMake (brew install cmake) and the Xcode command line tools" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "error: missing ${missing[*]} and no apt-get here: install CMake, libclang and pip with your package manager" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing ${missing[*]} with apt-get" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
