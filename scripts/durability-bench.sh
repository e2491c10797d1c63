#!/usr/bin/env bash
# Server durability: tessera sync/async vs redis AOF always / persistence off.
# Server pinned to CPU 0, load to CPU 1; cluster-mode load generator.
set -u
RUNS=${RUNS:-3}
DURATION=${DURATION:-3}
BIN=${BIN:-target/release}
DIR=${DIR:-/tmp/durability-bench}
PORT=${PORT:-16500}
cpu_ticks() { awk '{print $14 + $15}' /proc/$1/stat; }
wait_port() { for _ in $(seq 200); do redis-cli -p $1 ping >/dev/null 2>&1 && return 0; sleep 0.05; done; return 1; }
start_server() { # $1 = kind
  rm -rf "$DIR"; mkdir -p "$DIR"
  case $1 in
    tessera-sync)  taskset -c 0 $BIN/tessera --cores 1 --port $PORT --data-dir "$DIR" --durability sync  >"$DIR.log" 2>&1 & ;;
    tessera-async) taskset -c 0 $BIN/tessera --cores 1 --port $PORT --data-dir "$DIR" --durability async >"$DIR.log" 2>&1 & ;;
    redis-always)  taskset -c 0 redis-server --port $PORT --dir "$DIR" --save "" --appendonly yes --appendfsync always \
                     --cluster-enabled yes --cluster-config-file "$DIR/nodes.conf" >"$DIR.log" 2>&1 & ;;
    redis-off)     taskset -c 0 redis-server --port $PORT --dir "$DIR" --save "" --appendonly no \
                     --cluster-enabled yes --cluster-config-file "$DIR/nodes.conf" >"$DIR.log" 2>&1 & ;;
  esac
  SERVER=$!
  wait_port $PORT || { echo "server $1 did not start" >&2; cat "$DIR.log" >&2; exit 1; }
  if [[ $1 == redis-* ]]; then
    redis-cli -p $PORT cluster addslotsrange 0 16383 >/dev/null
    for _ in $(seq 100); do redis-cli -p $PORT cluster info | grep -q cluster_state:ok && break; sleep 0.1; done
  fi
}
for P in 1 16; do
  for run in $(seq $RUNS); do
    for kind in tessera-sync redis-always tessera-async redis-off; do
      start_server $kind
      before=$(cpu_ticks $SERVER)
      json=$(taskset -c 1 $BIN/tessera-bench --mode cluster --port $PORT --connections 50 --pipeline $P \
               --ratio 1:1 --data-size 32 --duration $DURATION --quiet --json)
      after=$(cpu_ticks $SERVER)
      kill -TERM $SERVER; wait $SERVER 2>/dev/null
      python3 - "$kind" "$P" "$run" "$before" "$after" "$json" <<'PY'
import json, sys, os
kind, p, run, before, after, report = sys.argv[1:]
r = json.loads(report)
ops = r.get("ops_per_sec")
reqs = r.get("requests") or r.get("stats", {}).get("requests")
hz = os.sysconf("SC_CLK_TCK")
cpu_s = (int(after) - int(before)) / hz
us = cpu_s * 1e6 / reqs if reqs else float("nan")
print(f"{kind} pipeline={p} run={run} ops_per_sec={ops:.0f} server_us_per_req={us:.3f} errors={r.get('errors')}")
PY
    done
  done
done
