#!/usr/bin/env bash
# `make test`: every test, then a summary of what ran and what was skipped, and why.
#
# The tests that need more than the README asks a machine to have are `#[ignore]`d, so that
# plain `cargo test` lists them as ignored (with the reason) instead of passing them untried:
#   * tests/docker.rs — a Docker daemon;
#   * tests/supervisor.rs, rgate as PID 1 — a PID namespace (root or CAP_SYS_ADMIN).
# This script runs them when the machine has what they need, and always when CI requires it
# (RGATE_REQUIRE_DOCKER=1, RGATE_REQUIRE_PID_NAMESPACE=1, set by .ci/run): then a missing
# daemon or namespace fails them. The browser tests (tests/dashboard.rs, headless `chromium`)
# are not ignored: without chromium they pass untried, saying "*** SKIPPED <test>", and are
# listed here as skipped; with RGATE_REQUIRE_CHROMIUM=1 (CI) they fail instead.
# Exit status: 0 when every pass passed.
#
#   scripts/test.sh                 # what `make test` runs
#   RGATE_TEST_PROFILE=dev scripts/test.sh --test cli --test stats   # a quick debug subset
set -uo pipefail
cd "$(dirname "$0")/.."

CARGO=${CARGO:-cargo}
PROFILE_FLAGS=(--release)
[ "${RGATE_TEST_PROFILE:-release}" = dev ] && PROFILE_FLAGS=()
THREADS=(--test-threads=2)
# Each probe is bounded: a hung daemon socket must not hang `make test`.
PROBE_SECONDS=20

log=$(mktemp -t rgate-test.XXXXXX)
trap 'rm -f "$log"' EXIT
failed=()
skipped=()
extra_ran=()

# One cargo test pass; its output goes to the terminal and to $log for the summary.
pass() {
  local name=$1
  shift
  echo "==> make test: $name"
  [ "$name" = "all tests" ] || extra_ran+=("$name")
  if ! "$CARGO" test "${PROFILE_FLAGS[@]}" "$@" 2>&1 | tee -a "$log"; then
    failed+=("$name")
  fi
}

# 1. Everything that needs nothing beyond the README (the ignored tests are listed, not run).
pass "all tests" "$@" -- "${THREADS[@]}"
if ! command -v chromium >/dev/null 2>&1 && [ "${RGATE_REQUIRE_CHROMIUM:-}" != 1 ]; then
  skipped+=("browser tests (tests/dashboard.rs): no chromium command; apt-get install chromium, or set RGATE_REQUIRE_CHROMIUM=1 to fail instead")
fi

# 2. Docker tests.
if docker_why=$(timeout "$PROBE_SECONDS" docker info --format '{{.ServerVersion}}' 2>&1); then
  pass "Docker tests (Docker $docker_why)" --test docker -- --ignored "${THREADS[@]}"
elif [ "${RGATE_REQUIRE_DOCKER:-}" = 1 ]; then
  echo "make test: Docker does not answer, and RGATE_REQUIRE_DOCKER=1: running the Docker tests to fail"
  pass "Docker tests (required)" --test docker -- --ignored "${THREADS[@]}"
else
  docker_why=$(echo "$docker_why" | tr '\n' ' ' | sed 's/^ *//; s/ *$//' | cut -c1-160)
  skipped+=("Docker tests (tests/docker.rs): Docker does not answer (${docker_why:-no docker command}); start it, or set RGATE_REQUIRE_DOCKER=1 to fail instead")
fi

# 3. rgate as PID 1 of its own PID namespace.
if ns_why=$(timeout "$PROBE_SECONDS" unshare --pid --fork --mount-proc true 2>&1); then
  pass "PID 1 test" --test supervisor -- --ignored "${THREADS[@]}"
elif [ "${RGATE_REQUIRE_PID_NAMESPACE:-}" = 1 ]; then
  echo "make test: no PID namespace here, and RGATE_REQUIRE_PID_NAMESPACE=1: running the PID 1 test to fail"
  pass "PID 1 test (required)" --test supervisor -- --ignored "${THREADS[@]}"
else
  ns_why=$(echo "$ns_why" | tr '\n' ' ' | sed 's/^ *//; s/ *$//' | cut -c1-160)
  skipped+=("PID 1 test (tests/supervisor.rs): cannot create a PID namespace (${ns_why:-unshare failed}); run as root, or set RGATE_REQUIRE_PID_NAMESPACE=1 to fail instead")
fi

# 4. Fuzzing: the corpus through the differential checks (plain stable `cargo test` in fuzz/),
#    then both fuzz targets for a bounded time (cargo-fuzz; its long output goes to a file,
#    of which the run counts are shown, or the end when it fails).
saved_profile=("${PROFILE_FLAGS[@]}")
PROFILE_FLAGS=() # a debug build: the replay is fast, and an optimised build of it would cost minutes
pass "fuzz corpus replay (fuzz/)" --manifest-path fuzz/Cargo.toml --target-dir fuzz/target
PROFILE_FLAGS=("${saved_profile[@]}")
if "$CARGO" fuzz --version >/dev/null 2>&1; then
  echo "==> make test: fuzz smoke"
  fuzz_log=$(mktemp -t rgate-fuzz.XXXXXX)
  if make -s fuzz-smoke CARGO="$CARGO" >"$fuzz_log" 2>&1; then
    extra_ran+=("fuzz smoke: $(grep -cE '^Done [0-9]+ runs' "$fuzz_log") targets, $(grep -oE '^Done [0-9]+ runs in [0-9]+ second' "$fuzz_log" | tr '\n' ';')")
  else
    tail -n 60 "$fuzz_log"
    failed+=("fuzz smoke")
  fi
  rm -f "$fuzz_log"
elif [ -n "${CI:-}" ]; then
  echo "make test: cargo-fuzz is not installed, and CI is set: the fuzz smoke run fails"
  failed+=("fuzz smoke (cargo-fuzz missing)")
else
  skipped+=("fuzz smoke (make fuzz-smoke): cargo-fuzz is not installed; cargo install cargo-fuzz --locked")
fi

# ----- summary -----
# libtest ends each test binary with "test result: ok. P passed; F failed; I ignored; …".
# A test ignored in pass 1 and run in a later pass counts once as run, never as skipped.
read -r passed failed_n < <(awk '/^test result:/ {
    for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i }
  } END { print p + 0, f + 0 }' "$log")
echo
echo "==> make test: summary"
echo "ran:     $passed passed, $failed_n failed"
for r in "${extra_ran[@]}"; do
  echo "ran:     $r"
done
if [ ${#skipped[@]} -eq 0 ]; then
  echo "skipped: nothing"
else
  for s in "${skipped[@]}"; do
    echo "skipped: $s"
  done
  # The names, from libtest's own "ignored, <reason>" lines of pass 1.
  grep -E '^test .* \.\.\. ignored, ' "$log" | sort -u | while read -r line; do
    name=${line#test }
    name=${name%% ... *}
    case "$line" in
      *"needs Docker"*) [[ " ${skipped[*]} " == *"Docker tests"* ]] && echo "  - $name (needs Docker)" ;;
      *"PID namespace"*) [[ " ${skipped[*]} " == *"PID 1 test"* ]] && echo "  - $name (needs a PID namespace)" ;;
    esac
  done
  # The browser tests name themselves as they return untried (their stderr is in $log).
  grep -oE '\*\*\* SKIPPED [A-Za-z0-9_]+' "$log" | sort -u | while read -r _ _ name; do
    echo "  - $name (needs chromium)"
  done
fi
# An ignored test this script does not know how to run would never run: say so.
grep -E '^test .* \.\.\. ignored' "$log" | grep -v -e 'needs Docker' -e 'PID namespace' | sort -u |
  sed 's/^test \(.*\) \.\.\. ignored\(, \)\{0,1\}\(.*\)/never run by make test: \1 (\3)/'
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED:  ${failed[*]}"
  exit 1
fi
echo "ok"
