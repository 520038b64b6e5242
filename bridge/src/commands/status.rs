//! `multibridge status`: where each lane stands, read from the chains and the local store.

use std::time::Duration;

use alloy::primitives::B256;
use multibridge_contracts::{ChainRole, Lane};
use serde::Serialize;

use crate::chain::{ChainClient, ChainError, RetryPolicy};
use crate::config::Config;
use crate::leadership::campaign::{LeaderInfo, read_leader};
use crate::leadership::etcd_pool::{EtcdPool, EtcdUnavailable};
use crate::leadership::keys::leader_key;
use crate::leadership::lane_election_dir;
use crate::leadership::progress::{ReplicaProgress, read_cursor, read_progress};
use crate::relay::store_identity;
use crate::store::{Store, StoreError};

/// One lane's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LaneStatus {
    /// Lane.
    pub lane: Lane,
    /// Requests made on the source (`requestNonce`).
    pub request_nonce: u64,
    /// Every nonce below is handled on the destination.
    pub lower_handle_nonce: u64,
    /// Highest handled nonce + 1.
    pub upper_handle_nonce: u64,
    /// Requests not yet handled (`requestNonce − lowerHandleNonce`, an upper bound).
    pub pending: u64,
    /// Age of the oldest request still open in this relay's store, in seconds.
    pub oldest_pending_age_secs: Option<u64>,
    /// This operator's last vote: request nonce.
    pub last_vote_nonce: Option<u64>,
    /// This operator's last vote: transaction.
    pub last_vote_tx: Option<B256>,
    /// Open requests waiting on a destination condition, by the reason the destination gave
    /// (e.g. liquidity short, token locked, paused); they proceed by themselves once it clears.
    pub waiting: Vec<WaitingReason>,
    /// With `[etcd]`: who leads the lane's election and how far each replica got.
    pub leadership: Option<LaneLeadership>,
}

/// A lane's election as etcd records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LaneLeadership {
    /// The leader (`None`: nobody leads right now).
    pub leader: Option<LeaderInfo>,
    /// The lane cursor the leader last recorded (next source block its indexer reads).
    pub cursor: Option<u64>,
    /// Every replica's progress record, by name.
    pub replicas: Vec<ReplicaProgress>,
    /// Set when etcd could not be read.
    pub error: Option<String>,
}

/// Requests waiting for one reason.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WaitingReason {
    /// The reason as the destination gave it.
    pub reason: String,
    /// How many requests wait for it.
    pub requests: u64,
}

/// Why status could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// A chain could not be read.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Read every configured lane's status.
pub async fn lane_statuses(config: &Config) -> Result<Vec<LaneStatus>, StatusError> {
    let policy = RetryPolicy {
        max_attempts: 3,
        attempt_timeout: Duration::from_secs(5),
        ..RetryPolicy::default()
    };
    let store = if config.store.path.exists() {
        Some(Store::open(&config.store.path, &store_identity(config))?)
    } else {
        None
    };
    let main = ChainClient::new(ChainRole::Main, &config.chains.main, policy)?;
    let service = ChainClient::new(ChainRole::Service, &config.chains.service, policy)?;
    let client = |role: ChainRole| match role {
        ChainRole::Main => &main,
        ChainRole::Service => &service,
    };
    let pool = crate::leadership::etcd_pool(config);
    let mut out = Vec::new();
    for lane in config.lanes.iter().copied() {
        let nonces = lane_nonces(client(lane.source()), client(lane.destination())).await?;
        let mut status = lane_status(lane, nonces, store.as_ref())?;
        if let (Some(pool), Some(dir)) = (&pool, lane_election_dir(config, lane)) {
            status.leadership = Some(lane_leadership(pool, &dir).await);
        }
        out.push(status);
    }
    Ok(out)
}

/// Read a lane's election: leader, cursor, replica progress. etcd being unreachable is
/// reported in the result, not as a failure (the chains' view is still worth showing).
async fn lane_leadership(pool: &EtcdPool, dir: &str) -> LaneLeadership {
    let read = async {
        let leader = read_leader(pool, &leader_key(dir)).await?;
        let cursor = read_cursor(pool, dir).await?;
        let mut replicas = read_progress(pool, dir).await?;
        replicas.sort_by(|a, b| a.replica.cmp(&b.replica));
        Ok::<_, EtcdUnavailable>((leader, cursor, replicas))
    };
    match read.await {
        Ok((leader, cursor, replicas)) => LaneLeadership {
            leader,
            cursor,
            replicas,
            error: None,
        },
        Err(e) => LaneLeadership {
            leader: None,
            cursor: None,
            replicas: Vec::new(),
            error: Some(e.to_string()),
        },
    }
}

/// A lane's bookkeeping on the chains: `(requestNonce, lowerHandleNonce, upperHandleNonce)`.
pub async fn lane_nonces(
    source: &ChainClient,
    destination: &ChainClient,
) -> Result<(u64, u64, u64), ChainError> {
    let request_nonce = source
        .bridge_call(
            "requestNonce",
            |b| async move { b.requestNonce().call().await },
        )
        .await?;
    let lower = destination
        .bridge_call("lowerHandleNonce", |b| async move {
            b.lowerHandleNonce().call().await
        })
        .await?;
    let upper = destination
        .bridge_call("upperHandleNonce", |b| async move {
            b.upperHandleNonce().call().await
        })
        .await?;
    Ok((request_nonce, lower, upper))
}

/// One lane's status from its chain bookkeeping (see [`lane_nonces`]) and, when there is one,
/// the relay's store.
pub fn lane_status(
    lane: Lane,
    (request_nonce, lower, upper): (u64, u64, u64),
    store: Option<&Store>,
) -> Result<LaneStatus, StoreError> {
    let (oldest, last_vote, waiting) = match store {
        Some(store) => {
            let counts = store.counts(lane)?;
            let now = crate::store::unix_now();
            let waiting = store
                .waiting_reasons(lane)?
                .into_iter()
                .map(|(reason, requests)| WaitingReason { reason, requests })
                .collect();
            (
                counts
                    .oldest_open_observed_at
                    .map(|t| now.saturating_sub(t)),
                store.last_vote(lane)?,
                waiting,
            )
        }
        None => (None, None, Vec::new()),
    };
    Ok(LaneStatus {
        lane,
        request_nonce,
        lower_handle_nonce: lower,
        upper_handle_nonce: upper,
        pending: request_nonce.saturating_sub(lower),
        oldest_pending_age_secs: oldest,
        last_vote_nonce: last_vote.map(|v| v.0),
        last_vote_tx: last_vote.map(|v| v.1),
        waiting,
        leadership: None,
    })
}

/// The human-readable table.
pub fn render_table(statuses: &[LaneStatus]) -> String {
    let mut out = format!(
        "{:<16} {:>8} {:>8} {:>8} {:>8} {:>12} {:>10}\n",
        "lane", "requests", "lower", "upper", "pending", "oldest age", "last vote"
    );
    for s in statuses {
        out.push_str(&format!(
            "{:<16} {:>8} {:>8} {:>8} {:>8} {:>12} {:>10}\n",
            s.lane.as_str(),
            s.request_nonce,
            s.lower_handle_nonce,
            s.upper_handle_nonce,
            s.pending,
            s.oldest_pending_age_secs
                .map(|a| format!("{a}s"))
                .unwrap_or_else(|| "-".into()),
            s.last_vote_nonce
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into()),
        ));
    }
    for s in statuses {
        let Some(l) = &s.leadership else { continue };
        if let Some(e) = &l.error {
            out.push_str(&format!("{}: etcd not readable: {e}\n", s.lane.as_str()));
            continue;
        }
        out.push_str(&format!(
            "{}: leader {}\n",
            s.lane.as_str(),
            l.leader
                .as_ref()
                .map(|l| format!("{} ({}, operator {})", l.replica, l.url, l.operator))
                .unwrap_or_else(|| "none".into())
        ));
        let top = l.replicas.iter().filter_map(|r| r.latest_nonce).max();
        for r in &l.replicas {
            let behind = match (top, r.latest_nonce) {
                (Some(top), Some(n)) => top.saturating_sub(n),
                (Some(top), None) => top.saturating_add(1),
                (None, _) => 0,
            };
            out.push_str(&format!(
                "  {} {:<8} latest nonce {:>6}  handled {:>6}  cursor {:>8}  behind {}\n",
                r.replica,
                if r.leader { "leader" } else { "follower" },
                r.latest_nonce
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "-".into()),
                r.handled,
                r.cursor
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "-".into()),
                behind
            ));
        }
    }
    for s in statuses {
        for w in &s.waiting {
            out.push_str(&format!(
                "{}: {} request(s) waiting: {}\n",
                s.lane.as_str(),
                w.requests,
                w.reason
            ));
        }
    }
    out
}
