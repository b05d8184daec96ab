#!/usr/bin/env bash
# Which thread is a node's ceiling: per-thread CPU of the node a client talks to, under
# `redis-benchmark` SET and GET (50 clients, 100-byte values, 100,000 keys, -P 1 and -P 16),
# for 3-node dev clusters of each SHARDS value in turn (node.shards; every node threaded, so
# each shard is a core thread and the sockets run on the tokio workers). For each run prints
# requests/s, the node's CPU per request, and its threads by CPU time, each as a share of the
# run's wall time (1.00 = one core busy throughout): the hottest thread's share is the figure
# that caps a node on a host with more cores than this one.
#
# Usage: scripts/bench-cores.sh [requests, default 300000] [SHARDS..., default 1 2]
# HYDRA_BIN=path benches that hydra binary instead of building target/release/hydra.
# Needs Debian's redis-server and redis-tools (scripts/test.sh installs them).
set -euo pipefail
requests=${1:-300000}; shift || true
shard_counts=("$@"); [ ${#shard_counts[@]} -gt 0 ] || shard_counts=(1 2)
cd "$(dirname "$0")/.."
command -v redis-benchmark >/dev/null || { echo "redis-benchmark is needed (scripts/test.sh installs it)" >&2; exit 1; }
if [ -n "${HYDRA_BIN:-}" ]; then hydra=$HYDRA_BIN; else
    cargo build --release -p hydra >/dev/null
    hydra=target/release/hydra
fi
work=$(mktemp -d)
dev=""
stop() { if [ -n "$dev" ]; then kill -TERM "$dev" 2>/dev/null || true; wait "$dev" 2>/dev/null || true; dev=""; fi; }
trap 'stop; rm -rf "$work"' EXIT
hz=$(getconf CLK_TCK)

# Every thread of a process: "tid name ticks" (user + system clock ticks so far).
threads() {
    for t in /proc/"$1"/task/*; do
        printf '%s %s %s\n' "${t##*/}" "$(tr ' ' '_' <"$t/comm")" "$(sed 's/.*) //' "$t/stat" | awk '{print $12 + $13}')"
    done
}

for shards in "${shard_counts[@]}"; do
    dir="$work/shards-$shards"
    HYDRA_NODE_SHARDS=$shards HYDRA_NODE_SINGLE_THREAD=false \
        "$hydra" dev --dir "$dir" --ports free --durability fsync >"$work/dev-$shards.out" 2>&1 &
    dev=$!
    for _ in $(seq 1 300); do [ -f "$dir/cluster.json" ] && break; sleep 0.1; done
    [ -f "$dir/cluster.json" ] || { cat "$work/dev-$shards.out" >&2; exit 1; }
    sleep 1
    read -r port token pid < <(python3 -c "import json,sys;c=json.load(open(sys.argv[1]));n=c['nodes'][0];print(n['resp'].split(':')[1], c['token'], n['pid'])" "$dir/cluster.json")
    redis-benchmark -p "$port" -a "$token" -t set -n 200000 -c 50 -d 100 -r 100000 -P 16 -q >/dev/null 2>&1
    echo "node.shards = $shards"
    for pipeline in 1 16; do
        for test in set get; do
            threads "$pid" | sort >"$work/before"
            start=$(date +%s.%N)
            rps=$(redis-benchmark -p "$port" -a "$token" -t "$test" -n "$requests" -c 50 -d 100 -r 100000 -P "$pipeline" --csv 2>/dev/null | tail -1 | tr -d '"' | cut -d, -f2)
            end=$(date +%s.%N)
            threads "$pid" | sort >"$work/after"
            python3 - "$work/before" "$work/after" "$start" "$end" "$hz" "$requests" "$rps" "$test" "$pipeline" <<'PY'
import sys
before, after, start, end, hz, n, rps, test, p = sys.argv[1:]
wall = float(end) - float(start)
def load(path):
    return {tid: (name, int(ticks)) for tid, name, ticks in (l.split() for l in open(path) if l.strip())}
was, now = load(before), load(after)
shares = sorted(((ticks - was.get(tid, (name, 0))[1]) / int(hz) / wall, name)
                for tid, (name, ticks) in now.items())
shares.reverse()
total = sum(s for s, _ in shares)
top = ", ".join(f"{name} {s:.2f}" for s, name in shares[:6] if s >= 0.01)
print(f"  -P {p:>2} {test.upper():<3} {float(rps):>10.0f} req/s  node CPU {total * wall * 1e6 / int(n):6.1f} us/req  threads: {top}")
PY
        done
    done
    stop
done
