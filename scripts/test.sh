#!/usr/bin/env bash
# Runs every test: builds the example plugins (installing the wasm toolchain if needed),
# then the host's unit and integration tests, which run those plugins for real.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/build-plugins.sh
# librdkafka (the Kafka transport) builds from source against the system's OpenSSL and zlib.
if ! dpkg -s libssl-dev zlib1g-dev pkg-config make gcc >/dev/null 2>&1; then
  as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    libssl-dev zlib1g-dev pkg-config make gcc
fi
# The Kafka tests start their own tansu brokers (a Kafka-protocol broker): built once per
# machine into ~/.cache/sluice (about 20 min cold), then reused.
scripts/kafka-dev.sh install
scripts/install-peers.sh prometheus   # Prometheus 2.42 + promtool: the PromQL reference
# The end-to-end tests drive the service with the official InfluxDB Python client and the
# OpenTelemetry Python SDK's OTLP/HTTP exporter.
python3 -c 'import influxdb_client' 2>/dev/null || python3 -m pip install --quiet influxdb-client
python3 -c 'import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.http' 2>/dev/null ||
  python3 -m pip install --quiet opentelemetry-sdk opentelemetry-exporter-otlp-proto-http
cargo test --workspace
# The fuzz targets again, 30 s each (the run above gives them a second): decoders of
# untrusted bytes must never panic (host/fuzz/README.md).
SLUICE_FUZZ_SECS="${SLUICE_FUZZ_SECS:-30}" cargo test -p sluice --lib fuzz::
# The plugins' pure logic, natively (host imports are not called by these tests).
(cd plugins && cargo test --quiet)
# The guest SDKs' own logic (batch views, parameters, state encoding, logging), natively.
(cd guest-sdk && cargo test --quiet)
python3 -m unittest discover -s guest-sdk/python/tests -t guest-sdk/python
node --test guest-sdk/js/test/
