//! A soak: ≥ 10,000 transfers (native and ERC-20, both ways) under continuous mixed faults,
//! the end state verified from the chains alone.
//!
//! The devnet: 3 operators × 2 replicas, threshold 2, a 3-member etcd, 1 s blocks, 3
//! confirmations, every replica on its own network links. Faults follow one another without a
//! pause between them longer than `gap` (seeded; each kind at least once, in a seeded order,
//! before kinds repeat at random):
//!
//! - `leader-sigkill`: the replica leading a random lane of a random operator is SIGKILLed and
//!   started again 3 s later;
//! - `leader-sigstop`: that replica is paused (SIGSTOP) for 10 s;
//! - `all-relays-sigkill`: every relay process is SIGKILLed at once, all started 5 s later;
//! - `etcd-member-kill`: a random etcd member is SIGKILLed and started again 10 s later;
//! - `rpc-blackhole`: one replica's connection to one chain is blackholed for 15 s;
//! - `leader-network-cut`: every connection of the replica leading a random lane (both chains
//!   and every etcd member) is blackholed for 10 s;
//! - `rpc-refused`: every replica's connections to one chain are refused for 5 s — what the
//!   relays see while that chain's node restarts (anvil itself is not restarted: it keeps its
//!   chain in memory only, and a restart would lose the chain);
//! - `reorg`: the last 2 blocks of a random chain are replaced (`anvil_reorg`, inside the
//!   confirmation depth of 3); the users' transactions in them are mined again in the new
//!   blocks (as a real reorg returns them to the pool), the relays' votes in them are dropped.

use std::time::Duration;

use alloy::network::TransactionResponse as _;
use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::Provider;
use multibridge_contracts::{ChainRole, Lane};
use serde::Serialize;

use super::load::LoadSpec;
use super::report::{Spread, downtime, downtime_curve, render_curve, secs};
use super::{Common, Finished, Rng, Run, random_leader, sleep_until};
use crate::error::DevnetError;
use crate::harness::ha::start_ha;
use crate::harness::proxy::ProxyMode;
use crate::{Devnet, DevnetOptions};

/// The fault kinds, in the order the table lists them.
pub const KINDS: [&str; 8] = [
    "leader-sigkill",
    "leader-sigstop",
    "all-relays-sigkill",
    "etcd-member-kill",
    "rpc-blackhole",
    "leader-network-cut",
    "rpc-refused",
    "reorg",
];

/// How to run it.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Transfers to send.
    pub transfers: usize,
    /// Users sending.
    pub users: usize,
    /// Requests per second per user.
    pub per_user_rate: f64,
    /// Seconds between one fault's end and the next one's start (uniform in the range).
    pub gap: (f64, f64),
    /// Downtime bound, seconds.
    pub bound: f64,
    /// Scale every fault's length by this (1.0: the lengths above; the suite's short run uses
    /// less).
    pub fault_scale: f64,
    /// Votes or attested batches.
    pub mode: multibridge_config::VotingMode,
    /// How long the end waits for every request to be handled (all lanes together).
    pub drain: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            transfers: 10_000,
            users: 10,
            per_user_rate: 1.2,
            gap: (10.0, 20.0),
            bound: 10.0,
            fault_scale: 1.0,
            mode: multibridge_config::VotingMode::Votes,
            drain: Duration::from_secs(180),
        }
    }
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `votes` or `attested`.
    pub mode: &'static str,
    /// Seed.
    pub seed: u64,
    /// Build profile of the harness.
    pub build: &'static str,
    /// Minutes the users sent for.
    pub minutes: f64,
    /// Requests on the chains.
    pub requests: u64,
    /// Of them handled exactly once.
    pub handled_once: u64,
    /// Never handled (goal 0).
    pub lost: u64,
    /// Handled more than once (goal 0).
    pub doubled: u64,
    /// Recipients checked against the source chains / wrong.
    pub recipients: (usize, usize),
    /// Value conserved (native and ERC-20).
    pub conserved: bool,
    /// Every replica's store agrees with the chains.
    pub stores_in_sync: bool,
    /// Faults per kind.
    pub faults: Vec<(String, usize)>,
    /// Downtime bound, seconds.
    pub bound: f64,
    /// Downtime, seconds.
    pub downtime_secs: f64,
    /// Downtime as a share of the run, percent (goal ≤ 3).
    pub downtime_pct: f64,
    /// Downtime at other bounds: (bound, seconds, percent).
    pub downtime_curve: Vec<(f64, f64, f64)>,
    /// Downtime counting only the requests whose user's own transaction went through (a receipt
    /// within the users' 20 s): what the relays answer for. Seconds, percent.
    pub downtime_users_ok: (f64, f64),
    /// Per fault kind, the requests sent from 5 s before a fault to 2 s after it whose user's
    /// transaction went through: (kind, faults, requests, p99, max).
    pub by_fault: Vec<(String, usize, usize, f64, f64)>,
    /// The latency of the requests sent away from the faults that stop every relay or every
    /// connection to a chain for 5 s (`all-relays-sigkill`, `rpc-refused`), where outage plus
    /// confirmations set the latency whatever the relays do.
    pub latency_outside_full_outages: Spread,
    /// Latency of every transfer under the faults.
    pub latency: Spread,
    /// Of it, the user's own transaction: sent → its receipt (the source chain's part).
    pub inclusion: Spread,
    /// The rest: the user's receipt → handled (confirmations and the relays).
    pub after_inclusion: Spread,
    /// User transactions that failed (a transaction a reorg or a refused connection cost).
    pub user_failures: usize,
    /// What was inconsistent.
    pub inconsistencies: Vec<String>,
    /// The run in full.
    pub run: Finished,
}

/// The soak's devnet.
pub fn devnet_options(
    dir: std::path::PathBuf,
    users: usize,
    mode: multibridge_config::VotingMode,
) -> DevnetOptions {
    DevnetOptions {
        voting_mode: mode,
        replicas: 2,
        confirmations: 3,
        replica_links: true,
        users: u32::try_from(users).unwrap_or(10),
        ..DevnetOptions::new(dir)
    }
}

/// Run it.
pub async fn run(common: &Common, settings: &Settings) -> Result<Report, DevnetError> {
    let devnet = start_ha(devnet_options(
        common.part_dir("soak"),
        settings.users,
        settings.mode,
    ))
    .await?;
    let spec = LoadSpec {
        users: (0..settings.users).collect(),
        per_user_rate: settings.per_user_rate,
        lanes: Lane::ALL.to_vec(),
        erc20_share: 0.4,
        in_flight: 1,
        limit: Some(settings.transfers),
    };
    let tokens = alloy::primitives::utils::parse_ether("100").unwrap_or(U256::ZERO);
    let mut run = Run::start(devnet, &spec, common.seed, tokens).await?;
    let users: Vec<Address> = (0..settings.users)
        .map(|u| run.driver.user(u).map(|k| k.address()))
        .collect::<Result<_, _>>()?;
    let mut rng = Rng::new(common.seed).fork(7);
    let mut order: Vec<&str> = KINDS.to_vec();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i.saturating_add(1)));
    }
    let mut counts: Vec<(String, usize)> = KINDS.iter().map(|k| ((*k).to_owned(), 0)).collect();
    let mut made = 0usize;
    // The users' schedule, three times over plus two minutes: past it the users are stuck (their
    // transactions are not mined), and the run ends with what it has rather than at the harness's
    // deadline without a report.
    let planned = settings.transfers as f64
        / (settings.users.max(1) as f64 * settings.per_user_rate.max(0.001));
    let give_up = 3.0 * planned + 120.0;
    let over = |run: &Run| run.load_finished() || run.timeline.now() > give_up;
    loop {
        let next = run.timeline.now() + rng.between(settings.gap.0, settings.gap.1);
        while run.timeline.now() < next && !over(&run) {
            sleep_until(&run.timeline, next.min(run.timeline.now() + 1.0)).await;
        }
        if over(&run) {
            if !run.load_finished() {
                eprintln!(
                    "  the users sent {} of {} transfers in {give_up:.0} s: stopping them",
                    run.submitted(),
                    settings.transfers
                );
            }
            break;
        }
        let kind = order
            .get(made)
            .copied()
            .unwrap_or_else(|| KINDS[rng.below(KINDS.len())]);
        inject(&mut run, kind, &mut rng, settings.fault_scale, &users).await?;
        if let Some(c) = counts.iter_mut().find(|(k, _)| k == kind) {
            c.1 = c.1.saturating_add(1);
        }
        made = made.saturating_add(1);
        eprintln!("  {} transfers sent, {made} faults", run.submitted());
    }
    let finished = run.finish(settings.drain, true).await?;
    let end = &finished.end;
    let down = downtime(&finished.outcomes, settings.bound, finished.load_secs);
    Ok(Report {
        mode: match settings.mode {
            multibridge_config::VotingMode::Votes => "votes",
            multibridge_config::VotingMode::Attestations => "attested",
        },
        seed: common.seed,
        build: super::build_profile(),
        minutes: finished.load_secs / 60.0,
        requests: end.requests(),
        handled_once: end.lanes.iter().map(|l| l.handled_once).sum(),
        lost: end.lanes.iter().map(|l| l.lost).sum(),
        doubled: end.lanes.iter().map(|l| l.handled_twice).sum(),
        recipients: (end.recipients_checked, end.recipients_wrong.len()),
        conserved: end.erc20_conserved && end.native_conserved,
        stores_in_sync: finished
            .stores
            .as_ref()
            .is_some_and(super::verify::StoreSync::ok),
        faults: counts,
        bound: settings.bound,
        downtime_secs: down,
        downtime_pct: 100.0 * down / finished.load_secs.max(1.0),
        downtime_curve: downtime_curve(&finished.outcomes, &[8.0, 10.0, 12.0], finished.load_secs),
        downtime_users_ok: {
            let ok: Vec<_> = finished
                .outcomes
                .iter()
                .filter(|o| o.error.is_none())
                .cloned()
                .collect();
            let secs = downtime(&ok, settings.bound, finished.load_secs);
            (secs, 100.0 * secs / finished.load_secs.max(1.0))
        },
        by_fault: by_fault(&finished),
        latency_outside_full_outages: {
            let full: Vec<&super::FaultSpan> = finished
                .faults
                .iter()
                .filter(|f| FULL_OUTAGES.contains(&f.kind.as_str()))
                .collect();
            Spread::of_values(
                finished
                    .outcomes
                    .iter()
                    .filter(|o| o.error.is_none() && !full.iter().any(|f| near(o.sent, f)))
                    .filter_map(super::report::Outcome::latency)
                    .collect(),
            )
        },
        latency: Spread::of(&finished.outcomes),
        inclusion: Spread::of_values(
            finished
                .outcomes
                .iter()
                .filter(|o| o.handled.is_some())
                .filter_map(super::report::Outcome::inclusion)
                .collect(),
        ),
        after_inclusion: Spread::of_values(
            finished
                .outcomes
                .iter()
                .filter_map(|o| Some((o.handled? - o.mined?).max(0.0)))
                .collect(),
        ),
        user_failures: end.user_failures,
        inconsistencies: finished.inconsistencies(),
        run: finished,
    })
}

/// The fault kinds that stop every relay, or every relay's connection to a chain, for 5 s.
const FULL_OUTAGES: [&str; 2] = ["all-relays-sigkill", "rpc-refused"];

/// Whether a request sent at `sent` is counted as near fault `f`: from 5 s before it (requests
/// still waiting for their confirmations when it starts) to 2 s after it ends.
fn near(sent: f64, f: &super::FaultSpan) -> bool {
    sent >= f.start - 5.0 && sent <= f.end + 2.0
}

/// Per fault kind: faults, requests near one whose user's transaction went through, their p99
/// and max latency.
fn by_fault(finished: &Finished) -> Vec<(String, usize, usize, f64, f64)> {
    KINDS
        .iter()
        .filter_map(|kind| {
            let faults: Vec<&super::FaultSpan> =
                finished.faults.iter().filter(|f| f.kind == *kind).collect();
            if faults.is_empty() {
                return None;
            }
            let latencies: Vec<f64> = finished
                .outcomes
                .iter()
                .filter(|o| o.error.is_none() && faults.iter().any(|f| near(o.sent, f)))
                .filter_map(super::report::Outcome::latency)
                .collect();
            let spread = Spread::of_values(latencies);
            Some((
                (*kind).to_owned(),
                faults.len(),
                spread.samples,
                spread.p99,
                spread.max,
            ))
        })
        .collect()
}

/// Inject one fault of `kind` and heal it.
async fn inject(
    run: &mut Run,
    kind: &str,
    rng: &mut Rng,
    scale: f64,
    users: &[Address],
) -> Result<(), DevnetError> {
    let hold = |secs: f64| Duration::from_secs_f64((secs * scale).max(0.5));
    let fail = |e: crate::harness::process::ProcessError| DevnetError::Invalid(e.to_string());
    let operators = run.devnet.replica_http_ports.len();
    let replicas = run.devnet.replica_http_ports.first().map_or(1, Vec::len);
    let start = run.timeline.now();
    let target = match kind {
        "leader-sigkill" | "leader-sigstop" => {
            let (op, lane, replica) = random_leader(&run.devnet, rng).await;
            let name = Devnet::replica_name(op, replica);
            let process = run
                .devnet
                .replica(op, replica)
                .ok_or_else(|| DevnetError::Invalid(format!("no {name}")))?;
            if kind == "leader-sigkill" {
                process.kill().map_err(fail)?;
                tokio::time::sleep(hold(3.0)).await;
                run.devnet.start_replica(op, replica)?;
            } else {
                process.pause().map_err(fail)?;
                tokio::time::sleep(hold(10.0)).await;
                process.resume().map_err(fail)?;
            }
            format!("{name} (leads {lane})")
        }
        "all-relays-sigkill" => {
            for op in 0..operators {
                for replica in 0..replicas {
                    if let Some(p) = run.devnet.replica(op, replica) {
                        p.kill().map_err(fail)?;
                    }
                }
            }
            tokio::time::sleep(hold(5.0)).await;
            for op in 0..operators {
                for replica in 0..replicas {
                    run.devnet.start_replica(op, replica)?;
                }
            }
            format!("{} relays", operators.saturating_mul(replicas))
        }
        "etcd-member-kill" => {
            let etcd = run
                .devnet
                .etcd
                .as_mut()
                .ok_or_else(|| DevnetError::Invalid("no etcd".into()))?;
            let index = rng.below(etcd.len());
            let member = etcd
                .member(index)
                .ok_or_else(|| DevnetError::Invalid(format!("no etcd member {index}")))?;
            member.process().kill().map_err(fail)?;
            tokio::time::sleep(hold(10.0)).await;
            member.process().start_again().map_err(fail)?;
            format!("etcd-{index}")
        }
        "rpc-blackhole" => {
            let (op, replica) = (rng.below(operators), rng.below(replicas));
            let role = if rng.chance(0.5) {
                ChainRole::Main
            } else {
                ChainRole::Service
            };
            let name = Devnet::replica_name(op, replica);
            let links = run
                .devnet
                .replica_links(op, replica)
                .ok_or_else(|| DevnetError::Invalid(format!("{name} has no links")))?;
            links.rpc(role).set_mode(ProxyMode::Blackhole);
            tokio::time::sleep(hold(15.0)).await;
            links.rpc(role).set_mode(ProxyMode::Forward);
            format!("{role:?} RPC of {name}")
        }
        "leader-network-cut" => {
            let (op, lane, replica) = random_leader(&run.devnet, rng).await;
            let name = Devnet::replica_name(op, replica);
            let links = run
                .devnet
                .replica_links(op, replica)
                .ok_or_else(|| DevnetError::Invalid(format!("{name} has no links")))?;
            links.set_all(ProxyMode::Blackhole);
            tokio::time::sleep(hold(10.0)).await;
            links.set_all(ProxyMode::Forward);
            format!("every connection of {name} (leads {lane})")
        }
        "rpc-refused" => {
            let role = if rng.chance(0.5) {
                ChainRole::Main
            } else {
                ChainRole::Service
            };
            let all = |mode| {
                for op in 0..operators {
                    for replica in 0..replicas {
                        if let Some(links) = run.devnet.replica_links(op, replica) {
                            links.rpc(role).set_mode(mode);
                        }
                    }
                }
            };
            all(ProxyMode::Refuse);
            tokio::time::sleep(hold(5.0)).await;
            all(ProxyMode::Forward);
            format!("{role:?} RPC of every replica")
        }
        "reorg" => {
            let role = if rng.chance(0.5) {
                ChainRole::Main
            } else {
                ChainRole::Service
            };
            let replayed = reorg(&run.driver, role, 2, users).await?;
            format!("{role:?}, depth 2, {replayed} user transactions mined again")
        }
        other => return Err(DevnetError::Invalid(format!("unknown fault {other}"))),
    };
    run.timeline.fault(kind, &target, start);
    Ok(())
}

/// Replace the last `depth` blocks of `role` with new ones holding the same transactions of
/// `users` (raw, in their order); everything else in them (the relays' votes) is dropped.
///
/// The chain's interval mining is paused from reading the blocks to replacing them: a block
/// mined in between was dropped with the blocks read, its users' transactions not replayed —
/// lost as no real reorg loses them, and every later transaction of their users stuck behind
/// the gap until the users gave up waiting (20-40 s in one soak).
async fn reorg(
    driver: &crate::Driver,
    role: ChainRole,
    depth: u64,
    users: &[Address],
) -> Result<usize, DevnetError> {
    let provider = driver.provider(role)?;
    let chain = driver.chain(role);
    let interval = chain
        .block_time
        .map(|secs| secs.round() as u64)
        .filter(|secs| *secs > 0);
    use crate::harness::devnet::set_interval_mining;
    if interval.is_some() {
        set_interval_mining(&chain.rpc_url, 0).await?;
    }
    let replaced = replace_blocks(&provider, depth, users).await;
    if let Some(secs) = interval {
        set_interval_mining(&chain.rpc_url, secs).await?;
    }
    replaced
}

/// What [`reorg`] does while mining is paused.
async fn replace_blocks(
    provider: &alloy::providers::DynProvider,
    depth: u64,
    users: &[Address],
) -> Result<usize, DevnetError> {
    let head = provider
        .get_block_number()
        .await
        .map_err(|e| DevnetError::chain("eth_blockNumber", e))?;
    let mut replay: Vec<(Bytes, u64)> = Vec::new();
    for number in head.saturating_sub(depth).saturating_add(1)..=head {
        let Some(block) = provider
            .get_block_by_number(number.into())
            .full()
            .await
            .map_err(|e| DevnetError::chain("eth_getBlockByNumber", e))?
        else {
            continue;
        };
        for tx in block.transactions.txns() {
            if !users.contains(&tx.from()) {
                continue;
            }
            let raw: Option<Bytes> = provider
                .raw_request("eth_getRawTransactionByHash".into(), (tx.tx_hash(),))
                .await
                .map_err(|e| DevnetError::chain("eth_getRawTransactionByHash", e))?;
            if let Some(raw) = raw {
                replay.push((raw, 0));
            }
        }
    }
    provider
        .raw_request::<_, serde_json::Value>("anvil_reorg".into(), (depth, replay.clone()))
        .await
        .map_err(|e| DevnetError::chain("anvil_reorg", e))?;
    Ok(replay.len())
}

/// The table.
pub fn render(r: &Report) -> String {
    let mut out = format!(
        "Soak — {} transfers (native and ERC-20, both ways) under continuous mixed faults, {} mode\n\
         {:.1} min, 3 operators × 2 replicas, threshold 2, 3 confirmations; seed {}, {} build\n\
         downtime = seconds in which some request had waited > {} s unhandled (goal ≤ 1 %; the extended BR2K run: ~19 %)\n\n",
        r.requests, r.mode, r.minutes, r.seed, r.build, r.bound
    );
    out.push_str(&format!(
        "{:<10} {:>6} {:>8} {:>12} {:>10} {:>14} {:>16} {:>7} {:>7} {:>7}\n",
        "requests",
        "lost",
        "doubled",
        "recipients",
        "conserved",
        "stores in sync",
        "downtime",
        "p50 s",
        "p99 s",
        "max s"
    ));
    out.push_str(&format!(
        "{:<10} {:>6} {:>8} {:>12} {:>10} {:>14} {:>8} ({:>4.2}%) {:>7} {:>7} {:>7}\n",
        r.requests,
        r.lost,
        r.doubled,
        format!("{} ok", r.recipients.0.saturating_sub(r.recipients.1)),
        if r.conserved { "yes" } else { "NO" },
        if r.stores_in_sync { "yes" } else { "NO" },
        format!("{} s", secs(r.downtime_secs)),
        r.downtime_pct,
        secs(r.latency.p50),
        secs(r.latency.p99),
        secs(r.latency.max)
    ));
    out.push_str(&format!(
        "downtime at other bounds: {}\n",
        render_curve(&r.downtime_curve)
    ));
    out.push_str(&format!(
        "of the latency: the user's own transaction (sent → receipt) p50 {} / p99 {} / max {} s; \
         receipt → handled p50 {} / p99 {} / max {} s\n",
        secs(r.inclusion.p50),
        secs(r.inclusion.p99),
        secs(r.inclusion.max),
        secs(r.after_inclusion.p50),
        secs(r.after_inclusion.p99),
        secs(r.after_inclusion.max)
    ));
    out.push_str(&format!(
        "downtime of the requests whose user's transaction went through: {} s ({:.2} %)\n",
        secs(r.downtime_users_ok.0),
        r.downtime_users_ok.1
    ));
    out.push_str(&format!(
        "latency away from the 5 s full outages (all-relays-sigkill, rpc-refused): p50 {} / p99 {} / max {} s ({} requests)\n",
        secs(r.latency_outside_full_outages.p50),
        secs(r.latency_outside_full_outages.p99),
        secs(r.latency_outside_full_outages.max),
        r.latency_outside_full_outages.samples
    ));
    out.push_str("\nby fault (requests sent 5 s before to 2 s after one):\n");
    for (kind, faults, requests, p99, max) in &r.by_fault {
        out.push_str(&format!(
            "  {kind:<20} ×{faults:<3} {requests:>6} requests  p99 {} s  max {} s\n",
            secs(*p99),
            secs(*max)
        ));
    }
    out.push_str("\nfaults: ");
    out.push_str(
        &r.faults
            .iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    out.push_str(&format!(
        "\nuser transactions failed: {}\n",
        r.user_failures
    ));
    for (kind, n) in &r.run.end.user_failure_kinds {
        out.push_str(&format!("  {n:>6} × {kind}\n"));
    }
    out
}
