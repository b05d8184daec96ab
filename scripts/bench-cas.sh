#!/usr/bin/env bash
# Compare-and-set speed on a local 3-node dev cluster, with `hydra bench` (one run, so the
# figures compare with each other, not with other days):
# 1. uncontended: a conditional write (`If-Match: *` / `SET XX`, through Paxos: prepare with
#    the read, propose, commit) against a plain W=2 write (one round trip to the replicas),
#    on 10,000 keys chosen uniformly, and a serial read against a quorum read;
# 2. contention: 1, 2, 4, 8 and 16 writers on one key (applied/s, p99, mean Paxos attempts,
#    outcome_unknown).
# Usage: scripts/bench-cas.sh [seconds] [protocol: http|resp] [durability]
set -euo pipefail
secs=${1:-10}; protocol=${2:-http}; durability=${3:-fsync}
cd "$(dirname "$0")/.."
cargo build --release -p hydra >/dev/null
work=$(mktemp -d)
trap 'kill -TERM $dev 2>/dev/null; wait $dev 2>/dev/null; rm -rf "$work"' EXIT
target/release/hydra dev --dir "$work/cluster" --ports free --durability "$durability" >"$work/dev.out" 2>&1 &
dev=$!
for _ in $(seq 1 100); do [ -f "$work/cluster/cluster.json" ] && break; sleep 0.1; done
# Plain writes and compare-and-sets on keys of their own (a key compare-and-set manages
# refuses plain writes), in lww buckets every node knows before the runs.
token=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['token'])" "$work/cluster/cluster.json")
mapfile -t nodes < <(python3 -c "import json,sys;[print(n['http']) for n in json.load(open(sys.argv[1]))['nodes']]" "$work/cluster/cluster.json")
for b in bench-plain bench-cas bench-hot; do
  target/release/hydra bucket create "$b" --conflicts lww --endpoint "${nodes[0]}" --token "$token" >/dev/null
  for n in "${nodes[@]}"; do
    for _ in $(seq 1 100); do curl -sf -H "Authorization: Bearer $token" "http://$n/v1/buckets/$b" >/dev/null && break; sleep 0.1; done
  done
done
bench() {
  target/release/hydra bench --cluster "$work/cluster/cluster.json" --protocol "$protocol" \
    --seconds "$secs" --quiet --json "$work/out.json" "$@" >/dev/null
  python3 - "$work/out.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for name, o in r["ops"].items():
    attempts = r.get("paxos_attempts_mean")
    print(f"  {name:<6} {o['ops_per_s']:>8.0f}/s  p50 {o['p50_ms']:>7.2f} ms  p99 {o['p99_ms']:>7.2f} ms"
          f"  errors {o['errors']}  unknown {r.get('outcome_unknown', 0)}"
          + (f"  attempts {attempts:.2f}" if attempts and name == 'cas' else ""))
PY
}
echo "uncontended, 16 connections, 10,000 keys (uniform), $protocol, durability $durability, ${secs}s each:"
echo " plain write (w=quorum: 2 of 3):"
bench --bucket bench-plain --workload write --records 10000 --distribution uniform --connections 16
echo " compare-and-set:"
bench --bucket bench-cas --workload cas --records 10000 --distribution uniform --connections 16
echo " quorum read, then serial read (r=serial):"
bench --bucket bench-cas --workload c --records 10000 --distribution uniform --connections 16 --skip-load
bench --bucket bench-cas --workload c --records 10000 --distribution uniform --connections 16 --skip-load --r serial
echo " one connection: plain write, compare-and-set:"
bench --bucket bench-plain --workload write --records 10000 --distribution uniform --connections 1
bench --bucket bench-cas --workload cas --records 10000 --distribution uniform --connections 1 --skip-load
echo "contention: writers on one key:"
for n in 1 2 4 8 16; do
  echo " $n writer(s):"
  if [ "$n" = 1 ]; then load=(); else load=(--skip-load); fi
  bench --bucket bench-hot --workload cas --records 1 --connections "$n" "${load[@]}"
done
