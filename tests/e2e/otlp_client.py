"""Exports metrics to Sluice's /v1/metrics with the official OpenTelemetry Python SDK and
its OTLP/HTTP (protobuf) exporter, then reads them back through Sluice's query API.

Run by the host's end-to-end tests against a running service:
    python3 tests/e2e/otlp_client.py URL TOKEN
Exits non-zero, with the reason, if anything differs.
"""

import sys
import time

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from sluice_api import query


def values(url, token, measurement, tag):
    """The values of the one series of `measurement` with tag `tag` (k:v), once written."""
    now = time.time_ns()
    for _ in range(200):
        answer = query(url, token, measurement=measurement, field="value", start=now - 600_000_000_000,
                       end=now + 60_000_000_000, tag=tag)
        if answer["series"]:
            if len(answer["series"]) != 1:
                sys.exit(f"{measurement} {tag}: {len(answer['series'])} series, expected 1: {answer}")
            return answer["series"][0]["tags"], [v for _, v in answer["series"][0]["points"]]
        time.sleep(0.05)
    sys.exit(f"{measurement} {tag}: nothing stored")


def main():
    url, token = sys.argv[1], sys.argv[2]
    exporter = OTLPMetricExporter(endpoint=f"{url}/v1/metrics", headers={"Authorization": f"Bearer {token}"})
    # Exports only when flushed: one export, checked below.
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(resource=Resource.create({"service.name": "e2e-api"}), metric_readers=[reader])
    meter = provider.get_meter("e2e.meter", "0.1")
    requests = meter.create_counter("http.requests")
    requests.add(3, {"route": "/a"})
    requests.add(4, {"route": "/a"})
    latency = meter.create_histogram("latency", explicit_bucket_boundaries_advisory=[0.1, 1.0])
    latency.record(0.05, {"route": "/a"})
    latency.record(0.5, {"route": "/a"})
    if not provider.force_flush(10_000):
        sys.exit("the OTLP exporter could not export to Sluice")
    provider.shutdown()

    tags, got = values(url, token, "http_requests", "route:/a")
    # Each export (the flush, then shutdown's) repeats the cumulative total.
    if set(got) != {7.0}:
        sys.exit(f"http_requests: {got}, expected 7.0 in each export (a cumulative sum)")
    for key, want in [("service_name", "e2e-api"), ("otel_scope_name", "e2e.meter"), ("otel_scope_version", "0.1")]:
        if tags.get(key) != want:
            sys.exit(f"http_requests tags {tags}: {key} should be {want}")
    for le, want in [("0.1", 1.0), ("1", 2.0), ("+Inf", 2.0)]:
        _, got = values(url, token, "latency_bucket", f"le:{le}")
        if set(got) != {want}:
            sys.exit(f"latency_bucket le={le}: {got}, expected {want}")
    _, count = values(url, token, "latency_count", "route:/a")
    _, total = values(url, token, "latency_sum", "route:/a")
    if set(count) != {2.0} or any(abs(t - 0.55) > 1e-9 for t in total):
        sys.exit(f"latency count {count} sum {total}, expected 2 and 0.55")
    print("ok: OTLP counter and histogram read back")


if __name__ == "__main__":
    main()
