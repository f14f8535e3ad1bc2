//! Tenants against the running binary: each tenant's quotas refuse its own writes only,
//! with answers that name the quota and say when to retry.

use crate::service_util::{ACME, GLOBEX, Service, eventually, query, token, try_request_full};
use std::time::Duration;

/// A write of line protocol: status, `Retry-After`, body.
fn write(svc: &Service, tok: &str, body: &str) -> (u16, Option<String>, String) {
    let auth = token(tok);
    let (status, headers, body) = try_request_full(
        "POST",
        &svc.url("/api/v2/write?precision=s"),
        &[(auth.0, &auth.1)],
        body.as_bytes().to_vec(),
    )
    .expect("write");
    let retry_after = headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, retry_after, body)
}

/// `n` lines of series `m,s=S` for each S in `series`, from time `t`.
fn lines(series: &[usize], n: usize, t: usize) -> String {
    series
        .iter()
        .flat_map(|s| (0..n).map(move |i| format!("m,s={s} v={i} {}\n", t + i)))
        .collect()
}

#[test]
fn quotas_refuse_their_own_tenants_writes_naming_the_quota_and_no_other() {
    let body = r#"
[[tenants]]
name = "acme"
tokens = ["acme-token-1"]
retention_days = 36500
limits = { points_per_sec = 100, max_series = 3 }

[[tenants]]
name = "globex"
tokens = ["globex-token-1"]
retention_days = 36500
limits = { bytes_per_sec = 2000 }
"#;
    let svc = Service::start(body, &[]);
    // Points a second: a second's worth, then one write into debt, then 429.
    assert_eq!(write(&svc, ACME, &lines(&[1], 60, 1_000)).0, 204);
    assert_eq!(write(&svc, ACME, &lines(&[1, 2], 100, 2_000)).0, 204);
    let (status, retry_after, message) = write(&svc, ACME, &lines(&[1], 1, 3_000));
    assert_eq!(status, 429, "{message}");
    assert!(
        message.contains("quota points_per_sec = 100 points a second"),
        "{message}"
    );
    let wait: u64 = retry_after.expect("Retry-After").parse().expect("seconds");
    assert!((1..=2).contains(&wait), "{wait}");
    // Globex is under quotas of its own: acme's debt is nothing to it.
    assert_eq!(write(&svc, GLOBEX, &lines(&[1], 10, 1_000)).0, 204);
    // Its bytes a second: a flood of one big body, then 429 naming the quota.
    assert_eq!(write(&svc, GLOBEX, &lines(&[2], 200, 2_000)).0, 204);
    let (status, _, message) = write(&svc, GLOBEX, &lines(&[3], 1, 3_000));
    assert_eq!(status, 429, "{message}");
    assert!(
        message.contains("quota bytes_per_sec = 2000 bytes"),
        "{message}"
    );

    // Series: acme has 2 (s=1, s=2); once its rate has room, a third is fine, a fourth is
    // refused (400: retrying can't help), and its existing series go on.
    std::thread::sleep(Duration::from_secs(wait + 1));
    assert!(eventually(Duration::from_secs(5), || {
        write(&svc, ACME, &lines(&[3], 1, 4_000)).0 == 204
    }));
    std::thread::sleep(Duration::from_secs(1));
    let (status, retry_after, message) = write(&svc, ACME, &lines(&[1, 4], 1, 5_000));
    assert_eq!(status, 400, "{message}");
    assert_eq!(retry_after, None);
    assert!(
        message
            .contains("has 3 series and its quota max_series = 3: this write would create 1 more"),
        "{message}"
    );
    assert_eq!(write(&svc, ACME, &lines(&[1, 2, 3], 1, 6_000)).0, 204);
    // Nothing of the refused body was stored; everything acknowledged was.
    assert!(eventually(Duration::from_secs(10), || {
        let answer = query(
            &svc,
            ACME,
            "measurement=m&field=v&start=0&end=10000000000000",
        );
        answer["series"].as_array().map_or(0, Vec::len) == 3
    }));
}
