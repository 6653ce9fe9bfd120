#!/usr/bin/env bash
# `make run-analytics`: the analytics example on the local broker. Starts the project's
# PostgreSQL (scripts/postgres.sh) and a `weir server`, then `orders-analytics demo`:
# the tenant's output topic enabled, the consumer keeping the `orders` table, ORDERS
# orders run to completion, and the table's rows by status. The server stops at the
# end; PostgreSQL keeps running (scripts/postgres.sh stop).
set -euo pipefail

bin="${CARGO_TARGET_DIR:?}/debug"
export LHS_KAFKA_BOOTSTRAP_SERVERS="${LHS_KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:${BROKER_PORT:-9092}}"
export LHS_CLUSTER_ID="${LHS_CLUSTER_ID:-weir-analytics-demo}"
run_dir="${WEIR_CACHE_DIR:?}/run-analytics"
export LHS_STATE_DIR="${LHS_STATE_DIR:-$run_dir/state}"
mkdir -p "$run_dir"
log="$run_dir/server.log"

url="$("$(dirname "$0")/postgres.sh" start | tail -n 1)"
export ANALYTICS_DATABASE_URL="${ANALYTICS_DATABASE_URL:-$url}"

"$bin/weir" server >"$log" 2>&1 &
server=$!
trap 'kill -TERM "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true' EXIT

for _ in $(seq 1 600); do
  grep -q "weir server running" "$log" && break
  if ! kill -0 "$server" 2>/dev/null; then
    echo "weir server exited; its log ($log):" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.1
done
grep -q "weir server running" "$log" || { echo "weir server did not start within 60 s; see $log" >&2; exit 1; }
echo "weir server running on $LHS_KAFKA_BOOTSTRAP_SERVERS (cluster $LHS_CLUSTER_ID, log $log)"
echo "orders table in $ANALYTICS_DATABASE_URL"

"$bin/orders-analytics" demo "${ORDERS:-100}"
