//! Run with: cargo run --release -p meshtrace-collector-shim -- --help
//!
//! The `meshtrace-shim` binary: parses flags, environment and the optional YAML file, sets up
//! logging (JSON lines by default, level from `RUST_LOG`, default `info`), starts the [`Shim`]
//! and shuts it down gracefully on SIGINT or SIGTERM. `meshtrace-shim check-config FILE`
//! validates a configuration and exits.
//!
//! ```text
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4319 cargo run -p meshtrace-collector-shim
//! {"level":"INFO","fields":{"message":"meshtrace collector shim started","otlp_http_addr":"127.0.0.1:4318",...}}
//! ```

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use meshtrace_collector_shim::Shim;
use meshtrace_collector_shim::config::{Cli, Command, LogFormat, ProcessEnv};
use tracing::info;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::CheckConfig { file }) = &cli.command {
        return match cli.to_config(&ProcessEnv) {
            Ok(config) => {
                println!("{}: valid", file.display());
                println!("{config:#?}");
                ExitCode::SUCCESS
            }
            Err(errors) => {
                for error in &errors.0 {
                    eprintln!("{}: {error}", file.display());
                }
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("meshtrace-shim: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    init_logging(cli.log_format)?;
    let config = cli.to_config(&ProcessEnv)?;
    let exporters: Vec<String> = config
        .exporters
        .iter()
        .map(|e| format!("{}={:?}:{}", e.name, e.protocol, e.endpoint_for_display()))
        .collect();
    let shim = Shim::start(config)
        .await
        .context("cannot start the collector shim")?;
    info!(
        otlp_http_addr = %shim.otlp_http_addr(),
        otlp_grpc_addr = %shim.otlp_grpc_addr(),
        admin_addr = %shim.admin_addr(),
        exporters = ?exporters,
        "meshtrace collector shim started"
    );
    shutdown_signal().await?;
    info!("shutting down: draining");
    shim.shutdown().await;
    info!("stopped");
    Ok(())
}

fn init_logging(format: LogFormat) -> anyhow::Result<()> {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env()
        .context("RUST_LOG is not a valid tracing filter")?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let result = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))
}

/// Resolves on the first SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("cannot listen for SIGINT")?,
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("cannot listen for Ctrl-C")?;
    Ok(())
}
