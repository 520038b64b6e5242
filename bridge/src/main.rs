//! `multibridge`: the relay daemon and operator CLI.
#![forbid(unsafe_code)]
// The run future nests deeply (startup, preflight, signer backends, the relay's tasks).
#![recursion_limit = "256"]

use std::path::PathBuf;
use std::process::ExitCode;

use alloy::primitives::utils::format_ether;
use clap::{Parser, Subcommand};
use multibridge::config::Config;
use multibridge::preflight::preflight;
use multibridge::relay::run;
use multibridge_admin::releases::ReleaseAction;
use multibridge_monitoring::redact_urls;

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
    /// Per lane: request nonce, lower/upper handle nonce, pending, oldest pending age, this
    /// operator's last vote; with `[etcd]`, who leads the lane and each replica's progress.
    Status {
        /// The config file.
        #[arg(long, env = "MULTIBRIDGE_CONFIG")]
        config: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The lane services in the service registry: per lane and operator, the service id and
    /// where the registry says it is served (with `[etcd]`, also who leads its election).
    Registry {
        /// The config file (a relay config works).
        #[arg(long, env = "MULTIBRIDGE_CONFIG")]
        config: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Deploy a bridge pair and the service registry to two chains (resumable: run it again
    /// after a crash), check the code against the committed artifacts, write deployment.json and
    /// a starter relay config per operator.
    Deploy(DeployArgs),
    /// The bridges' live configuration; the emergency stop.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// State backups: ask for one now, show the newest log, make a backup key pair.
    Backup {
        #[command(subcommand)]
        command: BackupCommand,
    },
    /// Request a transfer as a user and follow it to its handle on the other chain.
    Transfer(TransferArgs),
    /// File a claim for a stuck transfer in the service registry (with every operator that has
    /// not voted for it yet) and follow it to its handle.
    Claim(ClaimArgs),
    /// Operator keys in a PKCS#11 token (HSM): create one inside the token, show its address.
    Hsm {
        #[command(subcommand)]
        command: HsmCommand,
    },
}

#[derive(Subcommand)]
enum HsmCommand {
    /// Generate a secp256k1 key pair inside the token (sensitive, never extractable) and print
    /// its address, to register as an operator.
    CreateKey(HsmKeyArgs),
    /// Print the address of a key in the token (nothing is signed).
    Address(HsmKeyArgs),
}

#[derive(clap::Args)]
struct HsmKeyArgs {
    /// The vendor's PKCS#11 module.
    #[arg(long, default_value = "/usr/lib/softhsm/libsofthsm2.so")]
    module: PathBuf,
    /// The token's label.
    #[arg(long)]
    token_label: String,
    /// The key's label (unique in the token).
    #[arg(long)]
    key_label: String,
    /// File whose first line is the user PIN.
    #[arg(long, conflicts_with = "pin_env")]
    pin_file: Option<PathBuf>,
    /// Variable holding the user PIN.
    #[arg(long, required_unless_present = "pin_file")]
    pin_env: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct DeployArgs {
    /// Main chain RPC URL.
    #[arg(long)]
    main_rpc: String,
    /// Service chain RPC URL.
    #[arg(long)]
    service_rpc: String,
    /// The main chain's id (checked against the RPC before anything is sent).
    #[arg(long)]
    main_chain_id: Option<u64>,
    /// The service chain's id (checked against the RPC before anything is sent).
    #[arg(long)]
    service_chain_id: Option<u64>,
    /// An operator address (repeat for each).
    #[arg(long = "operator", required = true)]
    operators: Vec<alloy::primitives::Address>,
    /// Votes needed to execute a transfer (1 to the number of operators).
    #[arg(long)]
    threshold: u64,
    /// Where deployment.json and the starter configs go (and where a deployment resumes from).
    #[arg(long, default_value = "deployment")]
    out: PathBuf,
    /// Confirmation depth written in the starter configs.
    #[arg(long, default_value_t = 12)]
    confirmations: u64,
    /// The owner's (deployer's) JSON keystore.
    #[arg(long, conflicts_with = "owner_key_env")]
    owner_keystore: Option<PathBuf>,
    /// File holding the owner keystore's password.
    #[arg(long)]
    owner_password_file: Option<PathBuf>,
    /// Environment variable holding the owner keystore's password.
    #[arg(long)]
    owner_password_env: Option<String>,
    /// A file holding the owner's signer section (`kind = "pkcs11"`, `"aws-kms"` or
    /// `"keystore"`): an owner key in an HSM or KMS.
    #[arg(long, conflicts_with_all = ["owner_keystore", "owner_key_env"])]
    owner_signer_file: Option<PathBuf>,
    /// Environment variable holding the owner's raw hex key (devnet chains only).
    #[arg(long)]
    owner_key_env: Option<String>,
    /// Print the deployment as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct ClaimArgs {
    /// A config naming the chains, bridges and registry (a relay config works).
    #[arg(long, env = "MULTIBRIDGE_CONFIG")]
    config: PathBuf,
    /// Direction of the stuck transfer.
    #[arg(long)]
    lane: multibridge_contracts::Lane,
    /// The request nonce.
    #[arg(long, conflicts_with = "tx", required_unless_present = "tx")]
    nonce: Option<u64>,
    /// The request transaction on the source chain.
    #[arg(long)]
    tx: Option<alloy::primitives::B256>,
    #[command(flatten)]
    key: UserKeyArgs,
    /// Give up following after this many seconds (the claim stays filed).
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Print one JSON object at the end instead of progress lines.
    #[arg(long)]
    json: bool,
}

/// How a user gives their key.
#[derive(clap::Args)]
struct UserKeyArgs {
    /// Environment variable holding the user's hex private key.
    #[arg(long, conflicts_with_all = ["keystore", "signer_file"])]
    key_env: Option<String>,
    /// The user's JSON keystore (with --password-file).
    #[arg(long, requires = "password_file", conflicts_with = "signer_file")]
    keystore: Option<PathBuf>,
    /// File holding the keystore password.
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// A file holding a signer section (`kind = "pkcs11"`, `"aws-kms"` or `"keystore"`, the
    /// fields of `[operator.signer]`): a key in an HSM or KMS.
    #[arg(long)]
    signer_file: Option<PathBuf>,
}

impl UserKeyArgs {
    /// The signer, whatever holds the key (checked to sign).
    async fn signer(&self) -> anyhow::Result<multibridge::chain::signer::OperatorSigner> {
        Ok(match &self.signer_file {
            Some(path) => multibridge::chain::signer::open::load_signer_file(path).await?,
            None => multibridge::chain::signer::OperatorSigner::local(self.load()?),
        })
    }

    fn load(&self) -> anyhow::Result<alloy::signers::local::PrivateKeySigner> {
        Ok(match (&self.key_env, &self.keystore, &self.password_file) {
            (Some(var), _, _) => std::env::var(var)
                .map_err(|_| anyhow::anyhow!("--key-env {var}: the variable is not set"))?
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("--key-env {var}: not a 32-byte hex private key"))?,
            (None, Some(path), Some(password_file)) => {
                let password =
                    multibridge::chain::signer::open::read_password(Some(password_file), None)?;
                multibridge::chain::signer::open::decrypt_keystore(path, &password)?
            }
            _ => anyhow::bail!(
                "give the user's key with --key-env VAR, --keystore FILE --password-file FILE or --signer-file FILE"
            ),
        })
    }
}

#[derive(clap::Args)]
struct TransferArgs {
    /// A relay config file: the chains and bridges to use (its operator key is not used).
    #[arg(long, env = "MULTIBRIDGE_CONFIG")]
    config: PathBuf,
    /// `main-to-service` or `service-to-main`.
    #[arg(long)]
    lane: multibridge_contracts::Lane,
    /// Recipient on the destination chain.
    #[arg(long)]
    to: alloy::primitives::Address,
    /// Amount in whole units (e.g. 1.5); the token's decimals apply for ERC-20.
    #[arg(
        long,
        required_unless_present = "token_id",
        conflicts_with = "token_id"
    )]
    amount: Option<String>,
    /// Token on the source chain, ERC-20 or ERC-721 as registered on the bridge (default:
    /// native coin).
    #[arg(long)]
    token: Option<alloy::primitives::Address>,
    /// The ERC-721 id to move (with --token naming the collection); the same id arrives.
    #[arg(long, requires = "token")]
    token_id: Option<alloy::primitives::U256>,
    #[command(flatten)]
    key: UserKeyArgs,
    /// Give up following after this many seconds (the transfer stays pending, nothing is lost).
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Print one JSON object at the end instead of progress lines.
    #[arg(long)]
    json: bool,
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

#[derive(Subcommand)]
enum BackupCommand {
    /// Ask the replica that runs backups to back up now (state-version-up) and wait for it.
    Now {
        /// The config file.
        #[arg(long, env = "MULTIBRIDGE_CONFIG")]
        config: PathBuf,
        /// Only this lane (default: every configured lane).
        #[arg(long)]
        lane: Option<multibridge_contracts::Lane>,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 180)]
        timeout: u64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Decrypt and print the newest backup log of a lane (needs the backup private key).
    Show {
        /// The config file.
        #[arg(long, env = "MULTIBRIDGE_CONFIG")]
        config: PathBuf,
        /// The lane.
        #[arg(long)]
        lane: multibridge_contracts::Lane,
    },
    /// Make a backup key pair: the private key into a new file (mode 0600), the public key
    /// printed for `backup.public_key`.
    Keygen {
        /// Where to write the private key (must not exist).
        #[arg(long)]
        private_key_out: PathBuf,
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
        // No credential of an RPC URL reaches the log (audit M-1).
        .with_writer(|| multibridge_monitoring::redact::RedactingWriter(std::io::stderr()));
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
                let dashboard = multibridge::dashboard::check(&c)?;
                let checked = preflight(c).await?;
                println!("{}: ok, operator {}", config.display(), checked.signer.address());
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
                Ok(())
            }
            Command::Status { config, json } => {
                let c = Config::load(&config)?;
                let statuses = multibridge::commands::status::lane_statuses(&c).await?;
                let text = if json {
                    format!("{}\n", serde_json::to_string_pretty(&statuses)?)
                } else {
                    multibridge::commands::status::render_table(&statuses)
                };
                print!("{}", redact_urls(&text));
                Ok(())
            }
            Command::Registry { config, json } => {
                use multibridge::commands::registry::{list_services, render_table};
                let c = Config::load(&config)?;
                let report = list_services(&c).await?;
                let text = if json {
                    format!("{}\n", serde_json::to_string_pretty(&report)?)
                } else {
                    render_table(&report)
                };
                print!("{}", redact_urls(&text));
                Ok(())
            }
            Command::Backup { command } => backup(command).await,
            Command::Transfer(args) => transfer(args).await,
            Command::Claim(args) => claim(args).await,
            Command::Deploy(args) => deploy(args).await,
            Command::Admin { command } => admin(command).await,
            Command::Hsm { command } => hsm(command).await,
            Command::Run { config } => {
                let c = Config::load(&config)?;
                // The HTTP API first: alive while the chains are awaited, ready once they answer.
                let serving = multibridge::startup::Serving::start(&c).await?;
                let mut shutdown = std::pin::pin!(shutdown_signal());
                let checked = match multibridge::startup::preflight_until_ready(
                    &c,
                    &serving,
                    shutdown.as_mut(),
                )
                .await
                {
                    Ok(Some(checked)) => checked,
                    Ok(None) => {
                        serving.stop().await;
                        return Ok(());
                    }
                    Err(e) => {
                        serving.stop().await;
                        return Err(e.into());
                    }
                };
                run(checked, serving, shutdown).await?;
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "exiting");
            eprintln!("error: {}", redact_urls(&format!("{e:#}")));
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

async fn transfer(args: TransferArgs) -> anyhow::Result<()> {
    use multibridge::commands::transfer::{
        TransferAsset, TransferProgress, TransferRequest, transfer,
    };

    let config = Config::load(&args.config)?;
    let user = args.key.signer().await?;
    let asset = match (args.token, args.token_id, &args.amount) {
        (Some(token), Some(token_id), _) => TransferAsset::Erc721 { token, token_id },
        (token, _, Some(text)) => {
            let amount = parse_amount(&config, args.lane, token, text).await?;
            match token {
                None => TransferAsset::Native { amount },
                Some(token) => TransferAsset::Erc20 { token, amount },
            }
        }
        (_, _, None) => anyhow::bail!("give --amount, or --token with --token-id for an ERC-721"),
    };
    let json = args.json;
    let outcome = transfer(
        &config,
        user,
        TransferRequest {
            lane: args.lane,
            to: args.to,
            asset,
            timeout: std::time::Duration::from_secs(args.timeout),
        },
        |p| {
            if json {
                return;
            }
            match p {
                TransferProgress::Requested { nonce, tx } => {
                    println!("requested: nonce {nonce}, tx {tx}")
                }
                TransferProgress::Confirming { have, need } => {
                    println!("confirming: {have}/{need} blocks")
                }
                TransferProgress::Votes { votes, threshold } => {
                    println!("votes: {votes}/{threshold}")
                }
            }
        },
    )
    .await?;
    if json {
        println!("{}", serde_json::to_string(&outcome)?);
    } else {
        println!(
            "handled: nonce {} in tx {} after {:.2}s",
            outcome.nonce,
            outcome
                .handle_tx
                .map(|h| h.to_string())
                .unwrap_or_else(|| "?".into()),
            outcome.latency_secs
        );
        if let Some(at) = outcome.release_held_until {
            let wait = at.saturating_sub(multibridge::store::unix_now());
            println!(
                "release held back by the destination (large amount or above its outflow limit): paid in about {wait}s, at unix {at}; a pauser may cancel it until then"
            );
        }
    }
    Ok(())
}

/// `--amount` in the asset's smallest unit: 18 decimals for native coin, the token's own for an
/// ERC-20.
async fn parse_amount(
    config: &Config,
    lane: multibridge_contracts::Lane,
    token: Option<alloy::primitives::Address>,
    text: &str,
) -> anyhow::Result<alloy::primitives::U256> {
    let decimals = match token {
        None => 18,
        Some(token) => {
            use multibridge::chain::{ChainPair, RetryPolicy};
            let chains = ChainPair::for_command(&config.chains, RetryPolicy::interactive())?;
            chains
                .get(lane.source())
                .call("decimals", |p| async move {
                    match multibridge_contracts::IERC20::new(token, p)
                        .decimals()
                        .call()
                        .await
                    {
                        Ok(d) => Ok(Some(d)),
                        // The token answered, with a revert: it has no decimals().
                        Err(e) if e.as_revert_data().is_some() => Ok(None),
                        Err(e) => Err(multibridge::chain::contract_to_transport(e)),
                    }
                })
                .await?
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "token {token} has no decimals(): if it is an ERC-721, give --token-id instead of --amount; nothing was sent"
                    )
                })?
        }
    };
    Ok(alloy::primitives::utils::parse_units(text, decimals)
        .map_err(|e| anyhow::anyhow!("--amount {text}: {e}"))?
        .get_absolute())
}

async fn hsm(command: HsmCommand) -> anyhow::Result<()> {
    use multibridge::chain::signer::pkcs11::{TokenKey, create_key, key_address};
    let (args, create) = match command {
        HsmCommand::CreateKey(args) => (args, true),
        HsmCommand::Address(args) => (args, false),
    };
    let key = TokenKey {
        module: args.module,
        token_label: args.token_label,
        key_label: args.key_label,
        pin_file: args.pin_file,
        pin_env: args.pin_env,
    };
    let address = tokio::task::spawn_blocking(move || {
        let address = if create {
            create_key(&key)
        } else {
            key_address(&key)
        };
        address.map(|a| (a, key))
    })
    .await??;
    let (address, key) = address;
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "address": address,
                "token_label": key.token_label,
                "key_label": key.key_label,
                "created": create,
            })
        );
    } else {
        println!("{address}");
        if create {
            eprintln!(
                "created key {:?} in token {:?}: register {address} as an operator, then use\n  signer = {{ kind = \"pkcs11\", module = \"{}\", token_label = \"{}\", key_label = \"{}\", pin_env = \"...\" }}",
                key.key_label,
                key.token_label,
                key.module.display(),
                key.token_label,
                key.key_label
            );
        }
    }
    Ok(())
}

async fn admin(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::Show { config, json } => {
            let c = Config::load(&config)?;
            let chains = multibridge::chain::ChainPair::for_command(
                &c.chains,
                multibridge::chain::RetryPolicy::interactive(),
            )?;
            let mut states = Vec::new();
            for (role, chain) in chains.each() {
                let cfg = c.chains.get(role);
                states.push(
                    multibridge_admin::state::read(chain, cfg.start_block, cfg.max_block_range)
                        .await?,
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
        AdminCommand::Plan {
            config,
            desired,
            safe_out,
            json,
        } => {
            let c = Config::load(&config)?;
            let d = read_desired(&desired)?;
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
                        println!("  {}. {}", i + 1, change.what);
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
        AdminCommand::Apply {
            config,
            desired,
            key,
        } => {
            let c = Config::load(&config)?;
            let d = read_desired(&desired)?;
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
        AdminCommand::Pause(args) => pause(args, true).await,
        AdminCommand::Unpause(args) => pause(args, false).await,
        AdminCommand::FreezeRelease(args) => release_action(args, ReleaseAction::Freeze).await,
        AdminCommand::UnfreezeRelease(args) => release_action(args, ReleaseAction::Unfreeze).await,
        AdminCommand::CancelRelease(args) => release_action(args, ReleaseAction::Cancel).await,
        AdminCommand::Settle(args) => {
            let c = Config::load(&args.config)?;
            let chains = multibridge::chain::ChainPair::for_command(
                &c.chains,
                multibridge::chain::RetryPolicy::interactive(),
            )?;
            let signer = args.key.signer().await?;
            let settled =
                multibridge_admin::releases::settle(&c, &chains, args.lane, args.nonce, &signer)
                    .await?;
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
        AdminCommand::Fund {
            config,
            chain,
            amount,
            key,
        } => {
            let chain = match chain.as_str() {
                "main" => multibridge_contracts::ChainRole::Main,
                "service" => multibridge_contracts::ChainRole::Service,
                other => anyhow::bail!("--chain {other}: give main or service"),
            };
            let c = Config::load(&config)?;
            let wei = alloy::primitives::utils::parse_units(&amount, 18)
                .map_err(|e| anyhow::anyhow!("--amount {amount}: {e}"))?
                .get_absolute();
            anyhow::ensure!(!wei.is_zero(), "--amount {amount}: give more than 0");
            let signer = key.signer().await?;
            let tx =
                multibridge_admin::pause::fund(chain, c.chains.get(chain), &signer, wei).await?;
            println!(
                "{chain}: funded the bridge {} with {amount} in {tx}",
                c.chains.get(chain).bridge
            );
            Ok(())
        }
    }
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

async fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    use multibridge_admin::deploy::{DeployRequest, deploy};
    let owner: multibridge::chain::signer::OperatorSigner = match (
        &args.owner_signer_file,
        &args.owner_keystore,
        &args.owner_key_env,
    ) {
        (Some(file), None, None) => {
            multibridge::chain::signer::open::load_signer_file(file).await?
        }
        (None, Some(path), None) => {
            let password = multibridge::chain::signer::open::read_password(
                args.owner_password_file.as_deref(),
                args.owner_password_env.as_deref(),
            )?;
            multibridge::chain::signer::open::decrypt_keystore(path, &password)?.into()
        }
        (None, None, Some(var)) => std::env::var(var)
            .map_err(|_| anyhow::anyhow!("--owner-key-env {var}: the variable is not set"))?
            .trim()
            .parse::<alloy::signers::local::PrivateKeySigner>()
            .map_err(|_| anyhow::anyhow!("--owner-key-env {var}: not a 32-byte hex private key"))?
            .into(),
        _ => anyhow::bail!(
            "give the owner's key with --owner-keystore FILE (--owner-password-file or --owner-password-env), --owner-signer-file FILE or, on a devnet, --owner-key-env VAR"
        ),
    };
    let request = DeployRequest {
        main_rpc: args.main_rpc,
        service_rpc: args.service_rpc,
        main_chain_id: args.main_chain_id,
        service_chain_id: args.service_chain_id,
        operators: args.operators,
        threshold: args.threshold,
        out: args.out.clone(),
        confirmations: args.confirmations,
        raw_owner_key: args.owner_key_env.is_some(),
    };
    let journal = deploy(&request, owner).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&journal)?);
        return Ok(());
    }
    println!(
        "deployed (owner {}, threshold {} of {}):",
        journal.owner,
        journal.threshold,
        journal.operators.len()
    );
    for (name, c) in [("main", &journal.main), ("service", &journal.service)] {
        println!(
            "  {name:<8} chain {:<8} bridge {} (block {})",
            c.chain_id,
            c.bridge.map(|a| a.to_string()).unwrap_or_default(),
            c.bridge_block.unwrap_or_default()
        );
    }
    println!(
        "  registry {} (main chain)",
        journal
            .main
            .registry
            .map(|a| a.to_string())
            .unwrap_or_default()
    );
    println!(
        "  manifest {}",
        multibridge_admin::journal::DeploymentJournal::path(&args.out).display()
    );
    for op in &journal.operators {
        println!(
            "  starter config {}",
            args.out.join(format!("operator-{op}.toml")).display()
        );
    }
    Ok(())
}

async fn claim(args: ClaimArgs) -> anyhow::Result<()> {
    use multibridge::commands::claim::{ClaimTarget, claim};

    let config = Config::load(&args.config)?;
    let user = args.key.signer().await?;
    let target = match (args.nonce, args.tx) {
        (Some(n), _) => ClaimTarget::Nonce(n),
        (None, Some(tx)) => ClaimTarget::SourceTx(tx),
        (None, None) => anyhow::bail!("give --nonce N or --tx HASH"),
    };
    let json = args.json;
    let outcome = claim(
        &config,
        user,
        args.lane,
        target,
        std::time::Duration::from_secs(args.timeout),
        |line| {
            if !json {
                println!("{line}");
            }
        },
    )
    .await?;
    if json {
        println!("{}", serde_json::to_string(&outcome)?);
    } else {
        println!(
            "nonce {} handled in tx {} ({} claim(s) filed, {:.2}s after filing)",
            outcome.nonce,
            outcome
                .handle_tx
                .map(|h| h.to_string())
                .unwrap_or_else(|| "?".into()),
            outcome.claims.len(),
            outcome.waited_secs
        );
    }
    Ok(())
}

async fn backup(command: BackupCommand) -> anyhow::Result<()> {
    use multibridge::commands::backup as cmd;
    match command {
        BackupCommand::Now {
            config,
            lane,
            timeout,
            json,
        } => {
            let c = Config::load(&config)?;
            let lanes = lane.map_or_else(|| c.lanes.clone(), |l| vec![l]);
            let answers =
                cmd::request_now(&c, &lanes, std::time::Duration::from_secs(timeout)).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answers)?);
            } else {
                for a in &answers {
                    match (&a.version, &a.error) {
                        (Some(v), _) => println!("{}: backed up as state version {v}", a.lane),
                        (None, Some(e)) => println!("{}: backup failed: {e}", a.lane),
                        (None, None) => println!("{}: no outcome", a.lane),
                    }
                }
            }
            if answers.iter().any(|a| a.version.is_none()) {
                anyhow::bail!("a backup failed");
            }
            Ok(())
        }
        BackupCommand::Show { config, lane } => {
            let c = Config::load(&config)?;
            let log = cmd::show(&c, lane).await?;
            println!("{}", serde_json::to_string_pretty(&log)?);
            Ok(())
        }
        BackupCommand::Keygen { private_key_out } => {
            let public = cmd::keygen(&private_key_out)?;
            println!("backup public key (backup.public_key): {public}");
            println!("private key written to {}", private_key_out.display());
            Ok(())
        }
    }
}
