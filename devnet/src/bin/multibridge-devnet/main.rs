//! `multibridge-devnet`: run multibridge locally on real chains and etcd. One file per command
//! (`up.rs`: up, down and status; `demo.rs`; `bench.rs`: every benchmark; `experiment.rs`),
//! the command line in `cli.rs`.
#![forbid(unsafe_code)]

mod bench;
mod cli;
mod demo;
mod experiment;
mod up;

use std::process::ExitCode;

use anyhow::bail;
use clap::Parser;
use multibridge_devnet::harness::tools::workspace_root;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let dir = cli
        .dir
        .clone()
        .unwrap_or_else(|| workspace_root().join(".devnet"));
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // One runtime for the process's whole life: the harness's HTTP client may keep its
    // connections.
    multibridge_devnet::harness::http::keep_connections();
    let result = runtime.block_on(async {
        let command = async {
            match cli.command {
                Command::Up(args) => up::up(&dir, &args).await,
                Command::Down => up::down(&dir),
                Command::Status { json } => up::status(&dir, json),
                Command::Demo { up, transfers } => demo::demo(&dir, &up, transfers).await,
                Command::Screenshots { out } => {
                    up::refuse_if_running(&dir)?;
                    for path in multibridge_devnet::screenshots::take(&dir, &out).await? {
                        println!("{}", path.display());
                    }
                    Ok(())
                }
                Command::Experiment { seed, out, which } => {
                    up::refuse_if_running(&dir)?;
                    experiment::experiment(&dir, seed, &out, which).await
                }
                Command::Bench(args) => args.run(&dir).await,
                Command::BenchModes(args) => args.run(&dir).await,
                Command::BenchHub(args) => args.run(&dir).await,
                Command::BenchFailover(args) => args.run(&dir).await,
                Command::BenchJoin(args) => args.run(&dir).await,
                Command::BenchSigners(args) => args.run(&dir).await,
            }
        };
        // Interrupted (Ctrl-C, or SIGTERM from a supervisor), the command's future is dropped
        // and with it the devnet it started: its processes are killed, not left holding ports
        // and cores (a bench killed half-way used to leave its chains, etcd and relays running).
        tokio::select! {
            result = command => result,
            () = multibridge::commands::run::shutdown_signal() => bail!("interrupted: the devnet this command started was stopped"),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
