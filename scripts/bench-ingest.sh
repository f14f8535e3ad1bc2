#!/usr/bin/env bash
# Runs the ingest benchmark (host/benches/ingest.rs): Sluice against a real InfluxDB 1.6.7.
# Installs the Debian package `influxdb` (it provides `influxd`) when missing, builds the
# example plugins (the bench runs a `drop-filter` stage), then the bench. Idempotent; safe
# to run from any directory. The bench starts and stops its own influxd on 127.0.0.1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! command -v influxd >/dev/null 2>&1; then
  echo "bench-ingest: installing InfluxDB (Debian package influxdb)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends influxdb
fi
scripts/build-plugins.sh
cargo bench --bench ingest
