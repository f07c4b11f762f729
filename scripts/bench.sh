#!/usr/bin/env bash
# Runs every benchmark and prints its figures (nothing passes or fails).
#   scripts/bench.sh            full run (release build)
#   scripts/bench.sh --smoke    a few seconds per benchmark, for CI
# A full run also writes everything it prints to bench/RESULTS.md, the source of the
# README's tables.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" != "--smoke" ] && [ -z "${MERIDIAN_BENCH_TEE:-}" ]; then
  export MERIDIAN_BENCH_TEE=1
  exec > >(tee bench/RESULTS.md) 2>&1
fi
source scripts/ensure-postgres.sh
profile=(--release)
zones=1,10,50,100
changes=100
smoke=0
if [ "${1:-}" = "--smoke" ]; then
  profile=()
  zones=2
  changes=5
  smoke=1
fi

# HAProxy and nginx (with its stream module) for the datapath comparison, installed
# with apt-get when missing. A policy-rc.d keeps the packages from starting their
# system services; the benchmark runs the binaries itself, in the foreground, from
# generated configs. If they cannot be installed, the benchmark skips them.
install_proxies() {
  local missing=()
  have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ]; }
  have haproxy || missing+=(haproxy)
  if ! have nginx; then
    missing+=(nginx libnginx-mod-stream)
  elif PATH="$PATH:/usr/sbin" nginx -V 2>&1 | grep -q -- '--with-stream=dynamic' &&
    ! ls /usr/lib/nginx/modules/ngx_stream_module.so >/dev/null 2>&1; then
    missing+=(libnginx-mod-stream)
  fi
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      echo "== datapath: cannot install ${missing[*]} (not root, no sudo); skipping them"
      return 0
    fi
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "== datapath: no apt-get to install ${missing[*]}; skipping them"
    return 0
  fi
  local policy_added=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    if printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null &&
      "${sudo[@]}" chmod +x /usr/sbin/policy-rc.d; then
      policy_added=1
      trap "${sudo[*]} rm -f /usr/sbin/policy-rc.d" EXIT
    fi
  fi
  local apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -qq -o Dpkg::Use-Pty=0)
  echo "== datapath: installing ${missing[*]}"
  "${apt[@]}" install "${missing[@]}" >/dev/null 2>&1 ||
    { "${apt[@]}" update >/dev/null 2>&1 && "${apt[@]}" install "${missing[@]}" >/dev/null 2>&1; } ||
    echo "== datapath: could not install ${missing[*]}; skipping them"
  if [ $policy_added -eq 1 ]; then
    "${sudo[@]}" rm -f /usr/sbin/policy-rc.d
    trap - EXIT
  fi
}
# The benchmarks start global (propagation) and whole meshes (fullpath) from the
# real `meridian` binary of the same profile.
cargo build "${profile[@]}" -q -p meridian-bench -p meridian-cli
out=${CARGO_TARGET_DIR:-target}/$([ ${#profile[@]} -gt 0 ] && echo release || echo debug)
bin=$out/meridian-bench
meridian=$out/meridian
echo "== $(date -u +%F) on $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB"
echo "== propagation, global on the embedded store"
"$bin" propagation --zones "$zones" --changes "$changes" --rate 20 --meridian-bin "$meridian"
echo "== propagation, global on PostgreSQL"
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS meridian_bench" 2>/dev/null
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE meridian_bench"
"$bin" propagation --zones "$zones" --changes "$changes" --rate 20 --meridian-bin "$meridian" \
  --database-url postgres://postgres@127.0.0.1:5432/meridian_bench
echo "== pg-load: 10,000 policies written into PostgreSQL, 500 per transaction"
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS meridian_bench_load" 2>/dev/null
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE meridian_bench_load"
if [ $smoke -eq 1 ]; then load=(--smoke); else load=(); fi
"$bin" pg-load "${load[@]}" --database-url postgres://postgres@127.0.0.1:5432/meridian_bench_load
echo "== fanout: 1000 lightweight KDS clients, global on the embedded store"
if [ $smoke -eq 1 ]; then
  "$bin" fanout --smoke --meridian-bin "$meridian"
else
  "$bin" fanout --zones 1000 --changes "$changes" --rate 20 --meridian-bin "$meridian"
fi
echo "== reconnect: zone re-sync after K missed changes, global on the embedded store"
if [ $smoke -eq 1 ]; then "$bin" reconnect --smoke; else "$bin" reconnect; fi
echo "== reconnect, global on PostgreSQL"
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS meridian_bench" 2>/dev/null
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE meridian_bench"
if [ $smoke -eq 1 ]; then
  "$bin" reconnect --smoke --database-url postgres://postgres@127.0.0.1:5432/meridian_bench
else
  "$bin" reconnect --database-url postgres://postgres@127.0.0.1:5432/meridian_bench
fi
echo "== zone-scale: one zone CP, 1000 config-stream proxies, 10000 policies, 100 remote zones"
if [ $smoke -eq 1 ]; then "$bin" zone-scale --smoke; else "$bin" zone-scale; fi
echo "== scale: 100 zones x 1000 dataplanes, 10000 policies, global on the embedded store"
if [ $smoke -eq 1 ]; then "$bin" scale --smoke; else "$bin" scale; fi
install_proxies
echo "== datapath: TLS passthrough by SNI, proxies on 1 thread"
if [ $smoke -eq 1 ]; then
  "$bin" datapath --threads 1 --smoke
else
  "$bin" datapath --threads 1
  echo "== datapath: TLS passthrough by SNI, proxies on all cores"
  "$bin" datapath --threads all
fi
echo "== fullpath: sidecar -> egress -> ingress -> sidecar against direct, real processes"
if [ $smoke -eq 1 ]; then
  "$bin" fullpath --smoke --meridian-bin "$meridian"
else
  "$bin" fullpath --meridian-bin "$meridian"
fi
