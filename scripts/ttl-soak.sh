#!/usr/bin/env bash
# A TTL-heavy load on a 3-node dev cluster, to see that garbage is collected as fast as it
# is made: redis-benchmark sends `SET` of unique keys with a short TTL (`PX`) as fast as the
# cluster takes them, for SECONDS. Every INTERVAL seconds it prints the SET rate since the
# last line, each node's DBSIZE (objects it stores: live values, expired values not yet
# deleted, tombstones not yet reaped), its pending reaps, and the size of its data directory.
# With unique keys, stored objects grow for about TTL + grace (+ the reap's round trip) and
# must then stay flat: expiry deletes each value within a round of its TTL, the grace later
# its tombstone is reaped.
#
# Usage: scripts/ttl-soak.sh [seconds, default 600] [ttl ms, default 2000]
#                            [grace ms, default 30000] [interval s, default 15]
# Needs redis-benchmark (scripts/test.sh installs it). HYDRA_BIN=path runs that binary.
# CLIENTS and PIPELINE (default 50 and 16: as fast as the cluster goes) set the load;
# fewer give a rate below saturation.
set -euo pipefail
secs=${1:-600}; ttl=${2:-2000}; grace=${3:-30000}; every=${4:-15}
cd "$(dirname "$0")/.."
for t in redis-benchmark python3 curl; do
    command -v $t >/dev/null || { echo "$t is needed (scripts/test.sh installs it)" >&2; exit 1; }
done
if [ -n "${HYDRA_BIN:-}" ]; then hydra=$HYDRA_BIN; else
    cargo build --release -p hydra >/dev/null
    hydra=target/release/hydra
fi
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

HYDRA_STORAGE_TOMBSTONE_GRACE_MS=$grace "$hydra" dev --dir "$work/dev" --ports free \
    >"$work/dev.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do [ -f "$work/dev/cluster.json" ] && break; sleep 0.1; done
[ -f "$work/dev/cluster.json" ] || { cat "$work/dev.out" >&2; exit 1; }
field() { python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['nodes'][int(sys.argv[2])][sys.argv[3]])" "$work/dev/cluster.json" "$1" "$2"; }
resp=$(field 0 resp); resp_port=${resp##*:}
token=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['token'])" "$work/dev/cluster.json")
https=(); dirs=()
for i in 0 1 2; do https+=("$(field $i http)"); dirs+=("$work/dev/n$((i + 1))"); done

puts() { # SETs answered OK, all nodes together
    local total=0 n
    for h in "${https[@]}"; do
        n=$(curl -s -H "Authorization: Bearer $token" "http://$h/metrics" | awk '/^hydra_requests_total\{.*op="put".*status="ok"/ {s+=$2} END {printf "%d", s}')
        total=$((total + n))
    done
    echo "$total"
}
status() { # node -> "objects reaps_pending expired_deleted"
    curl -s -H "Authorization: Bearer $token" "http://${https[$1]}/v1/status" | python3 -c \
        'import json,sys;s=json.load(sys.stdin);g=s["garbage"];print(s["objects"],g["reaps_pending"],g["expired_deleted"])'
}

redis-benchmark -h 127.0.0.1 -p "$resp_port" -a "$token" -c "${CLIENTS:-50}" -P "${PIPELINE:-16}" \
    -n 2000000000 -r 100000000 -q \
    SET 'sess:__rand_int__' v PX "$ttl" >"$work/bench.out" 2>&1 &
bench=$!
pids+=($bench)
printf '%6s %9s' "s" "SET/s"
for i in 1 2 3; do printf ' %9s %7s %7s' "n$i.dbsize" "reaps" "MiB"; done
echo
last=$(puts); start=$(date +%s)
while [ $(( $(date +%s) - start )) -lt "$secs" ]; do
    sleep "$every"
    now=$(puts)
    printf '%6d %9d' $(( $(date +%s) - start )) $(( (now - last) / every ))
    last=$now
    for i in 0 1 2; do
        read -r objects reaps _ <<<"$(status $i)"
        mib=$(du -sm "${dirs[$i]}" | cut -f1)
        printf ' %9d %7d %7d' "$objects" "$reaps" "$mib"
    done
    echo
done
kill -TERM "$bench" 2>/dev/null || true
