#!/usr/bin/env bash
# Installs what ringkv needs beyond Cargo, idempotently, and exports the build cache location.
#
# Source it (`. scripts/setup.sh`) or run it; both README commands go through it.
# - libclang: the rocksdb crate's bindgen loads it at build time (Debian: libclang-dev).
# - CARGO_TARGET_DIR: one build cache outside the clone, so a second run (or CI on a
#   warm machine) does not recompile RocksDB's C++ (about 14 minutes on 2 cores).
# protoc is not needed: client/build.rs compiles the .proto files with protox (pure Rust).
set -euo pipefail

ringkv_have_libclang() {
    ldconfig -p 2>/dev/null | grep -q 'libclang\(-[0-9.]*\)\?\.so' && return 0
    compgen -G '/usr/lib/llvm-*/lib/libclang.so*' >/dev/null || compgen -G '/usr/lib/llvm-*/lib/libclang-[0-9]*.so*' >/dev/null
}

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found; install a Rust toolchain (https://rustup.rs) first" >&2
    exit 1
fi

if ! ringkv_have_libclang; then
    echo "setup: libclang not found; installing Debian's libclang-dev (needed by rocksdb's bindgen)" >&2
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "setup: apt-get not available; install libclang (clang's shared library) by hand" >&2
        exit 1
    fi
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libclang-dev >/dev/null
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ringkv/target}"
mkdir -p "$CARGO_TARGET_DIR"
