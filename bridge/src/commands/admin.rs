//! `multibridge admin`: the bridges' live configuration (show, plan, apply), the emergency stop,
//! funding, and what pausers and the owner do with held releases.

use std::path::PathBuf;

use clap::Subcommand;
use multibridge_admin::releases::ReleaseAction;

use super::UserKeyArgs;
use crate::config::Config;

/// `multibridge admin …`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Print both bridges' configuration as the chains say it: owner, pause, threshold,
    /// operators, counterpart, release delay, fee receiver, pausers, and per asset its pair, fee,
    /// cap, rate limit and outflow limit.
    Show {
        /// A config naming both chains and bridges (a relay or starter config).
        #[arg(long, env = "MULTIBRIDGE_CONFIG")]
        config: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print what it takes to bring both bridges to a desired-state file, in a safe order;
    /// with --safe-out, write each chain's batch as Safe Transaction Builder JSON (for a
    /// multisig owner) instead.
    Plan {
        /// A config naming both chains and bridges.
        #[arg(long, env = "MULTIBRIDGE_CONFIG")]
        config: PathBuf,
        /// The desired-state file (TOML: [main] and [service]).
        #[arg(long)]
        desired: PathBuf,
        /// Write `safe-<chain id>.json` per chain with changes into this directory.
        #[arg(long)]
        safe_out: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Apply a desired-state file with the owner's key: the plan's calls one by one, stopping
    /// at the first failure with what was done and what remains.
    Apply {
        /// A config naming both chains and bridges.
        #[arg(long, env = "MULTIBRIDGE_CONFIG")]
        config: PathBuf,
        /// The desired-state file.
        #[arg(long)]
        desired: PathBuf,
        #[command(flatten)]
        key: UserKeyArgs,
    },
    /// Pause a bridge (requests and handles stop; withdrawals stay open) with a pauser's key.
    Pause(PauseArgs),
    /// Unpause a bridge with a pauser's key.
    Unpause(PauseArgs),
    /// Freeze a queued release with a pauser's key: nobody executes it until the owner cancels
    /// it or lifts the freeze.
    FreezeRelease(ReleaseArgs),
    /// Lift a pauser's freeze of a queued release with the owner's key: the relays execute it
    /// once due.
    UnfreezeRelease(ReleaseArgs),
    /// Cancel a queued release for good with the owner's key (a release nobody requested: its
    /// amount stays in the bridge).
    CancelRelease(ReleaseArgs),
    /// Settle a genuine request whose nonce the destination executed under a forged payload
    /// (a compromised quorum), with the owner's key: read from the source, checked against the
    /// destination's execution, queued for the release delay.
    Settle(ReleaseArgs),
    /// Add native liquidity to one bridge (what its native releases are paid from); any key may
    /// pay it, no transfer request is created.
    Fund {
        /// A config naming both chains and bridges.
        #[arg(long, env = "MULTIBRIDGE_CONFIG")]
        config: PathBuf,
        /// Which bridge: main or service.
        #[arg(long)]
        chain: String,
        /// Amount in whole coins (e.g. 1.5).
        #[arg(long)]
        amount: String,
        #[command(flatten)]
        key: UserKeyArgs,
    },
}

#[derive(clap::Args)]
struct ReleaseArgs {
    /// A config naming both chains and bridges.
    #[arg(long, env = "MULTIBRIDGE_CONFIG")]
    config: PathBuf,
    /// The lane whose destination holds the release (main-to-service or service-to-main).
    #[arg(long)]
    lane: multibridge_contracts::Lane,
    /// The request nonce.
    #[arg(long)]
    nonce: u64,
    #[command(flatten)]
    key: UserKeyArgs,
}

#[derive(clap::Args)]
struct PauseArgs {
    /// A config naming both chains and bridges.
    #[arg(long, env = "MULTIBRIDGE_CONFIG")]
    config: PathBuf,
    /// Which bridge: main, service or both.
    #[arg(long, default_value = "both")]
    chain: String,
    #[command(flatten)]
    key: UserKeyArgs,
}

/// Run `multibridge admin …`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        AdminCommand::Show { config, json } => show(&config, json).await,
        AdminCommand::Plan {
            config,
            desired,
            safe_out,
            json,
        } => plan(&config, &desired, safe_out, json).await,
        AdminCommand::Apply {
            config,
            desired,
            key,
        } => apply(&config, &desired, key).await,
        AdminCommand::Pause(args) => pause(args, true).await,
        AdminCommand::Unpause(args) => pause(args, false).await,
        AdminCommand::FreezeRelease(args) => release_action(args, ReleaseAction::Freeze).await,
        AdminCommand::UnfreezeRelease(args) => release_action(args, ReleaseAction::Unfreeze).await,
        AdminCommand::CancelRelease(args) => release_action(args, ReleaseAction::Cancel).await,
        AdminCommand::Settle(args) => settle(args).await,
        AdminCommand::Fund {
            config,
            chain,
            amount,
            key,
        } => fund(&config, &chain, &amount, key).await,
    }
}

/// `admin show`: both bridges' live configuration.
async fn show(config: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let c = Config::load(config)?;
    let chains =
        crate::chain::ChainPair::for_command(&c.chains, crate::chain::RetryPolicy::interactive())?;
    let mut states = Vec::new();
    for (role, chain) in chains.each() {
        let cfg = c.chains.get(role);
        states.push(
            multibridge_admin::state::read(chain, cfg.start_block, cfg.max_block_range).await?,
        );
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&states)?);
    } else {
        for s in &states {
            print!("{}", multibridge_admin::state::render(s));
        }
    }
    Ok(())
}

/// `admin plan`: the calls that would make both bridges as desired.
async fn plan(
    config: &std::path::Path,
    desired: &std::path::Path,
    safe_out: Option<std::path::PathBuf>,
    json: bool,
) -> anyhow::Result<()> {
    let c = Config::load(config)?;
    let d = read_desired(desired)?;
    let plans = multibridge_admin::apply::prepare(&c, &d).await?;
    if json {
        let all: Vec<_> = plans.iter().flat_map(|p| p.changes.iter()).collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        for p in &plans {
            println!(
                "{} bridge {} (owner {}{}): {} call(s)",
                p.live.chain,
                p.live.bridge,
                p.live.owner,
                if p.owner_is_contract {
                    ", a contract"
                } else {
                    ""
                },
                p.changes.len()
            );
            for (i, change) in p.changes.iter().enumerate() {
                println!("  {}. {}", i.saturating_add(1), change.what);
            }
        }
    }
    if let Some(dir) = safe_out {
        std::fs::create_dir_all(&dir)?;
        for p in plans.iter().filter(|p| !p.changes.is_empty()) {
            let batch = multibridge_admin::plan::safe_batch(
                &p.live,
                &format!("multibridge {} bridge", p.live.chain),
                &p.changes,
            );
            let path = dir.join(format!("safe-{}.json", p.live.chain_id));
            std::fs::write(&path, serde_json::to_string_pretty(&batch)?)?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}

/// `admin apply`: send those calls with an owner key.
async fn apply(
    config: &std::path::Path,
    desired: &std::path::Path,
    key: UserKeyArgs,
) -> anyhow::Result<()> {
    let c = Config::load(config)?;
    let d = read_desired(desired)?;
    let signer = key.signer().await?;
    let plans = multibridge_admin::apply::prepare(&c, &d).await?;
    let done = multibridge_admin::apply::apply(&c, &plans, &signer).await?;
    if done.is_empty() {
        println!("nothing to do: both bridges are as desired");
    }
    for (what, tx) in done {
        println!("{what}: {tx}");
    }
    Ok(())
}

/// `admin settle`: mark a request handled whose execution was forged, and queue its release.
async fn settle(args: ReleaseArgs) -> anyhow::Result<()> {
    let c = Config::load(&args.config)?;
    let chains =
        crate::chain::ChainPair::for_command(&c.chains, crate::chain::RetryPolicy::interactive())?;
    let signer = args.key.signer().await?;
    let settled =
        multibridge_admin::releases::settle(&c, &chains, args.lane, args.nonce, &signer).await?;
    if let Some(forged) = settled.forged {
        println!(
            "{}: nonce {} was executed under a forged payload in {} (block {})",
            args.lane, args.nonce, forged.tx, forged.block
        );
    }
    let due = multibridge_admin::releases::due_at(&chains, args.lane, args.nonce).await?;
    println!(
        "{}: settled nonce {} ({} to {}) in {}; the release is queued{} and executed by the relays once due (a pauser may freeze it meanwhile)",
        args.lane,
        args.nonce,
        settled.request.amount,
        settled.request.to,
        settled.tx,
        due.map(|t| format!(" until unix {t}")).unwrap_or_default(),
    );
    Ok(())
}

/// `admin fund`: send native value to a bridge.
async fn fund(
    config: &std::path::Path,
    chain: &str,
    amount: &str,
    key: UserKeyArgs,
) -> anyhow::Result<()> {
    let chain = match chain {
        "main" => multibridge_contracts::ChainRole::Main,
        "service" => multibridge_contracts::ChainRole::Service,
        other => anyhow::bail!("--chain {other}: give main or service"),
    };
    let c = Config::load(config)?;
    let wei = alloy::primitives::utils::parse_units(amount, 18)
        .map_err(|e| anyhow::anyhow!("--amount {amount}: {e}"))?
        .get_absolute();
    anyhow::ensure!(!wei.is_zero(), "--amount {amount}: give more than 0");
    let signer = key.signer().await?;
    let tx = multibridge_admin::pause::fund(chain, c.chains.get(chain), &signer, wei).await?;
    println!(
        "{chain}: funded the bridge {} with {amount} in {tx}",
        c.chains.get(chain).bridge
    );
    Ok(())
}

fn read_desired(path: &std::path::Path) -> anyhow::Result<multibridge_admin::plan::Desired> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("--desired {}: {e}", path.display()))?;
    multibridge_admin::plan::Desired::parse(&text)
        .map_err(|e| anyhow::anyhow!("--desired {}: {e}", path.display()))
}

async fn release_action(args: ReleaseArgs, action: ReleaseAction) -> anyhow::Result<()> {
    let c = Config::load(&args.config)?;
    let signer = args.key.signer().await?;
    let tx =
        multibridge_admin::releases::act_on_release(&c, args.lane, args.nonce, action, &signer)
            .await?;
    let done = match action {
        ReleaseAction::Freeze => "frozen (the owner cancels it or lifts the freeze)",
        ReleaseAction::Unfreeze => "unfrozen (the relays execute it once due)",
        ReleaseAction::Cancel => "cancelled (its amount stays in the bridge)",
    };
    println!(
        "{}: queued release of nonce {} {done}: {tx}",
        args.lane, args.nonce
    );
    Ok(())
}

async fn pause(args: PauseArgs, paused: bool) -> anyhow::Result<()> {
    use multibridge_contracts::ChainRole;
    let c = Config::load(&args.config)?;
    let roles = match args.chain.as_str() {
        "main" => vec![ChainRole::Main],
        "service" => vec![ChainRole::Service],
        "both" => vec![ChainRole::Main, ChainRole::Service],
        other => anyhow::bail!("--chain {other}: give main, service or both"),
    };
    let signer = args.key.signer().await?;
    for role in roles {
        let tx =
            multibridge_admin::pause::set_paused(role, c.chains.get(role), &signer, paused).await?;
        println!(
            "{role} bridge {}: {}",
            if paused { "paused" } else { "unpaused" },
            tx
        );
    }
    Ok(())
}
