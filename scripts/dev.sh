#!/usr/bin/env bash
# Starts a local 3-node cluster on 127.0.0.1:7101..7103 with RocksDB under ./ringkv-data,
# checks a put and a get, and keeps running until Ctrl-C. Extra arguments go to `ringkv dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
exec cargo run --locked --bin ringkv -- dev --nodes 3 "$@"
