//! Subcommands.

mod admin;
mod plugin;
mod run;

use std::process::ExitCode;

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
