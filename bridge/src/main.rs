//! `multibridge`: the relay daemon and operator CLI.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use alloy::primitives::utils::format_ether;
use clap::{Parser, Subcommand};
use multibridge::config::Config;
use multibridge::relay::{preflight, run};

#[derive(Parser)]
#[command(
    name = "multibridge",
    version,
    about = "multibridge relay and operator CLI"
)]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true, env = "MULTIBRIDGE_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run this operator's relay for the configured lanes until SIGINT/SIGTERM.
    Run {
        /// The config file.
        #[arg(long, env = "MULTIBRIDGE_CONFIG")]
        config: PathBuf,
    },
    /// Work with relay configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Parse and validate a config file offline.
    Validate {
        /// The config file.
        #[arg(long, env = "MULTIBRIDGE_CONFIG")]
        config: PathBuf,
    },
    /// Validate a config file against the live chains (chain ids, bridge code, registration,
    /// threshold, signer balance). Sends nothing.
    Check {
        /// The config file.
        #[arg(long, env = "MULTIBRIDGE_CONFIG")]
        config: PathBuf,
    },
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MULTIBRIDGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_json);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<()> = runtime.block_on(async {
        match cli.command {
            Command::Config {
                command: ConfigCommand::Validate { config },
            } => {
                let c = Config::load(&config)?;
                println!(
                    "{}: ok (operator {}, lanes {})",
                    config.display(),
                    c.operator.address,
                    c.lanes.iter().map(|l| l.as_str()).collect::<Vec<_>>().join(", ")
                );
                Ok(())
            }
            Command::Config {
                command: ConfigCommand::Check { config },
            } => {
                let c = Config::load(&config)?;
                let checked = preflight(c).await?;
                println!("{}: ok, operator {}", config.display(), checked.signer.address());
                for r in &checked.reports {
                    println!(
                        "  {:<8} chain {:<8} endpoints {}/{} up  threshold {}/{}  signer balance {}",
                        r.role.as_str(),
                        r.chain_id,
                        r.endpoints_up,
                        r.endpoints,
                        r.threshold,
                        r.operators,
                        format_ether(r.signer_balance)
                    );
                }
                Ok(())
            }
            Command::Run { config } => {
                let c = Config::load(&config)?;
                let checked = preflight(c).await?;
                run(checked, shutdown_signal()).await?;
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "exiting");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}
