# weir's commands. The README's set-up is `make run` and `make test`; both work on a
# fresh machine: they install what they need into $(WEIR_CACHE_DIR), outside the clone.

WEIR_CACHE_DIR ?= $(HOME)/.cache/weir
export WEIR_CACHE_DIR
# Compiled crates (RocksDB's C++ included) are cached beside the broker.
export CARGO_TARGET_DIR ?= $(WEIR_CACHE_DIR)/target
BROKER_PORT ?= 9092
export BROKER_PORT

.PHONY: run run-flows run-analytics roundtrip bench build test lint unit-and-integration deps broker broker-install broker-stop

## run: start the local broker and a weir server, and run the seed's `orders` workflow
## (ORDERS=100 by default) until every order completes
run: deps broker build
	scripts/run-orders.sh

## run-flows: start the local broker, apply examples/flows/user-activity.yaml, run its
## flows in-process, generate UserActivity records and print each table's row count
run-flows: deps broker build
	scripts/run-flows.sh

## run-analytics: start the local broker, PostgreSQL and a weir server, run the `orders`
## workflow (ORDERS=100) with the analytics consumer keeping the seed's `orders` table
## in PostgreSQL, and print the table's rows by status
run-analytics: deps broker build
	scripts/run-analytics.sh

## roundtrip: send protobuf records through the local broker and read them back
roundtrip: deps broker build
	LHS_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$(BROKER_PORT) $(CARGO_TARGET_DIR)/debug/roundtrip

## bench: start the local broker and measure weir against it (raw-copy, keyed-count,
## latency, orders, restore, peak RSS): one table printed, the same as JSON in
## $(WEIR_CACHE_DIR)/bench-results.json.
## QUICK=1 runs a smaller version (about a minute). Measures the `bench-opt` build
## (Cargo.toml: weir and its Rust dependencies optimized, RocksDB's C++ at -O2 without
## debug info), built with `--bins` into its own directory: the first build takes about
## half an hour on 2 cores, later ones a few minutes. BENCH_PROFILE=dev measures the
## debug build. The README lists the BENCH_* variables (sizes, workloads, latency rate).
BENCH_PROFILE ?= bench-opt
BENCH_DIR = $(if $(filter dev,$(BENCH_PROFILE)),debug,$(BENCH_PROFILE))
bench: deps broker
	$(if $(filter dev,$(BENCH_PROFILE)),cargo build --workspace --all-targets --locked,cargo build --workspace --bins --locked --profile $(BENCH_PROFILE))
	QUICK=$(QUICK) LHS_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$(BROKER_PORT) $(CARGO_TARGET_DIR)/$(BENCH_DIR)/bench

## build: everything, with the one target selection every command here uses
build:
	cargo build --workspace --all-targets --locked

## test: formatting, lints, unit and integration tests (the harness starts its own broker)
test: deps broker-install lint unit-and-integration

# Every cargo command selects `--workspace --all-targets` (never `-p`, `--bin` or
# `cargo run`), so features unify the same way each time and RocksDB's C++ is compiled
# once, not once per selection.
lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

unit-and-integration: build
	cargo test --workspace --all-targets --locked
	cargo test --workspace --doc --locked

## deps: Debian packages the build needs (only the missing ones)
deps:
	scripts/install-system-deps.sh

## broker-install: build the local broker into the cache if it is missing or another version
broker-install:
	scripts/install-broker.sh

## broker: start the local broker on 127.0.0.1:$(BROKER_PORT) (memory storage)
broker: broker-install
	scripts/broker.sh start

## broker-stop: stop the broker `make broker` started
broker-stop:
	scripts/broker.sh stop
