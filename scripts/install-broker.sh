#!/usr/bin/env bash
# Builds the local Kafka-compatible broker (nisshi) from crates.io into the cache, once.
# About 13 minutes on 2 cores the first time; afterwards it only checks the version.
set -euo pipefail
. "$(dirname "$0")/env.sh"

installed_version() { "$BROKER_BIN" --version 2>/dev/null || true; }

if installed_version | grep -qF "$BROKER_VERSION"; then
  exit 0
fi
mkdir -p "$WEIR_CACHE_DIR"
# One installer at a time, even when several clones run `make test` together.
exec 9>"$WEIR_CACHE_DIR/broker-install.lock"
flock 9
if installed_version | grep -qF "$BROKER_VERSION"; then
  exit 0
fi
echo "building nisshi $BROKER_VERSION into $WEIR_CACHE_DIR/broker (first time only, ~13 min on 2 cores)"
cargo install "nisshi@$BROKER_VERSION" --locked --features dynostore,libsql \
  --root "$WEIR_CACHE_DIR/broker" --target-dir "$WEIR_CACHE_DIR/broker-build"
if ! installed_version | grep -qF "$BROKER_VERSION"; then
  echo "installed broker reports '$(installed_version)', expected $BROKER_VERSION" >&2
  exit 1
fi
