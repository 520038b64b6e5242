//! `multibridge`: the relay daemon and operator CLI.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use multibridge::config::Config;

#[derive(Parser)]
#[command(
    name = "multibridge",
    version,
    about = "multibridge relay and operator CLI"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config {
            command: ConfigCommand::Validate { config },
        } => match Config::load(&config) {
            Ok(c) => {
                println!(
                    "{}: ok (operator {}, lanes {:?})",
                    config.display(),
                    c.operator.address,
                    c.lanes.iter().map(|l| l.as_str()).collect::<Vec<_>>()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
