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

# 1,000 SIGKILL cycles of a sync-mode writer (make test runs 25).
CRASH_CYCLES ?= 1000
crash-test:
	TESSERA_CRASH_CYCLES=$(CRASH_CYCLES) $(CARGO) test --release --test durable_crash -- --nocapture
