#!/usr/bin/env bash
# Builds every plugin under plugins/ to a component in target/plugins/NAME.wasm: the Rust
# crates of plugins/Cargo.toml, and the Python (plugins/NAME-py/) and JavaScript
# (plugins/NAME-js/) plugins, each with its `world` file naming its WIT world. Installs the
# toolchains it needs, skipping what is there. Idempotent; safe to run from any directory.
#
#   scripts/build-plugins.sh [rust] [python] [js]     (default: all three)
#
# Each language's build is its SDK's script, the one a project made by `sluice plugin new`
# uses too: guest-sdk/build.sh (the rustup target wasm32-wasip2, or without it Debian's
# rustc-web building std from source; see shared/notes/wasm-toolchain.md),
# guest-sdk/python/build.sh (componentize-py) and guest-sdk/js/build.sh (jco, QuickJS).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
plugins="$repo/plugins"
out="$repo/target/plugins"
target_dir="$plugins/target"
mkdir -p "$out"

langs=("$@")
[ ${#langs[@]} -gt 0 ] || langs=(rust python js)
wants() { [[ " ${langs[*]} " == *" $1 "* ]]; }

# Replace by rename, and only when changed: a service watching target/plugins never reads
# a half-copied file and doesn't reload an unchanged plugin.
publish() {
  local built=$1 name=$2
  local header
  header=$(head -c 8 "$built" | od -An -tx1 | tr -d ' \n')
  if [ "$header" != "0061736d0d000100" ]; then
    echo "build-plugins: $built is not a component (header $header)" >&2
    exit 1
  fi
  if ! cmp -s "$built" "$out/$name.wasm"; then
    cp "$built" "$out/.$name.wasm.tmp"
    mv "$out/.$name.wasm.tmp" "$out/$name.wasm"
  fi
  printf 'build-plugins: %-20s %9d bytes  target/plugins/%s.wasm\n' "$name" "$(stat -c %s "$built")" "$name"
}

build_rust() {
  "$repo/guest-sdk/build.sh" --dir "$plugins" --target-dir "$target_dir"
  # Crate names use dashes, cdylib outputs underscores.
  local manifest crate built
  for manifest in "$plugins"/*/Cargo.toml; do
    crate=$(basename "$(dirname "$manifest")")
    built="$target_dir/wasm32-wasip2/release/${crate//-/_}.wasm"
    if [ ! -f "$built" ]; then
      echo "build-plugins: $built was not built (is $crate a cdylib member of plugins/Cargo.toml?)" >&2
      exit 1
    fi
    publish "$built" "$crate"
  done
}

# Python and JavaScript plugins: plugins/NAME-py/app.py and plugins/NAME-js/app.js, each
# beside a `world` file.
build_guest() {
  local suffix=$1 sdk=$2 dir name
  for dir in "$plugins"/*-"$suffix"/; do
    [ -f "$dir/world" ] || continue
    name=$(basename "$dir")
    mkdir -p "$target_dir/$suffix"
    "$sdk/build.sh" --wit "$repo/wit" --world "$(tr -d ' \n' < "$dir/world")" \
      --src "$dir" --out "$target_dir/$suffix/$name.wasm"
    publish "$target_dir/$suffix/$name.wasm" "$name"
  done
}

if wants rust; then build_rust; fi
if wants python; then build_guest py "$repo/guest-sdk/python"; fi
if wants js; then build_guest js "$repo/guest-sdk/js"; fi
