#!/usr/bin/env bash
# `make run`: a `weir server` on the local broker, then the `orders` example against
# it (metadata, three workers, ORDERS orders, deliveries), then the server stops.
set -euo pipefail

bin="${CARGO_TARGET_DIR:?}/debug"
export LHS_KAFKA_BOOTSTRAP_SERVERS="${LHS_KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:${BROKER_PORT:-9092}}"
export LHS_CLUSTER_ID="${LHS_CLUSTER_ID:-weir-demo}"
run_dir="${WEIR_CACHE_DIR:?}/run"
export LHS_STATE_DIR="${LHS_STATE_DIR:-$run_dir/state}"
mkdir -p "$run_dir"
log="$run_dir/server.log"

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

"$bin/orders" demo "${ORDERS:-100}"
