//! The benchmarks: each prints a table and its JSON, and keeps the JSON in the devnet directory.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;

use crate::up::refuse_if_running;

#[derive(Args)]
pub struct BenchArgs {
    /// Single transfers timed for the latency percentiles.
    #[arg(long, default_value_t = 30)]
    pub latency_samples: usize,
    /// Requests in the throughput backlog: large enough that the first and last, part-full
    /// blocks do not dominate (the window is counted in whole blocks: at 5,000 one block
    /// is ~7 % of it, at 20,000 ~2 %), and beyond the bridge's vote window of 4,096, so the
    /// relays' waiting for the window is measured too.
    #[arg(long, default_value_t = 20_000)]
    pub burst: usize,
    /// Backlogs (pending requests, comma-separated) for the memory figures; 0 skips them.
    #[arg(long, value_delimiter = ',', default_values_t = [10_000usize, 100_000])]
    pub rss_pending: Vec<usize>,
    /// Runs per memory figure, each on a devnet of its own: the figure is their median, printed
    /// with the spread between the runs.
    #[arg(long, default_value_t = 3)]
    pub rss_runs: usize,
    /// Print each figure beside the same figure of an earlier `bench.json` (the committed
    /// baseline: `devnet/bench/baseline.json`) with their ratio.
    #[arg(long, value_name = "FILE")]
    pub compare: Option<PathBuf>,
    /// Print only the JSON.
    #[arg(long)]
    pub json: bool,
}

impl BenchArgs {
    pub async fn run(self, dir: &Path) -> Result<()> {
        let BenchArgs {
            latency_samples,
            burst,
            rss_pending,
            rss_runs,
            compare,
            json,
        } = self;
        refuse_if_running(dir)?;
        let baseline = read_baseline(compare.as_deref())?;
        let report = multibridge_devnet::bench::transfers::run(
            dir,
            &multibridge_devnet::bench::transfers::BenchOptions {
                latency_samples,
                burst,
                rss_pending,
                rss_runs,
            },
        )
        .await?;
        emit_compared(
            dir,
            "bench.json",
            &report,
            multibridge_devnet::bench::transfers::render,
            json,
            baseline.as_ref().zip(compare.as_deref()),
        )
    }
}

#[derive(Args)]
pub struct BenchModesArgs {
    /// Committees as OPERATORS:THRESHOLD, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = ["3:2".to_owned(), "5:3".to_owned(), "7:5".to_owned()])]
    pub committees: Vec<String>,
    /// Modes to run per committee, comma-separated (`votes`, `attestations`); the gas
    /// ratio is reported only where both ran.
    #[arg(long, value_delimiter = ',', default_values_t = ["votes".to_owned(), "attestations".to_owned()])]
    pub modes: Vec<String>,
    /// Single transfers timed per mode.
    #[arg(long, default_value_t = 10)]
    pub latency_samples: usize,
    /// Native requests in each backlog (30,000: about 30 blocks of attested batches, so one
    /// block at either end of the drain is a few percent of it).
    #[arg(long, default_value_t = 30_000)]
    pub native_burst: usize,
    /// ERC-20 requests in each backlog.
    #[arg(long, default_value_t = 30_000)]
    erc20_burst: usize,
    /// Steady rows: users at these transfers per second per lane on both lanes (native and
    /// ERC-20 half each), for the first committee in each mode.
    #[arg(long, value_delimiter = ',', default_values_t = [1.0, 4.0, 16.0])]
    pub rates: Vec<f64>,
    /// Seconds the users send in each steady row (0: no steady rows).
    #[arg(long, default_value_t = 60)]
    pub steady_secs: u64,
    /// Print only the JSON.
    #[arg(long)]
    pub json: bool,
}

impl BenchModesArgs {
    pub async fn run(self, dir: &Path) -> Result<()> {
        let BenchModesArgs {
            committees,
            modes,
            latency_samples,
            native_burst,
            erc20_burst,
            rates,
            steady_secs,
            json,
        } = self;
        refuse_if_running(dir)?;
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
                rates,
                steady_secs,
            },
        )
        .await?;
        emit_report(
            dir,
            "bench-modes.json",
            &report,
            multibridge_devnet::bench::modes::render,
            json,
        )
    }
}

#[derive(Args)]
pub struct BenchHubArgs {
    /// Hub sizes in service chains, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2, 4, 8])]
    pub pairs: Vec<usize>,
    /// Native transfers per lane in the all-lanes burst.
    #[arg(long, default_value_t = 20)]
    pub per_lane: usize,
    /// Seconds one service chain is blackholed (0: skip).
    #[arg(long, default_value_t = 60)]
    pub blackhole_seconds: u64,
    /// Seconds between probe transfers on each lane during the latency windows.
    #[arg(long, default_value_t = 3.0)]
    pub probe_every: f64,
    /// The relays' etcd lease TTL, seconds (each election renews and heartbeats six times a
    /// TTL, so a hub's etcd load is elections × 6 / TTL writes a second per relay).
    #[arg(long, default_value_t = multibridge_devnet::harness::devnet::LEASE_TTL_SECS)]
    pub lease_ttl: u64,
    /// The relays read each chain's head over HTTP between blocks instead of following its
    /// `newHeads` subscription: to compare the two.
    #[arg(long)]
    pub no_head_feeds: bool,
    /// Print each figure beside the same figure of an earlier `bench-hub.json` (the committed
    /// baseline: `devnet/bench/hub-baseline.json`) with their ratio.
    #[arg(long, value_name = "FILE")]
    pub compare: Option<PathBuf>,
    /// Print only the JSON.
    #[arg(long)]
    pub json: bool,
}

impl BenchHubArgs {
    pub async fn run(self, dir: &Path) -> Result<()> {
        let BenchHubArgs {
            pairs,
            per_lane,
            blackhole_seconds,
            probe_every,
            lease_ttl,
            no_head_feeds,
            compare,
            json,
        } = self;
        refuse_if_running(dir)?;
        let baseline = read_baseline(compare.as_deref())?;
        let report = multibridge_devnet::bench::hub::run(
            &dir.join("bench-hub"),
            &multibridge_devnet::bench::hub::HubBenchOptions {
                pairs,
                per_lane,
                blackhole_seconds,
                probe_every,
                lease_ttl_secs: lease_ttl,
                head_feeds: !no_head_feeds,
            },
        )
        .await?;
        emit_compared(
            dir,
            "bench-hub.json",
            &report,
            multibridge_devnet::bench::hub::render,
            json,
            baseline.as_ref().zip(compare.as_deref()),
        )
    }
}

/// The baseline `--compare` names, read before the run (a wrong path fails in a second, not
/// after the run).
fn read_baseline(path: Option<&Path>) -> Result<Option<serde_json::Value>> {
    path.map(|path| {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        Ok(serde_json::from_str::<serde_json::Value>(&text)?)
    })
    .transpose()
}

#[derive(Args)]
pub struct BenchFailoverArgs {
    /// Vote in attested batches instead of votes (the rounds then wait for the standby's
    /// signature and the lane's next batch; the signer rounds need votes mode).
    #[arg(long)]
    pub attested: bool,
    /// How many failovers (leader SIGKILLs).
    #[arg(long, default_value_t = 20)]
    pub failovers: usize,
    /// Then how many leader SIGSTOPs (continued once the standby moved the lane).
    #[arg(long, default_value_t = 10)]
    pub sigstops: usize,
    /// Then how many cuts of every connection of the leader (both chains, every etcd member).
    #[arg(long, default_value_t = 10)]
    pub network_cuts: usize,
    /// Then how many restarts of the destination's node (every replica's connection refused
    /// for 5 s).
    #[arg(long, default_value_t = 5)]
    pub node_restarts: usize,
    /// Then how many SIGKILLs of etcd's raft leader (quorum intact; restarted after each).
    #[arg(long, default_value_t = 3)]
    pub etcd_kills: usize,
    /// Then how many times every relay is SIGKILLed and all restarted at once.
    #[arg(long, default_value_t = 10)]
    pub kill_alls: usize,
    /// Then how many times the leader's destination RPC is blackholed (its own link).
    #[arg(long, default_value_t = 3)]
    pub rpc_cuts: usize,
    /// Then how many times the leader's signer is unplugged (a SoftHSM token moved away; on
    /// a devnet of its own signing through the token) while its standby signs through a
    /// second one.
    #[arg(long, default_value_t = 3)]
    pub signer_unplugs: usize,
    /// Print only the JSON.
    #[arg(long)]
    pub json: bool,
}

impl BenchFailoverArgs {
    pub async fn run(self, dir: &Path) -> Result<()> {
        let BenchFailoverArgs {
            attested,
            failovers,
            sigstops,
            network_cuts,
            node_restarts,
            etcd_kills,
            kill_alls,
            rpc_cuts,
            signer_unplugs,
            json,
        } = self;
        refuse_if_running(dir)?;
        let plan = multibridge_devnet::bench::failover::Plan {
            mode: if attested {
                multibridge_config::VotingMode::Attestations
            } else {
                multibridge_config::VotingMode::Votes
            },
            failovers,
            sigstops,
            network_cuts,
            node_restarts,
            etcd_kills,
            kill_alls,
            rpc_cuts,
            signer_unplugs: if attested { 0 } else { signer_unplugs },
        };
        let report = multibridge_devnet::bench::failover::run(dir, &plan).await?;
        emit_report(
            dir,
            "bench-failover.json",
            &report,
            multibridge_devnet::bench::failover::render,
            json,
        )
    }
}

#[derive(Args)]
pub struct BenchJoinArgs {
    /// History sizes (requests).
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    pub sizes: Vec<u64>,
    /// Print only the JSON.
    #[arg(long)]
    pub json: bool,
}

impl BenchJoinArgs {
    pub async fn run(self, dir: &Path) -> Result<()> {
        let BenchJoinArgs { sizes, json } = self;
        refuse_if_running(dir)?;
        let report = multibridge_devnet::bench::join::run(dir, &sizes).await?;
        emit_report(
            dir,
            "bench-join.json",
            &report,
            multibridge_devnet::bench::join::render,
            json,
        )
    }
}

#[derive(Args)]
pub struct BenchSignersArgs {
    /// Signatures timed per backend.
    #[arg(long, default_value_t = multibridge_devnet::bench::signer::DEFAULT_SIGNATURES)]
    pub signatures: usize,
    /// Print only the JSON.
    #[arg(long)]
    pub json: bool,
}

impl BenchSignersArgs {
    pub async fn run(self, dir: &Path) -> Result<()> {
        let BenchSignersArgs { signatures, json } = self;
        let report =
            multibridge_devnet::bench::signer::run(&dir.join("bench-signers"), signatures).await?;
        let text = serde_json::to_string_pretty(&report)?;
        if !json {
            println!("{}", multibridge_devnet::bench::signer::render(&report));
        }
        println!("{text}");
        Ok(())
    }
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
    emit_compared(dir, file, report, render, json_only, None)
}

/// [`emit_report`], with each figure beside the same figure of `baseline` (read from its path)
/// between the table and the JSON.
fn emit_compared<R: serde::Serialize>(
    dir: &Path,
    file: &str,
    report: &R,
    render: fn(&R) -> String,
    json_only: bool,
    baseline: Option<(&serde_json::Value, &Path)>,
) -> Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(dir.join(file), &text)?;
    if !json_only {
        println!("{}", render(report));
        if let Some((baseline, path)) = baseline {
            let rows = multibridge_devnet::bench::compare::compare(
                baseline,
                &serde_json::to_value(report)?,
            );
            println!(
                "{}",
                multibridge_devnet::bench::compare::render(&rows, &path.display().to_string())
            );
        }
        println!("JSON (also in {}):", dir.join(file).display());
    }
    println!("{text}");
    Ok(())
}
