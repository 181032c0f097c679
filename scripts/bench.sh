#!/usr/bin/env bash
# Run the benchmarks in release mode: starts a throwaway PostgreSQL (for `pools`), builds the
# plugins, and runs each bench binary; results go to target/bench/*.json and stdout (markdown).
#
#   scripts/bench.sh                 # all: sandbox resolve pools
#   scripts/bench.sh pools           # just these
set -euo pipefail
cd "$(dirname "$0")/.."
areas=("$@"); [ $# -gt 0 ] || areas=(sandbox resolve pools)
scripts/build-plugins.sh >/dev/null
pgdir=$(mktemp -d /tmp/tenantry-bench-pg.XXXXXX)
trap 'scripts/postgres.sh stop "$pgdir"' EXIT
eval "$(scripts/postgres.sh start "$pgdir")"
for area in "${areas[@]}"; do
  cargo run --quiet --release -p tenantry-bench --bin "$area"
  echo
done
