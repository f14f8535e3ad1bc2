//! `sluice plugin deploy`: install a component where a service watches for plugins, then
//! wait for the service to serve it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use sluice::plugin::{digest_of, plugin_name, version_of};

use super::admin::Api;

/// Arguments of `plugin deploy`.
#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// The component file.
    file: PathBuf,
    /// The plugin directory the service watches (its `plugins.dir`).
    #[arg(long)]
    dir: PathBuf,
    /// The plugin's name, which stages use (default: the file's name without `.wasm`, with
    /// `_` as `-`, as `cargo` names a crate's output after its dashed name).
    #[arg(long)]
    name: Option<String>,
    /// The service's API address: its `/health` tells which version serves.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "SLUICE_URL")]
    url: String,
    /// How long to wait for the version to serve.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    wait: Duration,
}

/// Runs `plugin deploy`.
pub fn run(args: &DeployArgs) -> anyhow::Result<ExitCode> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let name = match &args.name {
        Some(name) => name.clone(),
        None => plugin_name(&args.file)
            .map(|n| n.replace('_', "-"))
            .with_context(|| {
                format!("{}: not a NAME.wasm file; say --name", args.file.display())
            })?,
    };
    let target = args.dir.join(format!("{name}.wasm"));
    if plugin_name(&target).as_deref() != Some(name.as_str()) || name.contains('/') {
        bail!("--name {name:?}: a plugin name is a file name without `/` or a leading `.`");
    }
    let version = version_of(&digest_of(&bytes)).to_owned();
    install(&bytes, &args.dir, &name, &target)?;
    println!("installed {} as {name}@{version}", target.display());
    wait_serving(args, &name, &version)
}

/// Writes `bytes` beside `target` and renames it over `target`: the service never reads a
/// half-written file, and a crash leaves the old file or the new one.
fn install(bytes: &[u8], dir: &Path, name: &str, target: &Path) -> anyhow::Result<()> {
    let tmp = dir.join(format!(".{name}.wasm.tmp"));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, target)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().with_context(|| format!("installing {}", target.display()))
}

/// Polls the service's `/health` until `name` serves `version` or failed to load it.
fn wait_serving(args: &DeployArgs, name: &str, version: &str) -> anyhow::Result<ExitCode> {
    let api = Api::new(String::new())?;
    let url = format!("{}/health", args.url.trim_end_matches('/'));
    let started = Instant::now();
    loop {
        let health = api.call("GET", &url, None).with_context(|| {
            format!("the file is installed, but whether it serves is unknown: {url}")
        })?;
        let plugin = health["plugins"]
            .as_array()
            .and_then(|all| all.iter().find(|p| p["name"] == name));
        if let Some(plugin) = plugin {
            if plugin["version"] == version {
                println!(
                    "{name}@{version} serving after {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                return Ok(ExitCode::SUCCESS);
            }
            if plugin["failed_version"] == version {
                let why = plugin["load_error"].as_str().unwrap_or("no reason given");
                let serving = match &plugin["version"] {
                    Value::String(v) => format!("{name}@{v} still serves"),
                    _ => "no version serves".to_owned(),
                };
                eprintln!("refused: {why}\n{serving}");
                return Ok(ExitCode::FAILURE);
            }
        }
        if started.elapsed() > args.wait {
            bail!(
                "{name}@{version} did not serve within {:?}: is {} the directory the service \
                 at {} watches (`plugins.dir`)?",
                args.wait,
                args.dir.display(),
                args.url
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
