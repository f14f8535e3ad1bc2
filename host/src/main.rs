//! The `sluice` binary: wiring, command line and exit codes; the work is in the library.

mod cmd;

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Sluice: a telemetry pipeline engine with WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: cmd::Command,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    sluice::telemetry::init_tracing(cli.log_json);
    match cmd::run(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
