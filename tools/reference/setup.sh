#!/usr/bin/env bash
# Create (or reuse) the Python reference venv: mlx-vlm 0.7.10 on MLX 0.32.2, pinned by requirements.txt.
#
#   tools/reference/setup.sh            -> last stdout line: absolute path of the venv's python
#
# Idempotent: a stamp file inside the venv holds the sha256 of requirements.txt (and the base
# python's version); when it matches, the script returns at once without starting Python.
# When it does not match, the venv is rebuilt from scratch (no stale packages).
#
# Environment:
#   VLMBENCH_CACHE_DIR   cache root (default ~/.cache/vlmbench): pip cache in $VLMBENCH_CACHE_DIR/pip,
#                        downloaded wheels in $VLMBENCH_CACHE_DIR/wheels (reused when no index is reachable)
#   VLMBENCH_PYTHON      base interpreter (default python3; needs >= 3.11 with venv/ensurepip)
#   VLMBENCH_OFFLINE=1   do not contact the package index; install only from the cached wheels
#
# Everything except the final python path goes to stderr.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
REQ="$HERE/requirements.txt"
STAMP="$VENV/.vlmbench-requirements.sha256"
LOCK="$HERE/.venv.lock"
CACHE="${VLMBENCH_CACHE_DIR:-$HOME/.cache/vlmbench}"
WHEELS="$CACHE/wheels"
BASE_PY="${VLMBENCH_PYTHON:-python3}"

export PIP_CACHE_DIR="$CACHE/pip"
export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_NO_INPUT=1
export HF_HUB_OFFLINE=1
export TRANSFORMERS_OFFLINE=1
export HF_HUB_DISABLE_TELEMETRY=1

die() { echo "setup.sh: error: $*" >&2; exit 1; }
log() { echo "setup.sh: $*" >&2; }

[ -f "$REQ" ] || die "missing $REQ"

sha256_of() {
    if command -v sha256sum >/dev/null 2>&1; then sha256sum "$1" | cut -d' ' -f1
    elif command -v shasum >/dev/null 2>&1; then shasum -a 256 "$1" | cut -d' ' -f1
    else die "neither sha256sum nor shasum found (install coreutils)"; fi
}

command -v "$BASE_PY" >/dev/null 2>&1 \
    || die "'$BASE_PY' not found: install Python >= 3.11 with venv (Debian: apt-get install -y python3 python3-venv; macOS: brew install python@3.11)"
# The stamp covers the requirements and the base interpreter (path + version string from the binary, no Python start).
BASE_PY_PATH="$(command -v "$BASE_PY")"
WANT="$(sha256_of "$REQ") $(readlink -f "$BASE_PY_PATH" 2>/dev/null || echo "$BASE_PY_PATH")"

is_current() { [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; }

# Fast path: nothing to do.
if is_current; then
    echo "$VENV/bin/python"
    exit 0
fi

# Serialize concurrent callers (e.g. parallel tests).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$LOCK"
    flock 9
else
    until mkdir "$LOCK.d" 2>/dev/null; do sleep 1; done
    trap 'rmdir "$LOCK.d" 2>/dev/null || true' EXIT
fi
if is_current; then
    echo "$VENV/bin/python"
    exit 0
fi

"$BASE_PY" - <<'PY' || die "Python >= 3.11 required (found $("$BASE_PY" --version 2>&1)); set VLMBENCH_PYTHON to a newer interpreter"
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY
"$BASE_PY" -c "import venv, ensurepip" 2>/dev/null \
    || die "'$BASE_PY' lacks the venv/ensurepip modules: install them (Debian: apt-get install -y python3-venv)"

t0=$SECONDS
log "building venv at $VENV (pip cache: $PIP_CACHE_DIR)"
rm -rf "$VENV"
"$BASE_PY" -m venv "$VENV" >&2 || die "python -m venv failed (Debian: apt-get install -y python3-venv)"
PY="$VENV/bin/python"
mkdir -p "$PIP_CACHE_DIR" "$WHEELS"

# 1. Fetch the pinned wheels into the local wheelhouse (skipped offline; files already there are reused).
fetched=0
if [ "${VLMBENCH_OFFLINE:-0}" != "1" ]; then
    if "$PY" -m pip download --quiet --no-deps --only-binary=:all: -r "$REQ" -d "$WHEELS" >&2; then
        fetched=1
    else
        log "warning: could not download from the package index; trying the cached wheels in $WHEELS"
    fi
fi
# 2. Install exactly the pinned set, without dependency resolution (mlx-vlm/mlx-lm declare looser or
#    conflicting requirements), from the wheelhouse only.
"$PY" -m pip install --quiet --no-deps --no-index --only-binary=:all: --find-links "$WHEELS" -r "$REQ" >&2 \
    || { [ $fetched = 1 ] && die "pip install failed (see above)"; \
         die "pip install failed: no package index reachable and $WHEELS lacks pinned wheels (run once online)"; }

# 3. Smoke test: the imports the reference needs, at the pinned versions.
"$PY" - <<'PY' >&2 || die "the new venv failed its import check (see above)"
import importlib.metadata as md
import mlx.core as mx
import mlx_vlm, mlx_lm, transformers
from mlx_vlm import load, generate  # noqa: F401
from mlx_vlm.models import gemma4  # noqa: F401
want = {"mlx": "0.32.2", "mlx-vlm": "0.7.10", "mlx-lm": "0.32.2", "transformers": "5.23.0"}
got = {k: md.version(k) for k in want}
assert got == want, f"version mismatch: {got} != {want}"
print("setup.sh: ok:", ", ".join(f"{k} {v}" for k, v in got.items()), "| mlx device:", mx.default_device())
PY

echo "$WANT" > "$STAMP"
log "venv ready in $((SECONDS - t0)) s"
echo "$PY"
