#!/usr/bin/env bash
# Runs the whole test suite: formatting, lints, and every test of every crate.
# Usage: ./scripts/test.sh            (what .ci/run calls)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (all targets, warnings are errors)"
# `--profile test`, the profile `cargo test` builds with. Measured on a cold machine, the
# two still run RocksDB's build script separately (two builds of its C++, 7 to 18 minutes
# each on 2 cores, depending on the VM's speed); both stay in $CARGO_TARGET_DIR, so a warm
# machine rebuilds neither.
cargo clippy --workspace --all-targets --locked --profile test -- -D warnings
echo "== cargo test (workspace, debug profile, shared build cache at $CARGO_TARGET_DIR)"
cargo test --workspace --locked --no-fail-fast
