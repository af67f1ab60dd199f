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
# It builds and runs test-postgres, the test kit's program (testkit/), which starts the
# same clusters as the tests. The binaries come from PG_BIN, else the newest
# /usr/lib/postgresql/*/bin, else initdb on PATH. PostgreSQL refuses to run as root: as
# root, the server runs as the postgres user.
set -euo pipefail
project=$(cd "$(dirname "$0")/.." && pwd)
# The line that stops the server names this script, as it was called.
export TEST_POSTGRES_COMMAND=$0
exec "${CARGO:-cargo}" run --quiet --manifest-path "$project/Cargo.toml" \
  --package testkit --bin test-postgres -- "$@"
