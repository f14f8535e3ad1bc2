#!/usr/bin/env bash
# Runs the Prometheus benchmark (host/benches/prometheus.rs): Sluice against a real
# Prometheus 2.42 and a real VictoriaMetrics 1.79.5, remote-write ingest and a dashboard
# query_range, one run. Installs the Debian packages `prometheus` and `victoria-metrics`
# when missing, then runs the bench. Idempotent; safe to run from any directory. The bench
# starts and stops its own servers on 127.0.0.1 (Sluice with no plugins, so none are built).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-peers.sh prometheus victoria-metrics
cargo bench --bench prometheus
