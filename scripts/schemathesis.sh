#!/usr/bin/env bash
# API robustness: schemathesis (PyPI) generates requests from the served
# /openapi.json of a global and of a zone control plane and checks that nothing
# answers 5xx and that every response matches the document (status codes, content
# types, schemas, headers). Bounded for CI: --examples N per operation (default 10).
#
# Not checked: "a schema-valid request is accepted" — the documents cannot express
# the cross-field rules the API enforces (a body's name must match its path).
set -euo pipefail
cd "$(dirname "$0")/.."
EXAMPLES=10
while [ $# -gt 0 ]; do
  case "$1" in
    --examples) EXAMPLES="$2"; shift 2 ;;
    *) echo "usage: $0 [--examples N]" >&2; exit 2 ;;
  esac
done
SCHEMATHESIS_VERSION=4.32.5
if ! command -v st >/dev/null || ! st --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  echo "==> installing schemathesis $SCHEMATHESIS_VERSION from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
echo "==> building meridian"
cargo build --quiet -p meridian-cli
BIN=target/debug/meridian
WORK=$(mktemp -d)
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

# Starts a server in the background; prints its REST base URL once it is up.
start() {
  local name=$1; shift
  RUST_LOG=warn "$BIN" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  PIDS+=($!)
  for _ in $(seq 1 300); do
    local url
    url=$(sed -n 's/.*REST API on \(http:\/\/[^ ]*\).*/\1/p' "$WORK/$name.out" | head -1)
    if [ -n "$url" ]; then echo "$url"; return; fi
    sleep 0.1
  done
  echo "$name did not start:" >&2; cat "$WORK/$name.err" >&2; exit 1
}

TOKEN=schemathesis-admin
GLOBAL=$(start global global-cp --data-dir "$WORK/global" --api-addr 127.0.0.1:0 \
  --kds-addr 127.0.0.1:0 --admin-token "$TOKEN")
ZONE=$(start zone zone-cp --zone schemathesis --data-dir "$WORK/zone" --api-addr 127.0.0.1:0 \
  --dp-addr 127.0.0.1:0 --admin-token "$TOKEN")

status=0
for target in "global $GLOBAL" "zone $ZONE"; do
  set -- $target
  echo "==> schemathesis against the $1 control plane ($2/openapi.json, $EXAMPLES examples per operation)"
  st run "$2/openapi.json" --header "Authorization: Bearer $TOKEN" \
    --max-examples "$EXAMPLES" --workers 2 --seed 1 \
    --checks all --exclude-checks positive_data_acceptance \
    --no-color || status=1
done
exit $status
