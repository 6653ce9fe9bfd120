# Shared settings for the project's scripts; sourced, not run.
# Everything built or installed outside the clone lives under WEIR_CACHE_DIR, so fresh
# clones on the same machine (CI's included) reuse the broker and the compiled crates.
WEIR_CACHE_DIR="${WEIR_CACHE_DIR:-$HOME/.cache/weir}"
BROKER_VERSION="0.7.0-pre.2"
BROKER_BIN="$WEIR_CACHE_DIR/broker/bin/nisshi"
BROKER_PORT="${BROKER_PORT:-9092}"
RUN_DIR="$WEIR_CACHE_DIR/run"
