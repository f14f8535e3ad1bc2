//! `sluice plugin new`: a ready-to-build plugin project in Rust, Python or JavaScript, with
//! the SDK and the WIT package copied in, so it builds outside this repository and offline.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

/// Languages a project can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, with the `sluice-guest` crate.
    Rust,
    /// Python, with `sluice_sdk` and componentize-py.
    Python,
    /// JavaScript, with `sluice-sdk.js` and jco.
    Js,
}

/// The world a project implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WorldArg {
    /// Keep or drop each point.
    Filter,
    /// Rewrite points.
    Transform,
    /// Turn closed windows into alerts.
    Alert,
}

impl WorldArg {
    fn name(self) -> &'static str {
        match self {
            WorldArg::Filter => "filter",
            WorldArg::Transform => "transform",
            WorldArg::Alert => "alert",
        }
    }
}

/// Arguments of `plugin new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The plugin's name: lowercase letters, digits and dashes (`my-filter`).
    name: String,
    /// The language.
    #[arg(long, value_enum)]
    lang: Lang,
    /// The world it implements.
    #[arg(long, value_enum)]
    world: WorldArg,
    /// Where to create the project directory NAME (default: here).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
}

/// A file of a project: its path in the project and its text.
type File = (&'static str, &'static str);

const WIT: File = ("wit/plugin.wit", include_str!("../../../wit/plugin.wit"));

/// The Rust SDK crate, as `sluice-guest/` of a project.
const RUST_SDK: &[File] = &[
    (
        "sluice-guest/Cargo.toml",
        include_str!("../../../guest-sdk/Cargo.toml"),
    ),
    (
        "sluice-guest/README.md",
        include_str!("../../../guest-sdk/README.md"),
    ),
    (
        "sluice-guest/build.sh",
        include_str!("../../../guest-sdk/build.sh"),
    ),
    (
        "sluice-guest/src/lib.rs",
        include_str!("../../../guest-sdk/src/lib.rs"),
    ),
    (
        "sluice-guest/src/log.rs",
        include_str!("../../../guest-sdk/src/log.rs"),
    ),
    (
        "sluice-guest/src/lookup.rs",
        include_str!("../../../guest-sdk/src/lookup.rs"),
    ),
    (
        "sluice-guest/src/params.rs",
        include_str!("../../../guest-sdk/src/params.rs"),
    ),
    (
        "sluice-guest/src/point.rs",
        include_str!("../../../guest-sdk/src/point.rs"),
    ),
    (
        "sluice-guest/src/state.rs",
        include_str!("../../../guest-sdk/src/state.rs"),
    ),
    (
        "sluice-guest/src/view.rs",
        include_str!("../../../guest-sdk/src/view.rs"),
    ),
];

/// The Python SDK, as `sdk/` of a project.
const PYTHON_SDK: &[File] = &[
    (
        "sdk/build.sh",
        include_str!("../../../guest-sdk/python/build.sh"),
    ),
    (
        "sdk/README.md",
        include_str!("../../../guest-sdk/python/README.md"),
    ),
    (
        "sdk/sluice_sdk/__init__.py",
        include_str!("../../../guest-sdk/python/sluice_sdk/__init__.py"),
    ),
    (
        "sdk/sluice_sdk/_host.py",
        include_str!("../../../guest-sdk/python/sluice_sdk/_host.py"),
    ),
    (
        "sdk/sluice_sdk/batch.py",
        include_str!("../../../guest-sdk/python/sluice_sdk/batch.py"),
    ),
    (
        "sdk/sluice_sdk/errors.py",
        include_str!("../../../guest-sdk/python/sluice_sdk/errors.py"),
    ),
    (
        "sdk/sluice_sdk/log.py",
        include_str!("../../../guest-sdk/python/sluice_sdk/log.py"),
    ),
    (
        "sdk/sluice_sdk/lookup.py",
        include_str!("../../../guest-sdk/python/sluice_sdk/lookup.py"),
    ),
    (
        "sdk/sluice_sdk/model.py",
        include_str!("../../../guest-sdk/python/sluice_sdk/model.py"),
    ),
    (
        "sdk/sluice_sdk/params.py",
        include_str!("../../../guest-sdk/python/sluice_sdk/params.py"),
    ),
    (
        "sdk/sluice_sdk/plugin.py",
        include_str!("../../../guest-sdk/python/sluice_sdk/plugin.py"),
    ),
    (
        "sdk/sluice_sdk/state.py",
        include_str!("../../../guest-sdk/python/sluice_sdk/state.py"),
    ),
    (
        "sdk/sluice_sdk/testing.py",
        include_str!("../../../guest-sdk/python/sluice_sdk/testing.py"),
    ),
];

/// The JavaScript SDK, as `sdk/` of a project.
const JS_SDK: &[File] = &[
    (
        "sdk/build.sh",
        include_str!("../../../guest-sdk/js/build.sh"),
    ),
    (
        "sdk/README.md",
        include_str!("../../../guest-sdk/js/README.md"),
    ),
    (
        "sdk/package.json",
        include_str!("../../../guest-sdk/js/package.json"),
    ),
    (
        "sdk/sluice-sdk.js",
        include_str!("../../../guest-sdk/js/sluice-sdk.js"),
    ),
    // The project's own sources are ES modules too.
    ("package.json", "{\"type\": \"module\"}\n"),
];

/// The Python template and its test, of each world.
fn python_template(world: WorldArg) -> (&'static str, &'static str) {
    match world {
        WorldArg::Filter => (
            include_str!("../../../guest-sdk/python/templates/filter.py"),
            include_str!("../../../guest-sdk/python/templates/test_filter.py"),
        ),
        WorldArg::Transform => (
            include_str!("../../../guest-sdk/python/templates/transform.py"),
            include_str!("../../../guest-sdk/python/templates/test_transform.py"),
        ),
        WorldArg::Alert => (
            include_str!("../../../guest-sdk/python/templates/alert.py"),
            include_str!("../../../guest-sdk/python/templates/test_alert.py"),
        ),
    }
}

/// The JavaScript template and its test, of each world.
fn js_template(world: WorldArg) -> (&'static str, &'static str) {
    match world {
        WorldArg::Filter => (
            include_str!("../../../guest-sdk/js/templates/filter.js"),
            include_str!("../../../guest-sdk/js/templates/filter.test.js"),
        ),
        WorldArg::Transform => (
            include_str!("../../../guest-sdk/js/templates/transform.js"),
            include_str!("../../../guest-sdk/js/templates/transform.test.js"),
        ),
        WorldArg::Alert => (
            include_str!("../../../guest-sdk/js/templates/alert.js"),
            include_str!("../../../guest-sdk/js/templates/alert.test.js"),
        ),
    }
}

/// The Rust template of each world.
fn rust_template(world: WorldArg) -> &'static str {
    match world {
        WorldArg::Filter => include_str!("../../../guest-sdk/templates/filter.rs"),
        WorldArg::Transform => include_str!("../../../guest-sdk/templates/transform.rs"),
        WorldArg::Alert => include_str!("../../../guest-sdk/templates/alert.rs"),
    }
}

/// Runs `plugin new`.
pub fn run(args: &NewArgs) -> anyhow::Result<ExitCode> {
    let name = &args.name;
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        bail!(
            "plugin name {name:?}: use lowercase letters, digits and dashes, starting with a letter"
        );
    }
    let root = args.dir.join(name);
    if root.exists() {
        bail!(
            "{} exists already: choose another name or --dir",
            root.display()
        );
    }
    let world = args.world.name();
    let mut files: Vec<(String, String)> = vec![(WIT.0.into(), WIT.1.into())];
    let (test, build) = match args.lang {
        Lang::Rust => {
            files.extend(
                RUST_SDK
                    .iter()
                    .map(|(p, t)| ((*p).to_owned(), (*t).to_owned())),
            );
            files.push(("Cargo.toml".into(), rust_manifest(name)));
            files.push(("src/lib.rs".into(), rust_template(args.world).into()));
            files.push(("build.sh".into(), rust_build_script(name)));
            ("cargo test", "./build.sh")
        }
        Lang::Python => {
            let (app, test) = python_template(args.world);
            files.extend(
                PYTHON_SDK
                    .iter()
                    .map(|(p, t)| ((*p).to_owned(), (*t).to_owned())),
            );
            files.push(("app.py".into(), app.into()));
            files.push(("test_app.py".into(), test.into()));
            files.push(("world".into(), format!("{world}\n")));
            files.push(("build.sh".into(), guest_build_script(name)));
            ("python3 -m unittest", "./build.sh")
        }
        Lang::Js => {
            let (app, test) = js_template(args.world);
            files.extend(
                JS_SDK
                    .iter()
                    .map(|(p, t)| ((*p).to_owned(), (*t).to_owned())),
            );
            files.push(("app.js".into(), app.into()));
            files.push(("app.test.js".into(), test.into()));
            files.push(("world".into(), format!("{world}\n")));
            files.push(("build.sh".into(), guest_build_script(name)));
            ("node --test", "./build.sh")
        }
    };
    files.push(("README.md".into(), project_readme(name, world, test, build)));
    for (path, text) in &files {
        write(&root.join(path), text)?;
    }
    println!(
        "created {} ({:?} {world} plugin)",
        root.display(),
        args.lang
    );
    println!("  cd {}", root.display());
    println!("  {test}            # the plugin's tests, natively");
    println!("  {build}            # dist/{name}.wasm");
    println!("  sluice plugin check dist/{name}.wasm");
    Ok(ExitCode::SUCCESS)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "sh") {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("making {} executable", path.display()))?;
    }
    Ok(())
}

fn rust_manifest(name: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
# A component is a library the host loads, not a program.
crate-type = ["cdylib"]

[dependencies]
sluice-guest = {{ path = "sluice-guest" }}

[profile.release]
# Small components load and swap fast: ~60-100 KB instead of megabytes.
opt-level = "s"
lto = true
strip = true
panic = "abort"
codegen-units = 1

# A project of its own, even inside another workspace.
[workspace]
"#
    )
}

fn rust_build_script(name: &str) -> String {
    let file = name.replace('-', "_");
    format!(
        r#"#!/usr/bin/env bash
# Builds dist/{name}.wasm: with the rustup target wasm32-wasip2 when installed, otherwise
# with Debian's rustc-web building std from source (sluice-guest/build.sh installs it).
set -euo pipefail
cd "$(dirname "${{BASH_SOURCE[0]}}")"
sluice-guest/build.sh --dir .
mkdir -p dist
cp "${{CARGO_TARGET_DIR:-target}}/wasm32-wasip2/release/{file}.wasm" dist/.{name}.wasm.tmp
mv dist/.{name}.wasm.tmp dist/{name}.wasm
echo "built dist/{name}.wasm ($(stat -c %s dist/{name}.wasm) bytes)"
"#
    )
}

/// The build script of a Python or JavaScript project: its SDK's, on this directory.
fn guest_build_script(name: &str) -> String {
    format!(
        r#"#!/usr/bin/env bash
# Builds dist/{name}.wasm from app.* with the SDK in sdk/ (which installs its toolchain the
# first time: componentize-py for Python, jco for JavaScript).
set -euo pipefail
cd "$(dirname "${{BASH_SOURCE[0]}}")"
mkdir -p dist
sdk/build.sh --wit wit --world "$(tr -d ' \n' < world)" --src . --out dist/.{name}.wasm.tmp
mv dist/.{name}.wasm.tmp dist/{name}.wasm
echo "built dist/{name}.wasm ($(stat -c %s dist/{name}.wasm) bytes)"
"#
    )
}

fn project_readme(name: &str, world: &str, test: &str, build: &str) -> String {
    format!(
        r#"# {name}

A Sluice `{world}` plugin (WIT package `sluice:plugin@0.2.0`, in `wit/`).

```sh
{test}                                   # its tests, natively
{build}                                  # builds dist/{name}.wasm
sluice plugin check dist/{name}.wasm        # loads and instantiates it as the service would
sluice plugin run dist/{name}.wasm --input sample.lp   # runs line protocol through it
sluice plugin deploy dist/{name}.wasm --dir PLUGIN_DIR  # installs it, waits until it serves
```

A tenant deploys its own plugin with `curl -X PUT --data-binary @dist/{name}.wasm
-H "Authorization: Bearer $TOKEN" http://HOST:8080/api/v1/plugins/{name}`.
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of each SDK directory is in the project a scaffold writes: a file added to
    /// an SDK but not here would make projects that don't build.
    #[test]
    fn projects_carry_every_file_of_their_sdk() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let sdks: [(&str, &[File], &str); 3] = [
            ("guest-sdk/src", RUST_SDK, "sluice-guest/src/"),
            ("guest-sdk/python/sluice_sdk", PYTHON_SDK, "sdk/sluice_sdk/"),
            ("guest-sdk/js", JS_SDK, "sdk/"),
        ];
        for (dir, files, prefix) in sdks {
            for entry in std::fs::read_dir(repo.join(dir)).expect("sdk dir") {
                let path = entry.expect("entry").path();
                let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
                if !matches!(ext, "rs" | "py" | "js") {
                    continue;
                }
                let name = path.file_name().and_then(|n| n.to_str()).expect("name");
                let wanted = format!("{prefix}{name}");
                assert!(
                    files.iter().any(|(p, _)| *p == wanted),
                    "{} is not copied into new projects as {wanted}",
                    path.display()
                );
            }
        }
    }
}
