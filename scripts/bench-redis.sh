#!/usr/bin/env bash
# Hydra beside Redis, in one run on this machine: a single redis-server without persistence,
# one with `appendfsync always`, and a 3-node Hydra dev cluster (N=3, W=2, R=2, durability
# fsync), all driven by the same redis-benchmark commands; then `hydra bench` workloads
# A, B, C and F over RESP with durability fsync and none, at 1 and 64 connections.
# Prints the Hydra/Redis ratios and writes every figure to OUT (default bench-results/),
# with each server's CPU time per request (its processes' user and system time over the run,
# divided by the requests): a figure a busy shared machine moves far less than throughput.
#
# Usage: scripts/bench-redis.sh [requests, default 100000] [hydra-bench seconds, default 10] [OUT]
# Needs Debian's redis-server and redis-tools (scripts/test.sh installs them).
# HYDRA_BIN=path benches that hydra binary instead of building target/release/hydra.
# HYDRA_BASELINE_BIN=path also runs the redis-benchmark commands against a second 3-node
# cluster of that binary (say, a build of the previous commit), alternating with the first,
# and prints the ratios of the two: a before/after comparison from the same run.
set -euo pipefail
requests=${1:-100000}; secs=${2:-10}
cd "$(dirname "$0")/.."
out=${3:-bench-results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
for t in redis-server redis-benchmark python3; do
    command -v $t >/dev/null || { echo "$t is needed (scripts/test.sh installs it)" >&2; exit 1; }
done
if [ -n "${HYDRA_BIN:-}" ]; then hydra=$HYDRA_BIN; else
    cargo build --release -p hydra >/dev/null
    hydra=target/release/hydra
fi
baseline=${HYDRA_BASELINE_BIN:-}
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

start_redis() { # name, extra args... -> sets $port (no subshell: the pid must be kept)
    local name=$1; shift
    port=$(free_port)
    mkdir -p "$work/$name"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$work/$name" --save "" "$@" >"$work/$name.log" 2>&1 &
    pids+=($!)
    wait_port "$port"
}

start_hydra() { # durability [binary] [name] -> sets $cluster (the cluster.json path)
    local durability=$1 bin=${2:-$hydra} name=${3:-hydra-$1}
    local dir="$work/$name"
    "$bin" dev --dir "$dir" --ports free --durability "$durability" >"$work/$name.out" 2>&1 &
    pids+=($!)
    for _ in $(seq 1 300); do [ -f "$dir/cluster.json" ] && break; sleep 0.1; done
    [ -f "$dir/cluster.json" ] || { cat "$work/$name.out" >&2; exit 1; }
    cluster="$dir/cluster.json"
    token=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1])).get('token', ''))" "$cluster")
}

node_field() { python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['nodes'][int(sys.argv[2])][sys.argv[3]])" "$1" "$2" "$3"; }

cluster_pids() { python3 -c "import json,sys;print(' '.join(str(n['pid']) for n in json.load(open(sys.argv[1]))['nodes']))" "$1"; }

cpu_ticks() { # pids... -> user+system clock ticks of those processes so far
    local total=0 pid fields
    for pid in "$@"; do
        read -ra fields < <(sed 's/.*) //' "/proc/$pid/stat")
        total=$((total + fields[11] + fields[12]))
    done
    echo "$total"
}

# redis-benchmark --csv: "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
# Each test runs alone, so the server's CPU time (all its processes: the three nodes of a
# Hydra cluster) per request is known too: a figure a busy shared machine moves far less than
# requests per second.
run_rb() { # label port pipeline password pids...
    local label=$1 port=$2 pipeline=$3 auth=() test before after
    [ -n "$4" ] && auth=(-a "$4")
    shift 4
    echo "  $label -P $pipeline" >&2
    for test in set get; do
        before=$(cpu_ticks "$@")
        csv=$(redis-benchmark -h 127.0.0.1 -p "$port" "${auth[@]}" -t "$test" -n "$requests" -c 50 -d 100 -r 100000 -P "$pipeline" --csv 2>/dev/null)
        after=$(cpu_ticks "$@")
        echo "$csv" | tr -d '"' | awk -F, -v l="$label" -v p="$pipeline" -v t="$((after - before))" -v hz="$(getconf CLK_TCK)" -v n="$requests" \
            'NR>1 {printf "%s,%s,%s,%s,%s,%s,%s,%.1f\n", l, p, $1, $2, $5, $7, $8, t * 1e6 / hz / n}' >>"$out/redis-benchmark.csv"
    done
}

echo "label,pipeline,test,rps,p50_ms,p99_ms,max_ms,cpu_us_per_req" >"$out/redis-benchmark.csv"
echo "starting redis-server (no persistence), redis-server (appendfsync always), hydra (fsync)" >&2
start_redis redis-nopersist --appendonly no; p_none=$port; cpu_none=${pids[-1]}
start_redis redis-always --appendonly yes --appendfsync always; p_always=$port; cpu_always=${pids[-1]}
if [ -n "$baseline" ]; then
    start_hydra fsync "$baseline" hydra-baseline
    pid_baseline=${pids[-1]}
    p_baseline=$(node_field "$cluster" 0 resp | sed 's/.*://'); t_baseline=$token
    cpu_baseline=$(cluster_pids "$cluster")
fi
start_hydra fsync
p_hydra=$(node_field "$cluster" 0 resp | sed 's/.*://'); t_hydra=$token
cpu_hydra=$(cluster_pids "$cluster")
echo "redis-benchmark -t set,get -n $requests -c 50 -d 100 -r 100000:" >&2
for pipeline in 1 16; do
    run_rb redis-nopersist "$p_none" "$pipeline" "" "$cpu_none"
    run_rb redis-always "$p_always" "$pipeline" "" "$cpu_always"
    # shellcheck disable=SC2086 # the node pids, one word each
    run_rb hydra-fsync "$p_hydra" "$pipeline" "$t_hydra" $cpu_hydra
    # shellcheck disable=SC2086
    if [ -n "$baseline" ]; then run_rb hydra-baseline "$p_baseline" "$pipeline" "$t_baseline" $cpu_baseline; fi
done
if [ -n "$baseline" ]; then
    kill -TERM "$pid_baseline" 2>/dev/null || true; wait "$pid_baseline" 2>/dev/null || true
fi

echo "hydra bench (RESP, 3 nodes, zipfian, 100-byte values, ${secs}s each):" >&2
echo "durability,workload,connections,ops_per_s,read_p50_ms,read_p99_ms,read_p999_ms,read_max_ms,write_p50_ms,write_p99_ms,write_p999_ms,write_max_ms,errors" >"$out/hydra-bench.csv"
bench_all() { # durability cluster.json
    local durability=$1 cluster=$2 loaded=""
    for workload in a b c f; do
        for conns in 1 64; do
            echo "  $durability workload $workload, $conns connections" >&2
            json="$out/bench-$durability-$workload-$conns.json"
            "$hydra" bench --cluster "$cluster" --protocol resp --workload "$workload" \
                --connections "$conns" --seconds "$secs" --records 10000 --quiet $loaded --json "$json" >/dev/null
            loaded="--skip-load"
            python3 - "$json" "$durability" >>"$out/hydra-bench.csv" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); ops = r["ops"]
read = ops.get("read", {}); write = ops.get("update") or ops.get("read_modify_write") or {}
f = lambda d, k: f"{d[k]:.3f}" if k in d else ""
q = lambda d: ",".join(f(d, k) for k in ("p50_ms", "p99_ms", "p999_ms", "max_ms"))
print(f'{sys.argv[2]},{r["workload"]},{r["connections"]},{r["ops_per_s"]:.0f},{q(read)},{q(write)},{r["errors"]}')
PY
        done
    done
}
bench_all fsync "$cluster"
# Stop the fsync cluster first, so the two never share the cores.
kill -TERM "${pids[-1]}" 2>/dev/null || true; wait "${pids[-1]}" 2>/dev/null || true
start_hydra none
bench_all none "$cluster"

python3 - "$out" <<'PY'
import csv, sys
out = sys.argv[1]
rows = list(csv.DictReader(open(f"{out}/redis-benchmark.csv")))
def get(label, p, test):
    for r in rows:
        if r["label"] == label and r["pipeline"] == p and r["test"] == test:
            return r
    return None
print(f"\nredis-benchmark -t set,get -c 50 -d 100 -r 100000 (results in {out})")
print(f"{'target':<18}{'-P':>4}{'test':>6}{'req/s':>12}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'CPU us/req':>12}")
for r in rows:
    print(f"{r['label']:<18}{r['pipeline']:>4}{r['test']:>6}{float(r['rps']):>12.0f}{float(r['p50_ms']):>9.3f}{float(r['p99_ms']):>9.3f}{float(r['max_ms']):>9.3f}{float(r['cpu_us_per_req']):>12.1f}")
print("\nratios (Hydra / Redis, same run):")
for p in ("1", "16"):
    h_get, r_get = get("hydra-fsync", p, "GET"), get("redis-nopersist", p, "GET")
    h_set, r_set = get("hydra-fsync", p, "SET"), get("redis-always", p, "SET")
    if h_get and r_get:
        print(f"  -P {p:>2} GET vs redis without persistence: {float(h_get['rps'])/float(r_get['rps']):.2f}x (target >= {'0.33' if p == '1' else '0.25'}x)")
    if h_set and r_set:
        print(f"  -P {p:>2} SET vs redis appendfsync always:  {float(h_set['rps'])/float(r_set['rps']):.2f}x (target >= {'0.30' if p == '1' else '0.25'}x)")
    for test in ("GET", "SET"):
        h, b = get("hydra-fsync", p, test), get("hydra-baseline", p, test)
        if h and b:
            print(f"  -P {p:>2} {test} this hydra / baseline hydra:    {float(h['rps'])/float(b['rps']):.2f}x, CPU per request {float(h['cpu_us_per_req'])/float(b['cpu_us_per_req']):.2f}x")
print("\nhydra bench:")
for line in open(f"{out}/hydra-bench.csv"):
    print("  " + line.rstrip())
PY
