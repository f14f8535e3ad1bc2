//! Prometheus remote write into the running service: what is acknowledged reads back as
//! Sluice points, and a request is written whole or not at all.

use std::time::Duration;

use prost::Message;
use sluice::ingest::remote_write::prompb::{TimeSeries, WriteRequest};

use crate::service_util::{ACME, GLOBEX, Service, TENANTS, eventually, points, query, request};

/// A snappy-compressed `WriteRequest` of `timeseries`.
pub(crate) fn body(timeseries: Vec<TimeSeries>) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&WriteRequest { timeseries }.encode_to_vec())
        .expect("snappy")
}

/// Posts `body` to the remote-write route as Prometheus does, with `token` as bearer.
pub(crate) fn remote_write(svc: &Service, token: &str, body: Vec<u8>) -> (u16, String) {
    let auth = format!("Bearer {token}");
    request(
        "POST",
        &svc.url("/api/v1/write"),
        &[
            ("Authorization", &auth),
            ("Content-Encoding", "snappy"),
            ("Content-Type", "application/x-protobuf"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ],
        body,
    )
}

#[test]
fn remote_written_samples_read_back_as_points_and_bad_requests_write_nothing() {
    let svc = Service::start(&format!("[ingest]\nmax_body_bytes = 4096\n{TENANTS}"), &[]);
    let s = 1_000_000_000i64;
    let up = |job: &str, samples: &[(f64, i64)]| {
        TimeSeries::new(&[("__name__", "up"), ("job", job), ("dc", "")], samples)
    };
    let (status, answer) = remote_write(
        &svc,
        ACME,
        body(vec![
            up("api", &[(1.0, 100_000), (0.0, 115_000)]),
            up("db", &[(1.0, 100_000)]),
        ]),
    );
    assert_eq!(status, 204, "{answer}");
    let api = "measurement=up&field=value&start=0&end=1000000000000&tag=job:api";
    assert!(eventually(Duration::from_secs(10), || points(&query(
        &svc, ACME, api
    ))
    .len()
        == 2));
    assert_eq!(
        points(&query(&svc, ACME, api)),
        [(100 * s, 1.0), (115 * s, 0.0)]
    );

    // A bad series refuses the whole request, naming it: the good one beside it is not
    // written either.
    let (status, answer) = remote_write(
        &svc,
        ACME,
        body(vec![
            up("web", &[(1.0, 200_000)]),
            TimeSeries::new(&[("job", "web")], &[(1.0, 200_000)]),
        ]),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("timeseries[1]: no metric name"), "{answer}");
    // Metadata only, as Prometheus' first request: accepted, nothing written.
    let metadata = snap::raw::Encoder::new()
        .compress_vec(&[0x1a, 0x06, 0x08, 0x02, 0x12, 0x02, b'u', b'p'])
        .expect("snappy");
    assert_eq!(remote_write(&svc, ACME, metadata).0, 204);
    // Not snappy, over the limit once inflated, or no known token.
    let plain = WriteRequest {
        timeseries: vec![up("web", &[(1.0, 200_000)])],
    }
    .encode_to_vec();
    let auth = format!("Bearer {ACME}");
    let (status, answer) = request(
        "POST",
        &svc.url("/api/v1/write"),
        &[("Authorization", &auth)],
        plain,
    );
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("Content-Encoding is missing"), "{answer}");
    let labels: Vec<(String, String)> = (0..40)
        .map(|i| (format!("label_{i}"), "v".repeat(100)))
        .collect();
    let mut big: Vec<(&str, &str)> = labels
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    big.push(("__name__", "big"));
    let (status, answer) = remote_write(&svc, ACME, body(vec![TimeSeries::new(&big, &[(1.0, 1)])]));
    assert_eq!(status, 413, "{answer}");
    assert_eq!(
        remote_write(&svc, "nobody", body(vec![up("web", &[(1.0, 1)])])).0,
        401
    );

    // Nothing of the refused requests reached the store (checked once a later write has),
    // and the other tenant sees none of acme's series.
    assert_eq!(
        remote_write(&svc, ACME, body(vec![up("db", &[(1.0, 300_000)])])).0,
        204
    );
    let db = "measurement=up&field=value&start=0&end=1000000000000&tag=job:db";
    assert!(eventually(Duration::from_secs(10), || points(&query(
        &svc, ACME, db
    ))
    .len()
        == 2));
    let web = "measurement=up&field=value&start=0&end=1000000000000&tag=job:web";
    assert!(points(&query(&svc, ACME, web)).is_empty());
    let all = "measurement=up&field=value&start=0&end=1000000000000";
    assert_eq!(
        query(&svc, ACME, all)["series"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(
        query(&svc, GLOBEX, all)["series"].as_array().map(Vec::len),
        Some(0)
    );
}
