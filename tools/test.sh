#!/usr/bin/env bash
# The whole test suite, from a fresh clone: build prerequisites, then every test of the workspace.
# This is the README's test command, and what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
# The Python reference (mlx-vlm on the same MLX) that parity tests compare against; cached, ~1 min cold.
VLMBENCH_REFERENCE_PYTHON="$(tools/reference/setup.sh | tail -n 1)"
export VLMBENCH_REFERENCE_PYTHON
cargo test --workspace --locked "$@"
