#!/usr/bin/env bash
# R5: the property-based fuzz targets — id parsing (id.rs), config parsing (config.rs),
# plugin-answer validation (plugin/answer.rs) and URL redaction (redact.rs) — run for a
# wall-clock budget, each round with fresh random seeds. CI runs them once with proptest's
# default 256 cases as part of `cargo test`; this is the long local run.
#
#   scripts/fuzz.sh            # 10 minutes
#   scripts/fuzz.sh 60         # an hour
#
# A failure is shrunk by proptest and saved under host/proptest-regressions/: commit that
# file, and the case is replayed first by every later `cargo test` (a regression test).
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-10}
cases=${FUZZ_CASES_PER_ROUND:-100000}
bin=$(cargo test --release -p tenantry --lib --no-run --message-format=json 2>/dev/null \
  | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["lib"]:
        print(m["executable"])')
[ -x "$bin" ] || { echo "fuzz: could not build the tenantry lib tests" >&2; exit 2; }
properties=$("$bin" --list 2>/dev/null | grep -c '::properties::.*: test$')
echo "fuzz: $properties properties, $cases cases each per round, for $minutes min ($bin)"
start=$SECONDS; end=$((SECONDS + minutes * 60)); rounds=0
while [ $SECONDS -lt $end ]; do
  # --test-threads 2: this machine's cores; proptest seeds each run from the OS.
  if ! PROPTEST_CASES=$cases "$bin" --quiet --test-threads 2 ::properties:: > /tmp/tenantry-fuzz-round.log 2>&1; then
    cat /tmp/tenantry-fuzz-round.log >&2
    echo "fuzz: FAILED in round $((rounds + 1)); the minimal case is in host/proptest-regressions/" >&2
    exit 1
  fi
  rounds=$((rounds + 1))
  echo "  round $rounds done at $((SECONDS - start)) s"
done
total=$((rounds * cases * properties))
echo "fuzz: $rounds rounds, $total cases over $properties properties in $((SECONDS - start)) s, failures: 0 ($(date -u +%F), $(nproc) cores)"
