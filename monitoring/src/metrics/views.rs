//! Views of the families with the labels a component owns bound once: [`LaneMetrics`] per lane,
//! [`ChainMetrics`] per chain, [`EtcdMetrics`].

use multibridge_contracts::{ChainRole, Lane, RejectReason, RequestStatus, WaitReason};
use prometheus::{Gauge, Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

use super::labels::{
    EtcdOutcome, RpcOutcome, SendingPause, SkipReason, StandbyRule, VoteTxOutcome,
};
use super::{Metrics, int};

impl Metrics {
    /// The metrics of one lane, its label bound.
    pub fn lane(&self, lane: Lane) -> LaneMetrics {
        let l = &[lane.as_str()];
        LaneMetrics {
            lane,
            source_head: self.source_head.with_label_values(l),
            indexed_block: self.indexed_block.with_label_values(l),
            requests_indexed: self.requests_indexed.with_label_values(l),
            indexer_woken_by_push: self.indexer_woken_by_push.with_label_values(l),
            nonce_gaps: self.nonce_gaps.with_label_values(l),
            oldest_pending_age: self.oldest_pending_age.with_label_values(l),
            fence_open: self.fence_open.with_label_values(l),
            votes_sent: self.votes_sent.with_label_values(l),
            votes_recording: self.votes_recording.with_label_values(l),
            votes_tight: self.votes_tight.with_label_values(l),
            vote_plans_prepared: self.vote_plans_prepared.with_label_values(l),
            vote_plans_prepared_used: self.vote_plans_prepared_used.with_label_values(l),
            recording_votes_late: self.recording_votes_late.with_label_values(l),
            handled: self.handled.with_label_values(l),
            waiting: self.waiting.with_label_values(l),
            handle_latency: self.handle_latency.with_label_values(l),
            transfer_latency: self.transfer_latency.with_label_values(l),
            recovery_rounds: self.recovery_rounds.with_label_values(l),
            recovery_stalls: self.recovery_stalls.with_label_values(l),
            recovery_requeued: self.recovery_requeued.with_label_values(l),
            claims_seen: self.claims_seen.with_label_values(l),
            claims_resolved: self.claims_resolved.with_label_values(l),
            request_nonce: self.request_nonce.with_label_values(l),
            lower_handle_nonce: self.lower_handle_nonce.with_label_values(l),
            upper_handle_nonce: self.upper_handle_nonce.with_label_values(l),
            above_vote_window: self.above_vote_window.with_label_values(l),
            transactions_in_flight: self.transactions_in_flight.with_label_values(l),
            transactions_in_flight_limit: self.transactions_in_flight_limit.with_label_values(l),
            leader: self.leader.with_label_values(l),
            leadership_changes: self.leadership_changes.with_label_values(l),
            leadership_resumed: self.leadership_resumed.with_label_values(l),
            lease_lapses: self.lease_lapses.with_label_values(l),
            lease_granted_ttl: self.lease_granted_ttl.with_label_values(l),
            leadership_takeovers: self.leadership_takeovers.with_label_values(l),
            leader_key_lost: self.leader_key_lost.with_label_values(l),
            fenced_sends: self.fenced_sends.with_label_values(l),
            lower_advances: self.lower_advances.with_label_values(l),
            queued_releases: self.queued_releases.with_label_values(l),
            refunds_waiting: self.refunds_waiting.with_label_values(l),
            queued_releases_executed: self.queued_releases_executed.with_label_values(l),
            spent_gwei: self.spent.with_label_values(l),
            queued_releases_frozen: self.queued_releases_frozen.with_label_values(l),
            handled_mismatch: self.handled_mismatch.with_label_values(l),
            vote_divergence: self.vote_divergence.with_label_values(l),
            all: self.clone(),
        }
    }

    /// The metrics of one chain, its label bound.
    pub fn chain(&self, chain: ChainRole) -> ChainMetrics {
        let c = &[chain.as_str()];
        ChainMetrics {
            chain,
            head: self.chain_head.with_label_values(c),
            up: self.chain_up.with_label_values(c),
            signer_nonce: self.signer_nonce.with_label_values(c),
            reorged_transactions: self.reorged_transactions.with_label_values(c),
            dropped_resends: self.dropped_resends.with_label_values(c),
            nonce_holes_filled: self.nonce_holes_filled.with_label_values(c),
            log_spans_opened: self.log_spans_opened.with_label_values(c),
            queue_wait: self.signer_queue_seconds.with_label_values(c),
            log_disagreements: self.log_disagreements.with_label_values(c),
            signer_balance: self.signer_balance.with_label_values(c),
            gas_price_gwei: self.gas_price_gwei.with_label_values(c),
            unanswered: self.chain_unanswered.with_label_values(c),
            rpc_requests: self.rpc_requests.clone(),
            shared_reads: self.rpc_shared_reads.clone(),
            head_feed: self.rpc_head_feed.clone(),
            endpoint_head: self.rpc_endpoint_head.clone(),
            endpoint_healthy: self.rpc_endpoint_healthy.clone(),
            endpoint_demotions: self.rpc_endpoint_demotions.clone(),
        }
    }

    /// The etcd client's metrics.
    pub fn etcd(&self) -> EtcdMetrics {
        EtcdMetrics {
            requests: self.etcd_requests.clone(),
            revokes_live_leases: self.etcd_member_revokes_live_leases.clone(),
            shared: self.etcd_shared_reads.clone(),
            heartbeats: self.etcd_heartbeats.clone(),
            progress_records: self.etcd_progress_records.clone(),
            history_compactions: self.etcd_history_compactions.clone(),
            connects: self.etcd_connects.clone(),
            db_size: self.etcd_db_size.clone(),
            attempt_bound: self.etcd_attempt_bound.clone(),
        }
    }
}

/// One lane's metrics (label `lane` bound); the field docs in [`Metrics`] say what each means.
#[derive(Clone)]
#[allow(missing_docs)]
pub struct LaneMetrics {
    pub lane: Lane,
    pub source_head: IntGauge,
    pub indexed_block: IntGauge,
    pub requests_indexed: IntCounter,
    pub indexer_woken_by_push: IntCounter,
    pub nonce_gaps: IntCounter,
    pub oldest_pending_age: Gauge,
    pub fence_open: Gauge,
    pub votes_sent: IntCounter,
    pub votes_recording: IntCounter,
    pub votes_tight: IntCounter,
    pub vote_plans_prepared: IntCounter,
    pub vote_plans_prepared_used: IntCounter,
    pub recording_votes_late: IntCounter,
    pub handled: IntCounter,
    pub waiting: IntCounter,
    pub handle_latency: Histogram,
    pub transfer_latency: Histogram,
    pub recovery_rounds: IntCounter,
    pub recovery_stalls: IntCounter,
    pub recovery_requeued: IntCounter,
    pub claims_seen: IntCounter,
    pub claims_resolved: IntCounter,
    pub request_nonce: IntGauge,
    pub lower_handle_nonce: IntGauge,
    pub upper_handle_nonce: IntGauge,
    pub above_vote_window: IntGauge,
    pub transactions_in_flight: IntGauge,
    pub transactions_in_flight_limit: IntGauge,
    pub leader: IntGauge,
    pub leadership_changes: IntCounter,
    pub leadership_resumed: IntCounter,
    pub lease_lapses: IntCounter,
    pub lease_granted_ttl: IntGauge,
    pub leadership_takeovers: IntCounter,
    pub leader_key_lost: IntCounter,
    pub fenced_sends: IntCounter,
    pub lower_advances: IntCounter,
    pub queued_releases: IntGauge,
    pub refunds_waiting: IntGauge,
    pub queued_releases_executed: IntCounter,
    pub spent_gwei: IntCounter,
    pub queued_releases_frozen: IntGauge,
    pub handled_mismatch: IntCounter,
    pub vote_divergence: IntCounter,
    all: Metrics,
}

impl std::fmt::Debug for LaneMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LaneMetrics({})", self.lane)
    }
}

impl LaneMetrics {
    /// Count a vote transaction's outcome.
    pub fn vote_tx(&self, outcome: VoteTxOutcome) {
        self.all
            .vote_txs
            .with_label_values(&[self.lane.as_str(), outcome.as_str()])
            .inc();
    }

    /// Count a step of the refund path (one of [`super::labels::REFUND_STEPS`]).
    pub fn refund_step(&self, step: &'static str, by: u64) {
        debug_assert!(super::labels::REFUND_STEPS.contains(&step));
        self.all
            .refund_steps
            .with_label_values(&[self.lane.as_str(), step])
            .inc_by(by);
    }

    /// Count a request due for this relay's vote as a standby by `rule`.
    pub fn standby_voted(&self, rule: StandbyRule) {
        self.all
            .standby_votes
            .with_label_values(&[self.lane.as_str(), rule.as_str()])
            .inc();
    }

    /// Count a request that needed no vote from this relay.
    pub fn skipped(&self, reason: SkipReason) {
        self.all
            .votes_skipped
            .with_label_values(&[self.lane.as_str(), reason.as_str()])
            .inc();
    }

    /// Publish how many request rows the lane's store holds (compacted ones not counted).
    pub fn set_store_rows(&self, rows: u64) {
        self.all.backup.set_store_rows(self.lane, rows);
    }

    /// Publish how many requests of the lane's store have `status`.
    pub fn set_requests(&self, status: RequestStatus, count: u64) {
        self.all
            .requests
            .with_label_values(&[self.lane.as_str(), status.as_str()])
            .set(int(count));
    }

    /// Count a vote of `operator` seen on the lane's destination.
    pub fn operator_voted(&self, operator: &str) {
        self.all
            .operator_votes
            .with_label_values(&[self.lane.as_str(), operator])
            .inc();
    }

    /// Publish the open requests older than the missing-vote bound `operator` has not voted on,
    /// and the age of the oldest, seconds.
    pub fn set_missing_votes(&self, operator: &str, requests: u64, oldest_secs: u64) {
        let labels = [self.lane.as_str(), operator];
        self.all
            .operator_missing_votes
            .with_label_values(&labels)
            .set(int(requests));
        self.all
            .operator_missing_vote_oldest
            .with_label_values(&labels)
            .set(int(oldest_secs));
    }

    /// Publish how many open requests wait for `reason`.
    pub fn set_stuck(&self, reason: WaitReason, count: u64) {
        self.all
            .stuck_requests
            .with_label_values(&[self.lane.as_str(), reason.as_str()])
            .set(int(count));
    }

    /// This replica handed the lane over because it could not serve it (`reason`: one of
    /// [`HANDOVER_REASONS`](crate::metrics::HANDOVER_REASONS)).
    pub fn handed_over(&self, reason: &str) {
        self.all
            .leadership_handovers
            .with_label_values(&[self.lane.as_str(), reason])
            .inc();
    }

    /// Publish whether the lane's sending is paused for `reason`.
    pub fn set_sending_paused(&self, reason: SendingPause, paused: bool) {
        self.all
            .sending_paused
            .with_label_values(&[self.lane.as_str(), reason.as_str()])
            .set(i64::from(paused));
    }

    /// The reasons the lane's sending is paused for now.
    pub fn sending_paused(&self) -> Vec<SendingPause> {
        SendingPause::ALL
            .into_iter()
            .filter(|r| {
                self.all
                    .sending_paused
                    .with_label_values(&[self.lane.as_str(), r.as_str()])
                    .get()
                    != 0
            })
            .collect()
    }

    /// Publish how many requests were set aside for `reason`.
    pub fn set_rejected(&self, reason: RejectReason, count: u64, first_nonce: Option<u64>) {
        let labels = [self.lane.as_str(), reason.as_str()];
        self.all
            .rejected_requests
            .with_label_values(&labels)
            .set(int(count));
        self.all
            .rejected_first_nonce
            .with_label_values(&labels)
            .set(first_nonce.map_or(-1, int));
    }

    /// Publish one asset's conservation figures.
    pub fn set_asset(&self, asset: &str, requested: f64, released: f64, ok: bool) {
        self.all
            .set_asset(self.lane.as_str(), asset, requested, released, ok);
    }

    /// Publish what the lane's source refunded of `asset`.
    pub fn set_asset_refunded(&self, asset: &str, refunded: f64) {
        self.all
            .set_asset_refunded(self.lane.as_str(), asset, refunded);
    }

    /// Publish what the conservation check holds by nonce (open, held, forged).
    pub fn set_conservation_nonces(&self, open: u64, held: u64, forged: u64) {
        self.all
            .set_conservation_nonces(self.lane.as_str(), open, held, forged);
    }

    /// Count what a mined transaction of the lane cost: `gas_used` at `price_wei` a unit.
    pub fn spent(&self, gas_used: u64, price_wei: u128) {
        let gwei = u128::from(gas_used).saturating_mul(price_wei) / 1_000_000_000;
        self.spent_gwei
            .inc_by(u64::try_from(gwei).unwrap_or(u64::MAX));
    }

    /// Set a gauge from a count.
    pub fn set(gauge: &IntGauge, value: u64) {
        gauge.set(int(value));
    }
}

/// One chain's metrics (label `chain` bound).
#[derive(Clone)]
#[allow(missing_docs)]
pub struct ChainMetrics {
    pub chain: ChainRole,
    pub head: IntGauge,
    pub up: IntGauge,
    pub signer_nonce: IntGauge,
    pub reorged_transactions: IntCounter,
    pub dropped_resends: IntCounter,
    pub nonce_holes_filled: IntCounter,
    pub log_spans_opened: IntCounter,
    pub queue_wait: Histogram,
    pub log_disagreements: IntCounter,
    pub signer_balance: Gauge,
    pub gas_price_gwei: Gauge,
    pub unanswered: Gauge,
    rpc_requests: IntCounterVec,
    shared_reads: IntCounterVec,
    head_feed: IntCounterVec,
    endpoint_head: prometheus::IntGaugeVec,
    endpoint_healthy: prometheus::IntGaugeVec,
    endpoint_demotions: IntCounterVec,
}

impl std::fmt::Debug for ChainMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChainMetrics({})", self.chain)
    }
}

impl ChainMetrics {
    /// Publish endpoint `endpoint`'s last head and whether it is healthy.
    pub fn endpoint_health(&self, endpoint: usize, head: Option<u64>, healthy: bool) {
        let labels = [self.chain.as_str(), &endpoint.to_string()];
        if let Some(head) = head {
            self.endpoint_head.with_label_values(&labels).set(int(head));
        }
        self.endpoint_healthy
            .with_label_values(&labels)
            .set(i64::from(healthy));
    }

    /// Count a demotion of endpoint `endpoint`.
    pub fn endpoint_demoted(&self, endpoint: usize) {
        self.endpoint_demotions
            .with_label_values(&[self.chain.as_str(), &endpoint.to_string()])
            .inc();
    }

    /// Count a read (`head`, `probe`) answered from another task's read of this chain.
    pub fn shared_read(&self, read: &str) {
        self.shared_reads
            .with_label_values(&[self.chain.as_str(), read])
            .inc();
    }

    /// Count an event of the chain's head subscription (one of
    /// [`HEAD_FEED_EVENTS`](crate::metrics::HEAD_FEED_EVENTS)).
    pub fn head_feed(&self, event: &str) {
        self.head_feed
            .with_label_values(&[self.chain.as_str(), event])
            .inc();
    }

    /// Count one RPC attempt on endpoint `endpoint` (its index in `rpc_urls`).
    pub fn rpc(&self, endpoint: usize, method: &str, outcome: RpcOutcome) {
        self.rpc_requests
            .with_label_values(&[
                self.chain.as_str(),
                endpoint.to_string().as_str(),
                method,
                outcome.as_str(),
            ])
            .inc();
    }
}

/// The etcd client's metrics.
#[derive(Clone)]
pub struct EtcdMetrics {
    requests: IntCounterVec,
    revokes_live_leases: IntGaugeVec,
    shared: IntCounterVec,
    heartbeats: IntCounterVec,
    progress_records: IntCounterVec,
    history_compactions: IntCounterVec,
    connects: IntCounterVec,
    db_size: IntGaugeVec,
    attempt_bound: prometheus::GaugeVec,
}

impl std::fmt::Debug for EtcdMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EtcdMetrics")
    }
}

impl EtcdMetrics {
    /// Count one etcd attempt on endpoint `endpoint` (its index).
    pub fn attempt(&self, endpoint: usize, call: &str, outcome: EtcdOutcome) {
        self.requests
            .with_label_values(&[endpoint.to_string().as_str(), call, outcome.as_str()])
            .inc();
    }

    /// Count one read of `call` answered from another task's read.
    pub fn shared_read(&self, call: &str) {
        self.shared.with_label_values(&[call]).inc();
    }

    /// Count `n` leader-key heartbeats that ended with `outcome` (one of
    /// [`ETCD_HEARTBEAT_OUTCOMES`](crate::metrics::ETCD_HEARTBEAT_OUTCOMES)).
    pub fn heartbeats(&self, outcome: &str, n: usize) {
        self.heartbeats
            .with_label_values(&[outcome])
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// Count `n` lane progress records that ended with `outcome` (one of
    /// [`ETCD_PROGRESS_OUTCOMES`](crate::metrics::ETCD_PROGRESS_OUTCOMES)).
    pub fn progress_records(&self, outcome: &str, n: usize) {
        self.progress_records
            .with_label_values(&[outcome])
            .inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    /// Count one history compaction that ended with `outcome` (one of
    /// [`ETCD_COMPACTION_OUTCOMES`](crate::metrics::ETCD_COMPACTION_OUTCOMES)).
    pub fn history_compaction(&self, outcome: &str) {
        self.history_compactions.with_label_values(&[outcome]).inc();
    }

    /// Count a connection to an etcd member that `pool` started.
    pub fn connect(&self, pool: &str) {
        self.connects.with_label_values(&[pool]).inc();
    }

    /// The database size the member at endpoint `endpoint` (its index) reported.
    pub fn db_size(&self, endpoint: usize, bytes: i64) {
        self.db_size
            .with_label_values(&[endpoint.to_string().as_str()])
            .set(bytes);
    }

    /// No database size known here any more (the figures go to another pair's metrics).
    pub fn clear_db_size(&self) {
        self.db_size.reset();
    }

    /// The bound of one attempt of `call` in the pool `pool`, now.
    pub fn attempt_bound(&self, pool: &str, call: &str, seconds: f64) {
        self.attempt_bound
            .with_label_values(&[pool, call])
            .set(seconds);
    }

    /// Whether the member at endpoint `endpoint` runs an etcd that may revoke live leases.
    pub fn member_revokes_live_leases(&self, endpoint: usize, defective: bool) {
        self.revokes_live_leases
            .with_label_values(&[endpoint.to_string().as_str()])
            .set(i64::from(defective));
    }
}
