#!/usr/bin/env bash
# Start or stop a throwaway PostgreSQL for tests, on a free loopback port in a temp dir.
#
#   eval "$(scripts/postgres.sh start DIR)"   # prints `export TENANTRY_TEST_PG_*=...` lines
#   scripts/postgres.sh stop DIR
#
# Exports: TENANTRY_TEST_PG_ADMIN_URL (superuser, for CREATE DATABASE and test setup),
#          TENANTRY_TEST_PG_APP_URL   (plain role: no superuser, no BYPASSRLS, as production),
#          TENANTRY_TEST_PG_PORT, TENANTRY_TEST_PG_HOST.
# PostgreSQL refuses to run as root, so under root the server runs as an unprivileged
# system user (created on first use). Nothing listens beyond 127.0.0.1.
set -euo pipefail
cmd=${1:?usage: postgres.sh start|stop DIR}
dir=${2:?usage: postgres.sh start|stop DIR}
PG_USER=${TENANTRY_PG_OS_USER:-tenantry-pg}

find_bin() {  # $1: program name; prefer PATH, then Debian's versioned dirs
  if command -v "$1" >/dev/null 2>&1; then command -v "$1"; return; fi
  local c; for c in /usr/lib/postgresql/*/bin/"$1"; do [ -x "$c" ] && { echo "$c"; return; }; done
  return 1
}

ensure_server() {
  if ! find_bin initdb >/dev/null || ! find_bin psql >/dev/null; then
    echo "postgres.sh: installing PostgreSQL from Debian's packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends postgresql postgresql-client >&2
  fi
}

as_pg() {  # run a command as the unprivileged server user when we are root
  if [ "$(id -u)" = 0 ]; then runuser -u "$PG_USER" -- "$@"; else "$@"; fi
}

case $cmd in
start)
  ensure_server
  initdb=$(find_bin initdb); pg_ctl=$(find_bin pg_ctl); psql=$(find_bin psql)
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then
    id -u "$PG_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER"
    chown "$PG_USER" "$dir"
  fi
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  admin_pw=admin-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
  app_pw=app-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
  printf '%s\n' "$admin_pw" > "$dir/pwfile"; chmod 600 "$dir/pwfile"
  [ "$(id -u)" = 0 ] && chown "$PG_USER" "$dir/pwfile"
  as_pg "$initdb" -D "$dir/data" -U postgres --pwfile="$dir/pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  rm -f "$dir/pwfile"
  as_pg "$pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start -o \
    "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
  as_pg "$psql" -q -h "$dir" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 \
    -c "CREATE ROLE tenantry_app LOGIN PASSWORD '$app_pw' NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE" >/dev/null
  echo "export TENANTRY_TEST_PG_HOST=127.0.0.1"
  echo "export TENANTRY_TEST_PG_PORT=$port"
  echo "export TENANTRY_TEST_PG_ADMIN_URL=postgresql://postgres:$admin_pw@127.0.0.1:$port/postgres"
  echo "export TENANTRY_TEST_PG_APP_URL=postgresql://tenantry_app:$app_pw@127.0.0.1:$port/postgres"
  ;;
stop)
  [ -d "$dir/data" ] || exit 0
  pg_ctl=$(find_bin pg_ctl)
  as_pg "$pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
  ;;
*) echo "usage: postgres.sh start|stop DIR" >&2; exit 2 ;;
esac
