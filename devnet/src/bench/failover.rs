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
//!
//! Then every relay of every operator is SIGKILLed and all are restarted at once (a host's
//! processes after a crash), again and again: per round, from the moment every restarted
//! process answers its HTTP API to every (operator, lane) led again, and how many lanes were
//! resumed from the live lease rather than won anew. Then the destination RPC of the leader of
//! operator 1's main → service lane is blackholed (its own link only; etcd and the other chain
//! reachable): per round, the time to the first vote of the standby it hands the lane to. Last,
//! on a devnet of its own whose operators sign through a SoftHSM token, the leader's token is
//! unplugged while its standby signs through a second one: the time to the standby's first vote.

use std::time::{Duration, Instant};

use multibridge_contracts::Lane;
use serde::Serialize;

use crate::bench::percentile;
use crate::error::DevnetError;
use multibridge_config::VotingMode;

use crate::bench::takeover::{LeaderFault, Progress, leader_rounds, node_restart_rounds};
use crate::harness::ha::{
    EtcdFault, EtcdFaultRound, HandleWatch, LeaderWatch, Traffic, etcd_leader_fault,
    leading_replica, start_ha, votes_series, wait_metric,
};
use crate::harness::scrape::metric;
use crate::{DevnetOptions, Driver};

/// Lease TTL the devnet configures (seconds).
const TTL_SECS: f64 = crate::LEASE_TTL_SECS as f64;
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
    /// `votes` or `attested`.
    pub mode: &'static str,
    /// Lease TTL, seconds.
    pub ttl_secs: f64,
    /// Target (p99): a lost leader costs at most this, seconds.
    pub target_secs: f64,
    /// Leader SIGKILL → the standby's first vote (attested: the lane's next batch by anyone;
    /// every replica signs, so the lane need not wait for the standby to lead).
    pub failover: Spread,
    /// Every leader fault (SIGKILL, SIGSTOP, network cut) → the standby leading.
    pub takeover: Spread,
    /// Leader SIGSTOP → the same.
    pub sigstop: Spread,
    /// The leader's every connection cut → the same.
    pub network_cut: Spread,
    /// The destination's node answering again after a restart → the lane's next vote or batch.
    pub node_restart: Spread,
    /// Target for the node restarts (p99), seconds.
    pub node_restart_target_secs: f64,
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
    /// Every relay SIGKILLed and restarted at once: every process answering → every
    /// (operator, lane) led again, per round.
    pub kill_all_led_again: Spread,
    /// Lanes resumed from the live lease in those rounds, of all lanes restarted.
    pub kill_all_resumed: (usize, usize),
    /// The same rounds: the restart (every process spawned) → every process answering its HTTP
    /// API (start-up: configuration, store, chains, etcd).
    pub kill_all_answering: Spread,
    /// The same rounds: the SIGKILL → the first handle of a transfer requested after it (the
    /// lane moving again; with 1 confirmation a request waits a block or two in any case).
    pub kill_all_next_handle: Spread,
    /// Latency of the transfers requested from 2 s before to 2 s after a kill-all.
    pub latency_around_kill_all: Spread,
    /// Target for the kill-all rounds (p99), seconds.
    pub kill_all_target_secs: f64,
    /// The leader's destination RPC blackholed → the standby's first vote, per round.
    pub rpc_cut_standby_vote: Spread,
    /// Target for the RPC cuts and signer unplugs: step_down_after + 2 s.
    pub rpc_cut_target_secs: f64,
    /// The leader's signer unplugged (SoftHSM token moved away) → the standby's first vote, per
    /// round (a devnet of its own whose operators sign through the token).
    pub signer_unplug_standby_vote: Spread,
}

/// How many rounds of each fault, and the voting mode.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Votes or attested batches.
    pub mode: VotingMode,
    /// Leader SIGKILLs.
    pub failovers: usize,
    /// Leader SIGSTOPs.
    pub sigstops: usize,
    /// The leader's network cut (every connection of its own).
    pub network_cuts: usize,
    /// The destination's node restarting (every replica's connection refused for a while).
    pub node_restarts: usize,
    /// SIGKILLs of etcd's raft leader.
    pub etcd_kills: usize,
    /// Every relay SIGKILLed and restarted.
    pub kill_alls: usize,
    /// The leader's destination RPC blackholed.
    pub rpc_cuts: usize,
    /// The leader's signer unplugged (votes mode only).
    pub signer_unplugs: usize,
}

/// The standby moves the lane within this of the leader's destination RPC or signer failing:
/// the relays' default `step_down_after_secs` (3) + 2 s.
const RPC_CUT_TARGET: Duration = Duration::from_secs(5);

/// How long the destination's node is "restarting" in a node-restart round.
const NODE_OUTAGE: Duration = Duration::from_secs(5);

/// A lost leader costs at most this (issue 52: one block time and a half at 1 s blocks, p99).
pub const ONE_BLOCK_TARGET: Duration = Duration::from_millis(1_500);

/// A restarted node's lane moves within this of the node answering (issue 52).
pub const NODE_RESTART_TARGET: Duration = Duration::from_secs(1);

/// Run the rounds of `plan` on a fresh devnet in `dir`.
pub async fn run(dir: &std::path::Path, plan: &Plan) -> Result<FailoverReport, DevnetError> {
    let mut devnet = start_ha(DevnetOptions {
        replica_links: plan.rpc_cuts > 0 || plan.network_cuts > 0 || plan.node_restarts > 0,
        voting_mode: plan.mode,
        ..DevnetOptions::hot_standby(dir)
    })
    .await?;
    let driver = Driver::new(devnet.manifest());
    let watch = HandleWatch::start(Driver::new(devnet.manifest()), LANE);
    let traffic = Traffic::start(
        Driver::new(devnet.manifest()),
        LANE,
        0,
        Duration::from_millis(200),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let progress = Progress {
        mode: plan.mode,
        lane: LANE,
    };
    let kills = leader_rounds(&mut devnet, progress, LeaderFault::Kill, plan.failovers).await?;
    let times: Vec<f64> = kills.iter().map(|r| r.moved).collect();
    let windows: Vec<(Instant, Instant)> = kills
        .iter()
        .map(|r| {
            (
                r.at.checked_sub(WINDOW_BEFORE).unwrap_or(r.at),
                r.at + Duration::from_secs_f64(r.moved.max(r.led)),
            )
        })
        .collect();
    let sigstop = leader_rounds(&mut devnet, progress, LeaderFault::Stop, plan.sigstops).await?;
    let cut = leader_rounds(
        &mut devnet,
        progress,
        LeaderFault::NetworkCut,
        plan.network_cuts,
    )
    .await?;
    let node_restart =
        node_restart_rounds(&devnet, progress, plan.node_restarts, NODE_OUTAGE).await?;
    let (rounds, other_sent) = etcd_rounds(&mut devnet, plan.etcd_kills).await?;
    let kill_all = kill_all_rounds(&mut devnet, plan.kill_alls).await?;
    let rpc_cut = rpc_cut_rounds(&devnet, progress, plan.rpc_cuts).await?;
    let sent = traffic.stop().await?;
    let last = sent.last().map(|s| s.nonce).unwrap_or_default();
    drained_exactly_once(&driver, OTHER_LANE, &other_sent, Duration::from_secs(60)).await?;
    crate::harness::invariants::wait_all_handled(
        &driver,
        LANE,
        0..last.saturating_add(1),
        Duration::from_secs(60),
    )
    .await?;
    let seen = watch.stop().await?;
    let counts = crate::harness::invariants::handle_counts(&driver, LANE).await?;
    let signer_unplug = signer_unplug_rounds(&dir.join("signer"), plan.signer_unplugs).await?;
    let handled_twice = counts.values().filter(|n| **n > 1).count();
    let lost = sent
        .iter()
        .filter(|s| !counts.contains_key(&s.nonce))
        .count();
    let (mut during, mut steady, mut around_kill_all) = (Vec::new(), Vec::new(), Vec::new());
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
        } else if kill_all.killed.iter().any(|k| {
            s.at >= k.checked_sub(WINDOW_BEFORE).unwrap_or(*k) && s.at <= *k + WINDOW_BEFORE
        }) {
            around_kill_all.push(latency);
        } else {
            steady.push(latency);
        }
    }
    let next_handle: Vec<f64> = kill_all
        .killed
        .iter()
        .filter_map(|k| {
            sent.iter()
                .filter(|s| s.at > *k)
                .filter_map(|s| seen.get(&s.nonce))
                .min()
                .map(|at| at.saturating_duration_since(*k).as_secs_f64())
        })
        .collect();
    let target = ONE_BLOCK_TARGET.as_secs_f64();
    Ok(FailoverReport {
        mode: match plan.mode {
            VotingMode::Votes => "votes",
            VotingMode::Attestations => "attested",
        },
        ttl_secs: TTL_SECS,
        takeover: Spread::of(
            kills
                .iter()
                .chain(&sigstop)
                .chain(&cut)
                .map(|r| r.led)
                .collect(),
        ),
        sigstop: Spread::of(sigstop.iter().map(|r| r.moved).collect()),
        network_cut: Spread::of(cut.iter().map(|r| r.moved).collect()),
        node_restart: Spread::of(node_restart),
        node_restart_target_secs: NODE_RESTART_TARGET.as_secs_f64(),
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
        kill_all_led_again: Spread::of(kill_all.led_again),
        kill_all_resumed: kill_all.resumed,
        kill_all_answering: Spread::of(kill_all.answering),
        kill_all_next_handle: Spread::of(next_handle),
        latency_around_kill_all: Spread::of(around_kill_all),
        kill_all_target_secs: KILL_ALL_TARGET.as_secs_f64(),
        rpc_cut_standby_vote: Spread::of(rpc_cut),
        rpc_cut_target_secs: RPC_CUT_TARGET.as_secs_f64(),
        signer_unplug_standby_vote: Spread::of(signer_unplug),
    })
}

/// Every lane led again at most this long after the restarted relays answer (issue 35, p99).
pub const KILL_ALL_TARGET: Duration = Duration::from_millis(1_500);

/// What the kill-all rounds measured.
struct KillAllRounds {
    /// When each round's SIGKILLs went out.
    killed: Vec<Instant>,
    /// Every process spawned → every process answering, per round, seconds.
    answering: Vec<f64>,
    /// Every process answering → every (operator, lane) led, per round, seconds.
    led_again: Vec<f64>,
    /// (lanes resumed from their live lease, lanes restarted).
    resumed: (usize, usize),
}

/// `rounds` times: SIGKILL every replica, restart them all, and time from the restart to every
/// process answering its HTTP API, and from there to every (operator, lane) led again.
async fn kill_all_rounds(
    devnet: &mut crate::Devnet,
    rounds: usize,
) -> Result<KillAllRounds, DevnetError> {
    let ports = devnet.replica_http_ports.clone();
    let mut out = KillAllRounds {
        killed: Vec::with_capacity(rounds),
        answering: Vec::with_capacity(rounds),
        led_again: Vec::with_capacity(rounds),
        resumed: (0, 0),
    };
    let (mut resumed, mut lanes) = (0usize, 0usize);
    for round in 0..rounds {
        out.killed.push(Instant::now());
        for (op, replicas) in ports.iter().enumerate() {
            for replica in 0..replicas.len() {
                if let Some(process) = devnet.replica(op, replica) {
                    process.kill()?;
                }
            }
        }
        for (op, replicas) in ports.iter().enumerate() {
            for replica in 0..replicas.len() {
                devnet.start_replica(op, replica)?;
            }
        }
        let spawned = Instant::now();
        for port in ports.iter().flatten().copied() {
            crate::harness::wait::poll_until(
                "restarted relay answers",
                Duration::from_secs(60),
                || async move { Ok(crate::harness::scrape::metrics_text(port).await.is_some()) },
            )
            .await?;
        }
        let up = Instant::now();
        out.answering
            .push(up.saturating_duration_since(spawned).as_secs_f64());
        let ports = &ports;
        crate::harness::wait::poll_until(
            "every lane led again",
            Duration::from_secs(60),
            || async move {
                for replicas in ports {
                    for lane in Lane::ALL {
                        let mut led = false;
                        for port in replicas {
                            led |= metric(*port, &crate::harness::ha::leader_series(lane))
                                .await
                                .is_some_and(|v| v == 1.0);
                        }
                        if !led {
                            return Ok(false);
                        }
                    }
                }
                Ok(true)
            },
        )
        .await?;
        let took = up.elapsed();
        out.led_again.push(took.as_secs_f64());
        for port in ports.iter().flatten() {
            resumed = resumed.saturating_add(
                crate::harness::scrape::metric_sum(
                    *port,
                    "multibridge_leadership_resumed_total",
                    "",
                )
                .await
                .unwrap_or_default() as usize,
            );
        }
        lanes = lanes.saturating_add(ports.len().saturating_mul(Lane::ALL.len()));
        eprintln!(
            "kill all {}/{rounds}: every relay answered {:.2} s after the restart, every lane led {:.2} s after that",
            round.saturating_add(1),
            up.saturating_duration_since(spawned).as_secs_f64(),
            took.as_secs_f64()
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    out.resumed = (resumed, lanes);
    Ok(out)
}

/// `rounds` times: blackhole the destination RPC link of the replica of operator 1 leading
/// `LANE`, time until its standby votes, then restore the link and let the lane settle.
async fn rpc_cut_rounds(
    devnet: &crate::Devnet,
    progress: Progress,
    rounds: usize,
) -> Result<Vec<f64>, DevnetError> {
    let mut times = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let leader = leading_replica(devnet, 0, LANE).await.ok_or_else(|| {
            DevnetError::Invalid(format!("rpc cut {round}: no replica of operator 1 leads"))
        })?;
        let standby = devnet.replica_http_ports[0][1usize.saturating_sub(leader)];
        let all = devnet.replica_ports();
        let before = progress.baseline(standby, &all).await;
        let link = devnet
            .replica_links(0, leader)
            .ok_or_else(|| DevnetError::Invalid("the devnet has no replica links".into()))?
            .rpc(LANE.destination());
        link.set_mode(crate::harness::proxy::ProxyMode::Blackhole);
        let cut = Instant::now();
        // The standby's takeover: its first vote, or (attested) it leading.
        let voted = progress.wait_moved(standby, before, &all, cut).await;
        link.set_mode(crate::harness::proxy::ProxyMode::Forward);
        let (_, took) = voted?;
        times.push(took.as_secs_f64());
        eprintln!(
            "rpc cut {}/{rounds}: the standby moved the lane {:.2} s after the leader's destination RPC was blackholed",
            round.saturating_add(1),
            took.as_secs_f64()
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    Ok(times)
}

/// `rounds` times, on a devnet of its own whose operators sign through a SoftHSM token:
/// operator 1's standby replica signs through a second token holding the same key; the token
/// of the leader is unplugged, and the time to the standby's first vote is taken; then the
/// token is plugged in again, the standby stopped so the first replica leads again, and the
/// standby started anew.
async fn signer_unplug_rounds(
    dir: &std::path::Path,
    rounds: usize,
) -> Result<Vec<f64>, DevnetError> {
    if rounds == 0 {
        return Ok(Vec::new());
    }
    let mut devnet = start_ha(DevnetOptions {
        signer: crate::DevnetSigner::Hsm,
        ..DevnetOptions::hot_standby(dir)
    })
    .await?;
    let hsm = devnet
        .hsm
        .clone()
        .ok_or_else(|| DevnetError::Invalid("the devnet has no SoftHSM token".into()))?;
    let conf = hsm.second_token(&dir.join("softhsm-standby"))?;
    let [first, standby] = [
        devnet.replica_http_ports[0][0],
        devnet.replica_http_ports[0][1],
    ];
    let spec = crate::harness::process::ProcessSpec {
        name: "relay-1-r2-own-hsm".into(),
        program: crate::harness::tools::relay_binary()?,
        args: vec![
            "run".into(),
            "--config".into(),
            devnet.replica_config_path(0, 1).display().to_string(),
        ],
        envs: vec![
            ("MULTIBRIDGE_LOG".into(), "info".into()),
            ("SOFTHSM2_CONF".into(), conf.display().to_string()),
        ],
        log_path: dir.join("logs/relay-1-r2-own-hsm.log"),
    };
    devnet
        .replica(0, 1)
        .ok_or_else(|| DevnetError::Invalid("no second replica of operator 1".into()))?
        .kill()?;
    let traffic = Traffic::start(
        Driver::new(devnet.manifest()),
        LANE,
        0,
        Duration::from_millis(200),
    );
    let leader = crate::harness::ha::leader_series(LANE);
    let mut times = Vec::with_capacity(rounds);
    for round in 0..rounds {
        wait_metric(first, &leader, 1.0, Duration::from_secs(60)).await?;
        let mut own = crate::harness::process::ManagedProcess::spawn(spec.clone())?;
        wait_metric(standby, &leader, 0.0, Duration::from_secs(60)).await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let before = metric(standby, &votes_series(LANE))
            .await
            .unwrap_or_default();
        hsm.unplug()?;
        let unplugged = Instant::now();
        let voted = Progress {
            mode: VotingMode::Votes,
            lane: LANE,
        }
        .wait_moved(standby, before, &[], unplugged)
        .await;
        let took = unplugged.elapsed();
        hsm.plug_in()?;
        voted?;
        times.push(took.as_secs_f64());
        eprintln!(
            "signer unplug {}/{rounds}: the standby voted {:.2} s after the leader's token was moved away",
            round.saturating_add(1),
            took.as_secs_f64()
        );
        // The first replica leads again once the standby is gone.
        own.kill()?;
    }
    let sent = traffic.stop().await?;
    let driver = Driver::new(devnet.manifest());
    drained_exactly_once(&driver, LANE, &sent, Duration::from_secs(120)).await?;
    Ok(times)
}

/// Every transfer of `sent` on `lane` handled (within `timeout`), each exactly once.
async fn drained_exactly_once(
    driver: &Driver,
    lane: Lane,
    sent: &[crate::harness::ha::Sent],
    timeout: Duration,
) -> Result<(), DevnetError> {
    let (Some(first), Some(last)) = (sent.first(), sent.last()) else {
        return Ok(());
    };
    let nonces = first.nonce..last.nonce.saturating_add(1);
    crate::harness::invariants::wait_all_handled(driver, lane, nonces.clone(), timeout).await?;
    crate::harness::invariants::assert_exactly_once(driver, lane, nonces).await
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
            "etcd leader kill {}/{kills}: etcd elected a leader after {:?}, longest without a \
             leader {:.2} s, worst vote gap {:?}",
            i.saturating_add(1),
            r.election,
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
    out.push_str(&row("leader SIGKILL -> lane moves", &r.failover));
    out.push_str(&row("leader SIGSTOP -> lane moves", &r.sigstop));
    out.push_str(&row("leader network cut -> lane moves", &r.network_cut));
    out.push_str(&row("node answers -> lane moves", &r.node_restart));
    out.push_str(&row("leader fault -> standby leads", &r.takeover));
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
    out.push_str(&row(
        "kill all: restart -> relays answer",
        &r.kill_all_answering,
    ));
    out.push_str(&row(
        "kill all: answer -> every lane led",
        &r.kill_all_led_again,
    ));
    out.push_str(&row(
        "kill all -> the lane's next handle",
        &r.kill_all_next_handle,
    ));
    out.push_str(&row(
        "transfer latency around a kill all",
        &r.latency_around_kill_all,
    ));
    out.push_str(&row(
        "dest. RPC cut -> standby's vote",
        &r.rpc_cut_standby_vote,
    ));
    out.push_str(&row(
        "signer unplugged -> standby's vote",
        &r.signer_unplug_standby_vote,
    ));
    let verdict = |s: &Spread, target: f64| {
        if s.samples == 0 {
            "not run"
        } else if s.p99 <= target {
            "met"
        } else {
            "MISSED"
        }
    };
    out.push_str(&format!(
        "mode {}, lease TTL {:.0} s; target a lost leader costs <= {:.1} s (p99): SIGKILL {}, SIGSTOP {}, network cut {}; node answers -> lane moves <= {:.1} s (p99): {}\n",
        r.mode,
        r.ttl_secs,
        r.target_secs,
        verdict(&r.failover, r.target_secs),
        verdict(&r.sigstop, r.target_secs),
        verdict(&r.network_cut, r.target_secs),
        r.node_restart_target_secs,
        verdict(&r.node_restart, r.node_restart_target_secs),
    ));
    out.push_str(&format!(
        "SIGKILLs over {:.1} s: {} of {}; {} transfers, {} handled twice, {} lost\n",
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
    if r.kill_all_led_again.samples > 0 {
        out.push_str(&format!(
            "target all relays killed and restarted: every lane led within {:.1} s (p99) of the relays answering: {} ({} of {} lanes resumed from their live lease)\n",
            r.kill_all_target_secs,
            if r.kill_all_led_again.p99 <= r.kill_all_target_secs {
                "met"
            } else {
                "MISSED"
            },
            r.kill_all_resumed.0,
            r.kill_all_resumed.1
        ));
    }
    for (what, spread) in [
        ("leader's signer unplugged", &r.signer_unplug_standby_vote),
        (
            "leader's destination RPC blackholed",
            &r.rpc_cut_standby_vote,
        ),
    ] {
        if spread.samples > 0 {
            out.push_str(&format!(
                "target {what}: the standby moves the lane within step_down_after + 2 s = {:.1} s: {}\n",
                r.rpc_cut_target_secs,
                if spread.max <= r.rpc_cut_target_secs {
                    "met"
                } else {
                    "MISSED"
                }
            ));
        }
    }
    out
}
