#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a bounded time and prints one summary
# line per target; exits non-zero if any target found a crash, panic or hang.
#   scripts/fuzz.sh                   30 s per target
#   scripts/fuzz.sh --seconds 120     longer
#   scripts/fuzz.sh --targets sni_peek,kds_apply --seconds 60
#   scripts/fuzz.sh --dev --seconds 10  unoptimised build (CI: builds faster)
#
# Stable Rust: cargo-fuzz needs nightly-only flags (-Z sanitizer coverage options),
# which stable rustc accepts with RUSTC_BOOTSTRAP=1. No sanitizer (--sanitizer none):
# AddressSanitizer needs nightly's -Zsanitizer=address runtime support; safe Rust
# does not need it to find panics, overflows (checked: debug assertions are on) and
# hangs. cargo-fuzz itself is installed from crates.io when missing.
#
# Each target reads its committed seeds (fuzz/corpus/<target>, never written) and
# keeps what it discovers in <target dir>/fuzz-corpus/<target>, which later local
# runs reuse. A crash leaves its input in fuzz/artifacts/<target>/ and is printed in
# base64 so a CI log is enough to reproduce it:
#   RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none <target> <file>
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
seconds=30
targets=()
profile=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds)
      seconds="$2"
      shift 2
      ;;
    --seconds=*)
      seconds="${1#*=}"
      shift
      ;;
    --dev)
      # Unoptimised build: compiles in about half the time, fuzzes slower (for CI).
      profile=(--dev)
      shift
      ;;
    --targets)
      IFS=, read -r -a targets <<<"$2"
      shift 2
      ;;
    -h | --help)
      sed -n '2,18p' "$0"
      exit 0
      ;;
    *)
      echo "usage: scripts/fuzz.sh [--seconds N] [--targets a,b]" >&2
      exit 2
      ;;
  esac
done
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -lt 1 ]; then
  echo "--seconds needs a positive whole number, got $seconds" >&2
  exit 2
fi
if [ ${#targets[@]} -eq 0 ]; then
  for file in fuzz/fuzz_targets/*.rs; do
    name="$(basename "$file" .rs)"
    targets+=("$name")
  done
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz $CARGO_FUZZ_VERSION"
  start=$SECONDS
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
  echo "==> cargo-fuzz installed in $((SECONDS - start)) s"
fi

# The fuzz crate is its own workspace with its own lock file: keep its build apart
# from the main workspace's, under CARGO_TARGET_DIR when one is set.
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
  target_dir="$CARGO_TARGET_DIR/fuzz"
else
  target_dir="$PWD/fuzz/target"
fi
fuzz=(env RUSTC_BOOTSTRAP=1 cargo fuzz)
common=(--sanitizer none --target-dir "$target_dir" "${profile[@]}")

echo "==> building the fuzz targets (${targets[*]})"
start=$SECONDS
"${fuzz[@]}" build "${common[@]}"
echo "==> built in $((SECONDS - start)) s"

# The kds_apply target keeps its store under /dev/shm (or the temp dir), one
# directory per process; remove those of processes that are gone.
clean_stores() {
  local dir pid
  for dir in /dev/shm/meridian-fuzz-kds-* "${TMPDIR:-/tmp}"/meridian-fuzz-kds-*; do
    [ -e "$dir" ] || continue
    pid="${dir##*-}"
    [ -e "/proc/$pid" ] || rm -rf "$dir"
  done
}

logs="$target_dir/fuzz-logs"
mkdir -p "$logs"
passed=0
failed=0
summaries=()
for target in "${targets[@]}"; do
  work="$target_dir/fuzz-corpus/$target"
  seeds="fuzz/corpus/$target"
  mkdir -p "$work" "$seeds"
  log="$logs/$target.log"
  echo "==> fuzzing $target for $seconds s (log: $log)"
  set +e
  "${fuzz[@]}" run "${common[@]}" "$target" "$work" "$seeds" -- \
    -max_total_time="$seconds" -timeout=25 -print_final_stats=1 >"$log" 2>&1
  status=$?
  set -e
  clean_stores
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)"
  corpus="$(grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -n1 | sed 's/corp: //')"
  coverage="$(grep -oE 'cov: [0-9]+' "$log" | tail -n1 | sed 's/cov: //')"
  if [ "$status" -eq 0 ]; then
    passed=$((passed + 1))
    line="fuzz $target: ok, ${execs:-?} execs in ${seconds} s (${rate:-?} exec/s), corpus ${corpus:-?} (inputs/size), coverage ${coverage:-?} edges"
  else
    failed=$((failed + 1))
    line="fuzz $target: FAILED (exit $status) after ${execs:-?} execs; log $log"
    echo "---- $target: what failed"
    { grep -E -A3 'panicked at|ERROR: libFuzzer|^SUMMARY|^error' "$log" || true; } | head -n 40
    artifact="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n1)"
    if [ -n "$artifact" ] && [ -f "$artifact" ]; then
      echo "---- $target: crashing input $artifact ($(wc -c <"$artifact") bytes), base64:"
      head -c 65536 "$artifact" | base64
      echo "---- reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none $target $artifact"
    fi
  fi
  echo "$line"
  summaries+=("$line")
done

echo "==> fuzzing summary"
printf '%s\n' "${summaries[@]}"
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
