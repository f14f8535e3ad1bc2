//! `sluice plugin check` and `sluice plugin run`: what a plugin author needs before deploying.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sluice::config::Config;
use sluice::lineproto::{self, Precision, format_point};
use sluice::lookup::LookupTables;
use sluice::pipeline::AlertStates;
use sluice::plugin::{
    CallEnv, LoadedPlugin, Params, PluginLimits, Runtime, WIT_PACKAGE, World, plugin_name,
};
use sluice::point::{Aggregate, AlertState, Point, WindowResult};

/// Plugin subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum PluginCommand {
    /// Print a plugin's world, exports, imports and size after instantiating it once under
    /// the service's limits; fail if it is not a valid plugin.
    Check {
        /// The component file.
        file: PathBuf,
        /// Configuration whose plugin limits and artifact cache apply (default:
        /// config/sluice.toml; without one, the built-in limits and a cache in
        /// ~/.cache/sluice).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run line-protocol points through a plugin and print what comes out.
    Run(RunArgs),
    /// Create a ready-to-build plugin project: its code, a test, the SDK and a build script
    /// that works without the rustup wasm target.
    New(super::scaffold::NewArgs),
    /// Install a component into a service's plugin directory by atomic rename, and wait
    /// until that version serves (or print why the service refused it).
    Deploy(super::deploy::DeployArgs),
}

/// Arguments of `plugin run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The component file.
    file: PathBuf,
    /// Configuration whose plugin limits and artifact cache apply (default:
    /// config/sluice.toml; without one, the built-in limits and a cache in ~/.cache/sluice).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Line-protocol input file (`-` for stdin).
    #[arg(long)]
    input: PathBuf,
    /// A plugin parameter, `key=value`; repeatable.
    #[arg(long = "param", value_parser = parse_pair)]
    params: Vec<(String, String)>,
    /// A lookup table, `name=file.csv`; repeatable.
    #[arg(long = "lookup", value_parser = parse_pair)]
    lookups: Vec<(String, String)>,
    /// Timestamp precision of the input: ns, us, ms or s.
    #[arg(long, default_value = "ns")]
    precision: String,
    /// Points per batch (state carries over between batches, as in the service); 0 = one batch.
    #[arg(long, default_value_t = 0)]
    batch_size: usize,
    /// Alert plugins: each input point is a closed window of this length ending at its
    /// timestamp; its numeric fields are the window's aggregates (`mean=93.2,max=99`).
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    window: Duration,
    /// Alert plugins: the rule name of the windows.
    #[arg(long, default_value = "cli")]
    rule: String,
    /// Alert plugins: the field the aggregates are over.
    #[arg(long, default_value = "value")]
    field: String,
    /// Call deadline, overriding the configuration's.
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// Memory cap in MiB, overriding the configuration's.
    #[arg(long)]
    memory_mib: Option<usize>,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{s}` is not key=value"))
}

/// Runs a plugin subcommand.
pub fn run(command: PluginCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::Check { file, config } => check(&file, config.as_deref()),
        PluginCommand::Run(args) => run_batches(&args),
        PluginCommand::Deploy(args) => super::deploy::run(&args),
        PluginCommand::New(args) => super::scaffold::run(&args),
    }
}

/// Loads `file` as the service configured by `config` would: same limits, same artifact
/// cache; `tune` may override the limits. Also gives the configuration.
fn load(
    file: &Path,
    config: Option<&Path>,
    tune: impl FnOnce(&mut PluginLimits),
) -> anyhow::Result<(LoadedPlugin, Config)> {
    let found = config.is_some() || Path::new(super::DEFAULT_CONFIG).exists();
    let mut config = super::load_config(config)?;
    if !found {
        // No service configuration here (a plugin project, say): cache compiled plugins
        // per user instead of in a `data/` beside the project.
        config.data_dir = user_cache_dir();
    }
    let (runtime, registry) = sluice::service::plugin_settings(&config);
    let name = plugin_name(file).unwrap_or_default();
    let mut limits = registry.limits_of(&name);
    tune(&mut limits);
    let runtime = Runtime::new(&runtime)?;
    Ok((runtime.load_file(file, limits)?, config))
}

/// `$XDG_CACHE_HOME/sluice`, else `~/.cache/sluice`, else one in the temporary directory.
fn user_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("sluice")
}

fn check(file: &Path, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (plugin, _) = load(file, config, |_| ())?;
    println!("plugin:  {}", plugin.id().name);
    println!("version: {}", plugin.id().version);
    println!("world:   {} ({WIT_PACKAGE})", plugin.world());
    println!("size:    {} bytes", plugin.size_bytes());
    println!("exports: {}", plugin.exports().join(", "));
    println!("imports:");
    for import in plugin.imports() {
        println!("  {import}");
    }
    Ok(ExitCode::SUCCESS)
}

fn run_batches(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let (plugin, config) = load(&args.file, args.config.as_deref(), |limits| {
        if let Some(timeout) = args.timeout {
            limits.timeout = timeout;
        }
        if let Some(mib) = args.memory_mib {
            limits.memory_bytes = mib << 20;
        }
    })?;
    let mut lookups = LookupTables::default();
    for (name, path) in &args.lookups {
        lookups.load_csv(name, Path::new(path))?;
    }
    let env = CallEnv {
        params: Arc::new(args.params.iter().cloned().collect::<Params>()),
        lookups: Arc::new(lookups),
        state: Arc::default(),
    };
    let input = if args.input == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("reading stdin")?
    } else {
        std::fs::read_to_string(&args.input)
            .with_context(|| format!("reading {}", args.input.display()))?
    };
    let precision: Precision = args.precision.parse().map_err(anyhow::Error::msg)?;
    let (points, lines, errors) = lineproto::parse_lines(&input, precision, sluice::time::now_ns());
    if let Some(first) = errors.first() {
        bail!(
            "{}: {first} ({} bad lines in all)",
            args.input.display(),
            errors.len()
        );
    }
    // What the service would refuse at ingest (duplicate tags, names, sizes) never reaches
    // its plugins: nor does it here, so a plugin is tried on what it can really get.
    let limits = config.ingest.limits();
    let refused = points
        .iter()
        .zip(&lines)
        .find_map(|(p, line)| limits.check(p).err().map(|why| (line, why)));
    if let Some((line, why)) = refused {
        bail!(
            "{}: line {line}: {why} (the service refuses this point at ingest)",
            args.input.display()
        );
    }
    let batch_size = if args.batch_size == 0 {
        points.len().max(1)
    } else {
        args.batch_size
    };
    let alert_states = AlertStates::default();
    let (mut n_in, mut n_out) = (0, 0);
    let started = Instant::now();
    for batch in points.chunks(batch_size) {
        n_in += batch.len();
        n_out += match plugin.world() {
            World::Filter => {
                let verdicts = plugin.filter(batch, &env)?;
                for (point, keep) in batch.iter().zip(&verdicts) {
                    println!("{} {}", if *keep { '+' } else { '-' }, format_point(point));
                }
                verdicts.iter().filter(|k| **k).count()
            }
            World::Transform => {
                let out = plugin.transform(batch, &env)?;
                for point in &out {
                    println!("{}", format_point(point));
                }
                out.len()
            }
            World::Alert => {
                let windows = batch.iter().map(|p| window_of(p, args)).collect();
                let alerts = alert_states.evaluate(&plugin, windows, &env)?;
                for a in &alerts {
                    println!(
                        "ALERT {} rule={} series={} field={} value={} window=[{}, {}) {}",
                        a.state,
                        a.rule,
                        a.series,
                        a.field,
                        a.value,
                        a.window_start,
                        a.window_end,
                        a.message
                    );
                }
                alerts.len()
            }
        };
    }
    let out_what = match plugin.world() {
        World::Filter => "kept",
        World::Transform => "points out",
        World::Alert => "alerts",
    };
    eprintln!(
        "{} ({}): {n_in} points in, {n_out} {out_what}, {:.2} ms",
        plugin.id(),
        plugin.world(),
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(ExitCode::SUCCESS)
}

/// The closed window a point stands for: its series, its numeric fields as aggregates.
fn window_of(point: &Point, args: &RunArgs) -> WindowResult {
    let length = i64::try_from(args.window.as_nanos()).unwrap_or(i64::MAX);
    WindowResult {
        rule: args.rule.clone(),
        series: point.series(),
        field: args.field.clone(),
        window_start: point.timestamp.saturating_sub(length),
        window_end: point.timestamp,
        aggregates: point
            .fields
            .iter()
            .filter_map(|f| {
                Some(Aggregate {
                    name: f.key.to_string(),
                    value: f.value.as_f64()?,
                })
            })
            .collect(),
        state: AlertState::Ok,
    }
}
