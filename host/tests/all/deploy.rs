//! Plugin deployment through the running service, as an operator does it: files renamed
//! into the plugin directory, watched over `/health` (in-process tests: `reload.rs`).

use std::time::Duration;

use crate::common::plugin_file;
use crate::service_util::{Service, eventually, get_json, request, token};

const BODY: &str = r#"
[[tenants]]
name = "acme"
tokens = ["acme-token-1"]
retention_days = 36500
[[tenants.stages]]
name = "gate"
plugin = "gate"
params = { measurement = "debug*", mode = "trap" }
"#;

/// Deploys `bytes` as the plugin `gate` by atomic rename.
fn deploy(svc: &Service, bytes: &[u8]) {
    let dir = svc.data_dir().with_file_name("plugins");
    std::fs::write(dir.join(".gate.wasm.tmp"), bytes).expect("write");
    std::fs::rename(dir.join(".gate.wasm.tmp"), dir.join("gate.wasm")).expect("rename");
}

fn health(svc: &Service) -> serde_json::Value {
    let (_, body) = request("GET", &svc.url("/health"), &[], Vec::new());
    serde_json::from_str(&body).expect("health json")
}

fn gate(health: &serde_json::Value) -> serde_json::Value {
    health["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "gate")
        .cloned()
        .unwrap_or_default()
}

/// Writes `debug v=N` and `keep v=N` for acme.
fn write_pair(svc: &Service, n: i64) {
    write_as(
        svc,
        "acme-token-1",
        format!("debug v={n} {n}\nkeep v={n} {n}\n"),
    );
}

/// Writes `lines` with `tok`; it must be acknowledged.
fn write_as(svc: &Service, tok: &str, lines: String) {
    let auth = token(tok);
    let (status, body) = request(
        "POST",
        &svc.url("/api/v2/write"),
        &[(auth.0, &auth.1)],
        lines,
    );
    assert_eq!(status, 204, "{body}");
}

fn stored(svc: &Service, measurement: &str) -> Vec<i64> {
    stored_as(svc, "acme-token-1", measurement)
}

/// The times of `measurement`'s stored points, as `tok`'s tenant sees them.
fn stored_as(svc: &Service, tok: &str, measurement: &str) -> Vec<i64> {
    let (_, answer) = get_json(
        &svc.url(&format!(
            "/api/v1/query?measurement={measurement}&field=v&start=0&end=1000"
        )),
        tok,
    );
    answer["series"][0]["points"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p[0].as_i64())
        .collect()
}

#[test]
fn hot_swap_broken_deploy_and_quarantine_through_the_running_service() {
    let svc = Service::start_with(BODY, &[], |data| {
        let plugins = data.with_file_name("plugins");
        std::fs::create_dir_all(&plugins).expect("plugin dir");
        std::fs::copy(plugin_file("drop-filter"), plugins.join("gate.wasm")).expect("copy");
    });
    let first = gate(&health(&svc))["version"].clone();
    assert!(first.is_string(), "{}", health(&svc));
    write_pair(&svc, 1);
    assert!(eventually(Duration::from_secs(10), || stored(&svc, "keep") == [1]));
    assert!(stored(&svc, "debug").is_empty(), "the filter drops debug*");

    // A broken file never replaces the working version; /health says so.
    deploy(&svc, b"\0asm garbage");
    assert!(
        eventually(Duration::from_secs(20), || {
            gate(&health(&svc))["load_error"].is_string()
        }),
        "{}",
        health(&svc)
    );
    let h = health(&svc);
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(
        gate(&h)["version"],
        first,
        "still serving the working version"
    );
    write_pair(&svc, 2);
    assert!(eventually(Duration::from_secs(10), || stored(&svc, "keep") == [1, 2]));
    assert!(stored(&svc, "debug").is_empty());

    // A version that traps on every batch: dead letters, then quarantine.
    deploy(&svc, &std::fs::read(plugin_file("chaos")).expect("chaos"));
    assert!(eventually(Duration::from_secs(20), || {
        gate(&health(&svc))["version"] != first
    }));
    for n in 3..7 {
        write_pair(&svc, n);
    }
    assert!(
        eventually(Duration::from_secs(20), || {
            gate(&health(&svc))["health"]["state"] == "quarantined"
        }),
        "{}",
        health(&svc)
    );
    let kept = || {
        std::fs::read_to_string(svc.data_dir().join("dead-letters.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let letter: serde_json::Value = serde_json::from_str(l).expect("letter");
                letter["items"].as_array().map_or(0, Vec::len)
            })
            .sum::<usize>()
    };
    assert!(
        eventually(Duration::from_secs(10), || kept() == 8),
        "every point of the bad version's batches kept: {}",
        kept()
    );
    assert_eq!(stored(&svc, "keep"), [1, 2], "nothing of them stored");

    // The working version again: the quarantine is lifted and writes flow.
    deploy(
        &svc,
        &std::fs::read(plugin_file("drop-filter")).expect("drop-filter"),
    );
    assert!(
        eventually(Duration::from_secs(20), || health(&svc)["status"] == "ok"),
        "{}",
        health(&svc)
    );
    write_pair(&svc, 7);
    assert!(eventually(Duration::from_secs(10), || stored(&svc, "keep")
        == [1, 2, 7]));
    assert!(stored(&svc, "debug").is_empty());
}

#[test]
fn points_past_retention_are_refused_and_the_retention_loop_deletes_those_that_age_past_it() {
    let body = "retention_interval_secs = 1\n[[tenants]]\nname = \"acme\"\ntokens = [\"acme-token-1\"]\nretention_days = 1\n[[tenants]]\nname = \"globex\"\ntokens = [\"globex-token-1\"]\nretention_days = 3\n";
    let svc = Service::start(body, &[]);
    let now = sluice::time::now_ns();
    let day = 86_400_000_000_000i64;
    let write = |tok: &str, lines: String| {
        let auth = token(tok);
        request(
            "POST",
            &svc.url("/api/v2/write"),
            &[(auth.0, &auth.1)],
            lines,
        )
    };
    // Two days old: refused for acme (one day), taken by globex (three).
    let old = format!("r v=0 {}\n", now - 2 * day);
    let (status, answer) = write("acme-token-1", format!("r v=9 {now}\n{old}"));
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer.contains("line 2: timestamp")
            && answer.contains("older than the tenant's retention of 1 days"),
        "{answer}"
    );
    assert_eq!(write("globex-token-1", old).0, 204);
    // Three seconds short of a day: taken, then deleted once it ages past the day.
    let aging = format!(
        "r v=1 {}\nr v=2 {}\n",
        now - day + 3_000_000_000,
        now - day / 2
    );
    assert_eq!(write("acme-token-1", aging).0, 204);
    let count = |tok: &str| {
        let (_, answer) = get_json(
            &svc.url(&format!(
                "/api/v1/query?measurement=r&field=v&start=0&end={}",
                now + day
            )),
            tok,
        );
        answer["series"][0]["points"].as_array().map_or(0, Vec::len)
    };
    assert!(eventually(Duration::from_secs(10), || count(
        "acme-token-1"
    ) == 2));
    assert!(
        eventually(Duration::from_secs(20), || count("acme-token-1") == 1),
        "acme kept {} points; log: {}",
        count("acme-token-1"),
        svc.log()
    );
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(count("acme-token-1"), 1, "the fresher point stays");
    assert_eq!(count("globex-token-1"), 1, "globex keeps three days");
}

#[test]
fn a_tenant_whose_batches_fail_quarantines_a_shared_plugin_for_itself_only() {
    let body = r#"
[[tenants]]
name = "acme"
tokens = ["acme-token-1"]
retention_days = 36500
[[tenants.stages]]
name = "gate"
plugin = "chaos"
params = { mode = "trap" }

[[tenants]]
name = "globex"
tokens = ["globex-token-1"]
retention_days = 36500
[[tenants.stages]]
name = "gate"
plugin = "chaos"
params = { mode = "pass" }
"#;
    let svc = Service::start(body, &["chaos"]);
    let chaos = |h: &serde_json::Value| {
        h["plugins"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == "chaos")
            .cloned()
            .unwrap_or_default()
    };
    // Interleaved, a batch each, so each tenant's batches meet the plugin in turn.
    for n in 1..=5 {
        write_as(&svc, "acme-token-1", format!("keep v={n} {n}\n"));
        write_as(&svc, "globex-token-1", format!("keep v={n} {n}\n"));
        let expected: Vec<i64> = (1..=n).collect();
        assert!(
            eventually(Duration::from_secs(10), || stored_as(
                &svc,
                "globex-token-1",
                "keep"
            ) == expected),
            "globex's batch {n} is stored; log: {}",
            svc.log()
        );
    }
    assert!(
        eventually(Duration::from_secs(10), || {
            chaos(&health(&svc))["health"]["state"] == "quarantined"
        }),
        "{}",
        health(&svc)
    );
    let h = health(&svc);
    assert_eq!(chaos(&h)["health"]["tenants"], 1, "for acme only: {h}");
    assert!(
        !h.to_string().contains("acme"),
        "the unauthenticated /health names no tenant: {h}"
    );
    for n in 6..=8 {
        write_as(&svc, "globex-token-1", format!("keep v={n} {n}\n"));
    }
    assert!(
        eventually(Duration::from_secs(10), || stored_as(
            &svc,
            "globex-token-1",
            "keep"
        ) == (1..=8)
            .collect::<Vec<i64>>()),
        "globex still flows; log: {}",
        svc.log()
    );
    assert!(
        stored(&svc, "keep").is_empty(),
        "acme's batches all trapped"
    );
    let stages = || -> Vec<String> {
        std::fs::read_to_string(svc.data_dir().join("dead-letters.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let letter: serde_json::Value = serde_json::from_str(l).expect("letter");
                letter["stage"].as_str().unwrap_or_default().to_owned()
            })
            .collect()
    };
    assert!(
        eventually(Duration::from_secs(10), || stages().len() == 5),
        "a dead letter for each of acme's batches: {:?}",
        stages()
    );
    let stages = stages();
    assert!(stages.iter().all(|s| s == "acme/gate"), "{stages:?}");

    // Each tenant reads its own dead letters through the API, a page at a time.
    let page = |tok: &str, cursor: &str| {
        let url = svc.url(&format!("/api/v1/dead-letters?limit=2{cursor}"));
        let (status, answer) = get_json(&url, tok);
        assert_eq!(status, 200, "{answer}");
        answer
    };
    let (mut cursor, mut items, mut pages) = (String::new(), Vec::new(), 0);
    loop {
        let answer = page("acme-token-1", &cursor);
        pages += 1;
        for letter in answer["dead_letters"].as_array().into_iter().flatten() {
            assert_eq!(letter["stage"], "acme/gate", "{letter}");
            assert_eq!(letter["plugin"], "chaos", "{letter}");
            items.extend(letter["items"].as_array().cloned().unwrap_or_default());
        }
        match answer["next"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    let expected: Vec<String> = (1..=5).map(|n| format!("keep v={n} {n}")).collect();
    assert_eq!(items, expected, "every failed point, once, in order");
    assert!(pages >= 3, "two letters a page: {pages} pages");
    let theirs = page("globex-token-1", "");
    assert_eq!(theirs["dead_letters"], serde_json::json!([]), "{theirs}");

    // The plugin fixed (a filter that keeps all, under its name), acme re-runs its dead
    // letters: each point stored once, however often it asks.
    let before = chaos(&health(&svc))["version"].clone();
    let dir = svc.data_dir().with_file_name("plugins");
    std::fs::copy(plugin_file("drop-filter"), dir.join(".chaos.wasm.tmp")).expect("copy");
    std::fs::rename(dir.join(".chaos.wasm.tmp"), dir.join("chaos.wasm")).expect("rename");
    assert!(
        eventually(Duration::from_secs(20), || chaos(&health(&svc))["version"]
            != before),
        "{}",
        health(&svc)
    );
    let replay = |tok: &str| {
        let auth = token(tok);
        let (status, body) = request(
            "POST",
            &svc.url("/api/v1/dead-letters/replay"),
            &[(auth.0, &auth.1)],
            String::new(),
        );
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<serde_json::Value>(&body).expect("json")
    };
    let first = replay("acme-token-1");
    assert_eq!(
        (&first["letters"], &first["points"]),
        (&5.into(), &5.into()),
        "{first}"
    );
    assert!(
        eventually(Duration::from_secs(10), || stored(&svc, "keep")
            == (1..=5).collect::<Vec<i64>>()),
        "acme's points, re-run: {:?}",
        stored(&svc, "keep")
    );
    let again = replay("acme-token-1");
    assert_eq!(again["letters"], 0, "already re-run: {again}");
    assert_eq!(replay("globex-token-1")["letters"], 0, "globex had none");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        stored(&svc, "keep"),
        (1..=5).collect::<Vec<i64>>(),
        "once each"
    );
}
