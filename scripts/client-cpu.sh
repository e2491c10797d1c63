#!/usr/bin/env bash
# Client CPU per request: tessera-bench vs redis-benchmark, same redis-server,
# same load, one after the other, RUNS times, at pipeline 1 and 16.
# Server pinned to SERVER_CPU, load generators to LOAD_CPU (taskset).
# Also records the server's CPU per request under each tool (utime+stime
# deltas of /proc/<pid>/stat): on a shared machine the server's core is
# contended and its share of that core, not the load generator, sets req/s.
# Prints one line per run and the medians; figures go to BENCHMARKS.md.
# BENCHES="bin1 bin2 ..." compares several tessera-bench builds in the same
# rounds (each against the same redis-benchmark runs), for A/B of a change.
#
#   scripts/client-cpu.sh [RUNS]          (env: PORT, SERVER_CPU, LOAD_CPU, N1, N16,
#                                          BENCH or BENCHES)
set -euo pipefail
RUNS=${1:-5}
PORT=${PORT:-18300}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
N1=${N1:-200000}     # redis-benchmark -n per test (set and get: 2x requests)
N16=${N16:-1000000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=${BENCH:-$ROOT/target/release/tessera-bench}
read -r -a BENCHES <<<"${BENCHES:-$BENCH}"
for tool in redis-server redis-benchmark redis-cli python3; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
for bench in "${BENCHES[@]}"; do
    [ -x "$bench" ] || { echo "build first: cargo build --release -p tessera-net ($bench)" >&2; exit 1; }
done
# Tool names in the output: "tessera-bench" alone, "tb<i>" for BENCHES[i].
tb_name() { if [ ${#BENCHES[@]} = 1 ]; then echo tessera-bench; else echo "tb$1"; fi; }
if [ ${#BENCHES[@]} -gt 1 ]; then
    for i in "${!BENCHES[@]}"; do echo "tb$i = ${BENCHES[$i]}"; done
fi

taskset -c "$SERVER_CPU" redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize no --logfile /dev/null &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 50); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

# cpu_of CMD...: run CMD, print "user+sys seconds" of the child (GNU time).
cpu_of() {
    local out; out=$(mktemp)
    /usr/bin/time -f "%U %S" -o "$out" "$@" >/dev/null 2>&1
    awk '{printf "%.3f", $1 + $2}' "$out"; rm -f "$out"
}
# rps_rb CMD: redis-benchmark prints "SET: N requests per second"; sum -> mean over set,get.
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

CLK_TCK=$(getconf CLK_TCK)
server_ticks() { awk '{print $14 + $15}' "/proc/$SERVER/stat"; }
run_rb() {
    local ticks_before; ticks_before=$(server_ticks)
    # redis-benchmark: SET test then GET test, N each.
    rbout=$(mktemp)
    /usr/bin/time -f "%U %S" -o "$rbout.t" taskset -c "$LOAD_CPU" redis-benchmark -p "$PORT" \
        --threads 1 -c 50 -P "$P" -t set,get -d 32 -r 100000 -n "$N" -q >"$rbout" 2>/dev/null
    rb_cpu=$(awk '{printf "%.3f", $1 + $2}' "$rbout.t")
    # Throughput over both tests: 2N requests over the sum of their times.
    rb_rps=$(tr '\r' '\n' <"$rbout" | awk -v n="$N" '/requests per second/ {t += n / $2} END {printf "%.0f", 2 * n / t}')
    rm -f "$rbout" "$rbout.t"
    rb_server=$(( $(server_ticks) - ticks_before ))
}
run_tb() { # $1: the tessera-bench binary
    local ticks_before; ticks_before=$(server_ticks)
    tbout=$(mktemp)
    /usr/bin/time -f "%U %S" -o "$tbout.t" taskset -c "$LOAD_CPU" "$1" --mode single --port "$PORT" \
        --threads 1 --connections 50 --pipeline "$P" --ratio 1:1 --data-size 32 --keyspace 100000 \
        --requests $((2 * N)) --quiet --json >"$tbout"
    tb_cpu=$(awk '{printf "%.3f", $1 + $2}' "$tbout.t")
    # The top-level figure: the per-command objects repeat the name (a greedy
    # `sed` picked the last one, GET's, which is half the total).
    tb_rps=$(python3 -c 'import json, sys; print("%.0f" % json.load(open(sys.argv[1]))["ops_per_sec"])' "$tbout")
    rm -f "$tbout" "$tbout.t"
    tb_server=$(( $(server_ticks) - ticks_before ))
}
printf "%-4s %-4s %-16s %12s %10s %14s %18s\n" run P tool "req/s" "cpu s" "cpu us/req" "server cpu us/req"
declare -A RPS CPU SRV
# record TOOL RPS CPU_S SERVER_TICKS: print one run's line and keep its figures.
record() {
    local per srv_per
    per=$(awk -v c="$3" -v n="$N" 'BEGIN {printf "%.3f", c * 1e6 / (2 * n)}')
    srv_per=$(awk -v t="$4" -v hz="$CLK_TCK" -v n="$N" 'BEGIN {printf "%.3f", t * 1e6 / hz / (2 * n)}')
    printf "%-4s %-4s %-16s %12s %10s %14s %18s\n" "$run" "$P" "$1" "$2" "$3" "$per" "$srv_per"
    RPS[$P,$1]+="$2 "; CPU[$P,$1]+="$per "; SRV[$P,$1]+="$srv_per "
}
run_tbs() {
    for i in "${!BENCHES[@]}"; do
        run_tb "${BENCHES[$i]}"
        record "$(tb_name "$i")" "$tb_rps" "$tb_cpu" "$tb_server"
    done
}
for P in 1 16; do
    N=$([ "$P" = 1 ] && echo "$N1" || echo "$N16")
    for run in $(seq "$RUNS"); do
        # Alternate which tool goes first, so a drift in the machine's load
        # (it is shared) doesn't always favour the same one.
        if [ $((run % 2)) = 1 ]; then
            run_rb; record redis-benchmark "$rb_rps" "$rb_cpu" "$rb_server"; run_tbs
        else
            run_tbs; run_rb; record redis-benchmark "$rb_rps" "$rb_cpu" "$rb_server"
        fi
    done
done
echo
echo "medians of $RUNS runs (server cpu $SERVER_CPU, load cpu $LOAD_CPU):"
printf "%-4s %-14s %14s %14s %8s %16s %16s %8s %18s %18s\n" P tool "rb req/s" "tb req/s" ratio "rb cpu us/req" "tb cpu us/req" ratio "srv us/req (rb)" "srv us/req (tb)"
for P in 1 16; do
    rb_r=$(echo ${RPS[$P,redis-benchmark]} | tr ' ' '\n' | median)
    rb_c=$(echo ${CPU[$P,redis-benchmark]} | tr ' ' '\n' | median)
    rb_s=$(echo ${SRV[$P,redis-benchmark]} | tr ' ' '\n' | median)
    for i in "${!BENCHES[@]}"; do
        tool=$(tb_name "$i")
        tb_r=$(echo ${RPS[$P,$tool]} | tr ' ' '\n' | median)
        tb_c=$(echo ${CPU[$P,$tool]} | tr ' ' '\n' | median)
        tb_s=$(echo ${SRV[$P,$tool]} | tr ' ' '\n' | median)
        printf "%-4s %-14s %14s %14s %8s %16s %16s %8s %18s %18s\n" "$P" "$tool" "$rb_r" "$tb_r" \
            "$(awk -v a="$tb_r" -v b="$rb_r" 'BEGIN {printf "%.2f", a / b}')" "$rb_c" "$tb_c" \
            "$(awk -v a="$tb_c" -v b="$rb_c" 'BEGIN {printf "%.2f", a / b}')" "$rb_s" "$tb_s"
    done
done
