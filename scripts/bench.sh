#!/usr/bin/env bash
# Runs the whole comparison of docs/benchmarks.md: ringkv beside redis-server and etcd,
# same machine, same run. Installs the peers from Debian if missing (needs root), builds
# the release binary (RocksDB's C++ again, in release: 15-30 minutes the first time), then
# prints one table per configuration (about 12 minutes of measuring: each configuration
# runs ringkv, redis and etcd in turn, three rounds, and gives the median of the ratios).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
bash scripts/install-peers.sh
cargo build --release --locked -p ringkv-bench --all-targets
bench="$CARGO_TARGET_DIR/release/ringkv-bench"
common=(--records 10000 --value-bytes 100 --concurrency 16 --duration 10s --warmup 2s --distribution zipfian --target all --rounds 3)
for config in "--workload a --nodes 1" "--workload c --nodes 1" "--workload a --nodes 1 --fsync" "--workload a --nodes 3 --fsync"; do
    echo "== ringkv-bench run $config"
    # shellcheck disable=SC2086
    "$bench" run $config "${common[@]}"
done
