#!/usr/bin/env bash
# Whether throughput holds over a long run: a fresh dev cluster of NODES nodes (N=3, so on
# more than 3 nodes most writes reach a node that is not a replica and are forwarded) takes
# SETs from `hydra bench` (workload write, uniform over 100,000 keys, 50 connections over
# RESP spread over every node) for MINUTES minutes, measured in 30-second slices. Prints
# each slice's writes/s and the last minute against the first (the target: at least 0.9x).
# The keys are loaded once, then WARMUP seconds of the same SETs run unmeasured (default 60):
# on a fresh store the first minute of overwrites fits in memtables, before the first
# flushes and compactions (an earlier measurement from a cold store ran about 1.25x faster
# in its first minute than after it, a start-up step rather than a decline). WARMUP=0 keeps
# only a 1-second run after the load, so the ratio includes that step.
#
# Usage: scripts/bench-steady.sh [NODES, default 5] [MINUTES, default 5] [OUT]
# HYDRA_BIN=path runs that hydra binary's nodes (the load is always this tree's bench).
set -euo pipefail
nodes=${1:-5}; minutes=${2:-5}
cd "$(dirname "$0")/.."
out=${3:-bench-results/steady-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
cargo build --release -p hydra >/dev/null
client=$(realpath target/release/hydra)
hydra=$(realpath "${HYDRA_BIN:-target/release/hydra}")
work=$(mktemp -d)
"$hydra" dev --dir "$work/c" --nodes "$nodes" --ports free --durability fsync >"$work/dev.out" 2>&1 &
dev=$!
trap 'kill -TERM $dev 2>/dev/null; wait $dev 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 300); do [ -f "$work/c/cluster.json" ] && break; sleep 0.1; done
[ -f "$work/c/cluster.json" ] || { cat "$work/dev.out" >&2; exit 1; }
sleep 1
slices=$((minutes * 2))
warmup=${WARMUP:-60}
run() { # seconds json [--skip-load]
    "$client" bench --cluster "$work/c/cluster.json" --protocol resp --connections 50 --quiet \
        --workload write --distribution uniform --records 100000 --seconds "$1" \
        --json "$2" "${@:3}" >/dev/null
}
echo "loading 100,000 keys, then ${warmup} s of SETs unmeasured" >&2
run "$((warmup > 0 ? warmup : 1))" "$out/warmup.json"
echo "slice,seconds,writes_per_s,p99_ms,errors" >"$out/steady.csv"
for i in $(seq 1 "$slices"); do
    run 30 "$out/slice-$i.json" --skip-load
    python3 - "$out/slice-$i.json" "$i" >>"$out/steady.csv" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]},{30 * int(sys.argv[2])},{r['ops_per_s']:.0f},{r['ops']['update']['p99_ms']:.3f},{r['errors']}")
EOF
    tail -1 "$out/steady.csv" >&2
done
python3 - "$out/steady.csv" "$nodes" "$warmup" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
rate = [float(r["writes_per_s"]) for r in rows]
first, last = sum(rate[:2]) / 2, sum(rate[-2:]) / 2
print(f"{sys.argv[2]} nodes, {len(rows) * 30} s of SETs after {sys.argv[3]} s of warm-up: first minute {first:.0f}/s, last minute {last:.0f}/s, ratio {last / first:.2f}")
EOF
