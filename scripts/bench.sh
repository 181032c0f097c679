#!/usr/bin/env bash
# The benchmark suite of issue 9, in one command. Starts a throwaway PostgreSQL (with
# pgvector), runs every bench binary, writes target/bench/<area>.json and
# target/bench/summary.json, and regenerates the summary table at the top of BENCHMARKS.md.
#
#   scripts/bench.sh                 # the whole suite, release build (~9 min of benches on
#                                    # 2 cores, plus the build)
#   scripts/bench.sh swap fleet      # just these areas (BENCHMARKS.md untouched)
#   scripts/bench.sh --smoke         # every area with tiny sizes, debug build, then a sanity
#                                    # check of the JSON (no timing asserts); for CI, seconds
#
# Areas: sandbox resolve pools vectors plugins scale fleet swap startup runaway.
# With TENANTRY_TEST_PG_ADMIN_URL already exported (scripts/test.sh), that PostgreSQL is used.
set -euo pipefail
cd "$(dirname "$0")/.."
all=(sandbox resolve pools vectors plugins scale fleet swap startup runaway)
smoke=${TENANTRY_BENCH_SMOKE:-}
areas=()
for arg in "$@"; do
  case $arg in
    --smoke) smoke=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) areas+=("$arg") ;;
  esac
done
full=0; [ ${#areas[@]} -gt 0 ] || { areas=("${all[@]}"); full=1; }

if [ -n "$smoke" ] && [ "$smoke" != 0 ]; then
  export TENANTRY_BENCH_SMOKE=1
  profile=()        # debug: CI has built the dependencies already; sizes are tiny
else
  unset TENANTRY_BENCH_SMOKE
  profile=(--release)
fi
started=$(date +%s); load_start=$(cut -d' ' -f1-3 /proc/loadavg)
if [ -n "${TENANTRY_BENCH_SMOKE:-}" ]; then out=target/bench-smoke; rm -rf "$out"; else out=target/bench; fi
mkdir -p "$out"

pgdir= bindir=
cleanup() { if [ -n "$pgdir" ]; then scripts/postgres.sh stop "$pgdir"; fi; rm -rf "$bindir"; }
trap cleanup EXIT

for p in pattern directory tiered-policy test-hostile; do
  [ -f "${TENANTRY_PLUGIN_BUILD_DIR:-target/plugins}/$p.wasm" ] || { scripts/build-plugins.sh >/dev/null; break; }
done
if [ -z "${TENANTRY_TEST_PG_ADMIN_URL:-}" ]; then
  pgdir=$(mktemp -d /tmp/tenantry-bench-pg.XXXXXX)
  eval "$(scripts/postgres.sh start "$pgdir")"
fi

# Build once, then run private copies of the binaries: `cargo run` per area would wait for
# the target dir's lock whenever another build holds it, and a shared target dir's
# `target/<profile>/<bin>` can be overwritten by a same-named binary built elsewhere.
# Hard links (same filesystem, inside target/): a copy of every debug binary would cost GBs.
mkdir -p target
bindir=$(mktemp -d "$PWD/target/bench-bin.XXXXXX")
cargo build "${profile[@]}" -p tenantry-bench --bins --message-format=json-render-diagnostics \
  | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | while read -r exe; do cp -l "$exe" "$bindir/" 2>/dev/null || cp "$exe" "$bindir/"; done
built=$(date +%s)
for area in "${areas[@]}"; do
  echo "==> $area (load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  args=()
  if [ "$area" = plugins ] && [ -n "${TENANTRY_BENCH_SMOKE:-}" ]; then
    args=(--langs rust,c --compiles 1 --call-budget-ms 50)
  fi
  [ -x "$bindir/$area" ] || { echo "unknown area: $area (areas: ${all[*]})" >&2; exit 2; }
  "$bindir/$area" "${args[@]}"
  echo
done

# When and under what load the whole run happened (the summary reports it).
[ $full = 1 ] || [ -n "${TENANTRY_BENCH_SMOKE:-}" ] && printf '{"started": %s, "built": %s, "finished": %s, "load_average_at_start": "%s", "load_average_at_end": "%s", "areas": "%s"}\n' \
  "$started" "$built" "$(date +%s)" "$load_start" "$(cut -d' ' -f1-3 /proc/loadavg)" "${areas[*]}" > "$out/run.json"
if [ -n "${TENANTRY_BENCH_SMOKE:-}" ]; then
  "$bindir/summary" --check
elif [ $full = 1 ]; then
  "$bindir/summary"
fi
echo "suite took $(( $(date +%s) - started )) s ($(( built - started )) s building)" >&2
