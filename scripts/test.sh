#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, and every test of every crate.
# Usage: ./scripts/test.sh            (what .ci/run calls)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (all targets, warnings are errors)"
# `--profile test`, the profile `cargo test` builds with: the two then share one build of
# RocksDB's C++ (its build script runs once per profile; about 15 minutes on 2 cores).
cargo clippy --workspace --all-targets --locked --profile test -- -D warnings
echo "== cargo test (workspace, debug profile, shared build cache at $CARGO_TARGET_DIR)"
cargo test --workspace --locked --no-fail-fast
