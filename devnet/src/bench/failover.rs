//! `multibridge-devnet bench-failover`: how fast a standby replica takes over, on a real devnet
//! (3-member etcd, 3 operators × 2 replicas, threshold 3 so no transfer is handled without
//! operator 1's active replica, 1 s blocks).
//!
//! Under a steady stream of main → service transfers (one every 200 ms), the replica of
//! operator 1 that leads the lane is SIGKILLed, again and again (it is restarted as the new
//! follower after each round). Per failover: the time from the SIGKILL to the first vote sent
//! by the new leader (its `votes_sent_total` rising). Per transfer: request receipt → its
//! `HandleValueTransfer` first seen, for the transfers requested in a failover window (from 2 s
//! before the kill to the new leader's first vote) and, for comparison, all others.
//!
//! Then, with traffic on both lanes, etcd's raft leader is SIGKILLed (quorum intact) and
//! restarted, again and again. Per round and (operator, lane): the longest time no replica led
//! (every replica's `multibridge_leader` polled every 50 ms), and the gap between the operator's
//! last vote before the kill and its first after it, beside the longest gap of the 5 s before.

use std::time::{Duration, Instant};

use multibridge_contracts::Lane;
use serde::Serialize;

use crate::bench::percentile;
use crate::error::DevnetError;
use crate::harness::ha::{
    EtcdFault, EtcdFaultRound, HandleWatch, LeaderWatch, Traffic, etcd_leader_fault,
    leading_replica, start_ha, votes_series, wait_metric,
};
use crate::harness::scrape::metric;
use crate::{DevnetOptions, Driver};

/// Lease TTL the devnet configures (seconds).
const TTL_SECS: f64 = 3.0;
/// The lane under traffic.
const LANE: Lane = Lane::MainToService;
/// The lane that gets traffic too during the etcd rounds.
const OTHER_LANE: Lane = Lane::ServiceToMain;
/// Transfers requested this long before a kill count as "during the failover".
const WINDOW_BEFORE: Duration = Duration::from_secs(2);

/// Percentiles of one figure, seconds.
#[derive(Debug, Clone, Serialize)]
pub struct Spread {
    /// Samples.
    pub samples: usize,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        Self {
            samples: values.len(),
            p50: percentile(&values, 50.0),
            p99: percentile(&values, 99.0),
            max: values.last().copied().unwrap_or_default(),
        }
    }
}

/// What `bench-failover` measured.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverReport {
    /// Lease TTL, seconds.
    pub ttl_secs: f64,
    /// Target: failover within TTL + 1 s.
    pub target_secs: f64,
    /// Leader SIGKILL → first vote by the new leader.
    pub failover: Spread,
    /// Each failover, in order, seconds.
    pub failovers: Vec<f64>,
    /// Failovers over the target.
    pub over_target: usize,
    /// Latency of transfers requested during a failover window.
    pub latency_during_failover: Spread,
    /// Latency of every other transfer.
    pub latency_steady: Spread,
    /// Transfers requested in all.
    pub transfers: usize,
    /// Nonces handled more than once (must be 0).
    pub handled_twice: usize,
    /// Nonces never handled by the end (must be 0).
    pub lost: usize,
    /// etcd raft-leader SIGKILLs (quorum intact): the longest time any (operator, lane) had no
    /// leading replica, per round, seconds.
    pub etcd_leader_kill_leaderless: Spread,
    /// The same rounds: each (operator, lane)'s last vote before the kill → first after it.
    pub etcd_leader_kill_vote_gap: Spread,
    /// For comparison: the longest gap between two votes in the 5 s before each kill.
    pub steady_vote_gap: Spread,
    /// Target: at most this long without a leader through an etcd leader election.
    pub etcd_target_secs: f64,
}

/// Run `failovers` failovers on a fresh devnet in `dir`.
pub async fn run(
    dir: &std::path::Path,
    failovers: usize,
    etcd_kills: usize,
) -> Result<FailoverReport, DevnetError> {
    let mut devnet = start_ha(DevnetOptions::hot_standby(dir)).await?;
    let driver = Driver::new(devnet.manifest());
    let watch = HandleWatch::start(Driver::new(devnet.manifest()), LANE);
    let traffic = Traffic::start(
        Driver::new(devnet.manifest()),
        LANE,
        0,
        Duration::from_millis(200),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut times = Vec::with_capacity(failovers);
    let mut windows = Vec::with_capacity(failovers);
    for round in 0..failovers {
        let leader = leading_replica(&devnet, 0, LANE).await.ok_or_else(|| {
            DevnetError::Invalid(format!("round {round}: no replica of operator 1 leads"))
        })?;
        let follower = 1usize.saturating_sub(leader);
        let follower_port = devnet.replica_http_ports[0][follower];
        let before = metric(follower_port, &votes_series(LANE))
            .await
            .unwrap_or_default();
        let process = devnet
            .replica(0, leader)
            .ok_or_else(|| DevnetError::Invalid(format!("no replica {leader}")))?;
        process.kill()?;
        let killed = Instant::now();
        loop {
            if metric(follower_port, &votes_series(LANE))
                .await
                .unwrap_or_default()
                > before
            {
                break;
            }
            if killed.elapsed() > Duration::from_secs(30) {
                return Err(DevnetError::Invalid(format!(
                    "round {round}: the follower did not vote within 30 s of the kill"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let took = killed.elapsed();
        times.push(took.as_secs_f64());
        windows.push((
            killed.checked_sub(WINDOW_BEFORE).unwrap_or(killed),
            killed + took,
        ));
        eprintln!(
            "failover {}/{failovers}: {:.2} s",
            round.saturating_add(1),
            took.as_secs_f64()
        );
        // The killed replica comes back as the follower; let the lane settle before the next.
        devnet
            .replica(0, leader)
            .ok_or_else(|| DevnetError::Invalid(format!("no replica {leader}")))?
            .start_again()?;
        let port = devnet.replica_http_ports[0][leader];
        wait_metric(
            port,
            &crate::harness::ha::leader_series(LANE),
            0.0,
            Duration::from_secs(30),
        )
        .await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let (rounds, other_sent) = etcd_rounds(&mut devnet, etcd_kills).await?;
    let sent = traffic.stop().await?;
    let last = sent.last().map(|s| s.nonce).unwrap_or_default();
    if let (Some(first), Some(last)) = (other_sent.first(), other_sent.last()) {
        crate::harness::invariants::wait_all_handled(
            &driver,
            OTHER_LANE,
            first.nonce..last.nonce.saturating_add(1),
            Duration::from_secs(60),
        )
        .await?;
        crate::harness::invariants::assert_exactly_once(
            &driver,
            OTHER_LANE,
            first.nonce..last.nonce.saturating_add(1),
        )
        .await?;
    }
    crate::harness::invariants::wait_all_handled(
        &driver,
        LANE,
        0..last.saturating_add(1),
        Duration::from_secs(60),
    )
    .await?;
    let seen = watch.stop().await?;
    let counts = crate::harness::invariants::handle_counts(&driver, LANE).await?;
    let handled_twice = counts.values().filter(|n| **n > 1).count();
    let lost = sent
        .iter()
        .filter(|s| !counts.contains_key(&s.nonce))
        .count();
    let (mut during, mut steady) = (Vec::new(), Vec::new());
    for s in &sent {
        let Some(at) = seen.get(&s.nonce) else {
            continue;
        };
        let latency = at.saturating_duration_since(s.at).as_secs_f64();
        if windows
            .iter()
            .any(|(from, to)| s.at >= *from && s.at <= *to)
        {
            during.push(latency);
        } else {
            steady.push(latency);
        }
    }
    let target = TTL_SECS + 1.0;
    Ok(FailoverReport {
        ttl_secs: TTL_SECS,
        target_secs: target,
        over_target: times.iter().filter(|t| **t > target).count(),
        failover: Spread::of(times.clone()),
        failovers: times,
        latency_during_failover: Spread::of(during),
        latency_steady: Spread::of(steady),
        transfers: sent.len(),
        handled_twice,
        lost,
        etcd_leader_kill_leaderless: Spread::of(
            rounds
                .iter()
                .map(|r| r.worst_leaderless().as_secs_f64())
                .collect(),
        ),
        etcd_leader_kill_vote_gap: Spread::of(
            rounds
                .iter()
                .flat_map(|r| r.vote_gap.iter().flatten().flatten())
                .map(Duration::as_secs_f64)
                .collect(),
        ),
        steady_vote_gap: Spread::of(
            rounds
                .iter()
                .map(|r| r.worst_steady_gap().as_secs_f64())
                .collect(),
        ),
        etcd_target_secs: ETCD_TARGET.as_secs_f64(),
    })
}

/// At most this long without a leader through an etcd leader election (issue 19).
pub const ETCD_TARGET: Duration = Duration::from_secs(1);

/// `kills` SIGKILLs of etcd's raft leader under traffic on both lanes (the bench's own lane
/// already has traffic; this adds the other); returns the rounds and the other lane's sends.
async fn etcd_rounds(
    devnet: &mut crate::Devnet,
    kills: usize,
) -> Result<(Vec<EtcdFaultRound>, Vec<crate::harness::ha::Sent>), DevnetError> {
    if kills == 0 {
        return Ok((Vec::new(), Vec::new()));
    }
    let operators = devnet.replica_http_ports.len();
    let watch = LeaderWatch::start(devnet.replica_http_ports.clone());
    let other = Traffic::start(
        Driver::new(devnet.manifest()),
        OTHER_LANE,
        1,
        Duration::from_millis(200),
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut kills_at = Vec::with_capacity(kills);
    for _ in 0..kills {
        let at = etcd_leader_fault(devnet, EtcdFault::Kill, Duration::from_secs(6)).await?;
        kills_at.push((at, Instant::now()));
    }
    let sent = other.stop().await?;
    let timeline = watch.stop().await?;
    let rounds: Vec<EtcdFaultRound> = kills_at
        .iter()
        .map(|(at, until)| {
            EtcdFaultRound::measure(&timeline, EtcdFault::Kill, *at, *until, operators)
        })
        .collect();
    for (i, r) in rounds.iter().enumerate() {
        eprintln!(
            "etcd leader kill {}/{kills}: longest without a leader {:.2} s, worst vote gap {:?}",
            i.saturating_add(1),
            r.worst_leaderless().as_secs_f64(),
            r.worst_vote_gap()
        );
    }
    Ok((rounds, sent))
}

/// The human-readable table.
pub fn render(r: &FailoverReport) -> String {
    let row = |name: &str, s: &Spread| {
        format!(
            "{name:<34} {:>7} {:>8.2} {:>8.2} {:>8.2}\n",
            s.samples, s.p50, s.p99, s.max
        )
    };
    let mut out = format!(
        "{:<34} {:>7} {:>8} {:>8} {:>8}\n",
        "seconds", "samples", "p50", "p99", "max"
    );
    out.push_str(&row("failover (SIGKILL -> first vote)", &r.failover));
    out.push_str(&row(
        "transfer latency during failover",
        &r.latency_during_failover,
    ));
    out.push_str(&row("transfer latency otherwise", &r.latency_steady));
    out.push_str(&row(
        "etcd leader SIGKILL: no leader",
        &r.etcd_leader_kill_leaderless,
    ));
    out.push_str(&row(
        "etcd leader SIGKILL: vote gap",
        &r.etcd_leader_kill_vote_gap,
    ));
    out.push_str(&row("vote gap before (steady)", &r.steady_vote_gap));
    out.push_str(&format!(
        "target failover <= TTL + 1 s = {:.1} s: {} of {} over; {} transfers, {} handled twice, {} lost\n",
        r.target_secs,
        r.over_target,
        r.failovers.len(),
        r.transfers,
        r.handled_twice,
        r.lost
    ));
    out.push_str(&format!(
        "target through an etcd leader election: no (operator, lane) without a leader for more than {:.1} s: {}\n",
        r.etcd_target_secs,
        if r.etcd_leader_kill_leaderless.max <= r.etcd_target_secs {
            "met"
        } else {
            "MISSED"
        }
    ));
    out
}
