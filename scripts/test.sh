#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, and every test of every crate.
# Usage: ./scripts/test.sh            (what .ci/run calls)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test (workspace, debug profile, shared build cache at $CARGO_TARGET_DIR)"
cargo test --workspace --locked --no-fail-fast
