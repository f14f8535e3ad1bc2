//! The `sluice plugin` commands, run as a plugin author runs them.

use std::path::Path;
use std::process::Command;

use crate::common::plugin_file;
use crate::service_util::{Service, TENANTS};

fn sluice(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        // Without a configuration the CLI caches compiled plugins in the user's cache
        // directory: the tests keep theirs in the target directory, shared among them.
        .env("XDG_CACHE_HOME", crate::common::xdg_cache_home())
        .output()
        .expect("run sluice");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `sluice plugin run PLUGIN --input INPUT ARGS...`.
fn run_plugin(
    plugin: &std::path::Path,
    input: &std::path::Path,
    args: &[&str],
) -> (bool, String, String) {
    let mut all = vec![
        "plugin",
        "run",
        plugin.to_str().expect("utf-8 path"),
        "--input",
        input.to_str().expect("utf-8 path"),
    ];
    all.extend_from_slice(args);
    sluice(&all)
}

#[test]
fn check_prints_world_exports_imports_and_size() {
    for (name, world, export) in [
        ("drop-filter", "filter", "filter"),
        ("enrich", "transform", "transform"),
        ("rate", "transform", "transform"),
        ("threshold-alert", "alert", "evaluate"),
        ("drop-filter-py", "filter", "filter"),
        ("threshold-alert-js", "alert", "evaluate"),
    ] {
        let file = plugin_file(name);
        let (ok, stdout, stderr) = sluice(&["plugin", "check", file.to_str().expect("utf-8 path")]);
        assert!(ok, "{name}: {stderr}");
        assert!(
            stdout.contains(&format!("world:   {world} (sluice:plugin@0.2.0)")),
            "{stdout}"
        );
        let exports = stdout
            .lines()
            .find(|l| l.starts_with("exports:"))
            .unwrap_or("");
        assert!(exports.contains(export), "{stdout}");
        assert!(stdout.contains("sluice:plugin/types@0.2.0"), "{stdout}");
        let size = std::fs::metadata(&file).expect("metadata").len();
        assert!(
            stdout.contains(&format!("size:    {size} bytes")),
            "{stdout}"
        );
    }
}

#[test]
fn check_fails_clearly_on_a_file_that_is_not_a_plugin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"hello").expect("write");
    let (ok, _, stderr) = sluice(&["plugin", "check", junk.to_str().expect("utf-8 path")]);
    assert!(!ok);
    assert!(
        stderr.contains("junk.wasm: not a WebAssembly component"),
        "{stderr}"
    );
}

#[test]
fn run_shows_kept_and_dropped_points_and_alerts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.lp");
    std::fs::write(&input, "cpu,host=a value=1 1\nswap,host=a value=2 2\n").expect("write");
    let filter = plugin_file("drop-filter");
    let (ok, stdout, stderr) = run_plugin(&filter, &input, &["--param", "measurement=swap"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "+ cpu,host=a value=1 1\n- swap,host=a value=2 2\n");
    assert!(stderr.contains("2 points in, 1 kept"), "{stderr}");

    std::fs::write(
        &input,
        "cpu,host=a mean=95 60000000000\ncpu,host=a mean=50 120000000000\n",
    )
    .expect("write");
    let alert = plugin_file("threshold-alert");
    let (ok, stdout, stderr) = run_plugin(
        &alert,
        &input,
        &[
            "--param",
            "crit_above=90",
            "--field",
            "usage",
            "--batch-size",
            "1",
        ],
    );
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with("ALERT critical rule=cli series=cpu,host=a field=usage value=95"),
        "{stdout}"
    );
    assert!(lines[1].starts_with("ALERT ok "), "{stdout}");
}

#[test]
fn run_reports_bad_input_with_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.lp");
    let filter = plugin_file("drop-filter");
    // Unparsable, and parsable but refused by the service's ingest (a tag given twice).
    for (body, why) in [
        ("cpu value=1 1\ncpu value=x 2\n", "line 2:"),
        (
            "cpu,h=a value=1 1\ncpu,h=a,h=b value=1 2\n",
            "line 2: tag `h` appears twice (the service refuses this point at ingest)",
        ),
    ] {
        std::fs::write(&input, body).expect("write");
        let (ok, stdout, stderr) = run_plugin(&filter, &input, &[]);
        assert!(!ok && stdout.is_empty(), "{stdout}");
        assert!(stderr.contains(why), "{stderr}");
    }
}

#[test]
fn admin_commands_manage_a_running_service_with_tables_and_clear_errors() {
    use crate::service_util::{ADMIN, Service, TENANTS};
    let svc = Service::start(TENANTS, &["chaos"]);
    let url = format!("http://{}", svc.admin);
    let api = format!("http://{}", svc.addr);
    let admin = |args: &[&str]| {
        let mut all = vec!["admin", "--url", url.as_str(), "--token", ADMIN];
        all.extend_from_slice(args);
        sluice(&all)
    };
    let (ok, stdout, stderr) = admin(&["tenants", "list"]);
    assert!(ok, "{stderr}");
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        [
            "NAME",
            "RETENTION_DAYS",
            "TOKENS",
            "STAGES",
            "ALERTS",
            "ROLLUPS",
            "LIMITS"
        ],
        "{stdout}"
    );
    assert_eq!(
        rows[1],
        ["acme", "36500", "1", "0", "0", "0", "{}"],
        "{stdout}"
    );
    // Columns line up: each starts where its header does.
    let at = |line: &str, cell: &str| line.find(cell);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(at(lines[0], "TOKENS"), at(lines[2], "1"), "{stdout}");

    let (ok, stdout, stderr) =
        admin(&["tenants", "create", "initech", "--retention-days", "36500"]);
    assert!(ok, "{stderr}");
    let token = stdout
        .lines()
        .find_map(|l| l.strip_prefix("token (shown once, keep it now): "))
        .expect("the token, once")
        .to_owned();

    // A pipeline file (TOML, as in the config file) naming a plugin there isn't: refused
    // with the service's message, and a non-zero exit.
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[stages]]\nname = \"gate\"\nplugin = \"nowhere\"\n").expect("write");
    let (ok, _, stderr) = admin(&["pipeline", "set", "initech", bad.to_str().expect("path")]);
    assert!(!ok);
    assert!(
        stderr.contains(
            "400 Bad Request: tenant `initech`: stage `gate`: `plugin`: no plugin `nowhere`"
        ),
        "{stderr}"
    );

    // A plugin of its own, deployed and waited for, then used by its pipeline.
    let deploy = |file: &str| {
        let path = plugin_file(file);
        let (ok, stdout, stderr) = admin(&[
            "plugins",
            "deploy",
            "initech",
            "gate",
            path.to_str().expect("path"),
        ]);
        assert!(ok, "{stderr}");
        assert!(stdout.contains("serves `initech`"), "{stdout}");
        stdout
            .split_once('@')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .expect("version")
            .to_owned()
    };
    let first = deploy("drop-filter");
    let good = dir.path().join("good.json");
    std::fs::write(
        &good,
        r#"{"stages":[{"name":"gate","plugin":"gate","params":{"prefix":"debug","mode":"trap"}}]}"#,
    )
    .expect("write");
    let (ok, _, stderr) = admin(&["pipeline", "set", "initech", good.to_str().expect("path")]);
    assert!(ok, "{stderr}");
    // A failing version (chaos, told to trap): its batches fail, and are dead letters,
    // listed with the tenant's own token.
    deploy("chaos");
    let (ok, stdout, _) = admin(&["plugins", "list", "initech"]);
    assert!(
        ok && stdout.contains(&first) && stdout.contains("serving"),
        "{stdout}"
    );
    let auth = format!("Token {token}");
    let write = || {
        crate::service_util::request(
            "POST",
            &svc.url("/api/v2/write?precision=s"),
            &[("Authorization", &auth)],
            "m v=1 1\n",
        )
        .0
    };
    assert_eq!(write(), 204);
    let dead_letters = || {
        sluice(&[
            "admin",
            "--api",
            &api,
            "--token",
            &token,
            "dead-letters",
            "list",
        ])
    };
    assert!(
        crate::service_util::eventually(std::time::Duration::from_secs(10), || {
            dead_letters().1.contains("initech/gate")
        }),
        "{:?}\n{}",
        dead_letters(),
        svc.log()
    );
    let (ok, stdout, _) = dead_letters();
    assert!(
        ok && stdout.contains("initech/gate") && stdout.contains("gate@"),
        "{stdout}"
    );
    // Rolled back, the first version serves again; the letter re-runs through it.
    let (ok, stdout, stderr) = admin(&["plugins", "rollback", "initech", "gate", &first]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains(&format!("gate@{first} serves `initech` again")),
        "{stdout}"
    );
    let (ok, stdout, stderr) = sluice(&[
        "admin",
        "--api",
        &api,
        "--token",
        &token,
        "dead-letters",
        "replay",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with("re-ran 1 letters (1 points)"),
        "{stdout}"
    );

    let (ok, stdout, _) = admin(&["audit"]);
    assert!(ok, "{stdout}");
    for action in [
        "seed",
        "create-tenant",
        "deploy-plugin",
        "replace-pipeline",
        "rollback-plugin",
    ] {
        assert!(stdout.contains(action), "{action}: {stdout}");
    }
    // A wrong admin token, or nobody there: clear errors.
    let (ok, _, stderr) = sluice(&["admin", "--url", &url, "--token", "nope", "tenants", "list"]);
    assert!(
        !ok && stderr.contains("401 Unauthorized: unauthorized"),
        "{stderr}"
    );
    let (ok, _, stderr) = sluice(&[
        "admin",
        "--url",
        "http://127.0.0.1:9",
        "--token",
        ADMIN,
        "tenants",
        "list",
    ]);
    assert!(
        !ok && stderr.contains("cannot reach http://127.0.0.1:9"),
        "{stderr}"
    );
}

#[test]
fn check_instantiates_under_the_limits_of_the_configuration() {
    // Even the Rust drop-filter starts with more than 1 MiB of linear memory (stack and
    // heap): under a service configured with that cap it could never run a batch, and
    // check says so before deploy. (`instances` tests the same of a Python component.)
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("sluice.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\ntenants = []\n[plugins]\nmemory_mib = 1\n",
            data.display()
        ),
    )
    .expect("write");
    let file = plugin_file("drop-filter");
    let (ok, _, stderr) = sluice(&[
        "plugin",
        "check",
        file.to_str().expect("utf-8 path"),
        "--config",
        config.to_str().expect("utf-8 path"),
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("cannot be instantiated") && stderr.contains("memory limit"),
        "{stderr}"
    );
    // The service's artifact cache is the one used.
    assert!(
        std::fs::read_dir(data.join("plugin-cache"))
            .expect("cache dir")
            .any(|e| e
                .expect("entry")
                .path()
                .extension()
                .is_some_and(|x| x == "cwasm")),
        "compiled into the configuration's cache"
    );
}

#[test]
fn deploy_installs_by_rename_and_waits_until_the_version_serves_or_says_why_not() {
    let svc = Service::start(TENANTS, &[]);
    let url = svc.url("");
    let dir = svc.plugin_dir();
    let file = plugin_file("drop-filter");
    let (ok, stdout, stderr) = sluice(&[
        "plugin",
        "deploy",
        file.to_str().expect("utf-8 path"),
        "--dir",
        dir.to_str().expect("utf-8 path"),
        "--url",
        &url,
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("drop-filter@") && stdout.contains("serving after"),
        "{stdout}"
    );
    let junk = dir.parent().expect("parent").join("junk.wasm");
    std::fs::write(&junk, b"not wasm").expect("write");
    let (ok, _, stderr) = sluice(&[
        "plugin",
        "deploy",
        junk.to_str().expect("utf-8 path"),
        "--name",
        "drop-filter",
        "--dir",
        dir.to_str().expect("utf-8 path"),
        "--url",
        &url,
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("refused:") && stderr.contains("not a WebAssembly component"),
        "{stderr}"
    );
    assert!(stderr.contains("still serves"), "{stderr}");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(leftovers, ["drop-filter.wasm"], "no temporary file left");
}

/// Runs `program args` in `dir`; panics with its output when it fails.
fn run_in(dir: &Path, program: &str, args: &[&str], env: &[(&str, &Path)]) -> String {
    let mut command = Command::new(program);
    command.args(args).current_dir(dir);
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{program} {args:?} in {}: {text}",
        dir.display()
    );
    text
}

#[test]
fn new_projects_test_build_check_and_run_in_every_language() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The Rust projects share the example plugins' target directory: std for the wasm
    // target is built once.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/target");
    let env: &[(&str, &Path)] = &[("CARGO_TARGET_DIR", &target)];
    let langs = [
        ("rust", "cargo", &["test", "--quiet"][..]),
        ("python", "python3", &["-m", "unittest"][..]),
        ("js", "node", &["--test"][..]),
    ];
    let input = dir.path().join("in.lp");
    std::fs::write(
        &input,
        "weather,ville=Zürich temp_f=212,value=20 60000000000\ncpu,host=a value=80,max=95 120000000000\n",
    )
    .expect("write");
    for (i, (lang, program, test)) in langs.into_iter().enumerate() {
        for (j, world) in ["filter", "transform", "alert"].into_iter().enumerate() {
            let name = format!("my-{lang}-{world}");
            let (ok, stdout, stderr) = sluice(&[
                "plugin",
                "new",
                &name,
                "--lang",
                lang,
                "--world",
                world,
                "--dir",
                dir.path().to_str().expect("utf-8 path"),
            ]);
            assert!(ok, "{lang} {world}: {stderr}");
            assert!(stdout.contains("created"), "{stdout}");
            let project = dir.path().join(&name);
            run_in(&project, program, test, env);
            // One world per language goes all the way to a component in the host.
            if i != j {
                continue;
            }
            run_in(&project, "./build.sh", &[], env);
            let wasm = project.join(format!("dist/{name}.wasm"));
            let wasm = wasm.to_str().expect("utf-8 path");
            let (ok, stdout, stderr) = sluice(&["plugin", "check", wasm]);
            assert!(ok, "{name}: {stderr}");
            assert!(stdout.contains(&format!("world:   {world}")), "{stdout}");
            // The templates' parameters: what each needs, the others ignore.
            let (ok, _, stderr) = sluice(&[
                "plugin",
                "run",
                wasm,
                "--input",
                input.to_str().expect("utf-8 path"),
                "--param",
                "above=90",
                "--param",
                "max=50",
            ]);
            assert!(ok, "{name} run: {stderr}");
        }
    }
}
