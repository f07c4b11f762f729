#!/usr/bin/env bash
# The main job for now: the global control plane on a local PostgreSQL database
# `meridian` (created if missing), REST API at http://127.0.0.1:5681.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-postgres.sh
if ! psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'meridian'" | grep -q 1; then
  echo "==> creating database meridian"
  psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE meridian"
fi
export MERIDIAN_DATABASE_URL="${MERIDIAN_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/meridian}"
exec cargo run --release -- global-cp "$@"
