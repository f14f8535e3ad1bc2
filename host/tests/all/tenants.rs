//! Tenants against the running binary: each tenant's quotas refuse its own writes only,
//! with answers that name the quota and say when to retry; the admin API changes tenants,
//! tokens and pipelines while the service runs, and audits every change.

use crate::common::plugin_file;
use crate::service_util::{
    ACME, ADMIN, GLOBEX, Service, TENANTS, admin_metrics, eventually, get_json, query, request,
    token, try_request_full,
};
use std::time::Duration;

/// The config of the two test tenants, each with `acme` / `globex` appended to its table
/// (limits, stages).
fn two_tenants(acme: &str, globex: &str) -> String {
    let tenant = |name: &str, extra: &str| {
        format!(
            "[[tenants]]\nname = \"{name}\"\ntokens = [\"{name}-token-1\"]\nretention_days = 36500\n{extra}\n"
        )
    };
    tenant("acme", acme) + &tenant("globex", globex)
}

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
    let body = two_tenants(
        "limits = { points_per_sec = 100, max_series = 3 }",
        "limits = { bytes_per_sec = 2000 }",
    );
    let svc = Service::start(&body, &[]);
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

/// An admin request with `token`: status and JSON answer.
fn admin(
    svc: &Service,
    token: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let auth = format!("Bearer {token}");
    let mut headers = vec![("Authorization", auth.as_str())];
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let (status, text) = request(method, &svc.admin_url(path), &headers, body);
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

#[test]
fn the_admin_api_changes_tenants_tokens_and_pipelines_at_runtime_and_audits_every_change() {
    let svc = Service::start(TENANTS, &["chaos", "threshold-alert"]);
    // Tenant tokens are not admin tokens; nor is nothing.
    for token in [ACME, "", "admin-token-012345678"] {
        let (status, answer) = admin(&svc, token, "GET", "/admin/v1/tenants", None);
        assert_eq!(status, 401, "{token:?}: {answer}");
    }
    let (status, tenants) = admin(&svc, ADMIN, "GET", "/admin/v1/tenants", None);
    assert_eq!(status, 200);
    let names: Vec<&str> = tenants
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(names, ["acme", "globex"], "seeded from the config file");
    assert!(!tenants.to_string().contains("acme-token-1"), "{tenants}");

    // A new tenant writes at once with the token it was given (shown once).
    let (status, created) = admin(
        &svc,
        ADMIN,
        "POST",
        "/admin/v1/tenants",
        Some(serde_json::json!({ "name": "initech", "retention_days": 36500 })),
    );
    assert_eq!(status, 201, "{created}");
    let initech = created["token"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let first_id = created["token"]["id"].as_str().expect("id").to_owned();
    assert_eq!(write(&svc, &initech, "m,s=1 v=1 1\n").0, 204);
    let (status, again) = admin(
        &svc,
        ADMIN,
        "POST",
        "/admin/v1/tenants",
        Some(serde_json::json!({ "name": "initech" })),
    );
    assert_eq!(status, 409, "{again}");

    // Pipelines are refused whole, naming the stage and field: nothing is applied.
    let pipeline = |stage: serde_json::Value| serde_json::json!({ "stages": [stage] });
    for (stage, wanted) in [
        (
            serde_json::json!({ "name": "gate", "plugin": "nowhere" }),
            "stage `gate`: `plugin`: no plugin `nowhere`",
        ),
        (
            serde_json::json!({ "name": "gate", "plugin": "threshold-alert" }),
            "stage `gate`: `plugin`:",
        ),
        (
            serde_json::json!({ "name": "gate", "plugin": "chaos", "params": { "mode": "bogus" } }),
            "stage `gate`: `params`:",
        ),
        (
            serde_json::json!({ "name": "gate", "plugn": "chaos" }),
            "unknown field `plugn`",
        ),
    ] {
        let (status, answer) = admin(
            &svc,
            ADMIN,
            "PUT",
            "/admin/v1/tenants/initech/pipeline",
            Some(pipeline(stage)),
        );
        assert_eq!(status, 400, "{answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(message.contains(wanted), "{wanted:?} not in {message:?}");
    }
    let (_, now) = admin(
        &svc,
        ADMIN,
        "GET",
        "/admin/v1/tenants/initech/pipeline",
        None,
    );
    assert_eq!(now["stages"], serde_json::json!([]), "nothing was applied");

    // A good pipeline takes effect for the next writes: odd batch positions dropped.
    let (status, answer) = admin(
        &svc,
        ADMIN,
        "PUT",
        "/admin/v1/tenants/initech/pipeline",
        Some(pipeline(
            serde_json::json!({ "name": "gate", "plugin": "chaos", "params": { "mode": "drop-odd" } }),
        )),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        write(&svc, &initech, "d v=0 10\nd v=1 11\nd v=2 12\nd v=3 13\n").0,
        204
    );
    assert!(eventually(Duration::from_secs(10), || {
        let answer = query(
            &svc,
            &initech,
            "measurement=d&field=v&start=0&end=100000000000",
        );
        answer["series"][0]["points"].as_array().map(Vec::len) == Some(2)
    }));

    // Tokens: a second one, then the first revoked: it stops at once.
    let (status, second) = admin(
        &svc,
        ADMIN,
        "POST",
        "/admin/v1/tenants/initech/tokens",
        Some(serde_json::json!({ "description": "ci" })),
    );
    assert_eq!(status, 201, "{second}");
    let second = second["token"].as_str().expect("token").to_owned();
    let (status, _) = admin(
        &svc,
        ADMIN,
        "DELETE",
        &format!("/admin/v1/tenants/initech/tokens/{first_id}"),
        None,
    );
    assert_eq!(status, 204);
    assert_eq!(write(&svc, &initech, "m v=2 2\n").0, 401);
    assert_eq!(write(&svc, &second, "m,s=1 v=2 2\n").0, 204);

    // Metrics: the public ones name no tenant, the admin's do.
    let public = request("GET", &svc.url("/metrics"), &[], Vec::new()).1;
    assert!(!public.contains("tenant=\""), "{public}");
    assert!(
        admin_metrics(&svc).contains("sluice_points_ingested_total{tenant=\"initech\"}"),
        "the admin's metrics name tenants"
    );

    // Deleted: its token stops at once.
    let (status, _) = admin(&svc, ADMIN, "DELETE", "/admin/v1/tenants/initech", None);
    assert_eq!(status, 204);
    assert_eq!(write(&svc, &second, "m v=3 3\n").0, 401);

    // Every change is in the audit log: who, what, when; refusals are not.
    let (status, audit) = admin(&svc, ADMIN, "GET", "/admin/v1/audit?limit=100", None);
    assert_eq!(status, 200);
    let entries: Vec<(String, String)> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            assert!(e["at"].as_str().is_some_and(|t| t.ends_with('Z')), "{e}");
            (
                e["by"].as_str().unwrap_or_default().to_owned(),
                e["action"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let wanted: Vec<(String, String)> = [
        ("config", "seed"),
        ("ops", "create-tenant"),
        ("ops", "replace-pipeline"),
        ("ops", "create-token"),
        ("ops", "revoke-token"),
        ("ops", "delete-tenant"),
    ]
    .iter()
    .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
    .collect();
    assert_eq!(entries, wanted);
    assert!(
        !audit.to_string().contains(&second),
        "no token in the audit log"
    );
    // The document is served, and is the one in the repository.
    let (status, doc) = admin(&svc, "", "GET", "/admin/v1/openapi.json", None);
    assert_eq!(status, 200);
    assert_eq!(doc["info"]["title"], "Sluice admin API");
}

/// Deploys `file`'s bytes as `tok`'s tenant's own plugin `name`: its version, once it
/// serves.
fn deploy(svc: &Service, tok: &str, name: &str, file: &str) -> String {
    let auth = token(tok);
    let bytes = std::fs::read(plugin_file(file)).expect("plugin file");
    let (status, body) = request(
        "PUT",
        &svc.url(&format!("/api/v1/plugins/{name}")),
        &[(auth.0, &auth.1), ("Content-Type", "application/wasm")],
        bytes,
    );
    assert!(status == 202 || status == 200, "{status}: {body}");
    let ticket: serde_json::Value = serde_json::from_str(&body).expect("json");
    let version = ticket["version"].as_str().expect("version").to_owned();
    let url = svc.url(&format!("/api/v1/plugins/{name}/versions/{version}"));
    assert!(
        eventually(Duration::from_secs(60), || {
            get_json(&url, tok).1["state"] == "deployed"
        }),
        "{name}@{version} never served: {}",
        get_json(&url, tok).1
    );
    version
}

#[test]
fn a_tenants_plugin_deploys_and_rolls_back_under_load_and_every_point_is_stored_once() {
    let svc = Service::start(TENANTS, &[]);
    let v1 = deploy(&svc, ACME, "gate", "drop-filter");
    let (status, answer) = admin(
        &svc,
        ADMIN,
        "PUT",
        "/admin/v1/tenants/acme/pipeline",
        Some(serde_json::json!({ "stages": [
            { "name": "gate", "plugin": "gate", "params": { "prefix": "debug", "mode": "pass" } }
        ] })),
    );
    assert_eq!(status, 200, "{answer}");
    // Globex can neither use acme's plugin nor replace it: its own `gate` is its own.
    let (status, answer) = admin(
        &svc,
        ADMIN,
        "PUT",
        "/admin/v1/tenants/globex/pipeline",
        Some(serde_json::json!({ "stages": [{ "name": "gate", "plugin": "gate" }] })),
    );
    assert_eq!(status, 400, "{answer}");
    let v_globex = deploy(&svc, GLOBEX, "gate", "chaos");

    // A steady writer: every acknowledged point is counted.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let acked = std::sync::atomic::AtomicUsize::new(0);
    let mut versions = Vec::new();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut t = 1usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body: String = (t..t + 10).map(|i| format!("m,w=1 v={i} {i}\n")).collect();
                if write(&svc, ACME, &body).0 == 204 {
                    acked.fetch_add(10, std::sync::atomic::Ordering::Relaxed);
                    t += 10;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        std::thread::sleep(Duration::from_millis(300));
        versions.push(deploy(&svc, ACME, "gate", "chaos"));
        std::thread::sleep(Duration::from_millis(300));
        let auth = token(ACME);
        let (status, body) = request(
            "POST",
            &svc.url("/api/v1/plugins/gate/rollback"),
            &[(auth.0, &auth.1), ("Content-Type", "application/json")],
            serde_json::json!({ "version": v1 }).to_string(),
        );
        assert_eq!(status, 200, "{body}");
        std::thread::sleep(Duration::from_millis(300));
        versions.push(deploy(&svc, ACME, "gate", "chaos"));
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let acked = acked.load(std::sync::atomic::Ordering::Relaxed);
    assert!(acked >= 100, "the writer wrote {acked}");
    assert_eq!(versions[0], versions[1], "one version by content");
    assert_ne!(versions[0], v1);
    let (_, plugins) = get_json(&svc.url("/api/v1/plugins"), ACME);
    assert_eq!(plugins["own"]["gate"]["active"], versions[0].as_str());
    assert_eq!(
        plugins["own"]["gate"]["versions"].as_array().map(Vec::len),
        Some(2),
        "{plugins}"
    );
    let (_, theirs) = get_json(&svc.url("/api/v1/plugins"), GLOBEX);
    assert_eq!(
        theirs["own"]["gate"]["active"],
        v_globex.as_str(),
        "{theirs}"
    );
    // Every acknowledged point, once: through every version that served meanwhile.
    let mut got = Vec::new();
    assert!(
        eventually(Duration::from_secs(20), || {
            let answer = query(
                &svc,
                ACME,
                "measurement=m&field=v&start=0&end=100000000000000",
            );
            got = crate::service_util::points(&answer);
            got.len() >= acked
        }),
        "{} of {acked}",
        got.len()
    );
    assert_eq!(got.len(), acked);
    let wanted: Vec<(i64, f64)> = (1..=acked)
        .map(|i| (i as i64 * 1_000_000_000, i as f64))
        .collect();
    assert_eq!(got, wanted);
    let (_, audit) = admin(&svc, ADMIN, "GET", "/admin/v1/audit", None);
    let by_acme: Vec<&str> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["by"] == "tenant acme")
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        by_acme,
        [
            "deploy-plugin",
            "deploy-plugin",
            "rollback-plugin",
            "deploy-plugin"
        ]
    );
}

#[test]
fn a_tenants_token_reaches_nothing_of_another_tenant_on_any_route() {
    let svc = Service::start(TENANTS, &["chaos"]);
    // Globex's data, rules and plugin.
    assert_eq!(write(&svc, GLOBEX, "secret,host=g v=42 1\n").0, 204);
    let v = deploy(&svc, GLOBEX, "private", "chaos");
    assert!(eventually(Duration::from_secs(10), || {
        let answer = query(
            &svc,
            GLOBEX,
            "measurement=secret&field=v&start=0&end=10000000000",
        );
        answer["series"].as_array().map(Vec::len) == Some(1)
    }));
    let auth = token(ACME);
    let headers = [(auth.0, auth.1.as_str())];
    // Reads with globex's names answer nothing of globex's.
    for path in [
        "/api/v1/query?measurement=secret&field=v&start=0&end=10000000000",
        "/api/v1/series",
        "/api/v1/series?measurement=secret",
        "/api/v1/alerts?start=0&end=10000000000",
        "/api/v1/late?start=0&end=10000000000",
        "/api/v1/dead-letters",
        "/api/v1/plugins",
    ] {
        let (status, body) = request("GET", &svc.url(path), &headers, Vec::new());
        assert_eq!(status, 200, "{path}: {body}");
        assert!(
            !body.contains("secret") && !body.contains("private"),
            "{path}: {body}"
        );
    }
    let (status, body) = request(
        "GET",
        &svc.url(&format!("/api/v1/plugins/private/versions/{v}")),
        &headers,
        Vec::new(),
    );
    assert_eq!(status, 400, "not acme's deployment: {body}");
    let (status, body) = request(
        "POST",
        &svc.url("/api/v1/plugins/private/rollback"),
        &[(auth.0, &auth.1), ("Content-Type", "application/json")],
        serde_json::json!({ "version": v }).to_string(),
    );
    assert_eq!(status, 400, "not acme's plugin: {body}");
    let (status, body) = request(
        "POST",
        &svc.url("/api/v1/dead-letters/replay"),
        &headers,
        Vec::new(),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"points\":0"), "{body}");
    // Writes land in acme's own data, whatever they are named.
    assert_eq!(write(&svc, ACME, "secret,host=g v=7 2\n").0, 204);
    assert!(eventually(Duration::from_secs(10), || {
        let answer = query(
            &svc,
            ACME,
            "measurement=secret&field=v&start=0&end=10000000000",
        );
        crate::service_util::points(&answer) == [(2_000_000_000, 7.0)]
    }));
    let answer = query(
        &svc,
        GLOBEX,
        "measurement=secret&field=v&start=0&end=10000000000",
    );
    assert_eq!(
        crate::service_util::points(&answer),
        [(1_000_000_000, 42.0)]
    );
    // No admin route takes a tenant's token.
    for (method, path) in sluice::admin::ROUTES {
        let path = path
            .replace("{name}", "globex")
            .replace("{plugin}", "private")
            .replace("{id}", "x")
            .replace("{version}", &v);
        if path.ends_with("openapi.json") {
            continue;
        }
        let (status, body) = request(
            &method.to_uppercase(),
            &svc.admin_url(&path),
            &[(auth.0, &auth.1), ("Content-Type", "application/json")],
            "{}",
        );
        assert_eq!(status, 401, "{method} {path}: {body}");
    }
    // Globex's plugin still serves globex, untouched.
    let (_, theirs) = get_json(&svc.url("/api/v1/plugins"), GLOBEX);
    assert_eq!(theirs["own"]["private"]["active"], v.as_str());
}

#[test]
fn a_noisy_tenant_flooding_a_slow_stage_and_deploying_a_failing_plugin_holds_back_no_other() {
    // Globex: the library's chaos plugin, passing everything. Acme: the same plugin as a
    // slow stage (20 ms of CPU a batch), then a gate of its own: first drop-filter (which
    // ignores `mode`), later chaos, which reads `mode = error` and fails every batch.
    let body = two_tenants(
        "",
        "[[tenants.stages]]\nname = \"gate\"\nplugin = \"chaos\"\nparams = { mode = \"pass\" }",
    );
    let svc = Service::start(&body, &["chaos"]);
    deploy(&svc, ACME, "gate", "drop-filter");
    let (status, answer) = admin(
        &svc,
        ADMIN,
        "PUT",
        "/admin/v1/tenants/acme/pipeline",
        Some(serde_json::json!({ "stages": [
            { "name": "slow", "plugin": "chaos", "params": { "mode": "slow", "ms": "20" } },
            { "name": "gate", "plugin": "gate", "params": { "mode": "error", "prefix": "debug" } }
        ] })),
    );
    assert_eq!(status, 200, "{answer}");

    let stop = std::sync::atomic::AtomicBool::new(false);
    let acme_acked = std::sync::atomic::AtomicUsize::new(0);
    let mut globex_statuses = Vec::new();
    std::thread::scope(|scope| {
        // Acme floods: 500-point writes as fast as they are taken, from two writers.
        for w in 0..2 {
            let (stop, acked, svc) = (&stop, &acme_acked, &svc);
            scope.spawn(move || {
                let mut n = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let body: String = (0..500)
                        .map(|i| format!("flood,w={w},i={i} v={n} {}\n", n + 1))
                        .collect();
                    if write(svc, ACME, &body).0 == 204 {
                        acked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    n += 1;
                }
            });
        }
        // Globex writes steadily throughout; a third of the way, acme deploys its failing
        // version.
        for i in 0..150 {
            let line = format!("steady,host=g v={i} {}\n", i + 1);
            globex_statuses.push(write(&svc, GLOBEX, &line).0);
            if i == 50 {
                deploy(&svc, ACME, "gate", "chaos");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    // Globex: every write acknowledged, every point stored promptly.
    assert!(
        globex_statuses.iter().all(|s| *s == 204),
        "{globex_statuses:?}"
    );
    assert!(
        eventually(Duration::from_secs(5), || {
            let answer = query(
                &svc,
                GLOBEX,
                "measurement=steady&field=v&start=0&end=1000000000000",
            );
            crate::service_util::points(&answer).len() == 150
        }),
        "globex's points were held back"
    );
    assert!(acme_acked.load(std::sync::atomic::Ordering::Relaxed) > 0);
    // Acme's failing version is quarantined for acme; the library's chaos serves globex
    // unquarantined, and its batches went on.
    let (_, plugins) = get_json(&svc.url("/api/v1/plugins"), ACME);
    assert_eq!(
        plugins["own"]["gate"]["versions"].as_array().map(Vec::len),
        Some(2)
    );
    let (_, health) = get_json(&svc.url("/health"), "");
    let chaos = health["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "chaos")
        .cloned()
        .unwrap_or_default();
    assert_ne!(chaos["health"]["state"], "quarantined", "{health}");
    let (_, letters) = get_json(&svc.url("/api/v1/dead-letters"), ACME);
    assert!(
        letters["dead_letters"]
            .as_array()
            .is_some_and(|l| !l.is_empty() && l.iter().all(|l| l["stage"] == "acme/gate")),
        "{letters}"
    );
    let (_, theirs) = get_json(&svc.url("/api/v1/dead-letters"), GLOBEX);
    assert_eq!(theirs["dead_letters"], serde_json::json!([]));
}

#[test]
fn kill_9_with_one_tenants_lane_behind_the_others_loses_and_repeats_nothing() {
    // Acme's lane runs a slow stage, so at the kill it is behind globex's on every
    // partition: the store holds globex's lane offsets ahead of the partitions'.
    let body = two_tenants(
        "[[tenants.stages]]\nname = \"slow\"\nplugin = \"chaos\"\nparams = { mode = \"slow\", ms = 5 }",
        "",
    );
    let mut svc = Service::start(&body, &["chaos"]);
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .expect("clock");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let url = svc.url("/api/v2/write");
    let acked: Vec<(&str, Vec<i64>)> = std::thread::scope(|scope| {
        let writers: Vec<_> = [ACME, GLOBEX, ACME, GLOBEX]
            .into_iter()
            .enumerate()
            .map(|(w, tok)| {
                let (stop, url) = (&stop, &url);
                scope.spawn(move || {
                    let mut acked = Vec::new();
                    let mut batch = 0i64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let body: String = (0..50)
                            .map(|i| {
                                format!(
                                    "crash,w={w} seq={} {}\n",
                                    batch * 50 + i,
                                    base + batch * 50 + i
                                )
                            })
                            .collect();
                        let auth = token(tok);
                        match try_request_full("POST", url, &[(auth.0, &auth.1)], body.into_bytes())
                        {
                            Ok((204, _, _)) => acked.push(batch),
                            Ok(_) | Err(_) => break,
                        }
                        batch += 1;
                    }
                    (tok, acked)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(2000));
        svc.kill_9();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writers
            .into_iter()
            .map(|w| w.join().expect("writer"))
            .collect()
    });
    svc.restart();
    for (w, (tok, batches)) in acked.iter().enumerate() {
        assert!(!batches.is_empty(), "writer {w} wrote nothing");
        let wanted = batches.len() * 50;
        let stored = || {
            crate::service_util::points(&query(
                &svc,
                tok,
                &format!(
                    "measurement=crash&field=seq&tag=w:{w}&start={base}&end={}",
                    base + 10_000_000
                ),
            ))
        };
        assert!(
            eventually(Duration::from_secs(30), || stored().len() >= wanted),
            "writer {w}: {} of {wanted} acknowledged points after the restart",
            stored().len()
        );
        let stored = stored();
        for batch in batches {
            for i in 0..50 {
                let t = base + batch * 50 + i;
                assert!(
                    stored.binary_search_by_key(&t, |(t, _)| *t).is_ok(),
                    "writer {w}: point {t} lost"
                );
            }
        }
    }
    // Below the read path: each point once, for both tenants.
    svc.stop();
    use sluice::store::Store as _;
    let store = sluice::store::EmbeddedStore::open(&svc.data_dir().join("store")).expect("store");
    for tenant in ["acme", "globex"] {
        let tenant = sluice::tenant::TenantId::new(tenant);
        let series = store
            .series(&tenant, &sluice::store::SeriesFilter::default())
            .expect("series");
        assert_eq!(series.len(), 2, "{tenant}");
        for s in &series {
            let samples = store.stored_samples(&tenant, s).expect("samples");
            let mut ts: Vec<i64> = samples.iter().map(|(t, _)| *t).collect();
            ts.dedup();
            assert_eq!(
                ts.len(),
                samples.len(),
                "a point of {tenant} stored twice in {s:?}"
            );
        }
    }
}

/// The value of the first sample of `metrics` whose line starts with `prefix`.
fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(prefix)?.rsplit(' ').next()?.parse().ok())
}

#[test]
fn stored_bytes_are_measured_per_tenant_shown_to_the_admin_only_and_the_storage_quota_refuses_on_them()
 {
    let body = two_tenants("limits = { max_stored_bytes = 1 }", "");
    let mut svc = Service::start(&body, &[]);
    // Measured at start: nothing stored yet, so acme's quota lets this through.
    assert_eq!(write(&svc, ACME, &lines(&[1], 200, 1_000)).0, 204);
    assert_eq!(write(&svc, GLOBEX, &lines(&[1, 2], 50, 1_000)).0, 204);
    let count = |tok: &str| {
        query(
            &svc,
            tok,
            "measurement=m&field=v&start=0&end=10000000000000",
        )["series"]
            .as_array()
            .map_or(0, |s| {
                s.iter()
                    .map(|s| s["points"].as_array().map_or(0, Vec::len))
                    .sum()
            })
    };
    assert!(eventually(Duration::from_secs(10), || count(ACME) == 200
        && count(GLOBEX) == 100));
    // A restart measures again at once (then every 30 s).
    svc.stop();
    svc.restart();
    let raw = |metrics: &str, tenant: &str| {
        sample(
            metrics,
            &format!("sluice_stored_bytes{{tenant=\"{tenant}\",data=\"raw\",tier=\"\"}}"),
        )
    };
    let mut metrics = String::new();
    assert!(
        eventually(Duration::from_secs(10), || {
            metrics = admin_metrics(&svc);
            raw(&metrics, "acme").is_some_and(|b| b > 0.0)
                && raw(&metrics, "globex").is_some_and(|b| b > 0.0)
        }),
        "no stored bytes per tenant in {metrics}"
    );
    // acme is past its 1 byte: refused, naming the quota; globex writes on.
    let (status, _, message) = write(&svc, ACME, &lines(&[1], 1, 5_000));
    assert_eq!(status, 429, "{message}");
    assert!(message.contains("max_stored_bytes = 1"), "{message}");
    assert_eq!(write(&svc, GLOBEX, &lines(&[1], 1, 5_000)).0, 204);
    // The public metrics have the data directory's bytes on disk, and no tenant's name.
    let public = request("GET", &svc.url("/metrics"), &[], Vec::new()).1;
    for path in ["store", "log"] {
        let bytes = sample(&public, &format!("sluice_disk_bytes{{path=\"{path}\"}}"));
        assert!(bytes.is_some_and(|b| b > 0.0), "{path}: {public}");
    }
    assert!(
        !public.contains("acme") && !public.contains("globex"),
        "{public}"
    );
}
