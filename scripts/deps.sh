#!/usr/bin/env bash
# Dependency check with cargo-deny (installed from crates.io if missing): licenses
# (permissive only), bans (no wildcard versions; duplicates reported) and sources
# (crates.io only), per deny.toml. `--advisories` adds the RustSec advisory check,
# which needs GitHub (where the advisory database lives).
set -euo pipefail
cd "$(dirname "$0")/.."
DENY_VERSION=0.20.2
if ! cargo deny --version 2>/dev/null | grep -q "$DENY_VERSION"; then
  echo "==> installing cargo-deny $DENY_VERSION from crates.io"
  cargo install --quiet --locked cargo-deny --version "$DENY_VERSION"
fi
checks=(bans licenses sources)
if [ "${1:-}" = "--advisories" ]; then checks+=(advisories); fi
echo "==> cargo deny check ${checks[*]}"
cargo deny --log-level error check "${checks[@]}"
