# Tessera's build entry points. `make test` is the test command CI runs.
CARGO ?= cargo

.PHONY: test fmt-check clippy build release run bench compare crash-test

test: fmt-check clippy
	$(CARGO) test --workspace --all-targets
	$(CARGO) test --workspace --doc

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --workspace --release

# Build in release and start the server in the foreground with the defaults
# (every online CPU, ports 7379.., ./data). Extra flags: make run ARGS="--cores 2".
run:
	$(CARGO) build --release -p tessera-net --bin tessera
	./target/release/tessera $(ARGS)
# Start a release server pinned to one core and drive it from the other
# (scripts/bench.sh documents the knobs).
bench:
	$(CARGO) build --release -p tessera-net --bins
	scripts/bench.sh

# Same load against Tessera, its ceiling responder and redis-server on the
# same pinned core, one after the other; side-by-side table with ratios and
# server CPU per request (scripts/compare.sh).
compare:
	$(CARGO) build --release -p tessera-net --bins
	scripts/compare.sh

# 1,000 SIGKILL cycles of a sync-mode writer on the engine (make test runs
# 25), then 200 of the whole server killed mid-stream (make test runs 4).
CRASH_CYCLES ?= 1000
SERVER_CRASH_CYCLES ?= 200
crash-test:
	TESSERA_CRASH_CYCLES=$(CRASH_CYCLES) $(CARGO) test --release --test durable_crash -- --nocapture
	TESSERA_SERVER_CRASH_CYCLES=$(SERVER_CRASH_CYCLES) $(CARGO) test --release -p tessera-net \
		--test server_durability_sync_kill_cycles -- --nocapture
