"""Differential PromQL test: Sluice against a real Prometheus 2.42, on the same data.

Generates deterministic synthetic data under the metric names of the Prometheus demo service
(counters with resets, gauges, a classic histogram with `le` buckets, a series ended by
staleness markers, a gap without markers; three instances), 58 minutes at 15 s resolution up
to now, remote-writes the same samples to both (remote write 1.0: protobuf + snappy, encoded
here), waits until both hold all of them, then runs every query of promql/queries.txt on
both, as a range query (POST, step 60 s over the data) and as an instant query (GET, at a
time between samples), and compares the answers: result type, label sets, and every value
(relative tolerance 1e-6, NaN equals NaN, a step absent on both sides is equal). A query
marked `# should fail` must be refused by both. A few calls of the metadata API (labels,
label values, series) are compared too. Prints PASS/FAIL per check, the failures grouped
by cause, and `passed N of M (P%)`.

    python3 tests/e2e/promql_differential.py SLUICE_URL TOKEN PROMETHEUS_URL

SLUICE_URL is the service's base URL: samples go to SLUICE_URL/api/v1/write with
`Authorization: Bearer TOKEN`, queries to SLUICE_URL/prometheus/api/v1/... . PROMETHEUS_URL is
a Prometheus started with `--web.enable-remote-write-receiver` and no scrape targets.

Environment:
    PROMQL_MIN_PASS     the pass rate below which the exit status is 1 (default 0.90)
    PROMQL_REPORT       write a JSON report (every check, its verdict and reason) to this path
    PROMQL_QUERY_PATH   where the subject's Prometheus API lives under SLUICE_URL (default
                        /prometheus; set it to "" to test a second Prometheus instead, which
                        must then pass 100%: that checks this harness)
    PROMQL_WAIT_SECS    how long to wait for the written samples to be visible (default 120)

Standard library only: the snappy block format is written as literals (valid snappy that
any decoder reads; this data needs no compression).
"""

import json
import math
import os
import random
import re
import struct
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

QUERIES = Path(__file__).with_name("promql") / "queries.txt"
SCRAPE_SECS = 15
SPAN_SECS = 58 * 60  # Prometheus' head refuses samples older than its newest minus 1 h.
QUERY_STEP_SECS = 60
INSTANT_BEFORE_END_SECS = 1234.5  # the instant queries' time: off every sample's time
REL_TOLERANCE = 1e-6
# Prometheus' staleness marker: a NaN with this exact bit pattern ends a series.
STALE_NAN_BITS = 0x7FF0000000000002
STALE = None  # a sample value of None is written as the staleness marker
INSTANCES = ["demo.promlabs.com:10000", "demo.promlabs.com:10001", "demo.promlabs.com:10002"]
JOB = "demo"
# Per-instance shift of the counters' and histograms' sample times: real scrapes are not
# aligned to the query steps, the gauges are (so closed window ends are exercised too).
SCRAPE_SHIFT_MS = [0, 2500, -1234]
BUCKETS = ["0.0002", "0.001", "0.0025", "0.01", "0.05", "0.1", "0.25", "+Inf"]


# ---------------------------------------------------------------- synthetic data


def labels_of(name, **labels):
    """The label set of series `name` with `labels` and the demo job."""
    return {"__name__": name, "job": JOB, **labels}


def seeded(labels):
    """A random generator that depends only on the series (deterministic across runs)."""
    return random.Random("|".join(f"{k}={v}" for k, v in sorted(labels.items())))


def cpu_series(times, shift_ms):
    """demo_cpu_usage_seconds_total: counters per mode; instance 2 restarts (every counter
    resets) at sample 100, instance 0's `user` counter alone resets at sample 170."""
    out = []
    for k, inst in enumerate(INSTANCES):
        for mode, speed in [("idle", 3.2), ("system", 0.35), ("user", 0.9)]:
            labels = labels_of("demo_cpu_usage_seconds_total", instance=inst, mode=mode)
            rng = seeded(labels)
            total = rng.uniform(1000, 5000)
            samples = []
            for i, t in enumerate(times):
                if (k == 2 and i == 100) or (k == 0 and mode == "user" and i == 170):
                    total = rng.uniform(0, 3)
                total += speed * SCRAPE_SECS * rng.uniform(0.5, 1.5)
                samples.append((t + shift_ms[k], round(total, 3)))
            out.append((labels, samples))
    return out


def memory_series(times):
    """demo_memory_usage_bytes: integer gauges per type; instance 2's `cached` has a gap of
    36 samples (9 min, longer than the 5 min lookback) with no staleness marker."""
    out = []
    for k, inst in enumerate(INSTANCES):
        for j, kind in enumerate(["buffers", "cached", "free", "used"]):
            labels = labels_of("demo_memory_usage_bytes", instance=inst, type=kind)
            rng = seeded(labels)
            base = (k + 1) * (j + 1) * 1.5e8
            samples = []
            for i, t in enumerate(times):
                if k == 2 and kind == "cached" and 80 <= i < 116:
                    continue
                wave = math.sin(i / (10 + 3 * j)) * base * 0.2
                samples.append((t, float(round(base + wave + rng.uniform(-1e6, 1e6)))))
            out.append((labels, samples))
    return out


def small_gauges(times):
    """demo_num_cpus (constant), demo_disk_usage_bytes (growing, one instance shrinking
    after a cleanup) and demo_batch_last_success_timestamp_seconds (steps at batch runs)."""
    out = []
    for k, inst in enumerate(INSTANCES):
        cpus = [4, 8, 2][k]
        out.append((labels_of("demo_num_cpus", instance=inst), [(t, float(cpus)) for t in times]))
        labels = labels_of("demo_disk_usage_bytes", instance=inst)
        rng = seeded(labels)
        disk, disk_samples = 2e10 * (k + 1), []
        for i, t in enumerate(times):
            disk += (-4e6 if k == 1 and i > 120 else 2.5e6 * (k + 1)) * rng.uniform(0.2, 1.8)
            disk_samples.append((t, float(round(disk))))
        out.append((labels, disk_samples))
        labels = labels_of("demo_batch_last_success_timestamp_seconds", instance=inst)
        rng = seeded(labels)
        every = [20, 13, 31][k]  # samples between batch runs
        last, batch_samples = times[0] / 1000 - 600.25, []
        for i, t in enumerate(times):
            if i % every == every - 1:
                last = t / 1000 - rng.uniform(0.5, 9.5)
            batch_samples.append((t, round(last, 3)))
        out.append((labels, batch_samples))
    return out


def intermittent_series(times):
    """demo_intermittent_metric: present 20 samples, absent 20. Instances 0 and 1 end each
    presence with a staleness marker (as Prometheus does when a target drops a series);
    instance 2 just stops (lookback keeps it for 5 min)."""
    out = []
    for k, inst in enumerate(INSTANCES):
        labels = labels_of("demo_intermittent_metric", instance=inst)
        samples = []
        for i, t in enumerate(times):
            present = ((i + 7 * k) // 20) % 2 == 0
            if present:
                samples.append((t, float(i % 5 + k)))
            elif k < 2 and samples and samples[-1][1] is not STALE and ((i + 7 * k) % 20) == 0:
                samples.append((t, STALE))
        out.append((labels, samples))
    return out


def histogram_series(times, shift_ms):
    """demo_api_request_duration_seconds_{bucket,sum,count}: a classic histogram per
    (instance, method, path); instance 2's counters reset with its restart at sample 100."""
    out = []
    for k, inst in enumerate(INSTANCES):
        for method in ["GET", "POST"]:
            for path in ["/api/foo", "/api/bar"]:
                common = {"instance": inst, "method": method, "path": path, "status": "200"}
                rng = seeded(labels_of("demo_api_request_duration_seconds", **common))
                slow = 0.004 if method == "GET" else 0.03
                counts, total, rows = [0] * len(BUCKETS), 0.0, []
                for i, t in enumerate(times):
                    if k == 2 and i == 100:
                        counts, total = [0] * len(BUCKETS), 0.0
                    for _ in range(rng.randint(3, 40)):
                        latency = rng.expovariate(1 / slow)
                        total += latency
                        for b, le in enumerate(BUCKETS):
                            if latency <= float(le):
                                counts[b] += 1
                    rows.append((t + shift_ms[k], list(counts), round(total, 6)))
                for b, le in enumerate(BUCKETS):
                    labels = labels_of("demo_api_request_duration_seconds_bucket", le=le, **common)
                    out.append((labels, [(t, float(c[b])) for t, c, _ in rows]))
                out.append((labels_of("demo_api_request_duration_seconds_sum", **common),
                            [(t, s) for t, _, s in rows]))
                out.append((labels_of("demo_api_request_duration_seconds_count", **common),
                            [(t, float(c[-1])) for t, c, _ in rows]))
    return out


def generate(end_s):
    """Every series: (labels, [(timestamp ms, value or STALE)]) over SPAN_SECS up to `end_s`
    (a multiple of the query step, so steps fall on the gauges' samples)."""
    times = [(end_s - SPAN_SECS + i * SCRAPE_SECS) * 1000 for i in range(SPAN_SECS // SCRAPE_SECS + 1)]
    return (cpu_series(times, SCRAPE_SHIFT_MS) + memory_series(times) + small_gauges(times)
            + intermittent_series(times) + histogram_series(times, SCRAPE_SHIFT_MS))


# ---------------------------------------------------------------- remote write 1.0 encoding


def varint(n):
    """Protobuf base-128 varint of a non-negative integer."""
    assert n >= 0, n
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def length_delimited(field, payload):
    """A protobuf field of wire type 2 (bytes, strings, sub-messages)."""
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def encode_series(labels, samples):
    """prometheus.TimeSeries: labels (1, sorted by name) and samples (2: double value, int64
    timestamp in ms); a STALE value is written with the staleness marker's exact bits."""
    out = bytearray()
    for name in sorted(labels):
        out += length_delimited(1, length_delimited(1, name.encode()) + length_delimited(2, labels[name].encode()))
    for ts, value in samples:
        bits = STALE_NAN_BITS if value is STALE else struct.unpack("<Q", struct.pack("<d", value))[0]
        out += length_delimited(2, b"\x09" + struct.pack("<Q", bits) + b"\x10" + varint(ts))
    return bytes(out)


def snappy_literal(data):
    """The snappy block format with literal elements only (tag 61: 2-byte length)."""
    out = bytearray(varint(len(data)))
    for i in range(0, len(data), 65536):
        chunk = data[i:i + 65536]
        out += bytes([61 << 2]) + struct.pack("<H", len(chunk) - 1) + chunk
    return bytes(out)


def write_requests(series, max_bytes=256 << 10):
    """Snappy-compressed prometheus.WriteRequest bodies of at most ~`max_bytes` each; every
    series whole in one request (samples of a series in time order)."""
    bodies, current = [], bytearray()
    for labels, samples in series:
        encoded = length_delimited(1, encode_series(labels, samples))
        if current and len(current) + len(encoded) > max_bytes:
            bodies.append(snappy_literal(bytes(current)))
            current = bytearray()
        current += encoded
    if current:
        bodies.append(snappy_literal(bytes(current)))
    return bodies


# ---------------------------------------------------------------- HTTP


class Target:
    """One server: where it takes remote writes and where its Prometheus API is."""

    def __init__(self, name, write_url, api_url, token):
        self.name, self.write_url, self.api_url, self.token = name, write_url, api_url, token

    def headers(self):
        """The authorization header, when the target has a token."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


def http(method, url, headers, body=None, timeout=60):
    """(status, body bytes); transport errors as status 0 with the reason as body."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        return 0, str(e).encode()


def remote_write(target, body):
    """POSTs one WriteRequest as Prometheus does; retries while the server pushes back."""
    headers = {**target.headers(), "Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
               "X-Prometheus-Remote-Write-Version": "0.1.0"}
    for attempt in range(30):
        status, answer = http("POST", target.write_url, headers, body)
        if 200 <= status < 300:
            return
        if status not in (0, 429, 500, 502, 503, 504):
            break
        time.sleep(min(0.2 * 2 ** attempt, 5))
    sys.exit(f"{target.name} refused a remote write to {target.write_url}: HTTP {status}: {answer[:500]!r}")


def api(target, path, params, method="GET"):
    """One call of the Prometheus HTTP API: (ok, data or 'errorType: error', http status)."""
    encoded = urllib.parse.urlencode(params, doseq=True)
    url = f"{target.api_url}/api/v1/{path}"
    if method == "GET":
        status, raw = http("GET", f"{url}?{encoded}", target.headers())
    else:
        headers = {**target.headers(), "Content-Type": "application/x-www-form-urlencoded"}
        status, raw = http("POST", url, headers, encoded.encode())
    try:
        answer = json.loads(raw)
    except ValueError:
        return False, f"HTTP {status}, not JSON: {raw[:200]!r}", status
    if status == 200 and isinstance(answer, dict) and answer.get("status") == "success":
        return True, answer.get("data"), status
    if isinstance(answer, dict):
        return False, f"{answer.get('errorType')}: {answer.get('error')}", status
    return False, f"HTTP {status}: {raw[:200]!r}", status


# ---------------------------------------------------------------- waiting for the data


def expected_counts(series):
    """{metric name: (series with a sample, samples that are not staleness markers)}."""
    out = {}
    for labels, samples in series:
        live = sum(1 for _, v in samples if v is not STALE)
        count, total = out.get(labels["__name__"], (0, 0))
        out[labels["__name__"]] = (count + (1 if live else 0), total + live)
    return out


def visible_counts(target, at_s, names):
    """What `target` reports of each metric at `at_s`: {name: (series, samples)}; a metric
    it errs on is left out. (Per name: count_over_time drops the name, so one query over all
    of them would make duplicate label sets.)"""
    out = {}
    for name in names:
        counts = []
        for query in [f"count(count_over_time({name}[1h]))", f"sum(count_over_time({name}[1h]))"]:
            ok, data, _ = api(target, "query", {"query": query, "time": at_s})
            if ok and isinstance(data, dict) and data.get("result"):
                counts.append(int(float(data["result"][0]["value"][1])))
        if len(counts) == 2:
            out[name] = tuple(counts)
    return out


def wait_visible(target, at_s, want, timeout_s, settled_s=20):
    """Polls until `target` shows all the samples. Warns and goes on when it never does
    within `timeout_s`, or when what it shows has not changed for `settled_s`."""
    deadline, seen, since = time.monotonic() + timeout_s, None, time.monotonic()
    while time.monotonic() < deadline:
        now_seen = visible_counts(target, at_s, want)
        if now_seen == want:
            return True
        if now_seen != seen:
            seen, since = now_seen, time.monotonic()
        elif seen and time.monotonic() - since > settled_s:
            break
        time.sleep(0.5)
    short = {name: (seen or {}).get(name) for name in want if (seen or {}).get(name) != want[name]}
    print(f"WARN {target.name}: (series, samples) visible {short}, expected "
          f"{ {name: want[name] for name in short} }; comparing anyway", flush=True)
    return False


# ---------------------------------------------------------------- comparison


def read_queries(path=QUERIES):
    """[(query, should_fail)] from the data file: one a line, `#` comments; a trailing
    `  # should fail` marks a query that both must refuse."""
    out = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        should_fail = line.endswith("# should fail")
        if should_fail:
            line = line[: -len("# should fail")].rstrip()
        out.append((line, should_fail))
    return out


def parse_value(text):
    """A sample value as Prometheus renders it ("1.5", "NaN", "+Inf")."""
    return float(text)


def same_value(a, b):
    """Equal within the relative tolerance; NaN equals NaN, infinities equal themselves."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= REL_TOLERANCE * max(abs(a), abs(b))


def label_text(metric):
    """`{k="v", ...}` of a label set, sorted."""
    return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items())) + "}"


def series_map(result, side):
    """{label set: {timestamp ms: value text}} of a matrix (or vector/scalar) result; raises
    ValueError on a duplicate label set."""
    out = {}
    for item in result:
        key = frozenset(item.get("metric", {}).items())
        if key in out:
            raise ValueError(f"{side} answered label set {label_text(dict(key))} twice")
        points = item.get("values") or ([item["value"]] if "value" in item else [])
        out[key] = {int(round(float(t) * 1000)): v for t, v in points}
    return out


def compare_data(ref, sub):
    """None when two successful answers agree, else (category, reason)."""
    if ref.get("resultType") != sub.get("resultType"):
        return "result type differs", f"result type {sub.get('resultType')}, Prometheus {ref.get('resultType')}"
    if ref["resultType"] in ("scalar", "string"):
        ref_result, sub_result = [{"value": ref["result"]}], [{"value": sub["result"]}]
    else:
        ref_result, sub_result = ref["result"], sub["result"]
    try:
        ref_map, sub_map = series_map(ref_result, "Prometheus"), series_map(sub_result, "Sluice")
    except ValueError as e:
        return "duplicate label sets", str(e)
    missing, extra = ref_map.keys() - sub_map.keys(), sub_map.keys() - ref_map.keys()
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} series missing, e.g. {label_text(dict(sorted(missing, key=sorted)[0]))}")
        if extra:
            parts.append(f"{len(extra)} extra, e.g. {label_text(dict(sorted(extra, key=sorted)[0]))}")
        return "label sets differ", f"{'; '.join(parts)} (Prometheus {len(ref_map)} series, Sluice {len(sub_map)})"
    for key in sorted(ref_map, key=sorted):
        ref_points, sub_points = ref_map[key], sub_map[key]
        for ts in sorted(ref_points.keys() | sub_points.keys()):
            at = f"{label_text(dict(key))} at {ts / 1000:.3f}".replace(".000", "")
            if ts not in sub_points:
                return "steps differ", f"{at}: Prometheus {ref_points[ts]}, Sluice no value"
            if ts not in ref_points:
                return "steps differ", f"{at}: Sluice {sub_points[ts]}, Prometheus no value"
            if not same_value(parse_value(ref_points[ts]), parse_value(sub_points[ts])):
                return "values differ", f"{at}: Prometheus {ref_points[ts]}, Sluice {sub_points[ts]}"
    return None


def check_query(ref, sub, query, should_fail, call):
    """The verdict on one query, `call` = (path, params, method): (passed, category, reason)."""
    path, params, method = call
    params = {"query": query, **params}
    ref_ok, ref_data, _ = api(ref, path, params, method)
    sub_ok, sub_data, sub_status = api(sub, path, params, method)
    if should_fail:
        if ref_ok:
            return False, "harness: Prometheus accepted a should-fail query", "Prometheus answered"
        if sub_ok:
            return False, "accepted a query Prometheus refuses", f"Prometheus: {ref_data}"
        # Refused as Prometheus refuses: an error envelope with 400 (bad_data) or 422
        # (execution), not a 404 or a crash.
        if sub_status not in (400, 422) or str(sub_data).startswith("HTTP "):
            return False, "Sluice error", f"HTTP {sub_status} {sub_data} (Prometheus: {ref_data})"
        return True, "refused by both", f"Prometheus: {ref_data}; Sluice: {sub_data}"
    if not ref_ok:
        return False, "harness: Prometheus refused the query", str(ref_data)
    if not sub_ok:
        return False, "Sluice error", f"HTTP {sub_status} {sub_data}"
    verdict = compare_data(ref_data, sub_data)
    if verdict:
        return (False, *verdict)
    return True, "agree", f"{len(ref_data['result'])} series"


def normalized_list(data):
    """A list answer (labels, label values) as a sorted list; series as sorted label texts."""
    if not isinstance(data, list):
        return data
    return sorted(label_text(x) if isinstance(x, dict) else x for x in data)


def check_api(ref, sub, path, params):
    """The verdict on one metadata call: both answer the same list."""
    ref_ok, ref_data, _ = api(ref, path, params)
    sub_ok, sub_data, sub_status = api(sub, path, params)
    if not ref_ok:
        return False, "harness: Prometheus refused the call", str(ref_data)
    if not sub_ok:
        return False, "Sluice error", f"HTTP {sub_status} {sub_data}"
    ref_list, sub_list = normalized_list(ref_data), normalized_list(sub_data)
    if not isinstance(sub_list, list):
        return False, "metadata differs", f"Sluice answered {str(sub_data)[:200]}, not a list"
    if ref_list != sub_list:
        missing = [x for x in ref_list if x not in sub_list]
        extra = [x for x in sub_list if x not in ref_list]
        return False, "metadata differs", (f"missing {missing[:3]}, extra {extra[:3]} "
                                           f"(Prometheus {len(ref_list)}, Sluice {len(sub_list)})")
    return True, "agree", f"{len(ref_list)} entries"


def api_checks(grid):
    """(name, path, params) of the metadata calls compared."""
    window = {"start": grid["start"], "end": grid["end"]}
    return [
        ("labels", "labels", window),
        ("label __name__ values", "label/__name__/values", window),
        ("label instance values", "label/instance/values", window),
        ("series demo_num_cpus", "series", {"match[]": "demo_num_cpus", **window}),
        ("series of two matchers", "series",
         {"match[]": ['demo_memory_usage_bytes{type="free"}', "demo_num_cpus"], **window}),
    ]


# ---------------------------------------------------------------- report


def outer_function(query):
    """The function or aggregation a query starts with, else "operators/selectors"."""
    m = re.match(r"\s*([a-z_]+)\s*(?:(?:by|without)\s*\([^)]*\)\s*)?\(", query)
    return m.group(1) if m else "operators/selectors"


def failure_groups(results):
    """Failures by cause: a Sluice error by its message (numbers and quoted text blanked),
    a difference by its kind and the query's outer function."""
    groups = Counter()
    for r in results:
        if r["pass"]:
            continue
        if r["category"] == "Sluice error":
            message = re.sub(r"\d+(\.\d+)?", "N", re.sub(r'"[^"]*"', '"…"', r["reason"]))
            groups[f"Sluice error: {message[:120]}"] += 1
        else:
            groups[f"{r['category']}: {outer_function(r['query'])}"] += 1
    return groups


def report(results, data_info):
    """Prints the summary and the failure groups, writes $PROMQL_REPORT; the pass rate."""
    passed = sum(r["pass"] for r in results)
    rate = passed / len(results) if results else 0.0
    groups = failure_groups(results)
    if groups:
        print("\nfailures by cause:")
        for key, n in groups.most_common():
            print(f"  {n:4d}  {key}")
    print(f"\npassed {passed} of {len(results)} ({rate:.1%})", flush=True)
    path = os.environ.get("PROMQL_REPORT")
    if path:
        Path(path).write_text(json.dumps({
            "passed": passed, "total": len(results), "rate": rate, "data": data_info,
            "failure_groups": dict(groups.most_common()), "results": results,
        }, indent=1))
    return rate


def write_everywhere(targets, series):
    """Remote-writes `series` to every target; the (series, samples) counts to wait for."""
    want = expected_counts(series)
    bodies = write_requests(series)
    for target in targets:
        for body in bodies:
            remote_write(target, body)
    print(f"wrote {len(series)} series, {sum(n for _, n in want.values())} samples (+ staleness markers) "
          f"in {len(bodies)} requests to each", flush=True)
    return want


def record(results, kind, name, verdict):
    """Adds one verdict to `results` and prints it."""
    passed, category, reason = verdict
    results.append({"kind": kind, "query": name, "pass": passed, "category": category, "reason": reason})
    print(f"{'PASS' if passed else 'FAIL'}  {kind:8} {name}" + ("" if passed else f"\n      {category}: {reason}"),
          flush=True)


def run_checks(ref, sub, grid):
    """Every query of the data file as a range query (POST, over `grid`) and as an instant
    query (GET, at a time between samples: lookback and windows end off the sample times),
    and every metadata call, on both: the verdicts."""
    instant = {"time": grid["end"] - INSTANT_BEFORE_END_SECS}
    results = []
    for query, should_fail in read_queries():
        record(results, "range", query, check_query(ref, sub, query, should_fail, ("query_range", grid, "POST")))
        record(results, "instant", query, check_query(ref, sub, query, should_fail, ("query", instant, "GET")))
    for name, path, params in api_checks(grid):
        record(results, "metadata", name, check_api(ref, sub, path, params))
    return results


def main():
    """Writes, waits, compares; exits 1 below the pass threshold."""
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sluice_url, token, prometheus_url = (a.rstrip("/") for a in sys.argv[1:])
    query_path = os.environ.get("PROMQL_QUERY_PATH", "/prometheus")
    min_pass = float(os.environ.get("PROMQL_MIN_PASS", "0.90"))
    wait_secs = float(os.environ.get("PROMQL_WAIT_SECS", "120"))
    ref = Target("Prometheus", f"{prometheus_url}/api/v1/write", prometheus_url, None)
    sub = Target("Sluice", f"{sluice_url}/api/v1/write", f"{sluice_url}{query_path}", token)

    # Ten seconds back: the shifted samples after the last step are then in the past too.
    end_s = (int(time.time()) - 10) // QUERY_STEP_SECS * QUERY_STEP_SECS
    series = generate(end_s)
    want = write_everywhere([ref, sub], series)
    # Counted at the last written sample; Prometheus must show everything at once.
    last_s = end_s + max(SCRAPE_SHIFT_MS) / 1000
    if not wait_visible(ref, last_s, want, 10):
        sys.exit("Prometheus does not show the samples it acknowledged: the harness is broken")
    wait_visible(sub, last_s, want, wait_secs)

    grid = {"start": end_s - SPAN_SECS, "end": end_s, "step": QUERY_STEP_SECS}
    results = run_checks(ref, sub, grid)
    rate = report(results, {"series": len(series), "samples": want, "grid": grid})
    if rate < min_pass:
        sys.exit(f"pass rate {rate:.1%} is below PROMQL_MIN_PASS={min_pass:.0%}")


if __name__ == "__main__":
    main()
