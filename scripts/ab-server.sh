#!/usr/bin/env bash
# A/B two tessera builds (or flag sets) under the same load, alternating so
# both see the same machine noise: server pinned to CPU 0, one core;
# tessera-bench on CPU 1 in cluster mode, pipeline 16, 50 connections, 1:1
# SET:GET, 32-byte values, 100k keys. Prints ops/s, the server's CPU time per
# request (utime+stime of /proc/<pid>/stat over the run) and p99 / p99.9.
#
# Env: A, B (tessera binaries; default target/release/tessera for both),
#      A_ARGS, B_ARGS (extra server flags), MODE (async), RUNS (3),
#      DURATION (4 s), PIPELINE (16), PORT (16660); BINS="bin1 bin2 ..." to
#      alternate more than two binaries (no extra flags; named by file name).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
A=${A:-$ROOT/target/release/tessera}
B=${B:-$ROOT/target/release/tessera}
A_ARGS=${A_ARGS:-}
B_ARGS=${B_ARGS:-}
MODE=${MODE:-async}
RUNS=${RUNS:-3}
DURATION=${DURATION:-4}
PIPELINE=${PIPELINE:-16}
PORT=${PORT:-16660}
BENCH=$ROOT/target/release/tessera-bench
DATA=$(mktemp -d)
trap 'rm -rf "$DATA"' EXIT
if [[ -n ${BINS:-} ]]; then read -r -a SIDES <<<"$BINS"; else SIDES=(A B); fi
for run in $(seq "$RUNS"); do
  for side in "${SIDES[@]}"; do
    case $side in
      A) bin=$A; args=$A_ARGS ;;
      B) bin=$B; args=$B_ARGS ;;
      *) bin=$side; args=; side=$(basename "$side") ;;
    esac
    rm -rf "$DATA/d"
    # shellcheck disable=SC2086
    taskset -c 0 "$bin" --cores 1 --port "$PORT" --data-dir "$DATA/d" --durability "$MODE" $args \
      >/dev/null 2>&1 &
    server=$!
    for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.05; done
    t0=$(awk '{print $14 + $15}' "/proc/$server/stat")
    json=$(taskset -c 1 "$BENCH" --mode cluster --port "$PORT" --connections 50 --pipeline "$PIPELINE" \
             --ratio 1:1 --data-size 32 --keyspace 100000 --duration "$DURATION" --quiet --json)
    t1=$(awk '{print $14 + $15}' "/proc/$server/stat")
    kill -TERM "$server"; wait "$server" 2>/dev/null || true
    python3 - "$side" "$run" "$t0" "$t1" "$json" <<'PY'
import json, os, sys
side, run, t0, t1, report = sys.argv[1:]
r = json.loads(report)
us = (int(t1) - int(t0)) / os.sysconf("SC_CLK_TCK") * 1e6 / r["requests"]
lat = r["latency_us"]
print(f"{side} run {run}: ops/s {r['ops_per_sec']:.0f} server_us_per_req {us:.3f} "
      f"p99 {lat['p99']} p999 {lat['p999']} errors {r['errors']}")
PY
  done
done
