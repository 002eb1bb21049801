//! The `ember` binary: reads configuration (defaults, YAML file, `EMBER_*`
//! environment, flags), starts the targets it names and serves until SIGTERM
//! or SIGINT, then shuts down gracefully.
//!
//! Logs go to stderr in `-log.format` (logfmt or json) at `-log.level`.
//!
//! Exit codes: 0 after a clean shutdown, 1 when the process fails while
//! running, 2 when the configuration is invalid.

use std::process::ExitCode;

use ember_server::{
    app::App,
    config::{self, Loaded},
    modules, target,
};
use tracing::error;

fn main() -> ExitCode {
    // Before any thread starts, so that every thread can be CPU-profiled.
    ember_server::selfprofile::prime();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let env: Vec<(String, String)> = std::env::vars().collect();
    let config = match config::load(&args, &env) {
        Ok(Loaded::Run(config)) => config,
        Ok(Loaded::PrintModules) => {
            print!("{}{}", target::modules_help(), modules::graph_help());
            return ExitCode::SUCCESS;
        }
        Ok(Loaded::PrintHelp(help)) => {
            print!("{help}");
            return ExitCode::SUCCESS;
        }
        Ok(Loaded::PrintVersion) => {
            println!("ember {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("ember: {e}");
            return ExitCode::from(2);
        }
    };
    // -log.level and -log.format; lines go to stderr without colour codes.
    ember_server::logging::init(&config.log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ember: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: config::Config) -> anyhow::Result<()> {
    let app = App::new(&config).await?;
    app.run(shutdown_signal()).await?;
    Ok(())
}

/// Completes on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
