#!/usr/bin/env bash
# `make run-flows`: the flows example on the local broker: `weir flows plan` of
# examples/flows/user-activity.yaml, then the `flows` example's demo (apply, run the
# flows in-process while a generator produces until their initial load is done and at
# least FLOWS_RECORDS records are in, print the table counts).
set -euo pipefail

bin="${CARGO_TARGET_DIR:?}/debug"
export LHS_KAFKA_BOOTSTRAP_SERVERS="${LHS_KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:${BROKER_PORT:-9092}}"
export LHS_CLUSTER_ID="${LHS_CLUSTER_ID:-weir-flows-demo}"
run_dir="${WEIR_CACHE_DIR:?}/run-flows"
export LHS_STATE_DIR="${LHS_STATE_DIR:-$run_dir/state}"
export FLOWS_PARTITIONS="${FLOWS_PARTITIONS:-3}"
mkdir -p "$run_dir"

echo "weir flows plan examples/flows/user-activity.yaml:"
"$bin/weir" flows plan examples/flows/user-activity.yaml --partitions "$FLOWS_PARTITIONS"
echo
"$bin/flows" demo "${FLOWS_RECORDS:-4000}"
echo
echo "weir table scan UserActivity 0.1 --limit 3:"
"$bin/weir" table scan UserActivity 0.1 --limit 3
