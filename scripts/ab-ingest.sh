#!/usr/bin/env bash
# A/B of the durable bench's ingests: alternates bench binaries (built with
# `cargo bench --bench durable --no-run`, copied away so a rebuild does not
# replace them), one run each per round, so all see the same machine noise.
# Each run prints the disk's dd bandwidth, the one-core and all-core async
# ingests, the in-memory one and (builds that have it) the segment log
# alone on every core at once; this prints one line per binary per round.
#
#   BINS="/tmp/durable-a /tmp/durable-b" ROUNDS=6 MB=512 scripts/ab-ingest.sh
#
# Env: BINS (required), ROUNDS (6), MB (512, TESSERA_BENCH_INGEST_MB),
#      WHAT (async: with dd; ingest: without).
set -euo pipefail
read -r -a SIDES <<<"${BINS:?set BINS to the bench binaries to alternate}"
ROUNDS=${ROUNDS:-6}
MB=${MB:-512}
WHAT=${WHAT:-async}
for bin in "${SIDES[@]}"; do
    [ -x "$bin" ] || { echo "not executable: $bin" >&2; exit 1; }
done
for round in $(seq "$ROUNDS"); do
    # Each round starts with the next binary, so no side always runs first
    # (the first run of a round measured slower, whatever the binary).
    order=()
    for i in "${!SIDES[@]}"; do
        order+=("${SIDES[$(((i + round - 1) % ${#SIDES[@]}))]}")
    done
    for bin in "${order[@]}"; do
        out=$(TESSERA_BENCH_RUNS=1 TESSERA_BENCH_INGEST_MB=$MB "$bin" --bench "$WHAT" 2>/dev/null)
        # "median N MB/s, M MB per CPU-second, ...; ingest thread ... blocked B%"
        summary=$(awk '
            /^in-memory/ { split($0, a, "median "); split(a[2], b, " "); mem = b[1] }
            /^async ingest, one core/ { split($0, a, "median "); split(a[2], b, " "); one = b[1];
                split($0, c, "blocked "); split(c[2], d, "%"); one_blocked = d[1] }
            /^async ingest, [0-9]+ cores/ { split($0, a, "median "); split(a[2], b, " "); all = b[1] }
            /^disk O_DIRECT/ { split($0, a, "median "); split(a[2], b, " "); dd = b[1] }
            /^segment log alone/ { split($0, a, "median "); split(a[2], b, " "); log_all = b[1] }
            END {
                printf "dd %s  one-core %s (blocked %s%%)  all-cores %s  in-memory %s", dd, one, one_blocked, all, mem
                if (dd > 0) printf "  one/dd %.0f%%  all/dd %.0f%%", 100 * one / dd, 100 * all / dd
                if (log_all > 0) printf "  log-all %s  all/log-all %.0f%%", log_all, 100 * all / log_all
            }' <<<"$out")
        printf '%s  %-28s %s  load %s\n' "$round" "$(basename "$bin")" "$summary" \
            "$(cut -d' ' -f1 /proc/loadavg)"
    done
done
