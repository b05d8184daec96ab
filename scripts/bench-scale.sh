#!/usr/bin/env bash
# How Hydra's speed and footprint hold as the data grows, in one run on one cluster:
#   1. a fresh dev cluster (NODES nodes, N=3, durability fsync) is loaded with 100,000 keys
#      of 100 B (the baseline) and measured: GET and SET uniformly over them (`hydra bench`
#      over RESP, 50 connections), resident memory and disk per node;
#   2. it grows to KEYS keys (pipelined bulk load, with a progress bar), waits until the
#      store's compaction after the load is done (the nodes' CPU idle: at most 15 minutes;
#      the wait is a figure) and is measured again: on the 100,000 keys of the baseline (the
#      hot set) and uniformly over all;
#   3. the same uniform figures with background work paused on every node (anti-entropy
#      with the full sweep of old tombstones, and hint delivery:
#      `POST /v1/admin/anti-entropy|handoff`), so its cost is a ratio, then alternated
#      pairs (running, paused) of uniform GETs and of uniform SETs, compared by throughput
#      and by the nodes' CPU time per operation: the firmer figure;
#   4. one node is stopped and started again: the time from its start to answering 200
#      probe keys correctly from its own store (consistency one), then uniform GETs over
#      all keys at once (its Merkle trees still rebuilding, its caches cold), and every
#      node's resident memory after them (caches filled by reads from tables).
# Prints a summary with the ratios against the baseline and writes every figure to OUT.
#
# Usage: scripts/bench-scale.sh [KEYS, default 1000000] [seconds per measure, default 15]
#                               [NODES, default 3] [OUT, default bench-results/scale-<time>]
# HYDRA_BIN=path measures that hydra binary's nodes instead of target/release/hydra's (the
# load and the measures always run this tree's `hydra bench`): a before/after comparison.
# HYDRA_BENCH_PAIRS=n sets the number of alternated pairs of step 3 (default 4).
set -euo pipefail
keys=${1:-1000000}; secs=${2:-15}; nodes=${3:-3}; pairs=${HYDRA_BENCH_PAIRS:-4}
base=100000
cd "$(dirname "$0")/.."
out=${4:-bench-results/scale-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
[ "$keys" -ge "$base" ] || { echo "KEYS must be at least $base" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed" >&2; exit 1; }
cargo build --release -p hydra >/dev/null
client=$(realpath target/release/hydra)
hydra=$(realpath "${HYDRA_BIN:-target/release/hydra}")
work=$(mktemp -d)
dev_pid=""; restarted_pid=""
cleanup() {
    [ -n "$restarted_pid" ] && kill -TERM "$restarted_pid" 2>/dev/null
    [ -n "$dev_pid" ] && kill -TERM "$dev_pid" 2>/dev/null
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

dir="$work/cluster"
"$hydra" dev --dir "$dir" --nodes "$nodes" --ports free --durability fsync >"$work/dev.out" 2>&1 &
dev_pid=$!
for _ in $(seq 1 300); do [ -f "$dir/cluster.json" ] && break; sleep 0.1; done
[ -f "$dir/cluster.json" ] || { cat "$work/dev.out" >&2; exit 1; }
cluster="$dir/cluster.json"
field() { python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['nodes'][int(sys.argv[2])][sys.argv[3]])" "$cluster" "$1" "$2"; }
token=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['token'])" "$cluster")

node_ticks() { # CPU time (clock ticks) the nodes have used so far
    local i pid t=0
    for i in $(seq 0 $((nodes - 1))); do
        pid=$(field "$i" pid)
        if [ "$i" = 1 ] && [ -n "$restarted_pid" ]; then pid=$restarted_pid; fi
        t=$((t + $(awk '{print $14+$15}' "/proc/$pid/stat")))
    done
    echo "$t"
}
bench() { # label, then hydra bench arguments; the nodes' CPU time over it goes to cpu.csv
    local label=$1 before; shift
    echo "  $label" >&2
    before=$(node_ticks)
    "$client" bench --cluster "$cluster" --protocol resp --connections 50 --quiet \
        --json "$out/$label.json" "$@" >"$out/$label.txt"
    echo "$label,$(($(node_ticks) - before))" >>"$out/cpu.csv"
}
load() { # label from to
    echo "  $1: keys $2 to $3" >&2
    "$client" bench --cluster "$cluster" --protocol resp --connections 32 --load-pipeline 16 \
        --records "$3" --load-from "$2" --seconds 0 --json "$out/$1.json" >"$out/$1.txt"
}
footprint() { # label: resident memory (MB) and disk (MB) of every node
    local i pid rss disk
    for i in $(seq 0 $((nodes - 1))); do
        pid=$(field "$i" pid)
        # Node 2 runs again under a new process after the restart.
        if [ "$i" = 1 ] && [ -n "$restarted_pid" ]; then pid=$restarted_pid; fi
        rss=$(awk '/VmRSS/ {print int($2/1024)}' "/proc/$pid/status")
        disk=$(du -sm "$dir/n$((i + 1))" | cut -f1)
        echo "$1,n$((i + 1)),$rss,$disk" >>"$out/footprint.csv"
    done
}
switch_background() { # true|false
    local i http
    for i in $(seq 0 $((nodes - 1))); do
        http=$(field "$i" http)
        for what in anti-entropy handoff; do
            curl -sf -X POST -H "Authorization: Bearer $token" -d "{\"enabled\": $1}" \
                "http://$http/v1/admin/$what" >/dev/null
        done
    done
}
settle() { # label: waits until the nodes' CPU stays under 10% of a core for two 2-second
    # looks in a row (compaction after a load done), at most 15 minutes; records the wait
    local hz pids before after quiet=0 t0 t1 i
    hz=$(getconf CLK_TCK)
    pids=$(for i in $(seq 0 $((nodes - 1))); do field "$i" pid; done)
    ticks() { local t=0 p; for p in $pids; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo "$t"; }
    t0=$(date +%s)
    for _ in $(seq 1 450); do
        before=$(ticks); sleep 2; after=$(ticks)
        if [ $((after - before)) -lt $((hz / 5)) ]; then quiet=$((quiet + 1)); else quiet=0; fi
        [ "$quiet" -ge 2 ] && break
    done
    t1=$(date +%s)
    echo "$1,$((t1 - t0))" >>"$out/settle.csv"
    echo "  settled after $((t1 - t0)) s" >&2
}
measure() { # label records
    bench "$1-get" --workload c --distribution uniform --records "$2" --skip-load --seconds "$secs"
    bench "$1-set" --workload write --distribution uniform --records "$2" --seconds "$secs"
}

echo "label,node,rss_mb,disk_mb" >"$out/footprint.csv"
echo "label,seconds" >"$out/settle.csv"
echo "label,ticks" >"$out/cpu.csv"
echo "baseline: $base keys on $nodes nodes" >&2
load load-base 0 "$base"
settle load-base
measure base "$base"
footprint base

echo "growing to $keys keys" >&2
load load-grow "$base" "$keys"
settle load-grow
measure hot "$base"
measure all "$keys"
footprint "keys-$keys"

echo "background work paused" >&2
switch_background false
measure quiet "$keys"
switch_background true
# One pass of each lets the SETs' flushes and compactions land in whichever phase comes
# next: the cost is also measured in alternated pairs (running, then paused), GETs then
# SETs, each SET run after the store has settled from the one before, and compared by the
# nodes' CPU time per operation as well as by throughput (on a shared machine the first
# moves far less than the second).
echo "background work: $pairs alternated pairs" >&2
for kind in get set; do
    for i in $(seq 1 "$pairs"); do
        case $kind in
            get) args=(--workload c --skip-load) ;;
            set) args=(--workload write) ;;
        esac
        [ "$kind" = set ] && settle "pair$i-busy-set"
        bench "pair$i-busy-$kind" "${args[@]}" --distribution uniform --records "$keys" --seconds "$secs"
        switch_background false
        [ "$kind" = set ] && settle "pair$i-quiet-set"
        bench "pair$i-quiet-$kind" "${args[@]}" --distribution uniform --records "$keys" --seconds "$secs"
        switch_background true
    done
done

echo "restart of node 2" >&2
resp2=$(field 1 resp)
probe() { # set|check: 200 keys written with known values through node 2, or read back
    python3 - "$1" "$resp2" "$token" <<'EOF'
import socket, sys, time
mode, addr, token = sys.argv[1], sys.argv[2], sys.argv[3]
host, port = addr.rsplit(":", 1)
def cmd(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out
def session():
    s = socket.create_connection((host, int(port)), timeout=2)
    f = s.makefile("rb")
    s.sendall(cmd("AUTH", token) + cmd("HYDRA.CONSISTENCY", "one", "quorum"))
    for _ in range(2):
        f.readline()
    return s, f
def reply(f):
    line = f.readline()
    if line.startswith(b"$"):
        n = int(line[1:])
        return None if n < 0 else f.read(n + 2)[:-2]
    return line.rstrip()
if mode == "set":
    s, f = session()
    for i in range(200):
        s.sendall(cmd("SET", "probe:%d" % i, "value-%d" % i))
        assert reply(f) == b"+OK", "probe write refused"
    sys.exit(0)
started = time.time()
while time.time() - started < 120:
    try:
        s, f = session()
        good = 0
        for i in range(200):
            s.sendall(cmd("GET", "probe:%d" % i))
            good += reply(f) == b"value-%d" % i
        if good == 200:
            sys.exit(0)
    except (OSError, AssertionError):
        pass
    time.sleep(0.05)
sys.exit("node 2 gave no correct reads within 120 s of its restart")
EOF
}
probe set
pid2=$(field 1 pid)
config2=$(field 1 config)
kill -TERM "$pid2"
for _ in $(seq 1 200); do kill -0 "$pid2" 2>/dev/null || break; sleep 0.1; done
t0=$(date +%s.%N)
"$hydra" server --config "$config2" >>"$work/n2-restart.log" 2>&1 &
restarted_pid=$!
probe check
t1=$(date +%s.%N)
restart_s=$(python3 -c "print(round($t1 - $t0, 2))")
echo "restart_to_correct_reads_s,$restart_s" >"$out/restart.csv"
bench restarted-get --workload c --distribution uniform --records "$keys" --skip-load --seconds "$secs"
footprint after-restarted-get

python3 - "$out" "$keys" "$base" "$nodes" "$pairs" <<'EOF'
import json, sys, csv, statistics
out, keys, base, nodes, pairs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
ticks = dict((l, int(t)) for l, t in list(csv.reader(open(f"{out}/cpu.csv")))[1:])
def cpu_per_op(label):
    r = json.load(open(f"{out}/{label}.json"))
    n = sum(o["count"] for o in r["ops"].values())
    return ticks[label] / n if n else float("nan")
def op(label):
    r = json.load(open(f"{out}/{label}.json"))
    o = next(iter(r["ops"].values()))
    return r["ops_per_s"], o["p50_ms"], o["p99_ms"], r["errors"]
print(f"Hydra at scale: {nodes} nodes, {base:,} keys (baseline) and {keys:,} keys of 100 B")
settled = dict(list(csv.reader(open(f"{out}/settle.csv")))[1:])
for l in ("load-base", "load-grow"):
    r = json.load(open(f"{out}/{l}.json"))
    print(f"  {l:<10} {r['loaded']:>10,} keys  {r['load_per_s']:>9.0f} writes/s"
          f"  compaction after it done in {settled.get(l, '?')} s")
print(f"  {'measure':<14} {'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'x baseline':>10}")
for kind in ("get", "set"):
    b = op(f"base-{kind}")[0]
    for label in ("base", "hot", "all", "quiet"):
        rate, p50, p99, err = op(f"{label}-{kind}")
        print(f"  {label + '-' + kind:<14} {rate:>9.0f} {p50:>8.3f} {p99:>8.3f} {err:>7} {rate / b:>10.2f}")
for kind in ("get", "set"):
    busy, quiet = op(f"all-{kind}")[0], op(f"quiet-{kind}")[0]
    labels = [(f"pair{i}-busy-{kind}", f"pair{i}-quiet-{kind}") for i in range(1, pairs + 1)]
    thr = [100 * (1 - op(b)[0] / op(q)[0]) for b, q in labels]
    cpu = [100 * (cpu_per_op(b) / cpu_per_op(q) - 1) for b, q in labels]
    print(f"  background work at {keys:,} keys, {kind.upper()}s, {pairs} alternated pairs (median):"
          f" {statistics.median(thr):.1f}% of throughput, {statistics.median(cpu):.1f}% more CPU per"
          f" operation (pairs: {', '.join(f'{t:.1f}%/{c:.1f}%' for t, c in zip(thr, cpu))};"
          f" the single pass above: {100 * (1 - busy / quiet):.1f}% of throughput)")
rows = list(csv.reader(open(f"{out}/footprint.csv")))[1:]
for label in sorted({r[0] for r in rows}, key=lambda l: l != "base"):
    these = [r for r in rows if r[0] == label]
    print(f"  {label:<14} RSS MB per node " + " ".join(r[2] for r in these)
          + "; disk MB per node " + " ".join(r[3] for r in these))
print("  restart to correct reads: " + open(f"{out}/restart.csv").read().split(",")[1].strip() + " s")
rate, p50, p99, err = op("restarted-get")
print(f"  {'restarted-get':<14} {rate:>9.0f} {p50:>8.3f} {p99:>8.3f} {err:>7} {rate / op('base-get')[0]:>10.2f}"
      "  (uniform GETs in the first seconds after the restart)")
EOF
echo "figures in $out" >&2
