//! Hot-standby scenarios shared by the leadership tests and the failover benchmark: a devnet
//! whose operators run several replicas through a real etcd cluster, a steady stream of
//! transfers, and waiting on a relay's metrics.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use multibridge_contracts::Lane;

use crate::error::DevnetError;
use crate::invariants::handled_nonces_in;
use crate::scrape::metric;
use crate::{Devnet, DevnetOptions, Driver};

/// The series of `multibridge_leader` for one lane.
pub fn leader_series(lane: Lane) -> String {
    format!("multibridge_leader{{lane=\"{lane}\"}}")
}

/// The series of `multibridge_votes_sent_total` for one lane.
pub fn votes_series(lane: Lane) -> String {
    format!("multibridge_votes_sent_total{{lane=\"{lane}\"}}")
}

/// Poll the relay on `port` until `series` equals `want`; returns how long it took.
pub async fn wait_metric(
    port: u16,
    series: &str,
    want: f64,
    timeout: Duration,
) -> Result<Duration, DevnetError> {
    let started = Instant::now();
    loop {
        if metric(port, series).await == Some(want) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            return Err(DevnetError::Invalid(format!(
                "relay on port {port}: {series} != {want} after {timeout:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Start a devnet with `options` (its `replicas` per operator, etcd required), then replica 1
/// of every operator; once it leads every lane, the other replicas, and wait until they follow.
pub async fn start_ha(options: DevnetOptions) -> Result<Devnet, DevnetError> {
    let replicas = options.replicas;
    let operators = usize::try_from(options.operators).unwrap_or(usize::MAX);
    let mut devnet = Devnet::start(DevnetOptions {
        relays: false,
        ..options
    })
    .await?;
    for op in 0..operators {
        devnet.start_replica(op, 0)?;
    }
    for op in 0..operators {
        for lane in Lane::ALL {
            let port = devnet.replica_http_ports[op][0];
            wait_metric(port, &leader_series(lane), 1.0, Duration::from_secs(30)).await?;
        }
    }
    for op in 0..operators {
        for replica in 1..replicas {
            devnet.start_replica(op, replica)?;
        }
    }
    for op in 0..operators {
        for replica in 1..replicas {
            let port = devnet.replica_http_ports[op][replica];
            for lane in Lane::ALL {
                wait_metric(port, &leader_series(lane), 0.0, Duration::from_secs(30)).await?;
            }
        }
    }
    Ok(devnet)
}

/// Which replica of operator `op` leads `lane` now (by its metrics).
pub async fn leading_replica(devnet: &Devnet, op: usize, lane: Lane) -> Option<usize> {
    for (replica, port) in devnet.replica_http_ports.get(op)?.iter().enumerate() {
        if metric(*port, &leader_series(lane)).await == Some(1.0) {
            return Some(replica);
        }
    }
    None
}

/// One transfer of a [`Traffic`] stream.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// Request nonce.
    pub nonce: u64,
    /// When its request receipt came back.
    pub at: Instant,
}

/// Native transfers on one lane, one after another, until stopped.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<Vec<Sent>, DevnetError>>,
}

impl Traffic {
    /// Start requesting on `lane` as user `user` every `every`.
    pub fn start(driver: Driver, lane: Lane, user: usize, every: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut sent = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let r = driver
                    .request_native(lane, user, Address::repeat_byte(0x7e), U256::from(3))
                    .await?;
                sent.push(Sent {
                    nonce: r.nonce,
                    at: Instant::now(),
                });
                tokio::time::sleep(every).await;
            }
            Ok(sent)
        });
        Self { stop, task }
    }

    /// Stop and return every transfer requested, in order.
    pub async fn stop(self) -> Result<Vec<Sent>, DevnetError> {
        self.stop.store(true, Ordering::Relaxed);
        self.task
            .await
            .map_err(|e| DevnetError::Invalid(format!("traffic task: {e}")))?
    }
}

/// When each nonce of a lane was first seen handled, by polling the destination's
/// `HandleValueTransfer` events every 50 ms until stopped.
pub struct HandleWatch {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Result<BTreeMap<u64, Instant>, DevnetError>>,
}

impl HandleWatch {
    /// Start watching `lane`'s destination.
    pub fn start(driver: Driver, lane: Lane) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut seen = BTreeMap::new();
            let destination = driver.provider(lane.destination())?;
            let mut from = driver.chain(lane.destination()).contracts.bridge_block;
            loop {
                let last_round = flag.load(Ordering::Relaxed);
                let head = destination
                    .get_block_number()
                    .await
                    .map_err(|e| DevnetError::chain("eth_blockNumber", e))?;
                if head >= from {
                    // Only the blocks not read yet.
                    for nonce in handled_nonces_in(&driver, lane, from, Some(head)).await? {
                        seen.entry(nonce).or_insert_with(Instant::now);
                    }
                    from = head.saturating_add(1);
                }
                if last_round {
                    return Ok(seen);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Self { stop, task }
    }

    /// Stop and return the first-seen instant of every handled nonce.
    pub async fn stop(self) -> Result<BTreeMap<u64, Instant>, DevnetError> {
        self.stop.store(true, Ordering::Relaxed);
        self.task
            .await
            .map_err(|e| DevnetError::Invalid(format!("handle watch task: {e}")))?
    }
}

/// Wait until every nonce from the first to the last of `nonces` is handled on `lane` (60 s),
/// then check DESIGN §9 on it: each handled exactly once, at most one vote per (nonce,
/// operator), and no signer nonce gap of any of `operators` on either chain.
pub async fn check_drained(
    driver: &Driver,
    lane: Lane,
    nonces: &[u64],
    operators: usize,
) -> Result<(), DevnetError> {
    let (Some(first), Some(last)) = (nonces.first(), nonces.last()) else {
        return Err(DevnetError::Invalid("no transfers to check".into()));
    };
    let range = *first..last.saturating_add(1);
    crate::invariants::wait_all_handled(driver, lane, range.clone(), Duration::from_secs(60))
        .await?;
    crate::invariants::assert_exactly_once(driver, lane, range).await?;
    for op in 0..operators {
        for role in [
            multibridge_contracts::ChainRole::Main,
            multibridge_contracts::ChainRole::Service,
        ] {
            crate::invariants::wait_no_nonce_gap(driver, role, op, Duration::from_secs(30)).await?;
        }
    }
    Ok(())
}
