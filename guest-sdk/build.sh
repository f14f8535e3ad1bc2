#!/usr/bin/env bash
# Builds a Rust plugin crate (or a workspace of them) to wasm32-wasip2 components.
#
#   build.sh [--dir CRATE_DIR] [--target-dir DIR]
#
# Output: TARGET_DIR/wasm32-wasip2/release/CRATE.wasm (cargo writes the crate's dashes as
# underscores), already a component. With the rustup target wasm32-wasip2 installed this is a
# plain cargo build. Without it (rustup can't download it, or isn't there), Debian's rustc-web
# with its library sources builds std for the target itself; its packages are installed here
# when missing (apt, as root or with sudo).
set -euo pipefail

dir=.
target_dir=
while [ $# -gt 0 ]; do
  case $1 in
    --dir) dir=$2; shift 2 ;;
    --target-dir) target_dir=$2; shift 2 ;;
    *) echo "build.sh: unknown argument $1 (expected --dir, --target-dir)" >&2; exit 2 ;;
  esac
done
[ -f "$dir/Cargo.toml" ] || { echo "build.sh: no Cargo.toml in $dir" >&2; exit 2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

args=(build --release --target wasm32-wasip2)
[ -z "$target_dir" ] || args+=(--target-dir "$target_dir")
if command -v rustup >/dev/null 2>&1 && rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "build.sh: using the rustup target wasm32-wasip2"
  (cd "$dir" && cargo "${args[@]}")
else
  echo "build.sh: no rustup target wasm32-wasip2; using Debian's rustc-web with build-std"
  # rust-lld (from rust-web-llvm) links into lld-22: -x fails when either is missing.
  if [ ! -x /usr/bin/rustc ] || [ ! -d /usr/lib/rustlib/src/rust ] || [ ! -d /usr/lib/wasm32-wasi ] \
     || [ ! -x /usr/lib/rustlib/x86_64-unknown-linux-gnu/bin/wasm-component-ld ] \
     || [ ! -x /usr/bin/rust-lld ]; then
    command -v apt-get >/dev/null 2>&1 || {
      echo "build.sh: install the target with 'rustup target add wasm32-wasip2' (no apt-get here for the fallback)" >&2
      exit 1
    }
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      rustc-web cargo-web rust-web-src rust-web-llvm lld-22 wasi-libc
  fi
  (cd "$dir" && RUSTC_BOOTSTRAP=1 cargo "${args[@]}" \
    --config 'build.rustc="/usr/bin/rustc"' \
    --config 'target.wasm32-wasip2.rustflags=["-Clink-self-contained=no","-Lnative=/usr/lib/wasm32-wasi"]' \
    -Zbuild-std=std,panic_abort)
fi
