#!/usr/bin/env bash
# The same pipeline-1 pair as scripts/client-cpu.sh (redis-benchmark, then
# tessera-bench, same redis-server, server on CPU 0, load on CPU 1), twice,
# printing each tool's req/s and wall time. Kept because on the shared
# machine its pairs and client-cpu.sh's disagree on which tool drives more
# req/s; see BENCHMARKS.md.   N=50000 PORT=18107 scripts/client-pairs.sh
set -euo pipefail
B=${BENCH:-$(cd "$(dirname "$0")/.." && pwd)/target/release/tessera-bench}
PORT=${PORT:-18107}
taskset -c 0 redis-server --port $PORT --bind 127.0.0.1 --save "" --appendonly no --daemonize no --logfile /dev/null &
SERVER=$!
T=$(mktemp -d)
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true; rm -rf "$T"' EXIT
sleep 0.5
for k in 1 2; do
  /usr/bin/time -f "%U %S %e" -o "$T/rbt" taskset -c 1 redis-benchmark -p $PORT --threads 1 -c 50 -P 1 -t set,get -d 32 -r 100000 -n ${N:-50000} -q > "$T/rbo" 2>/dev/null
  echo "rb $(tr '\r' '\n' < "$T/rbo" | awk -v n=${N:-50000} '/requests per second/ {t += n / $2} END {printf "%.0f", 2 * n / t}') wall $(awk '{print $3}' "$T/rbt")"
  /usr/bin/time -f "%U %S %e" -o "$T/tbt" taskset -c 1 $B --mode single --port $PORT --threads 1 --connections 50 --pipeline 1 --ratio 1:1 --data-size 32 --keyspace 100000 --requests $((2 * ${N:-50000})) --quiet --json > "$T/tbo"
  echo "tb $(cut -c1-30 "$T/tbo") wall $(awk '{print $3}' "$T/tbt")"
done
