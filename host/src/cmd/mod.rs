//! Subcommands.

mod admin;
mod deploy;
mod plugin;
mod run;
mod scaffold;

use std::path::Path;
use std::process::ExitCode;

use sluice::config::Config;

/// Default configuration file, relative to the working directory.
const DEFAULT_CONFIG: &str = "config/sluice.toml";

/// The configuration in `path`, or in [`DEFAULT_CONFIG`] when it exists, or the built-in
/// default.
fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    Ok(match path {
        Some(path) => Config::load(path, false)?,
        None => Config::load(Path::new(DEFAULT_CONFIG), true)?,
    })
}

/// What to do.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the service (embedded log and store by default).
    Run(run::RunArgs),
    /// Inspect and try plugins without the service.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Manage a running service: tenants, tokens, pipelines, plugins, dead letters.
    Admin(admin::AdminArgs),
}

/// Runs `command`.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Plugin(c) => plugin::run(c),
        Command::Run(args) => run::run(args),
        Command::Admin(args) => admin::run(args),
    }
}
