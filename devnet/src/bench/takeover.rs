//! `bench-failover`'s rounds per fault kind of the lane leader (issue 52): the leader of
//! operator 1's lane is SIGKILLed, SIGSTOPped, or cut off from the network (every connection of
//! its own: both chains and every etcd member), and the time to the standby's first progress is
//! taken; or every replica's connection to the lane's destination is refused (what the relays
//! see while that chain's node restarts) and the time from the node answering again to the
//! lane's next progress is taken.
//!
//! Progress is what the mode sends: in votes mode the standby's first vote
//! (`votes_sent_total`); in attested mode, where every replica signs whether it leads or not
//! (so the other operators' batches go on meanwhile), the standby leading and then the lane's
//! next attested batch by any operator (`attested_batches_sent_total`).

use std::time::{Duration, Instant};

use multibridge_config::VotingMode;
use multibridge_contracts::Lane;

use crate::error::DevnetError;
use crate::harness::ha::{leader_series, leading_replica, votes_series, wait_metric};
use crate::harness::proxy::ProxyMode;
use crate::harness::scrape::{metric, metric_sum};

/// A fault of the lane leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaderFault {
    /// SIGKILL; started again as the follower.
    Kill,
    /// SIGSTOP; continued once the standby moved.
    Stop,
    /// Every connection of the replica blackholed; restored once the standby moved.
    NetworkCut,
}

impl LeaderFault {
    fn label(self) -> &'static str {
        match self {
            Self::Kill => "SIGKILL",
            Self::Stop => "SIGSTOP",
            Self::NetworkCut => "network cut",
        }
    }
}

/// What counts as the lane moving.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// The devnet's voting mode.
    pub mode: VotingMode,
    /// The lane.
    pub lane: Lane,
}

impl Progress {
    /// What one replica has sent so far: votes, or signatures in attested mode.
    pub(crate) async fn of(&self, port: u16) -> f64 {
        let series = match self.mode {
            VotingMode::Votes => votes_series(self.lane),
            VotingMode::Attestations => format!(
                "multibridge_attestations_signed_total{{lane=\"{}\"}}",
                self.lane
            ),
        };
        metric(port, &series).await.unwrap_or_default()
    }

    /// What [`wait_moved`](Self::wait_moved) counts from: the standby's votes, or the attested
    /// batches of the replicas on `all`.
    pub(crate) async fn baseline(&self, standby: u16, all: &[u16]) -> f64 {
        match self.mode {
            VotingMode::Votes => self.of(standby).await,
            VotingMode::Attestations => self.batches(all).await,
        }
    }

    /// Attested batches of the lane sent by every replica on `ports`.
    pub(crate) async fn batches(&self, ports: &[u16]) -> f64 {
        let mut sum = 0.0;
        for port in ports {
            sum += metric_sum(
                *port,
                "multibridge_attested_batches_sent_total",
                &format!("lane=\"{}\"", self.lane),
            )
            .await
            .unwrap_or_default();
        }
        sum
    }

    /// Until the lane moved after a fault of the leader: in votes mode the standby's first
    /// vote beyond `before`; in attested mode (every replica signs, leading or not, so the
    /// other operators' batches go on) the lane's next batch by any replica on `all` sent
    /// after the fault. Then, before the faulted replica may come back, until the standby
    /// leads. Returns (moved, led) after `at`. 60 s at most.
    pub(crate) async fn wait_moved(
        &self,
        standby: u16,
        before: f64,
        all: &[u16],
        at: Instant,
    ) -> Result<(Duration, Duration), DevnetError> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let late = |what: &str| DevnetError::Invalid(format!("{what} within 60 s of the fault"));
        if self.mode == VotingMode::Votes {
            // A vote is sent only by a leader.
            let progress = *self;
            crate::harness::wait::poll_every(
                "the standby votes",
                Duration::from_secs(60),
                MOVE_POLL,
                move || async move { Ok(progress.of(standby).await > before) },
            )
            .await?;
            let took = at.elapsed();
            return Ok((took, took));
        }
        let leads = leader_series(self.lane);
        let (mut moved, mut led) = (None, None);
        loop {
            if moved.is_none() && self.batches(all).await > before {
                moved = Some(at.elapsed());
            }
            if led.is_none() && metric(standby, &leads).await == Some(1.0) {
                led = Some(at.elapsed());
            }
            if let (Some(moved), Some(led)) = (moved, led) {
                return Ok((moved, led));
            }
            if Instant::now() > deadline {
                return Err(late("the lane did not move or the standby did not lead"));
            }
            tokio::time::sleep(MOVE_POLL).await;
        }
    }
}

/// How often a takeover round looks whether the lane moved: its figure is late by at most this
/// (votes and attested mode alike; the suite's 100 ms would blur a one-block target).
const MOVE_POLL: Duration = Duration::from_millis(20);

/// One round of a leader fault.
#[derive(Debug, Clone, Copy)]
pub struct Round {
    /// When the fault began.
    pub at: Instant,
    /// Seconds to the lane's next vote or batch.
    pub moved: f64,
    /// Seconds to the standby leading.
    pub led: f64,
}

/// `rounds` faults of kind `fault` on the replica of operator 1 leading the lane: when each
/// fault began and the seconds from it to the standby's progress.
pub async fn leader_rounds(
    devnet: &mut crate::Devnet,
    progress: Progress,
    fault: LeaderFault,
    rounds: usize,
) -> Result<Vec<Round>, DevnetError> {
    let all = devnet.replica_ports();
    let mut times = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let leader = leading_replica(devnet, 0, progress.lane)
            .await
            .ok_or_else(|| {
                DevnetError::Invalid(format!(
                    "{} round {round}: no replica of operator 1 leads",
                    fault.label()
                ))
            })?;
        let follower = 1usize.saturating_sub(leader);
        let standby = devnet.replica_http_ports[0][follower];
        // A stopped process never answers a scrape: ask every replica but the faulted one.
        let faulted = devnet.replica_http_ports[0][leader];
        let others: Vec<u16> = all.iter().copied().filter(|p| *p != faulted).collect();
        let before = progress.baseline(standby, &others).await;
        let at = Instant::now();
        match fault {
            LeaderFault::Kill => replica(devnet, leader)?.kill()?,
            LeaderFault::Stop => replica(devnet, leader)?.pause()?,
            LeaderFault::NetworkCut => links(devnet, leader)?.set_all(ProxyMode::Blackhole),
        }
        let moved = progress.wait_moved(standby, before, &others, at).await;
        match fault {
            LeaderFault::Kill => replica(devnet, leader)?.start_again()?,
            LeaderFault::Stop => replica(devnet, leader)?.resume()?,
            LeaderFault::NetworkCut => links(devnet, leader)?.set_all(ProxyMode::Forward),
        }
        let (moved, led) = moved?;
        times.push(Round {
            at,
            moved: moved.as_secs_f64(),
            led: led.as_secs_f64(),
        });
        eprintln!(
            "leader {} {}/{rounds}: the lane moved {:.2} s later, the standby led after {:.2} s",
            fault.label(),
            round.saturating_add(1),
            moved.as_secs_f64(),
            led.as_secs_f64()
        );
        // The faulted replica is the follower now; let the lane settle before the next round.
        wait_metric(
            devnet.replica_http_ports[0][leader],
            &leader_series(progress.lane),
            0.0,
            Duration::from_secs(30),
        )
        .await?;
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    Ok(times)
}

/// `rounds` times: refuse every replica's connections to the lane's destination for `outage`,
/// then let them through; the time from then to the lane's next progress by any replica.
pub async fn node_restart_rounds(
    devnet: &crate::Devnet,
    progress: Progress,
    rounds: usize,
    outage: Duration,
) -> Result<Vec<f64>, DevnetError> {
    let all = devnet.replica_ports();
    let destination = progress.lane.destination();
    let mut times = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let set = |mode: ProxyMode| -> Result<(), DevnetError> {
            for (op, replicas) in devnet.replica_http_ports.iter().enumerate() {
                for r in 0..replicas.len() {
                    devnet
                        .replica_links(op, r)
                        .ok_or_else(|| DevnetError::Invalid("no replica links".into()))?
                        .rpc(destination)
                        .set_mode(mode);
                }
            }
            Ok(())
        };
        set(ProxyMode::Refuse)?;
        tokio::time::sleep(outage).await;
        let mut before = Vec::with_capacity(all.len());
        for port in &all {
            before.push(progress.of(*port).await);
        }
        let batches = progress.batches(&all).await;
        set(ProxyMode::Forward)?;
        let answering = Instant::now();
        let deadline = answering + Duration::from_secs(60);
        loop {
            let mut moved = false;
            match progress.mode {
                VotingMode::Votes => {
                    for (port, was) in all.iter().zip(&before) {
                        moved |= progress.of(*port).await > *was;
                    }
                }
                VotingMode::Attestations => moved = progress.batches(&all).await > batches,
            }
            if moved {
                break;
            }
            if Instant::now() > deadline {
                return Err(DevnetError::Invalid(format!(
                    "node restart {round}: the lane did not move within 60 s of the node answering"
                )));
            }
            tokio::time::sleep(MOVE_POLL).await;
        }
        let took = answering.elapsed();
        times.push(took.as_secs_f64());
        eprintln!(
            "node restart {}/{rounds}: the lane moved {:.2} s after the node answered again",
            round.saturating_add(1),
            took.as_secs_f64()
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    Ok(times)
}

fn replica(
    devnet: &mut crate::Devnet,
    index: usize,
) -> Result<&mut crate::harness::process::ManagedProcess, DevnetError> {
    devnet
        .replica(0, index)
        .ok_or_else(|| DevnetError::Invalid(format!("no replica {index} of operator 1")))
}

fn links(
    devnet: &crate::Devnet,
    index: usize,
) -> Result<&crate::harness::devnet::ReplicaLinks, DevnetError> {
    devnet
        .replica_links(0, index)
        .ok_or_else(|| DevnetError::Invalid("the devnet has no replica links".into()))
}
