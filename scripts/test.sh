#!/usr/bin/env bash
# The test command: ensures PostgreSQL, then runs every test of the workspace
# (unit, store conformance on PostgreSQL, REST over real sockets, the real binary).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-postgres.sh
export MERIDIAN_TEST_DATABASE_URL="${MERIDIAN_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
echo "==> cargo test --workspace (PostgreSQL: $MERIDIAN_TEST_DATABASE_URL)"
cargo test --workspace --no-fail-fast "$@"
