#!/usr/bin/env bash
# A local PostgreSQL for the analytics example and its integration test, run with
# Debian's binaries (/usr/lib/postgresql/*/bin, the newest) from a cluster in
# $WEIR_CACHE_DIR/postgres, outside the clone, listening on 127.0.0.1:$PG_PORT
# (default 5433, beside a system PostgreSQL on 5432).
#   scripts/postgres.sh start   initialise the cluster if needed and start it (an
#                               already running one is fine); prints the URL
#   scripts/postgres.sh stop    stop it
#   scripts/postgres.sh url     print the URL: postgresql://weir@127.0.0.1:PORT/weir
# The superuser is `weir`, trusted without a password on 127.0.0.1 only: a local
# scratch database, never a shared one. PostgreSQL refuses to run as root, so as root
# the cluster belongs to the `postgres` system user and runs as it.
set -euo pipefail
. "$(dirname "$0")/env.sh"

PG_PORT="${PG_PORT:-5433}"
pg_dir="$WEIR_CACHE_DIR/postgres"
data="$pg_dir/data"
sockets="$pg_dir/run"
log_file="$pg_dir/postgres.log"

bin_dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
if [ -z "$bin_dir" ] || [ ! -x "$bin_dir/pg_ctl" ]; then
  echo "PostgreSQL is not installed: run scripts/install-system-deps.sh (package postgresql)" >&2
  exit 1
fi

# Runs a PostgreSQL program as the cluster's owner: this user, or `postgres` for root.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    (cd "$pg_dir" && runuser -u postgres -- "$@")
  else
    (cd "$pg_dir" && "$@")
  fi
}

# As root: gives the `postgres` user the cluster's directory, and search permission
# (only that: no listing, no reading) on each directory above it it cannot pass yet,
# such as a 0700 /root.
own_as_postgres() {
  id postgres >/dev/null 2>&1 || { echo "there is no postgres system user; install the postgresql package" >&2; exit 1; }
  chown -R postgres:postgres "$pg_dir"
  # From the root down, so each directory is tested with the ones above it passable.
  local dir path=""
  IFS=/ read -r -a parts <<<"${pg_dir#/}"
  for dir in "${parts[@]}"; do
    path="$path/$dir"
    runuser -u postgres -- test -x "$path" 2>/dev/null && continue
    command -v setfacl >/dev/null || {
      echo "the postgres user cannot reach $pg_dir (blocked at $path); install acl (scripts/install-system-deps.sh) or set WEIR_CACHE_DIR to a directory it can reach" >&2
      exit 1
    }
    echo "letting the postgres user through $path (setfacl -m u:postgres:x)"
    setfacl -m u:postgres:x "$path"
  done
}

running() { as_owner "$bin_dir/pg_ctl" status -D "$data" >/dev/null 2>&1; }

# The port of the running server (line 4 of postmaster.pid), else $PG_PORT.
port() {
  if [ -f "$data/postmaster.pid" ] && running; then
    sed -n 4p "$data/postmaster.pid"
  else
    echo "$PG_PORT"
  fi
}

url() { echo "postgresql://weir@127.0.0.1:$(port)/weir"; }

case "${1:-}" in
  start)
    mkdir -p "$pg_dir" "$sockets"
    [ "$(id -u)" -eq 0 ] && own_as_postgres
    if [ -f "$data/PG_VERSION" ]; then
      version="$(basename "$(dirname "$bin_dir")")"
      if [ "$(cat "$data/PG_VERSION")" != "$version" ]; then
        echo "$data holds a PostgreSQL $(cat "$data/PG_VERSION") cluster but the binaries are $version; stop it and remove $data to start afresh" >&2
        exit 1
      fi
    else
      echo "initialising a PostgreSQL cluster in $data"
      as_owner "$bin_dir/initdb" -D "$data" -U weir --auth=trust -E UTF8 --locale=C.UTF-8 >"$pg_dir/initdb.log" 2>&1 || {
        echo "initdb failed; its output ($pg_dir/initdb.log):" >&2
        cat "$pg_dir/initdb.log" >&2
        exit 1
      }
    fi
    if running; then
      echo "postgres already running on 127.0.0.1:$(port) (log $log_file)"
    else
      if (exec 3<>"/dev/tcp/127.0.0.1/$PG_PORT") 2>/dev/null; then
        echo "something already listens on 127.0.0.1:$PG_PORT; set PG_PORT to use another port" >&2
        exit 1
      fi
      as_owner "$bin_dir/pg_ctl" start -D "$data" -l "$log_file" -w -t 60 -s \
        -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$sockets -c max_connections=200" || {
        echo "postgres did not start; its log ($log_file):" >&2
        cat "$log_file" >&2
        exit 1
      }
      echo "postgres running on 127.0.0.1:$PG_PORT (log $log_file)"
    fi
    # The `weir` database, once.
    if ! as_owner "$bin_dir/psql" -h 127.0.0.1 -p "$(port)" -U weir -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = 'weir'" | grep -q 1; then
      as_owner "$bin_dir/createdb" -h 127.0.0.1 -p "$(port)" -U weir weir
    fi
    url
    ;;
  stop)
    if [ -f "$data/PG_VERSION" ] && running; then
      as_owner "$bin_dir/pg_ctl" stop -D "$data" -m fast -w -s
      echo "postgres stopped"
    fi
    ;;
  url)
    url
    ;;
  *)
    echo "usage: $0 start|stop|url" >&2
    exit 2
    ;;
esac
