//! Grafana's Prometheus data source against Sluice's Prometheus API (`/prometheus`): the
//! requests Grafana 10 to 12 sends, replayed with its methods, headers, parameter order and
//! encodings, and the parts of each answer Grafana parses. A failure here is a dashboard,
//! an editor or "Save & test" that breaks in Grafana.
//!
//! Where each request comes from (grafana/grafana):
//! - Grafana's server (`pkg/promlib`): "Save & test" is an instant query `1+1` at `time=4`
//!   (`healthcheck.go`), then `GET api/v1/status/buildinfo` (`heuristics.go`: no `features`
//!   means Prometheus, not Mimir). Panel queries are form POSTs (`httpMethod: POST`, the
//!   default) encoded by Go's `url.Values.Encode` (keys sorted), `start` and `end` rounded
//!   down to the step, times as Unix seconds (`client/client.go`, `models/query.go`);
//!   `$__rate_interval` becomes a Go duration such as `1m0s`. Some versions add
//!   `timeout=2m`. Editor requests pass through `QueryResource`: a POST that answers 405
//!   or 400 is sent again as a GET with its form moved, sorted, into the query string.
//! - The browser (`packages/grafana-prometheus/src`: `language_provider.ts` in 10 and 11,
//!   `resource_clients.ts` in 12): `label/<name>/values` (GET, encoded with
//!   `encodeURIComponent`), `labels` and `series` (POST, a `URLSearchParams` body, in the
//!   order the code builds it; 12 adds `limit=40000`), `metadata` (GET). Times are whole
//!   seconds. Template variables `label_values(metric, label)` are label values with
//!   `match[]` (Prometheus 2.24 and later, which the data source's version says).
//! - What Grafana reads (`pkg/promlib/converter/prom.go`): `status`, `data.resultType`,
//!   each result's `metric` (a map of strings) and `value` or `values` as
//!   `[seconds, "float"]`; `errorType` and `error` when `status` is `error`.
//!
//! Go's transport also sends `Accept-Encoding: gzip` and inflates the answer unseen, so a
//! compressed answer changes nothing for Grafana; these requests leave it out and read the
//! body as sent.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::service_util::{ACME, Service, TENANTS, eventually, request, write_v2};

/// The data source's URL path on Sluice (`url: http://sluice:8080/prometheus`).
const BASE: &str = "/prometheus";

/// The step of the replayed panel queries: a 1 h dashboard with the data source's
/// `timeInterval: 15s`.
const STEP: i64 = 15;

/// `$__rate_interval` for that step and scrape interval, as Grafana writes it:
/// max(interval + scrape, 4 × scrape) = 60 s, formatted by Go's `time.Duration.String`.
const RATE_INTERVAL: &str = "1m0s";

/// Grafana's server, as the data source configured with `token`.
struct Grafana<'a> {
    svc: &'a Service,
    bearer: String,
}

impl<'a> Grafana<'a> {
    fn new(svc: &'a Service, token: &str) -> Self {
        Self {
            svc,
            bearer: format!("Bearer {token}"),
        }
    }

    /// One request as Grafana's server sends it: the custom header
    /// (`httpHeaderName1: Authorization`), Grafana's user agent, and for a POST the form
    /// content type `client.go` sets.
    fn send(&self, method: &str, path_and_query: &str, body: &str) -> (u16, Value) {
        let mut headers = vec![
            ("Authorization", self.bearer.as_str()),
            ("User-Agent", "Grafana/12.2.0"),
        ];
        if method == "POST" {
            headers.push(("Content-Type", "application/x-www-form-urlencoded"));
        }
        let url = self.svc.url(&format!("{BASE}/{path_and_query}"));
        let (status, text) = request(method, &url, &headers, body.to_owned());
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, json)
    }

    /// A panel's query: a form POST (`httpMethod: POST`), Go-encoded.
    fn post_form(&self, endpoint: &str, form: &[(&str, &str)]) -> (u16, Value) {
        self.send("POST", endpoint, &go_form(form))
    }

    /// A browser request through `QueryResource`: POST `body` as is; on 405 or 400 the
    /// same parameters again as a GET, Go-encoded. Returns the answer and whether it took
    /// the GET.
    fn resource_post(&self, endpoint: &str, body: &str) -> ((u16, Value), bool) {
        let answer = self.send("POST", endpoint, body);
        if answer.0 != 405 && answer.0 != 400 {
            return (answer, false);
        }
        let pairs: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        (
            self.send("GET", &format!("{endpoint}?{}", go_form(&pairs)), ""),
            true,
        )
    }

    /// A panel's range query with `start` and `end` rounded down to the step, as
    /// `models/query.go`'s `AlignTimeRange` does.
    fn query_range(&self, expr: &str, start: i64, end: i64, extra: &[(&str, &str)]) -> Value {
        let (start, end) = (start / STEP * STEP, end / STEP * STEP);
        let (start, end, step) = (start.to_string(), end.to_string(), STEP.to_string());
        let mut form = vec![
            ("query", expr),
            ("start", start.as_str()),
            ("end", end.as_str()),
            ("step", step.as_str()),
        ];
        form.extend_from_slice(extra);
        let (status, answer) = self.post_form("api/v1/query_range", &form);
        assert_eq!(status, 200, "query_range {expr}: {answer}");
        answer
    }

    /// An instant query (stat and table panels, "Instant" in the editor) at `time`.
    fn query(&self, expr: &str, time: &str) -> Value {
        let (status, answer) = self.post_form("api/v1/query", &[("query", expr), ("time", time)]);
        assert_eq!(status, 200, "query {expr}: {answer}");
        answer
    }
}

/// Go's `url.QueryEscape`: unreserved bytes kept, space as `+`, the rest `%XX`.
fn go_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Go's `url.Values.Encode`: sorted by key (a key's values keep their order).
fn go_form(pairs: &[(&str, &str)]) -> String {
    let mut pairs = pairs.to_vec();
    pairs.sort_by_key(|(k, _)| *k);
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", go_escape(k), go_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// JavaScript's `encodeURIComponent`.
fn js_component(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'!'
            | b'~'
            | b'*'
            | b'\''
            | b'('
            | b')' => out.push(char::from(b)),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The query string of a browser GET (`datasource.ts` `_request`): `k=v` with
/// `encodeURIComponent`, in the code's order.
fn js_query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", js_component(k), js_component(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A browser POST body (`fetch.ts` `parseBody`: `new URLSearchParams(data)`), in the
/// code's order.
fn search_params(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// `data` of a success envelope.
fn data(answer: &Value) -> &Value {
    assert_eq!(answer["status"], "success", "{answer}");
    &answer["data"]
}

/// A sample as Grafana's `readTimeValuePair` reads it: `[seconds, "float"]`, the float in
/// a form Go's `strconv.ParseFloat` takes (digits, `NaN`, `+Inf`, `-Inf`).
fn sample(pair: &Value) -> (f64, f64) {
    let time = pair[0]
        .as_f64()
        .unwrap_or_else(|| panic!("time is not a number: {pair}"));
    let text = pair[1]
        .as_str()
        .unwrap_or_else(|| panic!("value is not a string: {pair}"));
    let value = text
        .parse::<f64>()
        .unwrap_or_else(|_| panic!("value {text:?} is not a float"));
    assert_eq!(pair.as_array().map(Vec::len), Some(2), "{pair}");
    (time, value)
}

/// A result's `metric`: an object of string values (Grafana reads it into `data.Labels`).
fn labels(result: &Value) -> &serde_json::Map<String, Value> {
    let metric = result["metric"]
        .as_object()
        .unwrap_or_else(|| panic!("no metric object: {result}"));
    assert!(metric.values().all(Value::is_string), "{result}");
    metric
}

/// A list of strings, sorted (labels, label values).
fn sorted_strings(data: &Value) -> Vec<String> {
    let list: Vec<String> = data
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {data}"))
        .iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("not a string: {v}"))
                .to_owned()
        })
        .collect();
    let mut sorted = list.clone();
    sorted.sort();
    assert_eq!(list, sorted, "not sorted");
    list
}

fn now_s() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since.as_secs()).expect("seconds fit")
}

/// The metric names [`write_demo`] writes.
const WRITTEN: &[&str] = &[
    "cpu_usage_user",
    "cpu_usage_system",
    "mem_used",
    "disk_free",
    "http_requests_total",
    "up",
    "sluice_store_write_seconds_bucket",
    "sluice_store_write_seconds_count",
];

/// Writes 21 samples, 15 s apart and ending at `end`, of README-style data (`cpu` of two
/// hosts, `mem`, `disk`), a counter, `up`, and a Sluice-style histogram as the scraper
/// remote-writes them; waits until every sample is queryable.
fn write_demo(svc: &Service, grafana: &Grafana<'_>, end: i64) {
    let mut lines = String::new();
    for i in 0..=20i64 {
        let t = end - 300 + 15 * i;
        let job = "job=sluice,instance=sluice:8080";
        lines.push_str(&format!(
            "cpu,host=web-1 usage_user={i},usage_system=1 {t}\n\
             cpu,host=web-2 usage_user={},usage_system=2 {t}\n\
             mem,host=web-1 used={}i {t}\n\
             disk,host=web-1 free=1024i {t}\n\
             http_requests_total,job=api,instance=web-1:80 value={} {t}\n\
             up,{job} value=1 {t}\n\
             sluice_store_write_seconds_bucket,{job},le=0.001 value={} {t}\n\
             sluice_store_write_seconds_bucket,{job},le=0.01 value={} {t}\n\
             sluice_store_write_seconds_bucket,{job},le=+Inf value={} {t}\n\
             sluice_store_write_seconds_count,{job} value={} {t}\n",
            2 * i,
            1000 + i,
            15 * i,
            10 * i,
            20 * i,
            20 * i,
            20 * i,
        ));
    }
    let (status, body) = write_v2(svc, ACME, "s", &lines);
    assert_eq!(status, 204, "{body}");
    let at = end.to_string();
    for name in WRITTEN {
        let expr = format!("count_over_time({name}[10m])");
        let mut last = (0, Value::Null);
        let complete = eventually(Duration::from_secs(20), || {
            last = grafana.post_form(
                "api/v1/query",
                &[("query", expr.as_str()), ("time", at.as_str())],
            );
            last.0 == 200
                && last.1["data"]["result"].as_array().is_some_and(|results| {
                    !results.is_empty() && results.iter().all(|r| r["value"][1] == "21")
                })
        });
        assert!(
            complete,
            "{name} not stored in full: {expr} answered {} {}; log: {}",
            last.0,
            last.1,
            svc.log()
        );
    }
}

/// "Save & test" succeeds: the instant query `1+1` at `time=4` that `healthcheck.go`
/// sends, as a form POST and (for `httpMethod: GET`) as a GET, answers the scalar
/// `[4, "2"]`; `status/buildinfo` gives a version and no `features` (so Grafana takes Sluice
/// for Prometheus, not Mimir, and offers no ruler); without a known token the health check
/// gets 401, which Grafana shows as the error.
#[test]
fn save_and_test_health_check_succeeds() {
    let svc = Service::start(TENANTS, &[]);
    let grafana = Grafana::new(&svc, ACME);

    // POST body exactly as Go encodes it: `query=1%2B1&time=4`.
    let form = go_form(&[("query", "1+1"), ("time", "4")]);
    assert_eq!(form, "query=1%2B1&time=4");
    for (method, path, body) in [
        ("POST", "api/v1/query".to_owned(), form.as_str()),
        ("GET", format!("api/v1/query?{form}"), ""),
    ] {
        let (status, answer) = grafana.send(method, &path, body);
        assert_eq!(status, 200, "{method} health check: {answer}");
        let data = data(&answer);
        assert_eq!(data["resultType"], "scalar", "{answer}");
        assert_eq!(sample(&data["result"]), (4.0, 2.0), "{answer}");
    }

    // heuristics.go: GET (buildinfo is GET-only for Grafana), no query string.
    let (status, answer) = grafana.send("GET", "api/v1/status/buildinfo", "");
    assert_eq!(status, 200, "{answer}");
    let version = data(&answer)["version"]
        .as_str()
        .unwrap_or_else(|| panic!("no version: {answer}"));
    let numeric = version
        .split(['.', '-', '+'])
        .take(3)
        .filter(|part| part.parse::<u32>().is_ok())
        .count();
    assert_eq!(numeric, 3, "version {version:?} is not semver");
    let features = &data(&answer)["features"];
    assert!(
        features.is_null() || features.as_object().is_some_and(serde_json::Map::is_empty),
        "features make Grafana take Sluice for Mimir: {answer}"
    );

    // A data source with a wrong token: Grafana reports the status.
    let (status, answer) = Grafana::new(&svc, "no-such-token").send("POST", "api/v1/query", &form);
    assert_eq!(status, 401, "{answer}");
}

/// The query editor and template variables work: the metric list
/// (`label/__name__/values`), label names (`labels`, also with `match[]`), label values
/// with `match[]` (the variable `label_values(cpu_usage_user, host)`), `series` with
/// `match[]={__name__!=""}`, and `metadata`, each in the shape Grafana 11 and 12 send it,
/// answer sorted string lists and label sets. `labels` and `series` are POSTed; a 405 or
/// 400 there is tolerated because Grafana's server then sends the same as a GET.
#[test]
fn editor_and_variable_requests_answer_what_grafana_lists() {
    let svc = Service::start(TENANTS, &[]);
    let grafana = Grafana::new(&svc, ACME);
    let end = now_s() / STEP * STEP;
    write_demo(&svc, &grafana, end);
    // The frontend's times: whole seconds, snapped to the minute (cache level "Low").
    let (start, stop) = ((end - 3600) / 60 * 60, (end / 60 + 1) * 60);
    let (start, stop) = (start.to_string(), stop.to_string());
    let range = [("start", start.as_str()), ("end", stop.as_str())];

    // The metric list: Grafana 11 (start, end), Grafana 12 (limit first).
    for query in [
        js_query(&range),
        js_query(&[("limit", "40000"), range[0], range[1]]),
    ] {
        let (status, answer) =
            grafana.send("GET", &format!("api/v1/label/__name__/values?{query}"), "");
        assert_eq!(status, 200, "{query}: {answer}");
        let names = sorted_strings(data(&answer));
        for name in WRITTEN {
            assert!(
                names.iter().any(|n| n == name),
                "{name} missing from {names:?}"
            );
        }
    }

    // Label names: Grafana 12's `queryLabelKeys` POST body, and Grafana 11's
    // `fetchSeriesLabelsMatch` with a metric as `match[]`.
    let ((status, answer), fell_back) = grafana.resource_post(
        "api/v1/labels",
        &search_params(&[("limit", "40000"), range[0], range[1]]),
    );
    assert_eq!(status, 200, "labels (GET fallback: {fell_back}): {answer}");
    let names = sorted_strings(data(&answer));
    for name in ["__name__", "host", "instance", "job", "le"] {
        assert!(
            names.iter().any(|n| n == name),
            "{name} missing from {names:?}"
        );
    }
    let body = search_params(&[range[0], range[1], ("match[]", "cpu_usage_user")]);
    assert!(body.contains("match%5B%5D=cpu_usage_user"), "{body}");
    let ((status, answer), fell_back) = grafana.resource_post("api/v1/labels", &body);
    assert_eq!(
        status, 200,
        "labels match[] (GET fallback: {fell_back}): {answer}"
    );
    assert_eq!(
        sorted_strings(data(&answer)),
        ["__name__", "host"],
        "{answer}"
    );

    // The variable `label_values(cpu_usage_user, host)`: Grafana 11, then 12.
    for query in [
        js_query(&[range[0], range[1], ("match[]", "cpu_usage_user")]),
        js_query(&[
            ("limit", "40000"),
            range[0],
            range[1],
            ("match[]", "cpu_usage_user"),
        ]),
    ] {
        let (status, answer) =
            grafana.send("GET", &format!("api/v1/label/host/values?{query}"), "");
        assert_eq!(status, 200, "{query}: {answer}");
        assert_eq!(
            sorted_strings(data(&answer)),
            ["web-1", "web-2"],
            "{answer}"
        );
    }
    // `label_values(up{job="sluice"}, instance)`: a selector with quotes and braces.
    let query = js_query(&[range[0], range[1], ("match[]", r#"up{job="sluice"}"#)]);
    let (status, answer) =
        grafana.send("GET", &format!("api/v1/label/instance/values?{query}"), "");
    assert_eq!(status, 200, "{query}: {answer}");
    assert_eq!(sorted_strings(data(&answer)), ["sluice:8080"], "{answer}");

    // Series: Grafana 12's `querySeries` (every series, limit), Grafana 11's
    // `fetchSeriesLabels` (a selector, limit). Every series: two cpu hosts × two fields,
    // mem, disk, the counter, up, three buckets and the count.
    for (selector, expected) in [
        (r#"{__name__!=""}"#, 12),
        (r#"cpu_usage_user{host="web-1"}"#, 1),
    ] {
        let body = search_params(&[
            range[0],
            range[1],
            ("match[]", selector),
            ("limit", "40000"),
        ]);
        let ((status, answer), fell_back) = grafana.resource_post("api/v1/series", &body);
        assert_eq!(
            status, 200,
            "series {selector} (GET fallback: {fell_back}): {answer}"
        );
        let series = data(&answer)
            .as_array()
            .unwrap_or_else(|| panic!("series is not a list: {answer}"));
        for set in series {
            let set = set
                .as_object()
                .unwrap_or_else(|| panic!("not a label set: {set}"));
            assert!(set.values().all(Value::is_string), "{answer}");
            assert!(set.contains_key("__name__"), "{answer}");
        }
        assert_eq!(series.len(), expected, "{answer}");
    }

    // Metric metadata for the editor's hints: GET, no parameters; an object of lists.
    let (status, answer) = grafana.send("GET", "api/v1/metadata", "");
    assert_eq!(status, 200, "{answer}");
    let metadata = data(&answer)
        .as_object()
        .unwrap_or_else(|| panic!("metadata is not an object: {answer}"));
    assert!(metadata.values().all(Value::is_array), "{answer}");
}

/// A panel's range query, as Grafana posts it (form, Go-encoded, start and end on the
/// 15 s step, `$__rate_interval` written `1m0s`, with and without `timeout=2m`), answers a
/// matrix of series with a `metric` label map and `values` of `[seconds, "float"]` on the
/// step's grid, with the right numbers; an instant query at a fractional time answers a
/// vector; an exemplar query a list; a query that doesn't parse answers 400 `bad_data`,
/// which Grafana shows.
#[test]
fn panel_queries_answer_the_shapes_grafana_parses() {
    let svc = Service::start(TENANTS, &[]);
    let grafana = Grafana::new(&svc, ACME);
    let end = now_s() / STEP * STEP;
    write_demo(&svc, &grafana, end);
    let first = end - 300;

    for extra in [&[][..], &[("timeout", "2m")][..]] {
        let answer = grafana.query_range(
            r#"avg by (host) (cpu_usage_user{host=~".+"})"#,
            end - 600,
            end,
            extra,
        );
        let data = data(&answer);
        assert_eq!(data["resultType"], "matrix", "{answer}");
        let results = data["result"].as_array().expect("result list");
        assert_eq!(results.len(), 2, "{answer}");
        for result in results {
            let host = labels(result)["host"].as_str().expect("host").to_owned();
            let factor = if host == "web-1" { 1.0 } else { 2.0 };
            let values = result["values"].as_array().expect("values");
            // One value per step from the first sample to the last.
            assert_eq!(values.len(), 21, "{answer}");
            for pair in values {
                let (t, v) = sample(pair);
                assert_eq!(t.fract(), 0.0, "{pair}");
                let t = t as i64;
                assert!((first..=end).contains(&t) && t % STEP == 0, "{pair}");
                assert_eq!(v, factor * ((t - first) / 15) as f64, "{host} {pair}");
            }
        }
    }

    // `rate(...[$__rate_interval])` as Grafana writes the duration: the counter rises
    // 15 every 15 s, so 1/s wherever the window holds a full minute of samples.
    let expr = format!("sum by (job) (rate(http_requests_total[{RATE_INTERVAL}]))");
    let answer = grafana.query_range(&expr, end - 600, end, &[]);
    let results = data(&answer)["result"]
        .as_array()
        .expect("result list")
        .clone();
    assert_eq!(results.len(), 1, "{answer}");
    assert_eq!(
        labels(&results[0]).get("job"),
        Some(&Value::from("api")),
        "{answer}"
    );
    let full: Vec<f64> = results[0]["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(sample)
        .filter(|(t, _)| *t as i64 >= first + 60)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(full.len(), 17, "{answer}");
    assert!(full.iter().all(|v| (v - 1.0).abs() < 1e-9), "{answer}");

    // A stat panel's instant query, at the dashboard's (unaligned) end.
    let time = format!("{end}.123");
    let answer = grafana.query(r#"cpu_usage_user{host="web-2"}"#, &time);
    let vector = data(&answer);
    assert_eq!(vector["resultType"], "vector", "{answer}");
    assert_eq!(
        vector["result"].as_array().map(Vec::len),
        Some(1),
        "{answer}"
    );
    let result = &vector["result"][0];
    assert_eq!(labels(result)["__name__"], "cpu_usage_user", "{answer}");
    let (t, v) = sample(&result["value"]);
    assert!((t - (end as f64 + 0.123)).abs() < 1e-3, "{answer}");
    assert_eq!(v, 40.0, "{answer}");

    // A query with "Exemplars" on: `start`, `end` on the step, no `step`. Grafana only logs
    // a failure here, but parses a success's `data` as a list.
    let (start, stop) = (((end - 600) / STEP * STEP).to_string(), end.to_string());
    let (status, answer) = grafana.post_form(
        "api/v1/query_exemplars",
        &[
            ("query", "cpu_usage_user"),
            ("start", start.as_str()),
            ("end", stop.as_str()),
        ],
    );
    assert_eq!(status, 200, "{answer}");
    assert!(data(&answer).is_array(), "{answer}");

    // What Grafana shows on a broken query: `bad_data: <error>`.
    let (status, answer) = grafana.post_form(
        "api/v1/query_range",
        &[
            ("query", "sum(cpu_usage_user"),
            ("start", "0"),
            ("end", "15"),
            ("step", "15"),
        ],
    );
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["status"], "error", "{answer}");
    assert_eq!(answer["errorType"], "bad_data", "{answer}");
    assert!(
        answer["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{answer}"
    );
}

/// Every query of the provisioned dashboard (`config/grafana/dashboards/sluice.json`) and
/// its variables run on Sluice as Grafana sends them, after Grafana's interpolation
/// (`$__rate_interval` → `1m0s`, `$__range` → `3600s`, "All" → the variable's `.+`): only
/// PromQL Sluice evaluates. Panels over data this test writes (the demo tenant's `cpu`,
/// `mem` and `disk`, `up`, a store-write histogram) show series.
#[test]
fn every_dashboard_query_runs() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/grafana/dashboards/sluice.json"
    );
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard"))
        .expect("dashboard JSON");
    let svc = Service::start(TENANTS, &[]);
    let grafana = Grafana::new(&svc, ACME);
    let end = now_s() / STEP * STEP;
    write_demo(&svc, &grafana, end);
    let interpolate = |expr: &str| {
        expr.replace("$__rate_interval", RATE_INTERVAL)
            .replace("$__range", "3600s")
            .replace("$instance", ".+")
            .replace("$host", ".+")
    };

    // Variables: `label_values(SELECTOR, LABEL)` is label values with `match[]`.
    let (start, stop) = ((end - 3600).to_string(), end.to_string());
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        let query = variable["query"].as_str().expect("variable query");
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("not label_values: {query}"));
        let (selector, label) = inner.rsplit_once(',').expect("selector, label");
        let query_string = js_query(&[
            ("start", start.as_str()),
            ("end", stop.as_str()),
            ("match[]", selector.trim()),
        ]);
        let (status, answer) = grafana.send(
            "GET",
            &format!("api/v1/label/{}/values?{query_string}", label.trim()),
            "",
        );
        assert_eq!(status, 200, "{query}: {answer}");
        assert!(
            !sorted_strings(data(&answer)).is_empty(),
            "{query}: {answer}"
        );
    }

    fn panels(list: &Value, out: &mut Vec<Value>) {
        for panel in list.as_array().into_iter().flatten() {
            out.push(panel.clone());
            panels(&panel["panels"], out);
        }
    }
    let mut all = Vec::new();
    panels(&dashboard["panels"], &mut all);
    let mut queries = 0;
    for panel in &all {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = interpolate(target["expr"].as_str().expect("expr"));
            let title = panel["title"].as_str().unwrap_or_default();
            let (answer, types) = if target["instant"] == true {
                (
                    grafana.query(&expr, &end.to_string()),
                    &["vector", "scalar"][..],
                )
            } else {
                (
                    grafana.query_range(&expr, end - 3600, end, &[]),
                    &["matrix"][..],
                )
            };
            let data = data(&answer);
            let result_type = data["resultType"].as_str().unwrap_or_default();
            assert!(types.contains(&result_type), "{title}: {expr}: {answer}");
            let results = data["result"].as_array().expect("result list");
            for result in results {
                labels(result);
            }
            let has_data = [
                "cpu_usage_",
                "mem_used",
                "disk_free",
                "up{",
                "sluice_store_write_seconds",
            ]
            .iter()
            .any(|name| expr.contains(name));
            assert!(
                !has_data || !results.is_empty(),
                "{title}: {expr} shows nothing: {answer}"
            );
            queries += 1;
        }
    }
    assert!(queries >= 30, "only {queries} queries found in {path}");
}
