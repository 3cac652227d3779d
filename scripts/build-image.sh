#!/usr/bin/env bash
# Builds the `ringkv:dev` container image: a static `ringkv` binary in a `FROM scratch` image.
#
# Usage: scripts/build-image.sh            (idempotent; a warm second run takes seconds)
#   RINGKV_IMAGE=name:tag   image to tag (default ringkv:dev)
#   RINGKV_STATIC_TARGET_DIR  build cache for the static binary
#                           (default ~/.cache/ringkv/target-static)
#
# Why this shape: no registry can be reached, so the image has no base (`FROM scratch`) and
# the binary must need nothing from a filesystem: glibc linked statically
# (`-C target-feature=+crt-static`; the toolchain has no musl target). The static build has
# its own target dir because different RUSTFLAGS would otherwise invalidate the shared
# cache of `scripts/setup.sh` and recompile RocksDB for every `cargo test`. It uses the dev
# profile (the workspace compiles RocksDB at opt-level 1 there): it compiles much faster
# than release on two cores, and the container tests check behaviour, not speed. The
# binary is stripped before it goes into the image. The docker build context is a temp dir
# holding only the binary and the Dockerfile, not the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
# A caller's encoded flags would replace the RUSTFLAGS below.
unset CARGO_ENCODED_RUSTFLAGS

image="${RINGKV_IMAGE:-ringkv:dev}"
target_dir="${RINGKV_STATIC_TARGET_DIR:-$HOME/.cache/ringkv/target-static}"
triple=x86_64-unknown-linux-gnu

start=$(date +%s)
echo "build-image: static ringkv (dev profile, glibc +crt-static) in $target_dir"
# --target makes RUSTFLAGS apply to the binary only, not to build scripts or proc macros
# (which must stay dynamic). Without the default `jemalloc` feature: glibc's malloc, which
# static linking needs (docs/containers.md).
RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR="$target_dir" \
    cargo build --locked -p ringkv-node --no-default-features --bin ringkv --target "$triple"
bin="$target_dir/$triple/debug/ringkv"
echo "build-image: cargo took $(( $(date +%s) - start ))s"

# Refuse to put a dynamically linked binary in a scratch image: it would fail at exec with
# a confusing "no such file or directory" (the missing loader).
if command -v file >/dev/null 2>&1 && ! file -L "$bin" | grep -q 'statically linked\|static-pie linked'; then
    echo "build-image: $bin is not statically linked: $(file -L "$bin")" >&2
    exit 1
fi

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp container/image/Dockerfile "$ctx/Dockerfile"
if command -v strip >/dev/null 2>&1; then
    strip -o "$ctx/ringkv" "$bin"
else
    cp "$bin" "$ctx/ringkv"
fi
# Quiet unless it fails: without buildx the engine prints a deprecation notice every time.
if ! out="$(docker build -q -t "$image" -f "$ctx/Dockerfile" "$ctx" 2>&1)"; then
    echo "$out" >&2
    echo "build-image: docker build failed" >&2
    exit 1
fi
echo "build-image: $image built ($(docker image inspect -f '{{.Size}}' "$image") bytes) in $(( $(date +%s) - start ))s"
