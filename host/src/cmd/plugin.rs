//! `sluice plugin check` and `sluice plugin run`: what a plugin author needs before deploying.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sluice::lineproto::{self, Precision, format_point};
use sluice::lookup::LookupTables;
use sluice::pipeline::AlertStates;
use sluice::plugin::{CallEnv, LoadedPlugin, Params, PluginLimits, Runtime, RuntimeConfig, World};
use sluice::point::{Aggregate, AlertState, Point, WindowResult};

/// Plugin subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum PluginCommand {
    /// Print a plugin's world, exports, imports and size; fail if it is not a valid plugin.
    Check {
        /// The component file.
        file: PathBuf,
    },
    /// Run line-protocol points through a plugin and print what comes out.
    Run(RunArgs),
}

/// Arguments of `plugin run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The component file.
    file: PathBuf,
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
    /// Call deadline.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Memory cap in MiB.
    #[arg(long, default_value_t = 64)]
    memory_mib: usize,
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("`{s}` is not key=value"))
}

/// Runs a plugin subcommand.
pub fn run(command: PluginCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::Check { file } => check(&file),
        PluginCommand::Run(args) => run_batches(&args),
    }
}

fn load(file: &Path, limits: PluginLimits) -> anyhow::Result<LoadedPlugin> {
    let runtime = Runtime::new(&RuntimeConfig {
        cache_dir: None,
        max_concurrent_calls: 1,
    })?;
    Ok(runtime.load_file(file, limits)?)
}

fn check(file: &Path) -> anyhow::Result<ExitCode> {
    let plugin = load(file, PluginLimits::default())?;
    println!("plugin:  {}", plugin.id().name);
    println!("version: {}", plugin.id().version);
    println!("world:   {} (sluice:plugin@0.1.0)", plugin.world());
    println!("size:    {} bytes", plugin.size_bytes());
    println!("exports: {}", plugin.exports().join(", "));
    println!("imports:");
    for import in plugin.imports() {
        println!("  {import}");
    }
    Ok(ExitCode::SUCCESS)
}

fn run_batches(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let limits = PluginLimits {
        timeout: args.timeout,
        memory_bytes: args.memory_mib << 20,
    };
    let plugin = load(&args.file, limits)?;
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
    let (points, errors) = lineproto::parse(&input, precision, sluice::time::now_ns());
    if let Some(first) = errors.first() {
        bail!(
            "{}: {first} ({} bad lines in all)",
            args.input.display(),
            errors.len()
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
                    name: f.key.clone(),
                    value: f.value.as_f64()?,
                })
            })
            .collect(),
        state: AlertState::Ok,
    }
}
