//! `sluice run`: the whole service.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// Arguments of `sluice run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Configuration file (default: config/sluice.toml, or the built-in default when absent).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen address, overriding the file.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data directory, overriding the file.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// Runs the service until SIGINT or SIGTERM.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut config = super::load_config(args.config.as_deref())?;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let (ready, bound) = tokio::sync::oneshot::channel::<sluice::service::Bound>();
    // The bound address on stdout: with `--listen 127.0.0.1:0` the kernel picks a free
    // port, and whoever started the process (a test, a supervisor) learns it here.
    runtime.spawn(async move {
        if let Ok(bound) = bound.await {
            println!("listening on {}", bound.api);
            println!("admin listening on {}", bound.admin);
        }
    });
    runtime.block_on(sluice::service::run(config, Some(ready), shutdown_signal()))?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
