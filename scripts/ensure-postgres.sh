#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers at 127.0.0.1:5432 with trust auth for local
# TCP connections: starts the machine's cluster if it is down, installs PostgreSQL from
# Debian if there is none. Sourced by scripts/test.sh and scripts/run-global.sh.
set -euo pipefail

pg_ready() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }

if ! command -v pg_isready >/dev/null 2>&1 || [ ! -d /etc/postgresql ]; then
  echo "==> installing PostgreSQL (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  version=$(ls /etc/postgresql | sort -V | tail -n1)
  hba=/etc/postgresql/$version/main/pg_hba.conf
  # Tests connect as `postgres` over loopback without a password.
  sed -i -E 's/^(host\s+all\s+all\s+127\.0\.0\.1\/32\s+)\S+/\1trust/; s/^(host\s+all\s+all\s+::1\/128\s+)\S+/\1trust/' "$hba"
fi

if ! pg_ready; then
  echo "==> starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start || true
fi

for _ in $(seq 1 60); do
  pg_ready && break
  sleep 0.5
done
pg_ready || { echo "PostgreSQL did not come up at 127.0.0.1:5432" >&2; exit 1; }
