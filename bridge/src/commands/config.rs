//! `multibridge config`: a config file checked offline (`validate`) or against the live chains
//! (`check`: chain ids, bridge code, registration, threshold, signer balance; sends nothing).

use std::path::PathBuf;

use alloy::primitives::utils::format_ether;
use clap::Subcommand;

use crate::config::Config;
use crate::preflight::preflight;

/// `multibridge config …`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: ConfigCommand,
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

/// Run `multibridge config …`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        ConfigCommand::Validate { config } => {
            for pair in Config::load_pairs(&config)? {
                let c = &pair.config;
                println!(
                    "{}: {}ok (operator {}, chains {} and {}, lanes {})",
                    config.display(),
                    pair_prefix(&pair.name),
                    c.operator.address,
                    c.chains.main.chain_id,
                    c.chains.service.chain_id,
                    c.lanes
                        .iter()
                        .map(|l| l.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        ConfigCommand::Check { config } => {
            for pair in Config::load_pairs(&config)? {
                let c = pair.config;
                let dashboard = crate::dashboard::check(&c)?;
                let checked = preflight(c).await?;
                println!(
                    "{}: {}ok, operator {}",
                    config.display(),
                    pair_prefix(&pair.name),
                    checked.signer.address()
                );
                println!("  dashboard: {dashboard}");
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
            }
        }
    }
    Ok(())
}

/// `"pair <name>: "` for a pair of a file of `[[pairs]]`, nothing for a single-pair file.
fn pair_prefix(name: &Option<String>) -> String {
    name.as_deref()
        .map(|n| format!("pair {n}: "))
        .unwrap_or_default()
}
