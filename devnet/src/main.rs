//! `multibridge-devnet`: run multibridge locally on real chains and etcd.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, utils::format_ether, utils::parse_ether};
use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};
use multibridge_contracts::{ChainRole, Lane};
use multibridge_devnet::harness::manifest::{
    Manifest, load_processes, remove_processes, save_processes,
};
use multibridge_devnet::harness::tools::workspace_root;
use multibridge_devnet::{Devnet, DevnetError, DevnetOptions, Driver};

#[derive(Parser)]
#[command(
    name = "multibridge-devnet",
    version,
    about = "Run multibridge locally: anvil chains, etcd, contracts"
)]
struct Cli {
    /// Devnet directory (state, logs, manifest). Default: `.devnet/` in the workspace.
    #[arg(long, global = true, env = "MULTIBRIDGE_DEVNET_DIR")]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start chains and etcd, deploy, write devnet.json and relay configs, leave it running.
    Up(UpArgs),
    /// Stop everything `up` started.
    Down,
    /// Say what runs.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Measure latency, throughput, gas and relay memory on a fresh devnet; table + JSON.
    Bench {
        /// Single transfers timed for the latency percentiles.
        #[arg(long, default_value_t = 30)]
        latency_samples: usize,
        /// Requests in the throughput backlog: large enough that the first and last, part-full
        /// blocks do not dominate (the window is counted in whole blocks: at 5,000 one block
        /// is ~7 % of it, at 20,000 ~2 %), and beyond the bridge's vote window of 4,096, so the
        /// relays' waiting for the window is measured too.
        #[arg(long, default_value_t = 20_000)]
        burst: usize,
        /// Backlogs (pending requests, comma-separated) for the memory figures; 0 skips them.
        #[arg(long, value_delimiter = ',', default_values_t = [10_000usize, 100_000])]
        rss_pending: Vec<usize>,
        /// Print each figure beside the same figure of an earlier `bench.json` (the committed
        /// baseline: `devnet/bench/baseline.json`) with their ratio.
        #[arg(long, value_name = "FILE")]
        compare: Option<PathBuf>,
        /// Print only the JSON.
        #[arg(long)]
        json: bool,
    },
    /// Votes beside attested batches (issue 36): per committee size a devnet in each mode,
    /// latency, gas per transfer (native and ERC-20) beside a direct transfer, throughput
    /// against the destination's capacity; table + JSON.
    BenchModes {
        /// Committees as OPERATORS:THRESHOLD, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = ["3:2".to_owned(), "5:3".to_owned(), "7:5".to_owned()])]
        committees: Vec<String>,
        /// Modes to run per committee, comma-separated (`votes`, `attestations`); the gas
        /// ratio is reported only where both ran.
        #[arg(long, value_delimiter = ',', default_values_t = ["votes".to_owned(), "attestations".to_owned()])]
        modes: Vec<String>,
        /// Single transfers timed per mode.
        #[arg(long, default_value_t = 10)]
        latency_samples: usize,
        /// Native requests in each backlog (30,000: about 30 blocks of attested batches, so one
        /// block at either end of the drain is a few percent of it).
        #[arg(long, default_value_t = 30_000)]
        native_burst: usize,
        /// ERC-20 requests in each backlog.
        #[arg(long, default_value_t = 30_000)]
        erc20_burst: usize,
        /// Print only the JSON.
        #[arg(long)]
        json: bool,
    },
    /// One relay process per operator serving many service chains (issue 37): per hub size
    /// transfers on every lane at once (exactly once), the relays' peak RSS; then on the
    /// largest hub one service chain blackholed for every relay while the other lanes' p99
    /// latency is measured beside an undisturbed window; table + JSON.
    BenchHub {
        /// Hub sizes in service chains, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2, 4, 8])]
        pairs: Vec<usize>,
        /// Native transfers per lane in the all-lanes burst.
        #[arg(long, default_value_t = 20)]
        per_lane: usize,
        /// Seconds one service chain is blackholed (0: skip).
        #[arg(long, default_value_t = 60)]
        blackhole_seconds: u64,
        /// Seconds between probe transfers on each lane during the latency windows.
        #[arg(long, default_value_t = 3.0)]
        probe_every: f64,
        /// Print only the JSON.
        #[arg(long)]
        json: bool,
    },
    /// Measure failover on a fresh devnet with 2 replicas per operator: SIGKILL the leading
    /// replica again and again under traffic, then etcd's raft leader; failover time, time
    /// without a leader, vote gaps and transfer latency, table + JSON.
    BenchFailover {
        /// How many failovers.
        #[arg(long, default_value_t = 20)]
        failovers: usize,
        /// Then how many SIGKILLs of etcd's raft leader (quorum intact; restarted after each).
        #[arg(long, default_value_t = 3)]
        etcd_kills: usize,
        /// Then how many times every relay is SIGKILLed and all restarted at once.
        #[arg(long, default_value_t = 10)]
        kill_alls: usize,
        /// Then how many times the leader's destination RPC is blackholed (its own link).
        #[arg(long, default_value_t = 3)]
        rpc_cuts: usize,
        /// Then how many times the leader's signer is unplugged (a SoftHSM token moved away; on
        /// a devnet of its own signing through the token) while its standby signs through a
        /// second one.
        #[arg(long, default_value_t = 3)]
        signer_unplugs: usize,
        /// Print only the JSON.
        #[arg(long)]
        json: bool,
    },
    /// Measure a new replica's start to warm with long histories of real requests (100k and
    /// 1M by default), by replaying the chain and from the latest backup; table + JSON.
    BenchJoin {
        /// History sizes (requests).
        #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
        sizes: Vec<u64>,
        /// Print only the JSON.
        #[arg(long)]
        json: bool,
    },
    /// Measure what one signature costs with each signer backend (keystore, a SoftHSM2 token
    /// through PKCS#11, KMS through the AWS SDK against the local stand-in) and the transfers per
    /// second that allows with full vote batches; table + JSON.
    BenchSigners {
        /// Signatures timed per backend.
        #[arg(long, default_value_t = multibridge_devnet::bench::signer::DEFAULT_SIGNATURES)]
        signatures: usize,
        /// Print only the JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start a devnet with traffic, a stuck transfer and a claim, and save a PNG of each
    /// dashboard page (headless Chromium), then stop it.
    Screenshots {
        /// Where the PNGs go.
        #[arg(long, default_value = "docs/screenshots")]
        out: PathBuf,
    },
    /// Reproduce an experiment of the seed papers on fresh devnets (build with --release: the
    /// figures are the relay's): a table beside the paper's, `<out>/<name>.json` (report and
    /// timeline) and `<out>/<name>.svg` (latency over time, faults marked).
    Experiment {
        /// The seed of the fault schedule and the traffic mix (printed; default: from the clock).
        #[arg(long, global = true)]
        seed: Option<u64>,
        /// Where the JSON and the picture go.
        #[arg(long, global = true, default_value = "target/experiments")]
        out: PathBuf,
        #[command(subcommand)]
        which: ExperimentCommand,
    },
    /// Start a devnet, move transfers both ways and check conservation, then stop it.
    Demo {
        #[command(flatten)]
        up: UpArgs,
        /// Transfers per lane and asset.
        #[arg(long, default_value_t = 2)]
        transfers: u32,
    },
}

#[derive(Subcommand, Clone)]
enum ExperimentCommand {
    /// Table 2 of seed 001: one replica's network (RPCs + etcd) cut for 20 s every 60/30/25 s,
    /// a random replica or the leader, while users send 2 requests/s.
    NetworkCut {
        /// Minutes per row (the paper: 10).
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        /// Cut periods, seconds.
        #[arg(long, value_delimiter = ',', default_value = "60,30,25")]
        periods: Vec<u64>,
        /// Cut length, seconds.
        #[arg(long, default_value_t = 20.0)]
        cut_secs: f64,
        /// Which tests.
        #[arg(long, value_delimiter = ',', default_value = "random,leader")]
        tests: Vec<multibridge_devnet::experiment::network_cut::Target>,
    },
    /// Table 4 of seed 003: the leader paused 15 s at random intervals of 30–120 s while 5 users
    /// send 2 requests/s each.
    LeaderPause {
        /// Length, minutes (the paper: 83).
        #[arg(long, default_value_t = 83.0)]
        minutes: f64,
        /// Downtime bound, seconds.
        #[arg(long, default_value_t = 10.0)]
        bound: f64,
    },
    /// Seed 004's HA test: 4 operators, threshold 1, all relays stopped and started again and
    /// again while value moves both ways.
    KlaytnHa {
        /// Stop/start rounds.
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        /// Seconds the relays run between stops.
        #[arg(long, default_value_t = 30.0)]
        up_secs: f64,
        /// Seconds they stay down.
        #[arg(long, default_value_t = 10.0)]
        down_secs: f64,
    },
    /// ≥ 10,000 transfers under continuous mixed faults, verified from the chains.
    Soak {
        /// Transfers to send.
        #[arg(long, default_value_t = 10_000)]
        transfers: usize,
        /// Users sending (about 1.2 requests/s each).
        #[arg(long, default_value_t = 10)]
        users: usize,
        /// Downtime bound, seconds.
        #[arg(long, default_value_t = 15.0)]
        bound: f64,
    },
}

#[derive(Args, Clone)]
struct UpArgs {
    /// Number of operators.
    #[arg(long, default_value_t = 3)]
    operators: u32,
    /// Votes needed to execute a transfer.
    #[arg(long, default_value_t = 2)]
    threshold: u64,
    /// Seconds per block on both chains (0: a block per transaction).
    #[arg(long, default_value_t = 1.0)]
    block_time: f64,
    /// Main chain id.
    #[arg(long, default_value_t = 31_337)]
    main_chain_id: u64,
    /// Service chain id.
    #[arg(long, default_value_t = 31_338)]
    service_chain_id: u64,
    /// etcd cluster size (0: none).
    #[arg(long, default_value_t = 3)]
    etcd_members: usize,
    /// Do not start the relays (deploy only).
    #[arg(long)]
    no_relays: bool,
    /// Do not start Prometheus (it scrapes every relay and evaluates the alert rules).
    #[arg(long)]
    no_prometheus: bool,
    /// Relay replicas per operator; they elect one active replica per lane through etcd
    /// (1 without etcd).
    #[arg(long, default_value_t = 2)]
    replicas: usize,
    /// Where the operator keys live: `dev` (the well-known devnet keys) or `hsm` (generated
    /// inside a SoftHSM2 token; the relays sign through PKCS#11).
    #[arg(long, default_value = "dev", value_parser = ["dev", "hsm"])]
    signer: String,
    /// How transfers reach the threshold: `votes` (every operator votes on chain) or
    /// `attestations` (operators sign batches, one transaction executes each).
    #[arg(long, default_value = "votes", value_parser = ["votes", "attestations"])]
    mode: String,
    /// Service chains under the main chain, a bridge pair each; with more than one (or
    /// `--nested`) every relay serves all pairs from one process (a `[[pairs]]` config).
    #[arg(long, default_value_t = 1)]
    service_chains: usize,
    /// Also a chain under the first service chain, with its own pair (a service chain's
    /// service chain).
    #[arg(long)]
    nested: bool,
}

impl UpArgs {
    fn options(&self, dir: PathBuf) -> DevnetOptions {
        DevnetOptions {
            operators: self.operators,
            threshold: self.threshold,
            block_time: (self.block_time > 0.0).then_some(self.block_time),
            main_chain_id: self.main_chain_id,
            service_chain_id: self.service_chain_id,
            etcd_members: self.etcd_members,
            relays: !self.no_relays,
            prometheus: !self.no_prometheus,
            replicas: if self.etcd_members == 0 {
                1
            } else {
                self.replicas
            },
            signer: if self.signer == "hsm" {
                multibridge_devnet::DevnetSigner::Hsm
            } else {
                multibridge_devnet::DevnetSigner::DevKeys
            },
            voting_mode: if self.mode == "attestations" {
                multibridge_config::VotingMode::Attestations
            } else {
                multibridge_config::VotingMode::Votes
            },
            service_chains: self.service_chains,
            nested: self.nested,
            ..DevnetOptions::new(dir)
        }
    }
}

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
    let result = runtime.block_on(async {
        let command = async {
            match cli.command {
                Command::Up(args) => up(&dir, &args).await,
                Command::Down => down(&dir),
                Command::Status { json } => status(&dir, json),
                Command::Demo { up, transfers } => demo(&dir, &up, transfers).await,
                Command::Screenshots { out } => {
                    refuse_if_running(&dir)?;
                    for path in multibridge_devnet::screenshots::take(&dir, &out).await? {
                        println!("{}", path.display());
                    }
                    Ok(())
                }
                Command::BenchFailover {
                    failovers,
                    etcd_kills,
                    kill_alls,
                    rpc_cuts,
                    signer_unplugs,
                    json,
                } => {
                    refuse_if_running(&dir)?;
                    let report = multibridge_devnet::bench::failover::run(
                        &dir,
                        failovers,
                        etcd_kills,
                        kill_alls,
                        rpc_cuts,
                        signer_unplugs,
                    )
                    .await?;
                    emit_report(
                        &dir,
                        "bench-failover.json",
                        &report,
                        multibridge_devnet::bench::failover::render,
                        json,
                    )
                }
                Command::Experiment { seed, out, which } => {
                    refuse_if_running(&dir)?;
                    experiment(&dir, seed, &out, which).await
                }
                Command::BenchModes {
                    committees,
                    modes,
                    latency_samples,
                    native_burst,
                    erc20_burst,
                    json,
                } => {
                    refuse_if_running(&dir)?;
                    let committees = committees
                        .iter()
                        .map(|c| {
                            let (ops, threshold) = c.split_once(':').ok_or_else(|| {
                                anyhow::anyhow!("--committees: {c:?} is not OPERATORS:THRESHOLD")
                            })?;
                            Ok((ops.parse()?, threshold.parse()?))
                        })
                        .collect::<Result<Vec<(u32, u64)>>>()?;
                    let modes = modes
                        .iter()
                        .map(|m| match m.as_str() {
                            "votes" => Ok(multibridge_config::VotingMode::Votes),
                            "attestations" => Ok(multibridge_config::VotingMode::Attestations),
                            other => Err(anyhow::anyhow!(
                                "--modes: {other:?} is neither votes nor attestations"
                            )),
                        })
                        .collect::<Result<Vec<_>>>()?;
                    let report = multibridge_devnet::bench::modes::run(
                        &dir.join("bench-modes"),
                        &multibridge_devnet::bench::modes::ModesOptions {
                            committees,
                            modes,
                            latency_samples,
                            native_burst,
                            erc20_burst,
                        },
                    )
                    .await?;
                    emit_report(
                        &dir,
                        "bench-modes.json",
                        &report,
                        multibridge_devnet::bench::modes::render,
                        json,
                    )
                }
                Command::BenchHub {
                    pairs,
                    per_lane,
                    blackhole_seconds,
                    probe_every,
                    json,
                } => {
                    refuse_if_running(&dir)?;
                    let report = multibridge_devnet::bench::hub::run(
                        &dir.join("bench-hub"),
                        &multibridge_devnet::bench::hub::HubBenchOptions {
                            pairs,
                            per_lane,
                            blackhole_seconds,
                            probe_every,
                        },
                    )
                    .await?;
                    emit_report(
                        &dir,
                        "bench-hub.json",
                        &report,
                        multibridge_devnet::bench::hub::render,
                        json,
                    )
                }
                Command::BenchSigners { signatures, json } => {
                    let report = multibridge_devnet::bench::signer::run(
                        &dir.join("bench-signers"),
                        signatures,
                    )
                    .await?;
                    let text = serde_json::to_string_pretty(&report)?;
                    if !json {
                        println!("{}", multibridge_devnet::bench::signer::render(&report));
                    }
                    println!("{text}");
                    Ok(())
                }
                Command::BenchJoin { sizes, json } => {
                    refuse_if_running(&dir)?;
                    let report = multibridge_devnet::bench::join::run(&dir, &sizes).await?;
                    emit_report(
                        &dir,
                        "bench-join.json",
                        &report,
                        multibridge_devnet::bench::join::render,
                        json,
                    )
                }
                Command::Bench {
                    latency_samples,
                    burst,
                    rss_pending,
                    compare,
                    json,
                } => {
                    refuse_if_running(&dir)?;
                    // Read before the run, so a wrong path fails in a second, not after it.
                    let baseline = match &compare {
                        Some(path) => Some(serde_json::from_str::<serde_json::Value>(
                            &std::fs::read_to_string(path).map_err(|e| {
                                anyhow::anyhow!("cannot read {}: {e}", path.display())
                            })?,
                        )?),
                        None => None,
                    };
                    let report = multibridge_devnet::bench::transfers::run(
                        &dir,
                        &multibridge_devnet::bench::transfers::BenchOptions {
                            latency_samples,
                            burst,
                            rss_pending,
                        },
                    )
                    .await?;
                    let text = serde_json::to_string_pretty(&report)?;
                    std::fs::write(dir.join("bench.json"), &text)?;
                    if !json {
                        println!("{}", multibridge_devnet::bench::transfers::render(&report));
                        if let (Some(baseline), Some(path)) = (&baseline, &compare) {
                            let rows = multibridge_devnet::bench::compare::compare(
                                baseline,
                                &serde_json::to_value(&report)?,
                            );
                            println!(
                                "{}",
                                multibridge_devnet::bench::compare::render(
                                    &rows,
                                    &path.display().to_string()
                                )
                            );
                        }
                        println!("JSON (also in {}):", dir.join("bench.json").display());
                    }
                    println!("{text}");
                    Ok(())
                }
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

async fn experiment(
    dir: &Path,
    seed: Option<u64>,
    out: &Path,
    which: ExperimentCommand,
) -> Result<()> {
    use multibridge_devnet::experiment::{
        Common, build_profile, fresh_seed, klaytn_ha, leader_pause, network_cut, soak,
    };
    let common = Common {
        dir: dir.join("experiment"),
        out: if out.is_absolute() {
            out.to_owned()
        } else {
            workspace_root().join(out)
        },
        seed: seed.unwrap_or_else(fresh_seed),
    };
    eprintln!(
        "seed {} (repeat with --seed {}), {} build{}",
        common.seed,
        common.seed,
        build_profile(),
        if build_profile() == "debug" {
            ": the figures are not the relay's; use cargo run --release"
        } else {
            ""
        }
    );
    let (name, table, files) = match which {
        ExperimentCommand::NetworkCut {
            minutes,
            periods,
            cut_secs,
            tests,
        } => {
            let settings = network_cut::Settings {
                minutes,
                periods,
                cut_secs,
                targets: tests,
                ..Default::default()
            };
            let report = network_cut::run(&common, &settings).await?;
            let pictures = network_cut::pictures(&report);
            let files = common.write("network-cut", &report, &pictures)?;
            ("network-cut", network_cut::render(&report), files)
        }
        ExperimentCommand::LeaderPause { minutes, bound } => {
            let settings = leader_pause::Settings {
                minutes,
                bound,
                ..Default::default()
            };
            let report = leader_pause::run(&common, &settings).await?;
            let svg = report.run.picture(
                format!("leader paused 15 s every 30–120 s (seed {})", report.seed),
                report.bound,
            );
            let files = common.write("leader-pause", &report, &[(String::new(), svg)])?;
            ("leader-pause", leader_pause::render(&report), files)
        }
        ExperimentCommand::KlaytnHa {
            rounds,
            up_secs,
            down_secs,
        } => {
            let settings = klaytn_ha::Settings {
                rounds,
                up_secs,
                down_secs,
                ..Default::default()
            };
            let report = klaytn_ha::run(&common, &settings).await?;
            let svg = report.run.picture(
                format!(
                    "4 operators, threshold 1, all relays restarted (seed {})",
                    report.seed
                ),
                30.0,
            );
            let files = common.write("klaytn-ha", &report, &[(String::new(), svg)])?;
            ("klaytn-ha", klaytn_ha::render(&report), files)
        }
        ExperimentCommand::Soak {
            transfers,
            users,
            bound,
        } => {
            let settings = soak::Settings {
                transfers,
                users,
                bound,
                ..Default::default()
            };
            let report = soak::run(&common, &settings).await?;
            let svg = report.run.picture(
                format!(
                    "soak, {} transfers, mixed faults (seed {})",
                    report.requests, report.seed
                ),
                report.bound,
            );
            let files = common.write("soak", &report, &[(String::new(), svg)])?;
            ("soak", soak::render(&report), files)
        }
    };
    println!("{table}");
    println!("{name}: the report and its timeline, then the pictures:");
    for file in files {
        println!("  {}", file.display());
    }
    Ok(())
}

fn refuse_if_running(dir: &Path) -> Result<()> {
    if let Some(processes) = load_processes(dir)?
        && processes.iter().any(|p| p.is_alive())
    {
        return Err(DevnetError::AlreadyRunning(dir.to_owned()).into());
    }
    Ok(())
}

async fn up(dir: &Path, args: &UpArgs) -> Result<()> {
    refuse_if_running(dir)?;
    let started = Instant::now();
    let devnet = Devnet::start(args.options(dir.to_owned())).await?;
    let manifest = devnet.manifest();
    let processes = devnet.detach();
    save_processes(&manifest.dir, &processes)?;
    print_summary(&manifest);
    println!(
        "up in {:.1}s; stop with: multibridge-devnet down",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Print a benchmark's report — its table (unless `json_only`), then its JSON — and keep the
/// JSON in `<dir>/<file>`.
fn emit_report<R: serde::Serialize>(
    dir: &Path,
    file: &str,
    report: &R,
    render: fn(&R) -> String,
    json_only: bool,
) -> Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(dir.join(file), &text)?;
    if !json_only {
        println!("{}", render(report));
        println!("JSON (also in {}):", dir.join(file).display());
    }
    println!("{text}");
    Ok(())
}

fn print_summary(m: &Manifest) {
    println!("devnet in {}", m.dir.display());
    for (name, chain) in [("main", &m.main), ("service", &m.service)] {
        println!(
            "  {name:<8} chain {:<6} {}  bridge {}  token {}  nft {}",
            chain.contracts.chain_id,
            chain.rpc_url,
            chain.contracts.bridge,
            chain.contracts.token,
            chain.contracts.nft
        );
    }
    let ids = |u: usize| {
        multibridge_devnet::harness::deploy::user_nft_ids(u)
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "  user 0 holds NFT ids {} on main (user n: (n+1)*1000 + 1..={})",
        ids(0),
        multibridge_devnet::harness::deploy::USER_NFTS
    );
    println!("  registry {} (main chain)", m.registry);
    for pair in m.pairs.iter().skip(1) {
        println!(
            "  pair {:<20} chain {} {} -> chain {} {}  bridges {} / {}  registry {}",
            pair.name,
            pair.main.contracts.chain_id,
            pair.main.rpc_url,
            pair.service.contracts.chain_id,
            pair.service.rpc_url,
            pair.main.contracts.bridge,
            pair.service.contracts.bridge,
            pair.registry
        );
        for (op, urls) in pair.http_urls.iter().enumerate() {
            if !urls.is_empty() {
                println!(
                    "      operator {} dashboard {}",
                    op.saturating_add(1),
                    urls.join("  ")
                );
            }
        }
    }
    if !m.etcd_endpoints.is_empty() {
        println!("  etcd     {}", m.etcd_endpoints.join(","));
    }
    if let Some(url) = &m.prometheus_url {
        println!("  prometheus {url} (alerts: {url}/alerts)");
    }
    println!(
        "  operators {} (threshold {}):",
        m.operators.len(),
        m.threshold
    );
    for op in &m.operators {
        println!("    {}  config {}", op.account.address, op.config.display());
        if !op.http_urls.is_empty() {
            println!("      dashboard {}", op.http_urls.join("  "));
        }
    }
    if m.operators.iter().any(|op| !op.http_urls.is_empty()) {
        println!(
            "  dashboard admin token (devnet only): {}",
            m.dir.join("dashboard-token").display()
        );
    }
    println!("  manifest {}", m.dir.join("devnet.json").display());
}

fn down(dir: &Path) -> Result<()> {
    let Some(processes) = load_processes(dir)? else {
        println!("nothing to stop in {}", dir.display());
        return Ok(());
    };
    let mut failed = Vec::new();
    for p in &processes {
        // etcd flushes its WAL on SIGTERM; give it time before SIGKILL.
        if p.stop(Duration::from_secs(10)) {
            println!("stopped {} (pid {})", p.name, p.pid);
        } else {
            failed.push(format!("{} (pid {})", p.name, p.pid));
        }
    }
    if !failed.is_empty() {
        bail!("could not stop: {}", failed.join(", "));
    }
    remove_processes(dir)?;
    Ok(())
}

fn status(dir: &Path, json: bool) -> Result<()> {
    let processes = load_processes(dir)?.unwrap_or_default();
    let rows: Vec<_> = processes
        .iter()
        .map(|p| (p.name.clone(), p.pid, p.is_alive()))
        .collect();
    if json {
        let value = serde_json::json!({
            "dir": dir,
            "running": rows.iter().any(|r| r.2),
            "processes": rows.iter().map(|(name, pid, alive)| serde_json::json!({
                "name": name, "pid": pid, "alive": alive
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("no devnet in {}", dir.display());
        return Ok(());
    }
    println!("devnet in {}", dir.display());
    for (name, pid, alive) in rows {
        println!(
            "  {name:<14} pid {pid:<8} {}",
            if alive { "running" } else { "not running" }
        );
    }
    Ok(())
}

/// Start a devnet with one relay per operator, send transfers both ways and follow each to its
/// handle on the other chain.
async fn demo(dir: &Path, args: &UpArgs, transfers: u32) -> Result<()> {
    refuse_if_running(dir)?;
    if args.no_relays {
        bail!("the demo needs the relays; drop --no-relays");
    }
    println!(
        "starting devnet (anvil x{}, etcd x{}, {} relays) ...",
        args.service_chains
            .saturating_add(1)
            .saturating_add(usize::from(args.nested)),
        args.etcd_members,
        args.operators
    );
    let devnet = Devnet::start(args.options(dir.to_owned())).await?;
    let manifest = devnet.manifest();
    print_summary(&manifest);
    // A hub devnet: the same transfers on every pair, each pair's relays in the same processes.
    let pairs = manifest.drivers(&Devnet::first_pair_name());
    let mut latencies = Vec::new();
    for (name, driver) in &pairs {
        if pairs.len() > 1 {
            println!("\npair {name}");
        }
        latencies.extend(demo_pair(driver, dir, transfers).await?);
    }
    latencies.sort_by(f64::total_cmp);
    let median = latencies
        .get(latencies.len() / 2)
        .copied()
        .unwrap_or_default();
    println!(
        "\n{} transfers on {} pair(s), each handled exactly once by the relays; median latency {median:.2}s",
        latencies.len(),
        pairs.len()
    );
    drop(devnet);
    println!("devnet stopped");
    Ok(())
}

/// The demo's transfers on one pair (both lanes, native and token), each waited for and
/// checked handled once; then the pair's token conservation. Returns the latencies.
async fn demo_pair(driver: &Driver, dir: &Path, transfers: u32) -> Result<Vec<f64>> {
    let amount_native = parse_ether("1.5")?;
    // main -> service pays user 0 on the service chain, so it holds wrapped tokens to send back;
    // service -> main pays a fresh address. Less comes back than went out.
    let user0 = driver.user(0)?.address();
    let recipient_of = |lane: Lane| match lane {
        Lane::MainToService => user0,
        Lane::ServiceToMain => Address::repeat_byte(0xd0),
    };
    let amount_token_of = |lane: Lane| match lane {
        Lane::MainToService => parse_ether("250"),
        Lane::ServiceToMain => parse_ether("100"),
    };
    println!(
        "\n{:<16} {:<6} {:>5} {:>8} {:>9}",
        "lane", "asset", "nonce", "amount", "latency"
    );
    let mut latencies = Vec::new();
    for lane in [Lane::MainToService, Lane::ServiceToMain] {
        for _ in 0..transfers {
            for erc20 in [false, true] {
                let request = if erc20 {
                    driver
                        .request_erc20(lane, 0, recipient_of(lane), amount_token_of(lane)?)
                        .await?
                } else {
                    driver
                        .request_native(lane, 0, recipient_of(lane), amount_native)
                        .await?
                };
                // Latency from the request's receipt to the handle seen on the other chain.
                let started = Instant::now();
                let deadline = started + Duration::from_secs(60);
                loop {
                    match driver.handle_count(lane, request.nonce).await? {
                        0 if Instant::now() < deadline => {
                            tokio::time::sleep(Duration::from_millis(50)).await
                        }
                        0 => bail!(
                            "{lane} nonce {} not handled within 60 s; see the relay logs in {}",
                            request.nonce,
                            dir.join("logs").display()
                        ),
                        1 => break,
                        n => bail!("{lane} nonce {} handled {n} times", request.nonce),
                    }
                }
                let latency = started.elapsed().as_secs_f64();
                latencies.push(latency);
                println!(
                    "{:<16} {:<6} {:>5} {:>8} {:>8.2}s",
                    lane.as_str(),
                    if erc20 { "MBT" } else { "native" },
                    request.nonce,
                    ether(request.amount),
                    latency
                );
            }
        }
    }
    let locked = driver
        .token_balance(ChainRole::Main, driver.manifest().main.contracts.bridge)
        .await?;
    let wrapped = driver.token_supply(ChainRole::Service).await?;
    println!(
        "conservation MBT: locked on main {} = minted on service {} -> {}",
        ether(locked),
        ether(wrapped),
        if locked == wrapped { "ok" } else { "BROKEN" }
    );
    if locked != wrapped {
        bail!("conservation broken");
    }
    Ok(latencies)
}

/// `1.5` rather than `1.500000000000000000`.
fn ether(amount: alloy::primitives::U256) -> String {
    let s = format_ether(amount);
    match s.split_once('.') {
        Some((whole, frac)) if frac.trim_end_matches('0').is_empty() => whole.to_owned(),
        Some((whole, frac)) => format!("{whole}.{}", frac.trim_end_matches('0')),
        None => s,
    }
}
