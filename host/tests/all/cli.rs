//! The `sluice plugin` commands, run as a plugin author runs them.

use std::process::Command;

use crate::common::plugin_file;

fn sluice(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .output()
        .expect("run sluice");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_prints_world_exports_imports_and_size() {
    for (name, world, export) in [
        ("drop-filter", "filter", "filter"),
        ("enrich", "transform", "transform"),
        ("rate", "transform", "transform"),
        ("threshold-alert", "alert", "evaluate"),
    ] {
        let file = plugin_file(name);
        let (ok, stdout, stderr) = sluice(&["plugin", "check", file.to_str().expect("utf-8 path")]);
        assert!(ok, "{name}: {stderr}");
        assert!(
            stdout.contains(&format!("world:   {world} (sluice:plugin@0.1.0)")),
            "{stdout}"
        );
        assert!(stdout.contains(&format!("exports: {export}")), "{stdout}");
        assert!(stdout.contains("sluice:plugin/params@0.1.0"), "{stdout}");
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
    let (ok, stdout, stderr) = sluice(&[
        "plugin",
        "run",
        filter.to_str().expect("utf-8 path"),
        "--input",
        input.to_str().expect("utf-8 path"),
        "--param",
        "measurement=swap",
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "+ cpu,host=a value=1 1\n- swap,host=a value=2 2\n");
    assert!(stderr.contains("2 points in, 1 kept"), "{stderr}");

    std::fs::write(
        &input,
        "cpu,host=a mean=95 60000000000\ncpu,host=a mean=50 120000000000\n",
    )
    .expect("write");
    let alert = plugin_file("threshold-alert");
    let (ok, stdout, stderr) = sluice(&[
        "plugin",
        "run",
        alert.to_str().expect("utf-8 path"),
        "--input",
        input.to_str().expect("utf-8 path"),
        "--param",
        "crit_above=90",
        "--field",
        "usage",
        "--batch-size",
        "1",
    ]);
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
    std::fs::write(&input, "cpu value=1 1\ncpu value=x 2\n").expect("write");
    let filter = plugin_file("drop-filter");
    let (ok, _, stderr) = sluice(&[
        "plugin",
        "run",
        filter.to_str().expect("utf-8 path"),
        "--input",
        input.to_str().expect("utf-8 path"),
    ]);
    assert!(!ok);
    assert!(stderr.contains("line 2:"), "{stderr}");
}
