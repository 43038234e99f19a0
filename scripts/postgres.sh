#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the database tests: its own temporary directory, 127.0.0.1 on a free
# port, trust authentication (nothing but this machine can reach it), fsync off (nothing in it is kept).
#   source scripts/postgres.sh        start it and export XR_TEST_POSTGRES_URL and XR_PG_DIR;
#                                     xr_postgres_stop stops it and removes the directory (e.g. in a trap)
#   eval "$(bash scripts/postgres.sh start)"   the same from a separate process (it prints the exports)
#   bash scripts/postgres.sh stop     stop the cluster in $XR_PG_DIR
#   bash scripts/postgres.sh bindir   where initdb and pg_ctl are; fails when PostgreSQL is not installed
# initdb refuses to run as root: as root the cluster runs as the user postgres (created if missing).

xr_postgres_bindir() {
  local dir
  for dir in "$(dirname "$(command -v pg_ctl 2>/dev/null || echo /nonexistent/pg_ctl)")" \
             $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
      echo "$dir"
      return 0
    fi
  done
  echo "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql/*/bin" >&2
  return 1
}

_xr_pg_as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

xr_postgres_start() {
  local bin dir port
  bin="$(xr_postgres_bindir)" || return 1
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres || return 1
  fi
  dir="$(mktemp -d "${TMPDIR:-/tmp}/xr-postgres.XXXXXX")" || return 1
  [ "$(id -u)" = 0 ] && chown postgres "$dir"
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')" || return 1
  _xr_pg_as_owner "$bin/initdb" -D "$dir/data" -U xr --auth=trust --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; return 1; }
  _xr_pg_as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
    -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" >/dev/null \
    || { cat "$dir/server.log" >&2; return 1; }
  export XR_PG_DIR="$dir"
  export XR_TEST_POSTGRES_URL="postgresql://xr@127.0.0.1:$port/postgres"
  echo "PostgreSQL $("$bin/pg_ctl" --version | awk '{print $3}') running at $XR_TEST_POSTGRES_URL (data in $dir)" >&2
}

xr_postgres_stop() {
  local dir="${XR_PG_DIR:-}"
  [ -n "$dir" ] && [ -d "$dir/data" ] || return 0
  _xr_pg_as_owner "$(xr_postgres_bindir)/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1
  rm -rf "$dir"
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then  # sourced
  if [ $# -eq 0 ] || [ "$1" = start ]; then
    xr_postgres_start
  fi
else
  set -euo pipefail
  case "${1:-}" in
    start) xr_postgres_start
           echo "export XR_PG_DIR='$XR_PG_DIR' XR_TEST_POSTGRES_URL='$XR_TEST_POSTGRES_URL'" ;;
    stop) xr_postgres_stop ;;
    bindir) xr_postgres_bindir ;;
    *) echo "usage: bash scripts/postgres.sh start|stop|bindir  (or: source scripts/postgres.sh)" >&2; exit 2 ;;
  esac
fi
