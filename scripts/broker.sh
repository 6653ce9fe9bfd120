#!/usr/bin/env bash
# Starts or stops the local broker for `make run`: 127.0.0.1:$BROKER_PORT, memory storage.
#   scripts/broker.sh start   start it in the background (reuses one already running)
#   scripts/broker.sh stop    stop it
# The integration tests do not use this broker: their harness starts its own.
set -euo pipefail
. "$(dirname "$0")/env.sh"

pid_file="$RUN_DIR/broker.pid"
log_file="$RUN_DIR/broker.log"
address="127.0.0.1:$BROKER_PORT"

running() { [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; }
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$BROKER_PORT") 2>/dev/null; }

case "${1:-}" in
  start)
    mkdir -p "$RUN_DIR"
    if running; then
      echo "broker already running on $address (pid $(cat "$pid_file"))"
      exit 0
    fi
    if answers; then
      echo "something already listens on $address; set BROKER_PORT to use another port" >&2
      exit 1
    fi
    nohup "$BROKER_BIN" broker \
      --listener-url "tcp://$address" --advertised-listener-url "tcp://$address" \
      --storage-engine memory://weir/ --cluster-id weir-local \
      >"$log_file" 2>&1 </dev/null &
    echo $! >"$pid_file"
    for _ in $(seq 1 100); do
      if answers; then
        echo "broker running on $address (pid $(cat "$pid_file"), log $log_file)"
        exit 0
      fi
      running || break
      sleep 0.1
    done
    echo "broker did not start; its log ($log_file):" >&2
    cat "$log_file" >&2
    exit 1
    ;;
  stop)
    if running; then
      kill "$(cat "$pid_file")"
      echo "broker stopped"
    fi
    rm -f "$pid_file"
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
