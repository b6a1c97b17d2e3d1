#!/usr/bin/env bash
# The whole test suite, from a fresh clone: build prerequisites, then every test of the workspace.
# This is the README's test command, and what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
cargo test --workspace --locked "$@"
