#!/usr/bin/env bash
# Builds every plugin under plugins/ to a wasm32-wasip2 component and copies it to
# target/plugins/NAME.wasm. Idempotent; safe to run from any directory.
#
# Route: with the rustup target wasm32-wasip2 installed, a plain cargo build. Without it
# (machines where rustup can't reach its server), Debian's rustc-web with its std sources
# builds std for the target itself (see shared/notes/wasm-toolchain.md); the packages are
# installed here when missing.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
plugins="$repo/plugins"
out="$repo/target/plugins"
target_dir="$plugins/target"
mkdir -p "$out"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

cargo_args=(build --release --target wasm32-wasip2 --target-dir "$target_dir")
if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "build-plugins: using the rustup target wasm32-wasip2"
  (cd "$plugins" && cargo "${cargo_args[@]}")
else
  echo "build-plugins: no rustup target wasm32-wasip2; using Debian's rustc-web with build-std"
  # rust-lld (from rust-web-llvm) links into lld-22: -x fails when either is missing.
  if [ ! -x /usr/bin/rustc ] || [ ! -d /usr/lib/rustlib/src/rust ] || [ ! -d /usr/lib/wasm32-wasi ] \
     || [ ! -x /usr/lib/rustlib/x86_64-unknown-linux-gnu/bin/wasm-component-ld ] \
     || [ ! -x /usr/bin/rust-lld ]; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      rustc-web cargo-web rust-web-src rust-web-llvm lld-22 wasi-libc
  fi
  (cd "$plugins" && RUSTC_BOOTSTRAP=1 cargo "${cargo_args[@]}" \
    --config 'build.rustc="/usr/bin/rustc"' \
    --config 'target.wasm32-wasip2.rustflags=["-Clink-self-contained=no","-Lnative=/usr/lib/wasm32-wasi"]' \
    -Zbuild-std=std,panic_abort)
fi

# Crate names use dashes, cdylib outputs underscores.
for manifest in "$plugins"/*/Cargo.toml; do
  crate=$(basename "$(dirname "$manifest")")
  built="$target_dir/wasm32-wasip2/release/${crate//-/_}.wasm"
  if [ ! -f "$built" ]; then
    echo "build-plugins: $built was not built (is $crate a cdylib member of plugins/Cargo.toml?)" >&2
    exit 1
  fi
  header=$(head -c 8 "$built" | od -An -tx1 | tr -d ' \n')
  if [ "$header" != "0061736d0d000100" ]; then
    echo "build-plugins: $built is not a component (header $header)" >&2
    exit 1
  fi
  # Replace by rename, and only when changed: a service watching target/plugins never reads
  # a half-copied file and doesn't reload an unchanged plugin.
  if ! cmp -s "$built" "$out/$crate.wasm"; then
    cp "$built" "$out/.$crate.wasm.tmp"
    mv "$out/.$crate.wasm.tmp" "$out/$crate.wasm"
  fi
  printf 'build-plugins: %-16s %7d bytes  target/plugins/%s.wasm\n' "$crate" "$(stat -c %s "$built")" "$crate"
done
