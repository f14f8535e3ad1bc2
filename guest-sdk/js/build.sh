#!/usr/bin/env bash
# Builds a JavaScript Sluice plugin into a WebAssembly component with jco (QuickJS backend).
#
#   build.sh --wit WIT_DIR --world filter|transform|alert --src SRC_DIR --out OUT.wasm
#
# SRC_DIR/app.js is the plugin: an ES module that exports the world's function (`filter`,
# `transform` or `evaluate`), usually `export const filter = exportFilter(MyFilter);`. It
# imports the SDK by any path ending in `sluice-sdk.js` (`./sdk/sluice-sdk.js` in a project
# made by `sluice plugin new`, `../../guest-sdk/js/sluice-sdk.js` in the Sluice repository):
# the build stages SRC_DIR's JavaScript with the SDK beside this script and points those
# imports at it, then wires the host imports (`sluice:plugin/log`, `params`, `lookup`,
# `state`) into the SDK.
#
# jco is installed with npm when missing, pinned, into ${SLUICE_CACHE_DIR:-$HOME/.cache/sluice}/
# (kept between runs; delete it to reinstall). Needs Node >= 18 and npm. Runs from any cwd.
set -euo pipefail

JCO_VERSION=1.35.0
QJS_VERSION=0.4.5 # componentize-qjs, the QuickJS backend jco drives

die() { echo "build.sh: $*" >&2; exit 1; }
usage() { echo "usage: build.sh --wit WIT_DIR --world filter|transform|alert --src SRC_DIR --out OUT.wasm" >&2; exit 2; }

wit="" world="" src="" out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --wit) wit=${2:-}; shift 2 || usage ;;
    --world) world=${2:-}; shift 2 || usage ;;
    --src) src=${2:-}; shift 2 || usage ;;
    --out) out=${2:-}; shift 2 || usage ;;
    -h|--help) usage ;;
    *) echo "build.sh: unknown argument \`$1\`" >&2; usage ;;
  esac
done
[ -n "$wit" ] && [ -n "$world" ] && [ -n "$src" ] && [ -n "$out" ] || usage

sdk_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ -f "$sdk_dir/sluice-sdk.js" ] || die "no sluice-sdk.js beside this script in $sdk_dir"
[ -e "$wit" ] || die "WIT path $wit does not exist"
[ -d "$src" ] || die "source directory $src does not exist"
[ -f "$src/app.js" ] || die "no app.js in $src"
case "$world" in
  filter) export_name=filter ;;
  transform) export_name=transform ;;
  alert) export_name=evaluate ;;
  *) die "world must be filter, transform or alert, not \`$world\`" ;;
esac
wit=$(cd "$(dirname "$wit")" && pwd)/$(basename "$wit")
src=$(cd "$src" && pwd)
mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")

command -v node >/dev/null 2>&1 || die "node is not installed (Node >= 18 is needed)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 18 ] || die "Node $node_major is too old: Node >= 18 is needed"

# --- jco, installed once into the cache -------------------------------------------------
cache=${SLUICE_CACHE_DIR:-$HOME/.cache/sluice}
jco_dir="$cache/jco-$JCO_VERSION"
jco="$jco_dir/node_modules/.bin/jco"
if [ ! -x "$jco" ] || [ ! -d "$jco_dir/node_modules/componentize-qjs" ]; then
  command -v npm >/dev/null 2>&1 || die "npm is not installed: it is needed once, to install jco into $jco_dir"
  echo "build.sh: installing jco $JCO_VERSION (componentize-qjs $QJS_VERSION) into $jco_dir" >&2
  mkdir -p "$cache"
  staging=$(mktemp -d "$cache/.jco-install.XXXXXX")
  trap 'rm -rf "$staging"' EXIT
  printf '{ "private": true }\n' > "$staging/package.json"
  if ! (cd "$staging" && npm install --no-audit --no-fund --loglevel=error --save-exact \
        "@bytecodealliance/jco@$JCO_VERSION" "componentize-qjs@$QJS_VERSION" >&2); then
    die "npm install of jco $JCO_VERSION failed (is the npm registry reachable?)"
  fi
  # Another build may have installed it meanwhile: keep the first, drop ours.
  if [ -x "$jco" ]; then rm -rf "$staging"; else rm -rf "$jco_dir"; mv "$staging" "$jco_dir"; fi
  trap - EXIT
  [ -x "$jco" ] || die "jco is not at $jco after install"
fi

# --- stage the sources with the SDK -----------------------------------------------------
stage=$(mktemp -d "${TMPDIR:-/tmp}/sluice-js-build.XXXXXX")
trap 'rm -rf "$stage"' EXIT

SLUICE_SRC=$src SLUICE_SDK=$sdk_dir SLUICE_STAGE=$stage SLUICE_EXPORT=$export_name \
node --input-type=module - <<'NODE' || die "staging $src failed (see above)"
import { cpSync, readdirSync, readFileSync, writeFileSync, statSync, mkdirSync } from 'node:fs';
import { join, relative, dirname, sep } from 'node:path';
import { pathToFileURL } from 'node:url';

const { SLUICE_SRC: src, SLUICE_SDK: sdk, SLUICE_STAGE: stage, SLUICE_EXPORT: exportName } = process.env;
const skip = new Set(['node_modules', 'dist', 'sdk', 'wit', 'test', 'tests', '.git']);
const app = join(stage, 'app');
const sdkFile = join(stage, 'sluice-sdk.js');
cpSync(join(sdk, 'sluice-sdk.js'), sdkFile);
writeFileSync(join(stage, 'package.json'), '{ "type": "module" }\n');

// JavaScript modules of the plugin, without its tests (*.test.js) and the SDK copy.
const files = [];
(function walk(dir, rel) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    const st = statSync(p);
    if (st.isDirectory()) {
      if (!skip.has(name) && !name.startsWith('.')) walk(p, join(rel, name));
    } else if (/\.(m?js|json)$/.test(name) && !/\.test\.m?js$/.test(name) && name !== 'sluice-sdk.js') {
      files.push(join(rel, name));
    }
  }
})(src, '');

// Every import of a path ending in sluice-sdk.js points at the staged SDK.
const specRe = /((?:\bfrom|\bimport)\s*\(?\s*)(['"])([^'"]*sluice-sdk\.js)\2/g;
for (const f of files) {
  const dest = join(app, f);
  mkdirSync(dirname(dest), { recursive: true });
  let text = readFileSync(join(src, f), 'utf8');
  if (/\.m?js$/.test(f)) {
    let rel = relative(dirname(dest), sdkFile).split(sep).join('/');
    if (!rel.startsWith('.')) rel = './' + rel;
    text = text.replace(specRe, (_, pre, q) => `${pre}${q}${rel}${q}`);
  }
  writeFileSync(dest, text);
}

writeFileSync(join(stage, 'wire.js'), `// Generated by build.sh: hands the host imports to the SDK.
import log from 'sluice:plugin/log@0.2.0';
import params from 'sluice:plugin/params@0.2.0';
import lookup from 'sluice:plugin/lookup@0.2.0';
import state from 'sluice:plugin/state@0.2.0';
globalThis[Symbol.for('sluice.plugin.host')] = { inComponent: true, log, params, lookup, state };
`);
writeFileSync(join(stage, 'entry.js'), `import './wire.js';
export { ${exportName} } from './app/app.js';
`);

// Load the app natively once: a syntax error or a missing export shows here, clearly.
let mod;
try {
  mod = await import(pathToFileURL(join(app, 'app.js')).href);
} catch (e) {
  console.error(`build.sh: app.js does not load under Node: ${e && e.stack || e}`);
  process.exit(1);
}
if (typeof mod[exportName] !== 'function') {
  const how = { filter: 'exportFilter(MyFilter)', transform: 'exportTransform(MyTransform)', evaluate: 'exportAlert(MyAlert)' }[exportName];
  console.error(`build.sh: app.js must export a function \`${exportName}\` for this world, e.g. \`export const ${exportName} = ${how};\``);
  process.exit(1);
}
NODE

# --- componentize -----------------------------------------------------------------------
tmp_out="$(dirname "$out")/.$(basename "$out").tmp"
log="$stage/jco.log"
if ! (cd "$stage" && "$jco" componentize "$stage/entry.js" --wit "$wit" --world-name "$world" \
      --backend qjs --backend-qjs-disable-async -o "$tmp_out") >"$log" 2>&1; then
  cat "$log" >&2
  rm -f "$tmp_out"
  die "jco componentize failed for $src/app.js (world $world)"
fi
mv "$tmp_out" "$out"
echo "build.sh: built $out ($(stat -c %s "$out") bytes, world $world)" >&2
