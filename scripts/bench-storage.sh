#!/usr/bin/env bash
# Runs the storage benchmark (host/benches/storage.rs): bytes per value, ingest rate and query
# latency of Sluice against a real InfluxDB 1.6.7 and a real VictoriaMetrics 1.79.5, the same
# line protocol, one run. Installs the Debian packages `influxdb` (it provides `influxd`) and
# `victoria-metrics` when missing, then the bench. Idempotent; safe to run from any
# directory. The bench starts and stops its own servers on 127.0.0.1, one at a time; once
# built, it runs for about 2 minutes in some 2 GB of memory and a few hundred MB of temp disk.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-peers.sh influxdb victoria-metrics
cargo bench --bench storage
