#!/usr/bin/env bash
# Runs every benchmark and prints its figures (nothing passes or fails).
#   scripts/bench.sh            full run (release build)
#   scripts/bench.sh --smoke    a few seconds per benchmark, for CI
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-postgres.sh
profile=(--release)
zones=1,10,50
changes=100
if [ "${1:-}" = "--smoke" ]; then
  profile=()
  zones=2
  changes=5
fi
cargo build "${profile[@]}" -q -p meridian-bench
bin=target/$([ ${#profile[@]} -gt 0 ] && echo release || echo debug)/meridian-bench
echo "== $(date -u +%F) on $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB"
echo "== propagation, global on the embedded store"
"$bin" propagation --zones "$zones" --changes "$changes" --rate 20
echo "== propagation, global on PostgreSQL"
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS meridian_bench" 2>/dev/null
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE meridian_bench"
"$bin" propagation --zones "$zones" --changes "$changes" --rate 20 \
  --database-url postgres://postgres@127.0.0.1:5432/meridian_bench
