#!/usr/bin/env bash
# Starts a local 3-node cluster on 127.0.0.1:7101..7103 with RocksDB under ./ringkv-data,
# checks a put and a get, and keeps running until Ctrl-C. Extra arguments go to `ringkv dev`.
# The first run compiles the workspace (RocksDB's C++ included: 10-15 minutes on 2 cores).
set -euo pipefail
exec "$(dirname "$0")/ringkv" dev --nodes 3 "$@"
