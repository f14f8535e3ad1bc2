"""Writes through Sluice's /api/v2/write with the official InfluxDB v2 Python client
(influxdb-client), then reads the points back through Sluice's query API.

Run by the host's end-to-end tests against a running service:
    python3 tests/e2e/influx_client.py URL TOKEN
Exits non-zero, with the reason, if anything differs.
"""

import sys
import time

from influxdb_client import InfluxDBClient, Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS

from sluice_api import query


def main():
    url, token = sys.argv[1], sys.argv[2]
    base = time.time_ns() - 60_000_000_000
    with InfluxDBClient(url=url, token=token, org="any-org") as client:
        write = client.write_api(write_options=SYNCHRONOUS)
        # Point objects, nanosecond precision.
        points = [
            Point("weather").tag("station", "north").field("temp_c", 10.0 + i).time(base + i * 1_000_000_000, WritePrecision.NS)
            for i in range(10)
        ]
        write.write(bucket="sensors", record=points)
        # Raw line protocol, second precision.
        write.write(
            bucket="sensors",
            record=f"weather,station=south temp_c=-3.5 {base // 1_000_000_000}",
            write_precision=WritePrecision.S,
        )

    deadline = time.time() + 10
    while True:
        answer = query(url, token, measurement="weather", field="temp_c", start=base - 10**9, end=base + 20 * 10**9)
        series = {s["tags"]["station"]: s["points"] for s in answer["series"]}
        if len(series.get("north", [])) == 10 and len(series.get("south", [])) == 1 or time.time() > deadline:
            break
        time.sleep(0.05)

    north = series.get("north", [])
    expected = [[base + i * 1_000_000_000, 10.0 + i] for i in range(10)]
    if north != expected:
        sys.exit(f"north: expected {expected}, got {north}")
    south = series.get("south", [])
    if south != [[(base // 1_000_000_000) * 1_000_000_000, -3.5]]:
        sys.exit(f"south: got {south}")
    agg = query(url, token, measurement="weather", field="temp_c", start=base, end=base + 10 * 10**9,
                tag="station:north", agg="max", step="10s")
    values = [p[1] for p in agg["series"][0]["points"]]
    if max(values) != 19.0:
        sys.exit(f"max over the range: got {values}")
    print("influxdb-client round trip ok")


if __name__ == "__main__":
    main()
