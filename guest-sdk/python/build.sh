#!/usr/bin/env bash
# Builds a Python Sluice plugin into a WebAssembly component with componentize-py.
#
#   build.sh --wit WIT_DIR --world WORLD --src SRC_DIR --out OUT.wasm
#
# WIT_DIR holds plugin.wit (package sluice:plugin@0.2.0); WORLD is filter, transform or
# alert; SRC_DIR holds app.py (the module that defines `WitWorld`, usually
# `WitWorld = sluice_sdk.export(MyPlugin)`) and any modules it imports. The SDK (the
# sluice_sdk package beside this script) is put on the path. Installs componentize-py
# (pinned below) with `python3 -m pip install` when it is missing or another version.
# Works from any directory; idempotent.
set -euo pipefail

COMPONENTIZE_PY_VERSION=0.25.1
sdk=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() { echo "build.sh: $*" >&2; exit 1; }
usage() { sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

wit= world= src= out=
while [ $# -gt 0 ]; do
  case "$1" in
    --wit) wit=${2-}; shift 2 || die "--wit needs a directory" ;;
    --world) world=${2-}; shift 2 || die "--world needs a name" ;;
    --src) src=${2-}; shift 2 || die "--src needs a directory" ;;
    --out) out=${2-}; shift 2 || die "--out needs a file name" ;;
    --wit=*) wit=${1#*=}; shift ;;
    --world=*) world=${1#*=}; shift ;;
    --src=*) src=${1#*=}; shift ;;
    --out=*) out=${1#*=}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[ -n "$wit" ] && [ -n "$world" ] && [ -n "$src" ] && [ -n "$out" ] \
  || { usage >&2; die "--wit, --world, --src and --out are all required"; }
[ -d "$wit" ] || die "WIT directory $wit does not exist"
ls "$wit"/*.wit >/dev/null 2>&1 || die "WIT directory $wit holds no .wit file"
case "$world" in
  filter|transform|alert) ;;
  *) die "world must be filter, transform or alert, not '$world'" ;;
esac
[ -d "$src" ] || die "source directory $src does not exist"
[ -f "$src/app.py" ] || die "$src/app.py does not exist (the plugin's module, defining WitWorld)"
[ -f "$sdk/sluice_sdk/__init__.py" ] || die "the SDK is missing: no $sdk/sluice_sdk/__init__.py"
command -v python3 >/dev/null 2>&1 || die "python3 is not installed (Python 3.10 or later is needed)"

# Absolute paths: componentize-py runs from a scratch directory below.
wit=$(cd "$wit" && pwd)
src=$(cd "$src" && pwd)
mkdir -p "$(dirname "$out")" || die "cannot create the directory of $out"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"

installed_version() {
  # componentize-py prints `componentize-py X.Y.Z`.
  if command -v componentize-py >/dev/null 2>&1; then
    componentize-py --version 2>/dev/null | awk '{print $2}'
  fi
}

if [ "$(installed_version)" != "$COMPONENTIZE_PY_VERSION" ]; then
  echo "build.sh: installing componentize-py==$COMPONENTIZE_PY_VERSION (python3 -m pip install)" >&2
  python3 -m pip install --quiet "componentize-py==$COMPONENTIZE_PY_VERSION" \
    || python3 -m pip install --quiet --user "componentize-py==$COMPONENTIZE_PY_VERSION" \
    || die "could not install componentize-py==$COMPONENTIZE_PY_VERSION with pip"
  # A --user install puts the script in the user base's bin, maybe not on PATH.
  PATH="$PATH:$(python3 -m site --user-base 2>/dev/null)/bin"
  hash -r
  [ "$(installed_version)" = "$COMPONENTIZE_PY_VERSION" ] \
    || die "componentize-py $COMPONENTIZE_PY_VERSION installed but another one ($(installed_version)) comes first on PATH"
fi

# componentize-py writes its scratch files into the working directory: use a private one,
# and write the component beside its destination first, so `out` is replaced by a rename.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
tmp_out="$(dirname "$out")/.$(basename "$out").tmp"
echo "build.sh: building $src/app.py for world $world -> $out" >&2
if ! (cd "$scratch" && componentize-py -d "$wit" -w "$world" componentize app \
        -p "$src" -p "$sdk" -o "$tmp_out" > "$scratch/log" 2>&1); then
  cat "$scratch/log" >&2
  rm -f "$tmp_out"
  die "componentize-py failed (above); app.py must import cleanly and define WitWorld"
fi
mv "$tmp_out" "$out"
echo "build.sh: built $out ($(stat -c %s "$out" 2>/dev/null || wc -c < "$out") bytes)" >&2
