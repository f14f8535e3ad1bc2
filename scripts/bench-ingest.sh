#!/usr/bin/env bash
# Runs the ingest benchmark (host/benches/ingest.rs): Sluice against a real InfluxDB 1.6.7 and
# a real VictoriaMetrics 1.79.5, line protocol, one run. Installs the Debian packages
# `influxdb` (it provides `influxd`) and `victoria-metrics` when missing, builds the example
# plugins (the bench runs a `drop-filter` stage), then the bench. Idempotent; safe to run
# from any directory. The bench starts and stops its own servers on 127.0.0.1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-peers.sh influxdb victoria-metrics
scripts/build-plugins.sh
cargo bench --bench ingest
