#!/usr/bin/env bash
# Installs the peers `ringkv-bench run --target redis|etcd|all` compares against:
# redis-server and etcd (Debian's etcd-server), through apt-get, only when missing.
# Needs root (or sudo). Safe to run twice.
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)

if [ "${#missing[@]}" -eq 0 ]; then
    echo "peers already installed: $(command -v redis-server) $(command -v etcd)"
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi

echo "installing: ${missing[*]}"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"

# The Debian packages start system services where an init system runs; the benchmark
# starts its own instances on free loopback ports, so those are not needed.
command -v redis-server
command -v etcd
