#!/usr/bin/env bash
# R7: assert that no password from any test URL appears in what the whole suite produced.
#
#   scripts/check-secrets.sh <capture-dir>
#
# scripts/test.sh sets TENANTRY_TEST_CAPTURE_DIR for the test run: every test process writes
# all of Tenantry's trace output (and sqlx's statement log) there, the HTTP tests add every
# response body (errors, /metrics scrapes), the CLI tests every command's output and the
# admin server's debug log. The passwords searched for are the test PostgreSQL's (random per
# run, taken from TENANTRY_TEST_PG_*_URL) and the distinctive literals the tests put in URLs
# (short ones such as `pw` would match ordinary words, so the tests use these for redaction
# checks instead).
set -euo pipefail
dir=${1:?usage: scripts/check-secrets.sh <capture-dir>}
[ -d "$dir" ] || { echo "check-secrets: $dir does not exist: run the tests with TENANTRY_TEST_CAPTURE_DIR=$dir" >&2; exit 2; }

password_of() { python3 -c 'import sys, urllib.parse; print(urllib.parse.urlsplit(sys.argv[1]).password or "")' "$1"; }
secrets=(hunter2 s3cret)
for var in TENANTRY_TEST_PG_ADMIN_URL TENANTRY_TEST_PG_APP_URL; do
  [ -n "${!var:-}" ] || { echo "check-secrets: $var is not set (scripts/test.sh exports it)" >&2; exit 2; }
  secrets+=("$(password_of "${!var}")")
done

files=$(find "$dir" -type f | wc -l)
lines=$(find "$dir" -type f -exec cat {} + | wc -l)
# A capture that saw nothing proves nothing: require real volume from several processes.
if [ "$files" -lt 10 ] || [ "$lines" -lt 2000 ]; then
  echo "check-secrets: only $files files / $lines lines captured in $dir: the capture is not working" >&2
  exit 1
fi
found=0
for s in "${secrets[@]}"; do
  [ -n "$s" ] || continue
  if grep -rlF -- "$s" "$dir" >/dev/null; then
    echo "check-secrets: a test password (${s:0:3}…) appears in:" >&2
    grep -rnF -- "$s" "$dir" | head -5 | sed "s/$s/<PASSWORD>/g" >&2
    found=1
  fi
done
[ "$found" = 0 ] || exit 1
echo "check-secrets: ${#secrets[@]} passwords searched in $lines lines from $files capture files: none found"
