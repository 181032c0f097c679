#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs the guest toolchain, builds every
# guest plugin from source, starts a throwaway PostgreSQL on loopback, runs the lints and
# all tests against it, and stops it again. Re-running skips what is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==> %s\n' "$*"; }

step "guest toolchain"
scripts/install-guest-toolchain.sh rust c js python
step "guest plugins (built from source)"
scripts/build-plugins.sh

step "PostgreSQL"
pgdir=$(mktemp -d /tmp/tenantry-pg.XXXXXX)
trap 'scripts/postgres.sh stop "$pgdir"' EXIT
eval "$(scripts/postgres.sh start "$pgdir")"
echo "listening on 127.0.0.1:$TENANTRY_TEST_PG_PORT"

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo fmt --manifest-path resolvers/Cargo.toml --all -- --check
cargo clippy --manifest-path resolvers/Cargo.toml --workspace --all-targets --quiet -- -D warnings

step "tests"
# R7: every test process writes its logs, CLI output, HTTP bodies and metrics scrapes here;
# check-secrets.sh then asserts no test password appears anywhere in them.
export TENANTRY_TEST_CAPTURE_DIR=$PWD/target/test-capture
rm -rf "$TENANTRY_TEST_CAPTURE_DIR"
cargo test --manifest-path resolvers/Cargo.toml --workspace --quiet
cargo test --workspace

step "benchmark smoke run (tiny sizes, debug build; checks the JSON, not the speed)"
scripts/bench.sh --smoke

step "no secrets in anything the suite logged or printed"
scripts/check-secrets.sh "$TENANTRY_TEST_CAPTURE_DIR"

step "dashboard in headless Chromium"
scripts/install-browser-test-deps.sh
cargo build -p tenantry --bin tenantry --quiet   # already built by the tests: a no-op check
node --test tests/browser/dashboard.test.mjs
