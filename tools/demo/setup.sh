#!/usr/bin/env bash
# Create (or reuse) tools/demo/.venv for training the demo model: the reference's pinned packages
# (tools/reference/requirements.txt) and tools/demo/requirements.txt (PyTorch, about 3.5 GB with its
# CUDA libraries). The last stdout line is the venv's python; a stamp skips the work when nothing changed.
#   PY=$(tools/demo/setup.sh | tail -n 1)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
reqs=("$here/../reference/requirements.txt" "$here/requirements.txt")
want="$(cat "${reqs[@]}" | sha256sum | cut -d' ' -f1)"
stamp="$venv/.vlmbench-requirements.sha256"
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "$venv/bin/python"; exit 0
fi
base="${VLMBENCH_PYTHON:-python3}"
command -v "$base" >/dev/null || { echo "setup.sh: error: '$base' not found: install Python >= 3.11 with venv" >&2; exit 1; }
rm -rf "$venv"
"$base" -m venv "$venv" >&2
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_CACHE_DIR="${VLMBENCH_CACHE_DIR:-$HOME/.cache/vlmbench}/pip"
"$venv/bin/pip" install -q --no-deps --only-binary=:all: -r "${reqs[0]}" -r "${reqs[1]}" >&2
echo "$want" > "$stamp"
echo "$venv/bin/python"
