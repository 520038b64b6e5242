//! Where a lane stands: one model for `multibridge status` and the relay's `/status`, built from
//! the chains' bookkeeping and this relay's store; and the store's counts published as metrics.

use alloy::primitives::B256;
use multibridge_contracts::{Lane, RequestStatus, WaitReason};
use multibridge_monitoring::LaneMetrics;
use serde::Serialize;

use crate::chain::pair::LaneNonces;
use crate::leadership::campaign::LeaderInfo;
use crate::leadership::progress::ReplicaProgress;
use crate::store::{Store, StoreError, unix_now};

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
    /// Open requests waiting on a destination condition, by reason (e.g. liquidity short, token
    /// locked, paused); they proceed by themselves once it clears.
    pub waiting: Vec<ReasonEntry>,
    /// Requests this operator set aside for good, by reason (they need a person).
    pub rejected: Vec<ReasonEntry>,
    /// How many releases the destination holds back for its delay (handled requests, not yet
    /// paid; a pauser may freeze them, the owner cancel them).
    pub queued_release_count: u64,
    /// The first of them ([`STATUS_QUEUE_PAGE`] at most; `queued_release_count` says how many
    /// there are in all).
    pub queued_releases: Vec<crate::chain::bridge_views::QueuedRelease>,
    /// Why this replica's sending is paused now (e.g. `insufficient_funds`); indexing and
    /// serving go on. Empty when it sends normally (or when read from outside the relay).
    pub sending_paused: Vec<String>,
    /// Per registered operator, the open requests that have waited past the missing-vote bound
    /// without its vote (in the relay's `/status`; empty from the CLI).
    pub missing_votes: Vec<crate::observe::missing_votes::MissingVotes>,
    /// Whether this replica leads the lane (in the relay's `/status`; absent from the CLI).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<bool>,
    /// With `[etcd]`: who leads the lane's election and how far each replica got.
    pub leadership: Option<LaneLeadership>,
    /// State versions (SV, SSV per replica, SSI), membership and the last backup, from etcd.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub versions: Option<crate::backup::versions::VersionsView>,
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

/// Requests with one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReasonEntry {
    /// The reason's stable name (the metric label).
    pub reason: String,
    /// What the destination or the node said (one of the requests').
    pub detail: Option<String>,
    /// How many requests have it.
    pub requests: u64,
    /// The lowest nonce with it.
    pub first_nonce: u64,
}

/// Most queued releases a status lists (one page read: the queue may be long).
pub const STATUS_QUEUE_PAGE: u64 = 64;

/// Fill `status`'s queued releases from its destination `views`: the count and the first page.
pub async fn read_queued_releases(
    status: &mut LaneStatus,
    views: crate::chain::bridge_views::BridgeViews<'_>,
) -> Result<(), crate::chain::ChainError> {
    status.queued_release_count = views.counters().await?.queued_release_count;
    status.queued_releases = if status.queued_release_count == 0 {
        Vec::new()
    } else {
        views.queued_releases_page(0, STATUS_QUEUE_PAGE).await?
    };
    Ok(())
}

/// One lane's status from its chain bookkeeping and, when there is one, the relay's store.
pub fn lane_status(
    lane: Lane,
    nonces: LaneNonces,
    store: Option<&Store>,
) -> Result<LaneStatus, StoreError> {
    let mut status = LaneStatus {
        lane,
        request_nonce: nonces.request,
        lower_handle_nonce: nonces.lower,
        upper_handle_nonce: nonces.upper,
        pending: nonces.request.saturating_sub(nonces.lower),
        oldest_pending_age_secs: None,
        last_vote_nonce: None,
        last_vote_tx: None,
        waiting: Vec::new(),
        rejected: Vec::new(),
        queued_release_count: 0,
        queued_releases: Vec::new(),
        sending_paused: Vec::new(),
        missing_votes: Vec::new(),
        leader: None,
        leadership: None,
        versions: None,
    };
    let Some(store) = store else {
        return Ok(status);
    };
    let counts = store.counts(lane)?;
    status.oldest_pending_age_secs = counts
        .oldest_open_observed_at
        .map(|t| unix_now().saturating_sub(t));
    if let Some((nonce, tx, _)) = store.last_vote(lane)? {
        status.last_vote_nonce = Some(nonce);
        status.last_vote_tx = Some(tx);
    }
    status.waiting = reason_entries(store.waiting_reasons(lane)?, |r| r.as_str());
    status.rejected = reason_entries(store.rejected_reasons(lane)?, |r| r.as_str());
    Ok(status)
}

/// The status entries of reason counts, each named by `name`.
fn reason_entries<R>(
    counts: Vec<crate::store::ReasonCount<R>>,
    name: impl Fn(&R) -> &'static str,
) -> Vec<ReasonEntry> {
    counts
        .into_iter()
        .map(|c| ReasonEntry {
            reason: name(&c.reason).to_owned(),
            detail: c.detail,
            requests: c.requests,
            first_nonce: c.first_nonce,
        })
        .collect()
}

/// Publish the store's view of a lane: requests by status, the oldest open request's age, the
/// open requests waiting by reason.
pub fn publish_store_stats(store: &Store, metrics: &LaneMetrics) -> Result<(), StoreError> {
    let lane = metrics.lane;
    let counts = store.counts(lane)?;
    for status in RequestStatus::ALL {
        metrics.set_requests(status, counts.of(status));
    }
    // Rows still in the store: the counts less what a backup compacted away.
    let total = RequestStatus::ALL
        .iter()
        .fold(0u64, |sum, s| sum.saturating_add(counts.of(*s)));
    metrics.set_store_rows(total.saturating_sub(store.compaction(lane)?.dropped));
    let age = counts
        .oldest_open_observed_at
        .map(|t| unix_now().saturating_sub(t))
        .unwrap_or(0);
    metrics.oldest_pending_age.set(age as f64);
    let waiting = store.waiting_reasons(lane)?;
    for reason in WaitReason::ALL {
        let n = waiting
            .iter()
            .find(|c| c.reason == reason)
            .map_or(0, |c| c.requests);
        metrics.set_stuck(reason, n);
    }
    let rejected = store.rejected_reasons(lane)?;
    for reason in multibridge_contracts::RejectReason::ALL {
        let entry = rejected.iter().find(|c| c.reason == reason);
        metrics.set_rejected(
            reason,
            entry.map_or(0, |c| c.requests),
            entry.map(|c| c.first_nonce),
        );
    }
    Ok(())
}
