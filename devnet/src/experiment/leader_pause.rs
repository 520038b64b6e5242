//! Table 4 of seed 003 (extended BR2K): 5 users sending continuously while an attacker pauses
//! the leader for 15 s at random intervals of 30–120 s (the paper: 83 min, 67 pauses, ~16 min
//! downtime, 39,805 requests processed, replication consistent).
//!
//! The devnet: 3 operators × 2 replicas, threshold 3 (a paused leader stalls its lanes until
//! its standby takes over), a 3-member etcd, 1 s blocks, state backups every 1,000 handled
//! requests (seed 003's state versions). A pause is SIGSTOP of the replica leading a random
//! lane of a random operator, SIGCONT 15 s later.
//!
//! Downtime: the seconds in which some request had waited longer than the bound (10 s by
//! default, about three times the undisturbed latency) without being handled. Successful: handled
//! exactly once. Consistent: as in Table 2 (chains and every replica's store).

use std::time::Duration;

use multibridge_contracts::Lane;
use serde::Serialize;

use super::load::LoadSpec;
use super::report::{Spread, downtime, downtime_curve, render_curve, secs};
use super::{Common, Finished, Rng, Run, random_leader, sleep_until};
use crate::Devnet;
use crate::error::DevnetError;
use crate::harness::ha::start_ha;

/// The paper's run: minutes, pauses, downtime minutes, processed requests.
const PAPER_MINUTES: f64 = 83.0;
const PAPER_PAUSES: f64 = 67.0;
const PAPER_DOWNTIME_MIN: f64 = 16.0;
const PAPER_PROCESSED: f64 = 39_805.0;

/// How to run it.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Length, minutes (the paper: 83).
    pub minutes: f64,
    /// Users (the paper: 5).
    pub users: usize,
    /// Requests per second per user (the paper: 2).
    pub per_user_rate: f64,
    /// Pause length, seconds (15).
    pub pause_secs: f64,
    /// Interval between pauses, seconds (30–120).
    pub interval: (f64, f64),
    /// Downtime bound, seconds.
    pub bound: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            minutes: PAPER_MINUTES,
            users: 5,
            per_user_rate: 2.0,
            pause_secs: 15.0,
            interval: (30.0, 120.0),
            bound: 10.0,
        }
    }
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Seed.
    pub seed: u64,
    /// Build profile of the harness.
    pub build: &'static str,
    /// Minutes run.
    pub minutes: f64,
    /// Users.
    pub users: usize,
    /// Requests per second per user.
    pub per_user_rate: f64,
    /// Pauses made.
    pub pauses: usize,
    /// Downtime bound, seconds.
    pub bound: f64,
    /// Downtime, seconds.
    pub downtime_secs: f64,
    /// Downtime at other bounds: (bound, seconds, percent).
    pub downtime_curve: Vec<(f64, f64, f64)>,
    /// Requests on the chains.
    pub requests: u64,
    /// Handled exactly once.
    pub successful: u64,
    /// User transactions that failed.
    pub user_failures: usize,
    /// Latency.
    pub latency: Spread,
    /// Leader changes.
    pub leader_changes: usize,
    /// Chains and stores consistent.
    pub consistent: bool,
    /// What was not.
    pub inconsistencies: Vec<String>,
    /// The paper's row scaled to `minutes`: pauses, downtime seconds, processed requests.
    pub paper_scaled: (f64, f64, f64),
    /// The run in full.
    pub run: Finished,
}

/// Run it.
pub async fn run(common: &Common, settings: &Settings) -> Result<Report, DevnetError> {
    let devnet = start_ha(crate::DevnetOptions {
        users: u32::try_from(settings.users).unwrap_or(5),
        ..crate::DevnetOptions::hot_standby(common.part_dir("leader-pause"))
    })
    .await?;
    let spec = LoadSpec {
        users: (0..settings.users).collect(),
        per_user_rate: settings.per_user_rate,
        lanes: Lane::ALL.to_vec(),
        erc20_share: 0.0,
        in_flight: 4,
        limit: None,
    };
    let mut run = Run::start(devnet, &spec, common.seed, alloy::primitives::U256::ZERO).await?;
    let mut rng = Rng::new(common.seed).fork(4);
    let length = settings.minutes * 60.0;
    let mut pauses = 0usize;
    let mut at = rng.between(settings.interval.0, settings.interval.1);
    while at + settings.pause_secs <= length {
        sleep_until(&run.timeline, at).await;
        let (op, lane, replica) = random_leader(&run.devnet, &mut rng).await;
        let name = Devnet::replica_name(op, replica);
        let process = run
            .devnet
            .replica(op, replica)
            .ok_or_else(|| DevnetError::Invalid(format!("no {name}")))?;
        let start = run.timeline.now();
        process
            .pause()
            .map_err(|e| DevnetError::Invalid(e.to_string()))?;
        tokio::time::sleep(Duration::from_secs_f64(settings.pause_secs)).await;
        process
            .resume()
            .map_err(|e| DevnetError::Invalid(e.to_string()))?;
        run.timeline
            .fault("sigstop", &format!("{name} (leads {lane})"), start);
        pauses = pauses.saturating_add(1);
        at += rng.between(settings.interval.0, settings.interval.1);
    }
    sleep_until(&run.timeline, length).await;
    let finished = run.finish(Duration::from_secs(120), true).await?;
    let scale = settings.minutes / PAPER_MINUTES;
    Ok(Report {
        seed: common.seed,
        build: super::build_profile(),
        minutes: settings.minutes,
        users: settings.users,
        per_user_rate: settings.per_user_rate,
        pauses,
        bound: settings.bound,
        downtime_secs: downtime(&finished.outcomes, settings.bound, finished.load_secs),
        downtime_curve: downtime_curve(&finished.outcomes, &[5.0, 8.0, 15.0], finished.load_secs),
        requests: finished.requests(),
        successful: finished.end.lanes.iter().map(|l| l.handled_once).sum(),
        user_failures: finished.end.user_failures,
        latency: Spread::of(&finished.outcomes),
        leader_changes: finished.leader_changes.len(),
        consistent: finished.consistent(),
        inconsistencies: finished.inconsistencies(),
        paper_scaled: (
            PAPER_PAUSES * scale,
            PAPER_DOWNTIME_MIN * 60.0 * scale,
            PAPER_PROCESSED * scale,
        ),
        run: finished,
    })
}

/// The table, beside the paper's row scaled to the same length.
pub fn render(r: &Report) -> String {
    let pct = |d: f64| 100.0 * d / (r.minutes * 60.0).max(1.0);
    let (pp, pd, ps) = r.paper_scaled;
    let mut out = format!(
        "Table 4 of seed 003 — the leader paused (SIGSTOP) 15 s at random intervals of 30–120 s\n\
         {} users × {} req/s, {} min, 3 operators × 2 replicas, threshold 3; seed {}, {} build\n\
         downtime = seconds in which some request had waited > {} s unhandled; the paper's 83-min row scaled to {} min\n\n",
        r.users, r.per_user_rate, r.minutes, r.seed, r.build, r.bound, r.minutes
    );
    out.push_str(&format!(
        "{:<14} {:>8} {:>18} {:>12} {:>10} {:>8} {:>8}\n",
        "", "pauses", "downtime", "successful", "consistent", "p50 s", "p99 s"
    ));
    out.push_str(&format!(
        "{:<14} {:>8} {:>10} ({:>4.1}%) {:>12} {:>10} {:>8} {:>8}\n",
        "multibridge",
        r.pauses,
        format!("{} s", secs(r.downtime_secs)),
        pct(r.downtime_secs),
        r.successful,
        if r.consistent { "yes" } else { "NO" },
        secs(r.latency.p50),
        secs(r.latency.p99)
    ));
    out.push_str(&format!(
        "{:<14} {:>8.0} {:>10} ({:>4.1}%) {:>12.0} {:>10} {:>8} {:>8}\n",
        "paper (scaled)",
        pp,
        format!("{pd:.0} s"),
        pct(pd),
        ps,
        "yes",
        "-",
        "-"
    ));
    out.push_str(&format!(
        "\ndowntime at other bounds: {}",
        render_curve(&r.downtime_curve)
    ));
    out.push_str(&format!(
        "\nrequests on the chains {}, user transactions failed {}, leader changes {}\n",
        r.requests, r.user_failures, r.leader_changes
    ));
    out
}
