//! Table 2 of seed 001 (the robust execution scheme): users send 2 requests/s while an attacker
//! cuts the network of one replica for 20 s every 60, 30 or 25 s — any replica ("random test")
//! or the replica leading a lane ("leader test").
//!
//! The devnet: 3 operators × 2 replicas (6 relay processes, the paper's 6 nodes), threshold 3
//! (every operator's vote is needed, so a cut leader stalls its lanes until its standby takes
//! over), a 3-member etcd, 1 s blocks. A cut is real: every connection of the replica — both
//! chains' RPCs and every etcd member — goes through a proxy of its own, and the cut blackholes
//! all of them (new connections accepted and never answered, open ones silenced: to the relay
//! it is a dropped network). Its HTTP API stays reachable so the harness can watch it.
//!
//! A request "failed" when its user did not see it handled on the destination within 30 s of
//! sending it (the paper counts requests the client saw fail). "Synchronised" means the chains
//! show every request handled exactly once with one vote per operator, every recipient holds
//! what was sent to it, value is conserved, and every replica's store holds every request with
//! the payload the source chain logged and marks handled only what is handled.

use std::time::Duration;

use multibridge_contracts::Lane;
use serde::Serialize;

use super::load::LoadSpec;
use super::report::{Spread, secs};
use super::{Common, Finished, Rng, Run, sleep_until};
use crate::error::DevnetError;
use crate::harness::ha::{leading_replica, start_ha};
use crate::harness::proxy::ProxyMode;
use crate::{Devnet, DevnetOptions};

/// The paper's rows: (test, period) → (failed of 1,200, leader changes).
const PAPER: [(&str, u64, u64, u64); 6] = [
    ("random", 60, 8, 1),
    ("random", 30, 79, 3),
    ("random", 25, 137, 6),
    ("leader", 60, 441, 10),
    ("leader", 30, 564, 20),
    ("leader", 25, 976, 25),
];

/// Who the attacker cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// Any replica, uniformly.
    Random,
    /// The replica leading a lane of a random operator.
    Leader,
}

impl Target {
    /// `random` or `leader`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Random => "random",
            Self::Leader => "leader",
        }
    }
}

/// How to run it.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Minutes per row (the paper: 10).
    pub minutes: f64,
    /// Cut periods, seconds (the paper: 60, 30, 25).
    pub periods: Vec<u64>,
    /// Cut length, seconds (the paper: 20).
    pub cut_secs: f64,
    /// Which tests.
    pub targets: Vec<Target>,
    /// Requests per second in all (the paper: 2).
    pub rate: f64,
    /// A request not handled within this many seconds of sending failed (30).
    pub fail_after: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            minutes: 10.0,
            periods: vec![60, 30, 25],
            cut_secs: 20.0,
            targets: vec![Target::Random, Target::Leader],
            rate: 2.0,
            fail_after: 30.0,
        }
    }
}

/// One row.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Test.
    pub target: Target,
    /// Cut period, seconds.
    pub period: u64,
    /// Cuts made.
    pub cuts: usize,
    /// Transfers sent.
    pub sent: usize,
    /// Failed: not handled within `fail_after` s of sending (or the user's transaction failed).
    pub failed: usize,
    /// Leader changes (over every operator and lane).
    pub leader_changes: usize,
    /// Chains and every store consistent.
    pub synchronised: bool,
    /// Latency of the transfers.
    pub latency: Spread,
    /// The paper's failed requests of 1,200 in 10 min.
    pub paper_failed: u64,
    /// The paper's leader changes.
    pub paper_leader_changes: u64,
    /// What was inconsistent (empty when synchronised).
    pub inconsistencies: Vec<String>,
    /// The run in full (outcomes, faults, leader changes, end state).
    pub run: Finished,
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Seed.
    pub seed: u64,
    /// Build profile of the harness.
    pub build: &'static str,
    /// Minutes per row.
    pub minutes: f64,
    /// Cut length, seconds.
    pub cut_secs: f64,
    /// Requests per second.
    pub rate: f64,
    /// The failure bound, seconds.
    pub fail_after: f64,
    /// Rows.
    pub rows: Vec<Row>,
}

/// The devnet of a row: 3 operators × 2 replicas, threshold 3, each replica on its own links,
/// with no other devnet beside it (its figures are durations under 1 s leases: in the test
/// suite, beside five other debug-build devnets, the leases flapped — 12-18 leader changes in
/// 36 s — and requests waited past the 30 s bound).
pub fn devnet_options(dir: std::path::PathBuf) -> DevnetOptions {
    DevnetOptions {
        replica_links: true,
        users: 4,
        ..DevnetOptions::hot_standby(dir)
    }
    .alone()
}

/// Run every row of `settings`.
pub async fn run(common: &Common, settings: &Settings) -> Result<Report, DevnetError> {
    let mut rows = Vec::new();
    let mut row_index = 0u64;
    for target in &settings.targets {
        for period in &settings.periods {
            row_index = row_index.saturating_add(1);
            eprintln!(
                "row {} ({} test, a {} s cut every {period} s, {} min)",
                row_index,
                target.name(),
                settings.cut_secs,
                settings.minutes
            );
            let dir = common.part_dir(&format!("{}-{period}", target.name()));
            let rng = Rng::new(common.seed).fork(row_index.saturating_mul(1000));
            rows.push(row(&dir, settings, *target, *period, rng, common.seed).await?);
        }
    }
    Ok(Report {
        seed: common.seed,
        build: super::build_profile(),
        minutes: settings.minutes,
        cut_secs: settings.cut_secs,
        rate: settings.rate,
        fail_after: settings.fail_after,
        rows,
    })
}

async fn row(
    dir: &std::path::Path,
    settings: &Settings,
    target: Target,
    period: u64,
    mut rng: Rng,
    seed: u64,
) -> Result<Row, DevnetError> {
    let devnet = start_ha(devnet_options(dir.to_owned())).await?;
    let users: Vec<usize> = (0..4).collect();
    let spec = LoadSpec {
        per_user_rate: settings.rate / users.len() as f64,
        users,
        lanes: Lane::ALL.to_vec(),
        erc20_share: 0.0,
        in_flight: 1,
        limit: None,
    };
    let run = Run::start(devnet, &spec, seed, alloy::primitives::U256::ZERO).await?;
    let length = settings.minutes * 60.0;
    let mut cuts = 0usize;
    let mut at = period as f64;
    while at + settings.cut_secs <= length {
        sleep_until(&run.timeline, at).await;
        let (op, replica) = pick(&run.devnet, target, &mut rng).await;
        let name = Devnet::replica_name(op, replica);
        let links = run
            .devnet
            .replica_links(op, replica)
            .ok_or_else(|| DevnetError::Invalid(format!("{name} has no links")))?;
        let start = run.timeline.now();
        links.set_all(ProxyMode::Blackhole);
        tokio::time::sleep(Duration::from_secs_f64(settings.cut_secs)).await;
        links.set_all(ProxyMode::Forward);
        run.timeline
            .fault("network-cut", &format!("{name} (RPCs + etcd)"), start);
        cuts = cuts.saturating_add(1);
        at += period as f64;
    }
    sleep_until(&run.timeline, length).await;
    let finished = run.finish(Duration::from_secs(120), true).await?;
    let failed = finished
        .outcomes
        .iter()
        .filter(|o| !o.within(settings.fail_after))
        .count();
    let paper = PAPER
        .iter()
        .find(|(t, p, _, _)| *t == target.name() && *p == period);
    Ok(Row {
        target,
        period,
        cuts,
        sent: finished.outcomes.len(),
        failed,
        leader_changes: finished.leader_changes.len(),
        synchronised: finished.consistent(),
        latency: Spread::of(&finished.outcomes),
        paper_failed: paper.map(|p| p.2).unwrap_or_default(),
        paper_leader_changes: paper.map(|p| p.3).unwrap_or_default(),
        inconsistencies: finished.inconsistencies(),
        run: finished,
    })
}

/// The replica to cut: any (random test), or the one leading a random lane of a random
/// operator (leader test; a random replica of that operator if none leads right now).
async fn pick(devnet: &Devnet, target: Target, rng: &mut Rng) -> (usize, usize) {
    let operators = devnet.replica_http_ports.len();
    let op = rng.below(operators);
    let replicas = devnet.replica_http_ports.get(op).map_or(1, Vec::len);
    let any = rng.below(replicas);
    match target {
        Target::Random => (op, any),
        Target::Leader => {
            let lane = Lane::ALL[rng.below(Lane::ALL.len())];
            (op, leading_replica(devnet, op, lane).await.unwrap_or(any))
        }
    }
}

/// One picture per row: (`-<test>-<period>`, SVG).
pub fn pictures(report: &Report) -> Vec<(String, String)> {
    report
        .rows
        .iter()
        .map(|r| {
            let test = r.target.name();
            (
                format!("-{test}-{}", r.period),
                r.run.picture(
                    format!(
                        "network cut, {test} test, a {} s cut every {} s (seed {})",
                        report.cut_secs, r.period, report.seed
                    ),
                    report.fail_after,
                ),
            )
        })
        .collect()
}

/// The table, beside the paper's rows.
pub fn render(report: &Report) -> String {
    let mut out = format!(
        "Table 2 of seed 001 — one replica's network cut for {} s (RPCs + etcd blackholed)\n\
         {} req/s, {} min per row, 6 replicas (3 operators × 2), threshold 3; seed {}, {} build\n\
         failed = not handled within {} s of sending; the paper: 1,200 requests per 10-min row\n\n",
        report.cut_secs, report.rate, report.minutes, report.seed, report.build, report.fail_after
    );
    out.push_str(&format!(
        "{:<7} {:>6} {:>5} {:>6} {:>14} {:>13} {:>8} {:>7} {:>6} {:>6} {:>7}\n",
        "test",
        "period",
        "cuts",
        "sent",
        "failed",
        "paper failed",
        "leader Δ",
        "paper Δ",
        "sync",
        "p50 s",
        "max s"
    ));
    for r in &report.rows {
        let pct = 100.0 * r.failed as f64 / (r.sent.max(1) as f64);
        let paper_pct = 100.0 * r.paper_failed as f64 / 1200.0;
        out.push_str(&format!(
            "{:<7} {:>5}s {:>5} {:>6} {:>6} ({:>4.1}%) {:>5} ({:>4.1}%) {:>8} {:>7} {:>6} {:>6} {:>7}\n",
            r.target.name(),
            r.period,
            r.cuts,
            r.sent,
            r.failed,
            pct,
            r.paper_failed,
            paper_pct,
            r.leader_changes,
            r.paper_leader_changes,
            if r.synchronised { "yes" } else { "NO" },
            secs(r.latency.p50),
            secs(r.latency.max)
        ));
    }
    out
}
