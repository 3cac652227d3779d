#!/usr/bin/env bash
# Installs what ringkv needs beyond Cargo, idempotently, and exports the build cache location.
#
# Source it (`. scripts/setup.sh`) or run it; both README commands go through it.
# - libclang: the rocksdb crate's bindgen loads it at build time (Debian: libclang-dev).
# - CARGO_TARGET_DIR: one build cache outside the clone, so a second run (or CI on a
#   warm machine) recompiles nothing.
# - RocksDB, built once per machine and version: `librocksdb-sys` compiles RocksDB's C++
#   (15-25 minutes on 2 cores) inside every profile and target dir that needs it: the test
#   profile, clippy's check build, release, the static image. Instead this script compiles
#   it once, from the crate's own bundled sources at the version Cargo.lock pins, into
#   ~/.cache/ringkv/rocksdb/<version>/, and points `librocksdb-sys` at the library with
#   ROCKSDB_LIB_DIR and ROCKSDB_STATIC, so every build links that one library.
#   storage/build.rs links the C++ runtime, which `librocksdb-sys` only does when it builds.
#   RINGKV_ROCKSDB_COMPILE=1 skips all this and lets each build compile RocksDB itself.
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

# The directory of this checkout, whether the script is sourced or run.
ringkv_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Prints the version of a package that Cargo.lock pins.
ringkv_locked_version() {
    awk -v name="$1" '$0 == "name = \"" name "\"" { getline; gsub(/version = |"/, ""); print; exit }' \
        "$ringkv_root/Cargo.lock"
}

# Builds RocksDB's static library once for the pinned librocksdb-sys, if not built yet,
# and exports the variables that make librocksdb-sys link it instead of compiling it.
ringkv_prebuilt_rocksdb() {
    local version cache lib build_dir
    version="$(ringkv_locked_version librocksdb-sys)"
    if [ -z "$version" ]; then
        echo "setup: librocksdb-sys not found in Cargo.lock" >&2
        return 1
    fi
    cache="${RINGKV_CACHE_DIR:-$HOME/.cache/ringkv}/rocksdb/$version"
    lib="$cache/lib/librocksdb.a"
    if [ ! -f "$lib" ]; then
        mkdir -p "$cache"
        # One builder at a time: a second script started meanwhile waits for the first.
        exec 9>"$cache/.lock"
        flock 9
        if [ ! -f "$lib" ]; then
            echo "setup: building RocksDB $version once for this machine (15-25 minutes on 2 cores) into $cache" >&2
            local start=$SECONDS
            build_dir="$cache/build"
            mkdir -p "$build_dir"
            # A crate of its own that only depends on librocksdb-sys with the workspace's
            # features (`static`, `lz4`), resolved with the workspace's lock file so every
            # build-time dependency has the version the workspace builds with.
            cat >"$build_dir/Cargo.toml" <<TOML
[package]
name = "ringkv-rocksdb-prebuilt"
version = "0.0.0"
edition = "2021"
publish = false

[lib]
path = "lib.rs"

[dependencies]
librocksdb-sys = { version = "=$version", default-features = false, features = ["static", "lz4"] }

# Optimised as the release build always compiled it; no debug info (it is huge).
[profile.release]
opt-level = 3
debug = false

[workspace]
TOML
            : >"$build_dir/lib.rs"
            cp "$ringkv_root/Cargo.lock" "$build_dir/Cargo.lock"
            (
                cd "$build_dir"
                unset ROCKSDB_LIB_DIR ROCKSDB_STATIC RUSTFLAGS CARGO_ENCODED_RUSTFLAGS
                CARGO_TARGET_DIR="$build_dir/target" cargo build --release --lib --quiet
            )
            local built
            built="$(ls -t "$build_dir"/target/release/build/librocksdb-sys-*/out/librocksdb.a 2>/dev/null | head -n 1)"
            if [ -z "$built" ]; then
                echo "setup: the RocksDB build left no librocksdb.a under $build_dir/target" >&2
                return 1
            fi
            mkdir -p "$cache/lib"
            cp "$built" "$lib.tmp"
            mv "$lib.tmp" "$lib"
            rm -rf "$build_dir/target"
            echo "setup: RocksDB $version built in $(( SECONDS - start ))s: $lib" >&2
        fi
        exec 9>&-
    fi
    export ROCKSDB_LIB_DIR="$cache/lib"
    export ROCKSDB_STATIC=1
}

if [ "${RINGKV_ROCKSDB_COMPILE:-0}" != 1 ]; then
    ringkv_prebuilt_rocksdb
else
    unset ROCKSDB_LIB_DIR ROCKSDB_STATIC
fi
