#!/usr/bin/env bash
# CPU cost per request of a 3-node dev cluster, less sensitive to a noisy machine than
# throughput: starts a fresh release cluster, runs redis-benchmark SET then GET (50 clients,
# 100-byte values, 100k random keys) against node 1, and prints requests/s, p50, p99 and the
# nodes' CPU time (user + system, from /proc) per request.
# Usage: scripts/cpu-per-request.sh [requests, default 60000] [extra env for the nodes...]
# HYDRA_BIN=path measures that hydra binary instead of building target/release/hydra.
set -euo pipefail
n=${1:-60000}; shift || true
cd "$(dirname "$0")/.."
if [ -n "${HYDRA_BIN:-}" ]; then hydra=$HYDRA_BIN; else
    cargo build --release -p hydra >/dev/null
    hydra=target/release/hydra
fi
work=$(mktemp -d)
env "$@" "$hydra" dev --dir "$work/c" --ports free >"$work/dev.out" 2>&1 &
dev=$!
trap 'kill -TERM $dev 2>/dev/null; wait $dev 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 300); do [ -f "$work/c/cluster.json" ] && break; sleep 0.1; done
sleep 0.5
port=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['nodes'][0]['resp'].split(':')[1])" "$work/c/cluster.json")
token=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['token'])" "$work/c/cluster.json")
pids=$(python3 -c "import json,sys;print(' '.join(str(x['pid']) for x in json.load(open(sys.argv[1]))['nodes']))" "$work/c/cluster.json")
ticks() { t=0; for p in $pids; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo "$t"; }
hz=$(getconf CLK_TCK)
for test in set get; do
    before=$(ticks)
    line=$(redis-benchmark -p "$port" -a "$token" -t "$test" -n "$n" -c 50 -d 100 -r 100000 --csv 2>/dev/null | tail -1 | tr -d '"')
    after=$(ticks)
    echo "$line" | awk -F, -v us=$(( (after - before) * 1000000 / hz / n )) \
        '{printf "%-4s %8.0f req/s  p50 %6.3f ms  p99 %6.3f ms  nodes %d us CPU per request\n", $1, $2, $5, $7, us}'
done
