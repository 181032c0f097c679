#!/usr/bin/env bash
# The quickstart, on a fresh machine: installs the guest toolchain, builds the bundled
# plugins from source, and runs examples/quickstart on the embedded SQLite default.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-guest-toolchain.sh rust >/dev/null
scripts/build-plugins.sh pattern >/dev/null
exec cargo run --quiet -p tenantry-examples --example quickstart
