#!/usr/bin/env bash
# A throwaway PostgreSQL server on 127.0.0.1, in one command: to try the echo service on
# PostgreSQL (the README's "On PostgreSQL"), and for the store matrix (docs/testing.md),
# whose tests run every echo service on it when ECHO_TEST_DATABASE_URL holds its URL.
#
#   scripts/test-postgres.sh [start]   start one in a fresh temp dir; print its URL, and on
#                                      standard error the line to paste to run the broker
#                                      on it and the one that stops it
#   scripts/test-postgres.sh stop DIR  stop it and remove DIR
#   scripts/test-postgres.sh run CMD…  start one, run CMD with ECHO_TEST_DATABASE_URL set,
#                                      stop it whatever happens; CMD's exit status
#
# The binaries come from PG_BIN, else the newest /usr/lib/postgresql/*/bin, else initdb on
# PATH. PostgreSQL refuses to run as root: as root, the server runs as the postgres user.
set -euo pipefail

# Marks a directory this script made, so that stop removes no other.
marker=.echo-test-postgres

die() {
  echo "test-postgres: $*" >&2
  exit 1
}

pg_bin() {
  if [ -n "${PG_BIN:-}" ]; then
    [ -x "$PG_BIN/initdb" ] || die "PG_BIN=$PG_BIN has no initdb"
    echo "$PG_BIN"
    return
  fi
  local newest
  newest=$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$newest" ]; then
    dirname "$newest"
  elif command -v initdb >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v initdb)")"
  else
    die "PostgreSQL is not installed (no PG_BIN, no /usr/lib/postgresql/*/bin/initdb, no initdb on PATH); install its server (Debian, Ubuntu: apt-get install postgresql; Fedora: dnf install postgresql-server; macOS: brew install postgresql)"
  fi
}

# Runs a server program as the server's user.
as_server() {
  if [ "$(id -u)" != 0 ]; then
    "$@"
  elif command -v runuser >/dev/null 2>&1; then
    runuser -u postgres -- "$@"
  else
    setpriv --reuid="$(id -u postgres)" --regid="$(id -g postgres)" --clear-groups -- "$@"
  fi
}

# A loopback port nobody answers on now; the start retries if it is taken in between.
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
}

# Starts a server in a fresh temp dir: sets DIR and URL. A failed start leaves nothing.
launch() {
  local bin password port
  bin=$(pg_bin)
  DIR=$(mktemp -d "${TMPDIR:-/tmp}/echo-test-postgres.XXXXXX")
  touch "$DIR/$marker"
  trap 'stop "$DIR" >/dev/null 2>&1 || true' EXIT
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root, and there is no postgres user to run the server"
    chown -R postgres: "$DIR"
  fi
  password=$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')
  (umask 077 && printf '%s\n' "$password" > "$DIR/pwfile")
  [ "$(id -u)" != 0 ] || chown postgres: "$DIR/pwfile"
  if ! as_server "$bin/initdb" -D "$DIR/data" -U echo_test --pwfile="$DIR/pwfile" \
      --auth=scram-sha-256 -E UTF8 --locale=C --no-sync > "$DIR/initdb.log" 2>&1; then
    cat "$DIR/initdb.log" >&2
    die "initdb failed"
  fi
  rm -f "$DIR/pwfile"
  # The echo services of the tests that run at once each hold connections, hence the
  # generous maximum.
  cat >> "$DIR/data/postgresql.conf" <<CONF

# scripts/test-postgres.sh: loopback only, its socket in its own dir.
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR'
max_connections = 300
fsync = on
CONF
  for _ in 1 2 3 4 5; do
    port=$(free_port)
    echo "port = $port" >> "$DIR/data/postgresql.conf"
    if as_server "$bin/pg_ctl" start -w -t 30 -D "$DIR/data" -l "$DIR/postgres.log" >/dev/null; then
      trap - EXIT
      URL="postgres://echo_test:$password@127.0.0.1:$port/postgres"
      return
    fi
    grep -q 'could not bind' "$DIR/postgres.log" || break
  done
  cat "$DIR/postgres.log" >&2
  die "PostgreSQL did not start"
}

start() {
  launch
  echo "$URL"
  {
    echo "test-postgres: a throwaway PostgreSQL server runs on 127.0.0.1, its data in $DIR"
    echo "  run the broker on it:        DATABASE_URL='$URL' cargo run --release"
    echo "  stop it (its data goes too): $0 stop $DIR"
  } >&2
}

stop() {
  local dir=${1:-}
  [ -n "$dir" ] || die "stop needs the directory that start printed"
  [ -e "$dir/$marker" ] || die "$dir is not a directory this script made"
  if [ -f "$dir/data/postmaster.pid" ]; then
    local bin
    bin=$(pg_bin)
    as_server "$bin/pg_ctl" stop -m fast -w -t 30 -D "$dir/data" >/dev/null ||
      as_server "$bin/pg_ctl" stop -m immediate -w -t 10 -D "$dir/data" >/dev/null ||
      true
  fi
  rm -rf "$dir"
}

run() {
  [ $# -gt 0 ] || die "run needs a command"
  launch
  trap 'stop "$DIR"' EXIT
  local status=0
  ECHO_TEST_DATABASE_URL=$URL "$@" || status=$?
  return "$status"
}

case "${1:-start}" in
  start) start ;;
  stop) shift; stop "$@" ;;
  run) shift; run "$@" ;;
  *) die "usage: $0 [start] | stop DIR | run COMMAND..." ;;
esac
