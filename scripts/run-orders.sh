#!/usr/bin/env bash
# `make run`: LHS_INSTANCE_COUNT `weir server` instances (default 1) on the local broker,
# then the `orders` example against them (metadata, three workers, ORDERS orders,
# deliveries), then the servers stop. Instance i runs as its own process with
# LHS_INSTANCE_ID=i, its own state directory and its own log; the instances share the
# partitions (each takes those whose number modulo the count is its id).
# With LHS_METRICS_PORT set, instance i serves /metrics and the queries on that port
# plus i (0: each picks a free one) and advertises http://127.0.0.1:{port} for queries
# unless LHS_ADVERTISED_HTTP says otherwise; the script prints each instance's URL.
set -euo pipefail

bin="${CARGO_TARGET_DIR:?}/debug"
export LHS_KAFKA_BOOTSTRAP_SERVERS="${LHS_KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:${BROKER_PORT:-9092}}"
export LHS_CLUSTER_ID="${LHS_CLUSTER_ID:-weir-demo}"
export LHS_INSTANCE_COUNT="${LHS_INSTANCE_COUNT:-1}"
run_dir="${WEIR_CACHE_DIR:?}/run"
state_root="${LHS_STATE_DIR:-$run_dir/state}"
mkdir -p "$run_dir"

servers=()
stop_servers() {
  for pid in "${servers[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${servers[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_servers EXIT

for ((id = 0; id < LHS_INSTANCE_COUNT; id++)); do
  log="$run_dir/server-$id.log"
  [ "$LHS_INSTANCE_COUNT" -eq 1 ] && log="$run_dir/server.log"
  state="$state_root"
  [ "$LHS_INSTANCE_COUNT" -gt 1 ] && state="$state_root/instance-$id"
  http=()
  if [ -n "${LHS_METRICS_PORT:-}" ]; then
    port=$((LHS_METRICS_PORT == 0 ? 0 : LHS_METRICS_PORT + id))
    local_url='http://127.0.0.1:{port}'
    http=(LHS_METRICS_PORT="$port" LHS_ADVERTISED_HTTP="${LHS_ADVERTISED_HTTP:-$local_url}")
  fi
  env LHS_INSTANCE_ID="$id" LHS_STATE_DIR="$state" "${http[@]}" "$bin/weir" server >"$log" 2>&1 &
  servers+=($!)
done

for ((id = 0; id < LHS_INSTANCE_COUNT; id++)); do
  log="$run_dir/server-$id.log"
  [ "$LHS_INSTANCE_COUNT" -eq 1 ] && log="$run_dir/server.log"
  for _ in $(seq 1 600); do
    grep -q "weir server running" "$log" && break
    if ! kill -0 "${servers[$id]}" 2>/dev/null; then
      echo "weir server $id exited; its log ($log):" >&2
      cat "$log" >&2
      exit 1
    fi
    sleep 0.1
  done
  grep -q "weir server running" "$log" || { echo "weir server $id did not start within 60 s; see $log" >&2; exit 1; }
  echo "weir server $id/$LHS_INSTANCE_COUNT running on $LHS_KAFKA_BOOTSTRAP_SERVERS (cluster $LHS_CLUSTER_ID, log $log): $(grep -o 'tasks .*' "$log" | head -1 | tr ',' '\n' | grep -c .) tasks"
  # The server prints `weir server http on 0.0.0.0:{port} (/metrics)` and
  # `weir server queries at {url}` when it serves HTTP.
  port=$(sed -n 's/^weir server http on .*:\([0-9]*\) .*/\1/p' "$log" | head -1)
  url=$(sed -n 's/^weir server queries at //p' "$log" | head -1)
  if [ -n "$port" ]; then
    echo "weir server $id/$LHS_INSTANCE_COUNT metrics at http://127.0.0.1:$port/metrics, queries at $url"
  fi
done

"$bin/orders" demo "${ORDERS:-100}"
