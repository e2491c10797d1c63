#!/usr/bin/env bash
# `make bench`: start a release Tessera server pinned to SERVER_CPU and drive
# it with tessera-bench (cluster mode) pinned to LOAD_CPU, printing the
# report and writing bench.svg. BENCH_ARGS replaces the default load.
#
# Env: CORES (1), SERVER_CPU (0), LOAD_CPU (1), PORT (18600),
#      TESSERA_ARGS (--durability async), BENCH_ARGS, PLOT (target/bench.svg).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CORES=${CORES:-1}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PORT=${PORT:-18600}
TESSERA_ARGS=${TESSERA_ARGS:---durability async}
BENCH_ARGS=${BENCH_ARGS:---threads 1 --connections 50 --pipeline 16 --ratio 1:1 --data-size 32 --keyspace 100000 --duration 10 --warmup 1}
PLOT=${PLOT:-$ROOT/target/bench.svg}
TESSERA=${TESSERA:-$ROOT/target/release/tessera}
BENCH=$ROOT/target/release/tessera-bench
[ -x "$BENCH" ] || { echo "bench: $BENCH not built" >&2; exit 1; }
[ -x "$TESSERA" ] || { echo "bench: no tessera server binary in this checkout ($TESSERA); use make compare" >&2; exit 1; }
DATA=$(mktemp -d)
taskset -c "$SERVER_CPU" "$TESSERA" --cores "$CORES" --port "$PORT" --data-dir "$DATA" $TESSERA_ARGS &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$DATA"' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
# shellcheck disable=SC2086 # BENCH_ARGS is a list of flags
taskset -c "$LOAD_CPU" "$BENCH" --port "$PORT" $BENCH_ARGS --plot "$PLOT"
echo "plot: $PLOT"
