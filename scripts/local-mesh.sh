#!/usr/bin/env bash
# The main job until `meridian up` lands: a local multi-zone control plane on the
# embedded store, no external dependency. Starts a global CP and N zone CPs
# (default 2) syncing over KDS/TLS, prints every address and commands to try, and
# stops everything on Ctrl-C.
#   scripts/local-mesh.sh [--zones N] [--data-dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
zones=2
data_dir=meridian-data/local-mesh
while [ $# -gt 0 ]; do
  case "$1" in
    --zones) zones="$2"; shift 2 ;;
    --data-dir) data_dir="$2"; shift 2 ;;
    *) echo "usage: $0 [--zones N] [--data-dir DIR]" >&2; exit 2 ;;
  esac
done
echo "==> building meridian (release)"
cargo build --release -q -p meridian-cli
bin=target/release/meridian
mkdir -p "$data_dir"
token_file="$data_dir/admin-token"
[ -f "$token_file" ] || head -c 32 /dev/urandom | base64 | tr -d '/+=' | head -c 40 > "$token_file"
admin=$(cat "$token_file")

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

RUST_LOG=${RUST_LOG:-warn} "$bin" global-cp --data-dir "$data_dir/global" --admin-token "$admin" \
  --api-addr 127.0.0.1:5681 --kds-addr 127.0.0.1:5685 > "$data_dir/global.out" &
pids+=($!)
for _ in $(seq 1 100); do
  curl -sf http://127.0.0.1:5681/readyz >/dev/null 2>&1 && break
  sleep 0.2
done
curl -sf http://127.0.0.1:5681/readyz >/dev/null || { cat "$data_dir/global.out"; echo "global did not start" >&2; exit 1; }

for i in $(seq 1 "$zones"); do
  zone="zone-$i"
  curl -sf -X POST http://127.0.0.1:5681/tokens/zone -H "authorization: Bearer $admin" \
    -H 'content-type: application/json' -d "{\"zone\": \"$zone\", \"validFor\": \"8760h\"}" \
    | sed -E 's/.*"token":"([^"]+)".*/\1/' > "$data_dir/$zone.token"
  RUST_LOG=${RUST_LOG:-warn} "$bin" zone-cp --zone "$zone" --global-kds https://127.0.0.1:5685 \
    --global-kds-ca "$data_dir/global/kds-ca.pem" --zone-token "$data_dir/$zone.token" \
    --api-addr "127.0.0.1:$((5681 + 10 * i + 1))" --dp-addr "127.0.0.1:$((5681 + 10 * i + 7))" \
    --data-dir "$data_dir/$zone" --admin-token "$admin" \
    > "$data_dir/$zone.out" &
  pids+=($!)
done
sleep 1
cat <<MSG

Meridian local mesh is up (embedded stores in $data_dir):
  global CP   REST http://127.0.0.1:5681   KDS https://127.0.0.1:5685
$(for i in $(seq 1 "$zones"); do echo "  zone-$i     REST http://127.0.0.1:$((5681 + 10 * i + 1))"; done)
  admin token $admin

Try:
  export MERIDIAN_TOKEN=$admin
  $bin apply -f tests/fixtures/seed004-traffic-split.yaml
  $bin get meshtcproutes --api http://127.0.0.1:5692        # the route, synced to zone-1
  curl -s http://127.0.0.1:5681/zones+insights | head -c 600; echo

Ctrl-C stops everything.
MSG
wait
