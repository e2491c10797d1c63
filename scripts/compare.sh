#!/usr/bin/env bash
# `make compare`: the same tessera-bench load against Tessera, the Tessera
# ceiling responder (`tessera --ceiling`, when the binary has it) and
# redis-server, each pinned to the same core, one after the other in one run.
# Prints a side-by-side table with throughput, latency, ratios to Redis and
# each server's CPU time per request (utime+stime deltas of /proc/<pid>/stat).
#
# memcached is skipped: it speaks the memcache text protocol and
# tessera-bench speaks RESP only, so no like-for-like load can be offered.
#
# Env: RUNS (3), PIPELINE (16), DURATION (5 s), CONNECTIONS (50), RATIO (1:1),
#      DATA_SIZE (32), KEYSPACE (100000), SERVER_CPU (0), LOAD_CPU (1),
#      PORT (18500), TESSERA_ARGS (--durability async), BENCH (load generator
#      binary; default target/release/tessera-bench), TESSERA (server binary).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-3}
PIPELINE=${PIPELINE:-16}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-50}
RATIO=${RATIO:-1:1}
DATA_SIZE=${DATA_SIZE:-32}
KEYSPACE=${KEYSPACE:-100000}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
PORT=${PORT:-18500}
TESSERA_ARGS=${TESSERA_ARGS:---durability async}
BENCH=${BENCH:-$ROOT/target/release/tessera-bench}
TESSERA=${TESSERA:-$ROOT/target/release/tessera}
CLK_TCK=$(getconf CLK_TCK)
SCRATCH=$(mktemp -d)
SERVER_PID=

cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$SCRATCH"
}
trap cleanup EXIT

for tool in redis-server taskset python3; do
    command -v "$tool" >/dev/null || { echo "compare: missing $tool" >&2; exit 1; }
done
[ -x "$BENCH" ] || { echo "compare: $BENCH not built (cargo build --release -p tessera-net)" >&2; exit 1; }

# Which servers this checkout can run.
SERVERS=()
if [ -x "$TESSERA" ]; then
    SERVERS+=(tessera)
    if "$TESSERA" --help 2>&1 | grep -q -- --ceiling; then SERVERS+=(ceiling); fi
else
    echo "compare: no tessera server binary in this checkout; comparing what exists" >&2
fi
SERVERS+=(redis)
echo "memcached: skipped (memcache text protocol; tessera-bench speaks RESP only)"

wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "compare: nothing listening on $1" >&2
    return 1
}

start_server() { # name -> sets SERVER_PID, MODE
    local name=$1
    case $name in
        tessera)
            taskset -c "$SERVER_CPU" "$TESSERA" --cores 1 --port "$PORT" --data-dir "$SCRATCH/data" \
                $TESSERA_ARGS >"$SCRATCH/$name.log" 2>&1 &
            MODE=cluster ;;
        ceiling)
            taskset -c "$SERVER_CPU" "$TESSERA" --cores 1 --port "$PORT" --data-dir "$SCRATCH/data" \
                --ceiling >"$SCRATCH/$name.log" 2>&1 &
            # The ceiling answers +OK to CLUSTER SLOTS too: drive its one port.
            MODE=single ;;
        redis)
            taskset -c "$SERVER_CPU" redis-server --port "$PORT" --bind 127.0.0.1 --save "" \
                --appendonly no --logfile "" >"$SCRATCH/$name.log" 2>&1 &
            MODE=single ;;
    esac
    SERVER_PID=$!
    wait_port "$PORT"
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# Top-level fields of the report (the per-command objects repeat the names).
json_field() { python3 -c 'import json, sys; print(json.loads(sys.argv[2])[sys.argv[1]])' "$1" "$2"; }
latency() { python3 -c 'import json, sys; print(json.loads(sys.argv[2])["latency_us"][sys.argv[1]])' "$1" "$2"; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

declare -A OPS P50 P99 CPU
echo "load: tessera-bench --threads 1 --connections $CONNECTIONS --pipeline $PIPELINE --ratio $RATIO" \
     "--data-size $DATA_SIZE --keyspace $KEYSPACE --duration $DURATION (server cpu $SERVER_CPU, load cpu $LOAD_CPU)"
for run in $(seq "$RUNS"); do
    for name in "${SERVERS[@]}"; do
        start_server "$name"
        before=$(cpu_ticks "$SERVER_PID")
        status=0
        json=$(taskset -c "$LOAD_CPU" "$BENCH" --mode "$MODE" --port "$PORT" --threads 1 \
            --connections "$CONNECTIONS" --pipeline "$PIPELINE" --ratio "$RATIO" --data-size "$DATA_SIZE" \
            --keyspace "$KEYSPACE" --duration "$DURATION" --quiet --json 2>"$SCRATCH/bench.err") || status=$?
        after=$(cpu_ticks "$SERVER_PID")
        kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; SERVER_PID=
        rm -rf "$SCRATCH/data"
        if [ "$status" != 0 ]; then
            # One server failing (e.g. a command it lacks) must not hide the others.
            echo "run $run $name: load failed: $(cat "$SCRATCH/bench.err")"
            continue
        fi
        requests=$(json_field requests "$json")
        cpu_us=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" -v n="$requests" 'BEGIN {printf "%.3f", t * 1e6 / hz / n}')
        ops=$(json_field ops_per_sec "$json")
        p50=$(latency p50 "$json")
        p99=$(latency p99 "$json")
        errors=$(json_field errors "$json")
        printf "run %s %-8s %12.0f ops/s  p50 %8.1f us  p99 %8.1f us  server cpu %7.3f us/req  errors %s\n" \
            "$run" "$name" "$ops" "$p50" "$p99" "$cpu_us" "$errors"
        OPS[$name]+="$ops "; P50[$name]+="$p50 "; P99[$name]+="$p99 "; CPU[$name]+="$cpu_us "
    done
done

echo
echo "medians of $RUNS runs, pipeline $PIPELINE, ratio $RATIO:"
redis_ops=$(echo ${OPS[redis]} | tr ' ' '\n' | median)
redis_cpu=$(echo ${CPU[redis]} | tr ' ' '\n' | median)
printf "%-8s %12s %10s %10s %16s %12s %14s\n" server "ops/s" "p50 us" "p99 us" "cpu us/request" "ops vs redis" "cpu vs redis"
for name in "${SERVERS[@]}"; do
    if [ -z "${OPS[$name]:-}" ]; then
        printf "%-8s %12s\n" "$name" "failed"
        continue
    fi
    ops=$(echo ${OPS[$name]} | tr ' ' '\n' | median)
    cpu=$(echo ${CPU[$name]} | tr ' ' '\n' | median)
    printf "%-8s %12.0f %10.1f %10.1f %16.3f %12s %14s\n" "$name" "$ops" \
        "$(echo ${P50[$name]} | tr ' ' '\n' | median)" "$(echo ${P99[$name]} | tr ' ' '\n' | median)" "$cpu" \
        "$(awk -v a="$ops" -v b="$redis_ops" 'BEGIN {printf "%.2fx", a / b}')" \
        "$(awk -v a="$cpu" -v b="$redis_cpu" 'BEGIN {printf "%.2fx", a / b}')"
done
