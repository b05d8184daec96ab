#!/usr/bin/env bash
# First throughput and latency figures of PUT and GET at the bucket default (quorum) on a
# local 3-node dev cluster, measured with wrk (Debian package `wrk`). Prints wrk's summary
# and p50/p99/max per run. Usage: scripts/bench-http.sh [connections] [seconds] [durability]
set -euo pipefail
conns=${1:-50}; secs=${2:-10}; durability=${3:-fsync}
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install -y wrk" >&2; exit 1; }
cargo build --release -p hydra >/dev/null
work=$(mktemp -d)
trap 'kill -TERM $dev 2>/dev/null; wait $dev 2>/dev/null; rm -rf "$work"' EXIT
target/release/hydra dev --dir "$work/cluster" --ports free --durability "$durability" >"$work/dev.out" 2>&1 &
dev=$!
for _ in $(seq 1 100); do [ -f "$work/cluster/cluster.json" ] && break; sleep 0.1; done
http=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['nodes'][0]['http'])" "$work/cluster/cluster.json")
token=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['token'])" "$work/cluster/cluster.json")
cat >"$work/report.lua" <<'LUA'
done = function(summary, latency, requests)
  io.write(string.format("p50=%.2fms p99=%.2fms max=%.2fms non2xx=%d\n",
    latency:percentile(50)/1000, latency:percentile(99)/1000, latency.max/1000, summary.errors.status))
end
LUA
{ cat "$work/report.lua"; cat <<'LUA'
request = function() return wrk.format("GET", "/v1/kv/default/g" .. math.random(1, 1000), {["Authorization"]="Bearer " .. os.getenv("HYDRA_TOKEN")}) end
LUA
} >"$work/get.lua"
{ cat "$work/report.lua"; cat <<'LUA'
local value = string.rep("x", 100)
request = function()
  return wrk.format("PUT", "/v1/kv/default/b" .. math.random(1, 1000000000), {["Content-Type"]="application/octet-stream", ["Authorization"]="Bearer " .. os.getenv("HYDRA_TOKEN")}, value)
end
LUA
} >"$work/put.lua"
for i in $(seq 1 1000); do
  curl -s -o /dev/null -H "Authorization: Bearer $token" -X PUT --data "value-$i-$(printf 'x%.0s' $(seq 1 90))" "http://$http/v1/kv/default/g$i"
done
export HYDRA_TOKEN=$token
echo "GET r=quorum, $conns connections, ${secs}s, durability $durability:"
wrk -t2 -c"$conns" -d"${secs}s" -s "$work/get.lua" "http://$http" | grep -E "Requests/sec|p50"
echo "PUT w=quorum (100-byte values, new keys), $conns connections, ${secs}s, durability $durability:"
wrk -t2 -c"$conns" -d"${secs}s" -s "$work/put.lua" "http://$http" | grep -E "Requests/sec|p50"
