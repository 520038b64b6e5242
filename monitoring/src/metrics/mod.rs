//! Every metric the relay exports. Names, labels and help text live here only.

use multibridge_contracts::{ChainRole, Lane, RejectReason};
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

mod labels;
#[cfg(test)]
mod tests;
mod views;

pub use labels::*;
pub use views::{ChainMetrics, EtcdMetrics, LaneMetrics};

/// All relay metrics, registered in one registry. Components do not touch the families: they
/// take a view with the labels they own bound once — [`LaneMetrics`] per lane, [`ChainMetrics`]
/// per chain, [`EtcdMetrics`] — whose methods take the remaining labels as enums.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// State versions, backups, compaction, fast join.
    pub backup: crate::BackupMetrics,
    /// The guardian: alarms, pauses, freezes, readiness, bridges paused.
    pub guardian: crate::GuardianMetrics,
    /// Attested batches.
    pub attest: crate::AttestMetrics,
    /// The configuration watch: drift from the desired file, owner calls.
    pub drift: crate::DriftMetrics,
    /// The dashboard's API, writes and claims history.
    pub dashboard: crate::DashboardMetrics,
    /// Run before every render: gauges whose truth is a clock, not an event (see
    /// [`Metrics::on_render`]).
    before_render: std::sync::Arc<std::sync::Mutex<Vec<RenderHook>>>,
    /// Source chain head seen by the indexer, per lane.
    ///
    /// Labels: lane.
    pub(crate) source_head: IntGaugeVec,
    /// Next source block the indexer reads, per lane.
    ///
    /// Labels: lane.
    pub(crate) indexed_block: IntGaugeVec,
    /// Requests newly stored by the indexer.
    ///
    /// Labels: lane.
    pub(crate) requests_indexed: IntCounterVec,
    /// Caught-up indexer steps that a block pushed by the node woke (the rest step on the
    /// chain's clock or their poll).
    ///
    /// Labels: lane.
    pub(crate) indexer_woken_by_push: IntCounterVec,
    /// Nonce gaps found (a log an RPC did not return) and re-scanned.
    ///
    /// Labels: lane.
    pub(crate) nonce_gaps: IntCounterVec,
    /// Requests in the local store, by status.
    ///
    /// Labels: lane, status ([`RequestStatus`]).
    pub(crate) requests: IntGaugeVec,
    /// Age of the oldest open request in the store.
    ///
    /// Labels: lane.
    pub(crate) oldest_pending_age: GaugeVec,
    /// How much longer this replica may send on the lane without another lease renewal and
    /// heartbeat landing in etcd (its fence's margin; 0 when it does not lead). Near 0 on a
    /// leader: etcd answers too slowly to keep the fence open.
    ///
    /// Labels: lane.
    pub(crate) fence_open: GaugeVec,
    /// Requests voted for (one per request in a vote transaction).
    ///
    /// Labels: lane.
    pub(crate) votes_sent: IntCounterVec,
    /// Of those, requests voted in batches planned to record only (this operator ranked before
    /// the deciding vote; issue 54).
    ///
    /// Labels: lane.
    pub(crate) votes_recording: IntCounterVec,
    pub(crate) votes_tight: IntCounterVec,
    /// Vote transactions planned (calldata and gas estimate) between blocks for requests of
    /// the block the next head confirms, before they were final.
    ///
    /// Labels: lane.
    pub(crate) vote_plans_prepared: IntCounterVec,
    /// Vote transactions sent with a plan prepared before their requests were final (no
    /// estimate at the block that confirmed them).
    ///
    /// Labels: lane.
    pub(crate) vote_plans_prepared_used: IntCounterVec,
    /// Requests a vote planned to record skipped for gas: it landed after the threshold was
    /// reached, so it would have decided; each is voted again as a deciding vote, a block later.
    ///
    /// Labels: lane.
    pub(crate) recording_votes_late: IntCounterVec,
    /// Requests that needed no vote from this relay, by reason.
    ///
    /// Labels: lane, reason ([`SkipReason`]).
    pub(crate) votes_skipped: IntCounterVec,
    /// Requests a standby voted, by the rule that had it vote.
    ///
    /// Labels: lane, rule ([`StandbyRule`]).
    pub(crate) standby_votes: IntCounterVec,
    /// Vote transactions by outcome.
    ///
    /// Labels: lane, outcome ([`VoteTxOutcome`]).
    pub(crate) vote_txs: IntCounterVec,
    /// Requests seen handled on the destination.
    ///
    /// Labels: lane.
    pub(crate) handled: IntCounterVec,
    /// Requests waiting for a condition on the destination (liquidity, lock, pause).
    ///
    /// Labels: lane.
    pub(crate) waiting: IntCounterVec,
    /// Time from a request's indexing to its handle seen by this relay.
    ///
    /// Labels: lane.
    pub(crate) handle_latency: HistogramVec,
    /// Seconds from a request's source block to its handle's destination block (block
    /// timestamps: the chains' own clock, the same on every replica).
    ///
    /// Labels: lane.
    pub(crate) transfer_latency: HistogramVec,
    /// Recovery rounds run (one per tick, stalled or not).
    ///
    /// Labels: lane.
    pub(crate) recovery_rounds: IntCounterVec,
    /// Ticks at which a request an earlier tick read as requested was still pending and the
    /// lane's lower handle nonce was no higher than before, and the first tick with pending
    /// requests after a start or a reset (requests younger than a tick are not a stall).
    ///
    /// Labels: lane.
    pub(crate) recovery_stalls: IntCounterVec,
    /// Requests recovery found unhandled and not voted by this operator and handed to the voter.
    ///
    /// Labels: lane.
    pub(crate) recovery_requeued: IntCounterVec,
    /// Claims for this operator's services seen in the registry.
    ///
    /// Labels: lane.
    pub(crate) claims_seen: IntCounterVec,
    /// Claimed requests seen handled afterwards.
    ///
    /// Labels: lane.
    pub(crate) claims_resolved: IntCounterVec,
    /// Open requests waiting on a destination condition, by reason.
    ///
    /// Labels: lane, reason ([`WaitReason`]).
    pub(crate) stuck_requests: IntGaugeVec,
    /// Requests set aside for good (no vote of this operator can be sent or count), by reason.
    ///
    /// Labels: lane, reason ([`RejectReason`]).
    pub(crate) rejected_requests: IntGaugeVec,
    /// The lowest nonce set aside for the reason (-1: none), so an alert names one.
    ///
    /// Labels: lane, reason ([`RejectReason`]).
    pub(crate) rejected_first_nonce: IntGaugeVec,
    /// 1 while the lane's sending is paused for the reason (the relay keeps indexing and
    /// serving and resumes by itself).
    ///
    /// Labels: lane, reason ([`SendingPause`]).
    pub(crate) sending_paused: IntGaugeVec,
    /// Next nonce of this relay's signer, per chain.
    ///
    /// Labels: chain.
    pub(crate) signer_nonce: IntGaugeVec,
    /// Start attempts that found a dependency not answering (the relay waits and retries).
    ///
    /// Labels: component (`chain:main`, `chain:service`).
    pub(crate) startup_waits: IntCounterVec,
    /// Signatures asked of the operator's signer, by backend and outcome (`ok`, `failed`,
    /// `timeout`, `wrong_key`).
    ///
    /// Labels: backend, outcome.
    pub(crate) signer_signatures: IntCounterVec,
    /// Seconds one signature of the operator's signer took (successful ones).
    ///
    /// Labels: backend.
    pub(crate) signer_sign_seconds: HistogramVec,
    /// This signer's transactions a reorg un-mined (and the sender broadcast again), per chain.
    ///
    /// Labels: chain.
    pub(crate) reorged_transactions: IntCounterVec,
    /// This signer's transactions the node dropped from its pool while they were in flight (and
    /// the sender broadcast again), per chain.
    ///
    /// Labels: chain.
    pub(crate) dropped_resends: IntCounterVec,
    /// Seconds a transaction waited at the signer's submitter before its send began (one
    /// submitter per key and chain serves every pair and lane writing with it, a round of
    /// whatever waits at a time), per chain.
    ///
    /// Labels: chain.
    pub(crate) signer_queue_seconds: HistogramVec,
    /// Nonces of this signer filled with a 0-value transfer to itself (a hole in its sequence
    /// that none of its transactions could fill), per chain.
    ///
    /// Labels: chain.
    pub(crate) nonce_holes_filled: IntCounterVec,
    /// Log readers' spans opened up to the node's limit: `requestNonce` showed few requests
    /// since what the reader already held, so a quiet history is read in one answer.
    ///
    /// Labels: chain.
    pub(crate) log_spans_opened: IntCounterVec,
    /// Log reads whose endpoints did not agree (fewer than `log_quorum` gave the same
    /// requests): nothing of such a read is indexed (audit M-7).
    ///
    /// Labels: chain.
    pub(crate) log_disagreements: IntCounterVec,
    /// Balance of this relay's signer in the chain's native coin (1e18 base units), per chain.
    ///
    /// Labels: chain.
    pub(crate) signer_balance: GaugeVec,
    /// Gas price the chain quotes (`eth_gasPrice`), in gwei, per chain.
    ///
    /// Labels: chain.
    pub(crate) gas_price_gwei: GaugeVec,
    /// How long the chain has owed the process an answer (a call in flight or failed since its
    /// last answer; 0: none owed); a lane leader hands over past `[etcd] step_down_after_secs`.
    ///
    /// Labels: chain.
    pub(crate) chain_unanswered: GaugeVec,
    /// Latest block of each chain as the watcher read it.
    ///
    /// Labels: chain.
    pub(crate) chain_head: IntGaugeVec,
    /// 1 while the chain answered the watcher's last probe, else 0.
    ///
    /// Labels: chain.
    pub(crate) chain_up: IntGaugeVec,
    /// Requests made on the lane's source bridge (`requestNonce`).
    ///
    /// Labels: lane.
    pub(crate) request_nonce: IntGaugeVec,
    /// Every nonce below is handled on the lane's destination (`lowerHandleNonce`).
    ///
    /// Labels: lane.
    pub(crate) lower_handle_nonce: IntGaugeVec,
    /// Highest handled nonce + 1 on the lane's destination (`upperHandleNonce`).
    ///
    /// Labels: lane.
    pub(crate) upper_handle_nonce: IntGaugeVec,
    /// Requests the voter last found at or above the destination's vote window
    /// (`upperHandleNonce + VOTE_WINDOW`): they wait, unvoted, for the window to move.
    ///
    /// Labels: lane.
    pub(crate) above_vote_window: IntGaugeVec,
    /// The lane's transactions sent and not yet mined (votes or attested batches), and the most
    /// it may have (`voting.max_in_flight` or `voting.attested_max_in_flight`): at the limit,
    /// what is due waits for receipts.
    ///
    /// Labels: lane.
    pub(crate) transactions_in_flight: IntGaugeVec,
    /// See `transactions_in_flight`.
    ///
    /// Labels: lane.
    pub(crate) transactions_in_flight_limit: IntGaugeVec,
    /// 1 while this replica is the lane's active voter (always 1 when running standalone).
    ///
    /// Labels: lane.
    pub(crate) leader: IntGaugeVec,
    /// Times this replica gained or lost the lane's leadership.
    ///
    /// Labels: lane.
    pub(crate) leadership_changes: IntCounterVec,
    /// Terms a restarted replica took back while its previous process's lease still lived.
    ///
    /// Labels: lane.
    pub(crate) leadership_resumed: IntCounterVec,
    /// Times this leader's lease ran out by its own clock and a renewal came back afterwards,
    /// the lane kept: its sends were refused in between (an etcd election outlasting the lease).
    ///
    /// Labels: lane.
    pub(crate) lease_lapses: IntCounterVec,
    /// The TTL etcd granted this replica's lease for the lane, seconds (above the configured
    /// one when the cluster's election timeout sets a longer minimum: failover takes that long).
    ///
    /// Labels: lane.
    pub(crate) lease_granted_ttl: IntGaugeVec,
    /// Times this replica took the lane over from a leader whose heartbeat (the rewrite of its
    /// leader key) stopped for its TTL, before etcd expired the leader's lease.
    ///
    /// Labels: lane.
    pub(crate) leadership_takeovers: IntCounterVec,
    pub(crate) leader_key_lost: IntCounterVec,
    /// Lanes this replica handed to another replica of its operator because it could not
    /// serve them (its destination chain silent, or its signer failing).
    ///
    /// Labels: lane, reason (one of [`HANDOVER_REASONS`]).
    pub(crate) leadership_handovers: IntCounterVec,
    /// Sends the fence refused (the replica had lost its lane or could not prove its lease).
    ///
    /// Labels: lane.
    pub(crate) fenced_sends: IntCounterVec,
    /// `advanceLowerHandleNonce` transactions this relay sent (the lane idle, every nonce at
    /// `lowerHandleNonce` already handled).
    ///
    /// Labels: lane.
    pub(crate) lower_advances: IntCounterVec,
    /// Releases the lane's destination holds back for its delay (outflow limit, a large
    /// amount, an owner's settlement; a pauser may freeze them), as the lane leader last read
    /// them.
    ///
    /// Labels: lane.
    pub(crate) queued_releases: IntGaugeVec,
    /// Steps of the refund path this relay took (issue 53), by step ([`REFUND_STEPS`]).
    ///
    /// Labels: lane, step.
    pub(crate) refund_steps: IntCounterVec,
    /// Requests of the lane cancelled on its destination and not yet refunded on its source, as
    /// this relay last read them.
    ///
    /// Labels: lane.
    pub(crate) refunds_waiting: IntGaugeVec,
    /// Of those, the ones a pauser froze (nobody executes them until the owner decides), as of
    /// the lane leader's last full scan of the queue.
    ///
    /// Labels: lane.
    pub(crate) queued_releases_frozen: IntGaugeVec,
    /// Requests the destination executed under another payload than the one this relay indexed
    /// for the nonce (a compromised quorum's forgery: the genuine request can never execute;
    /// the owner settles it with `multibridge admin settle`).
    ///
    /// Labels: lane.
    pub(crate) handled_mismatch: IntCounterVec,
    /// `executeQueuedRelease` transactions this relay sent for due queued releases.
    ///
    /// Labels: lane.
    pub(crate) queued_releases_executed: IntCounterVec,
    /// What this relay's mined transactions of the lane cost (gas used × effective gas price),
    /// gwei: per pair of a hub (label `pair`), whose lanes share one operator balance per chain.
    ///
    /// Labels: lane.
    pub(crate) spent: IntCounterVec,
    /// Amount requested on the lane's source, per source asset (locked or burned there).
    ///
    /// Labels: lane, asset.
    pub(crate) asset_requested: GaugeVec,
    /// Amount released on the lane's destination, per source asset (unlocked or minted there).
    ///
    /// Labels: lane, asset.
    pub(crate) asset_released: GaugeVec,
    /// Amount refunded on the lane's source per source asset after the destination cancelled
    /// the request (issue 53), in base units.
    ///
    /// Labels: lane, asset.
    pub(crate) asset_refunded: GaugeVec,
    /// 1 while released ≤ requested for the asset (compared exactly), 0 when conservation broke.
    ///
    /// Labels: lane, asset.
    pub(crate) conservation_ok: IntGaugeVec,
    /// What the conservation check holds by nonce: requests read and not yet released
    /// (`open`), releases read before the source scan reached their nonce (`held`), releases
    /// that pay no source request at their nonce (`forged`).
    ///
    /// Labels: lane, state.
    pub(crate) conservation_nonces: IntGaugeVec,
    /// Votes on the destination whose vote key differs from the payload this relay observed.
    ///
    /// Labels: lane.
    pub(crate) vote_divergence: IntCounterVec,
    /// Votes on the lane's destination by operator (every operator's, as the conservation scan
    /// reads them at the confirmation depth): an operator whose count stops rising while the
    /// lane handles requests is not voting.
    ///
    /// Labels: lane, operator.
    pub(crate) operator_votes: IntCounterVec,
    /// Open requests older than the missing-vote bound an operator has not voted on.
    ///
    /// Labels: lane, operator.
    pub(crate) operator_missing_votes: IntGaugeVec,
    /// How long the oldest of them has been open, seconds (0: none).
    ///
    /// Labels: lane, operator.
    pub(crate) operator_missing_vote_oldest: IntGaugeVec,
    /// RPC calls by chain, endpoint index, method and outcome.
    ///
    /// Labels: chain, endpoint (index in `rpc_urls`), method, outcome ([`RpcOutcome`]).
    pub(crate) rpc_requests: IntCounterVec,
    /// Reads answered from another task's read of the same chain in the process (the head, the
    /// endpoints' probe), instead of an RPC of their own.
    ///
    /// Labels: chain, read (`head`, `probe`).
    pub(crate) rpc_shared_reads: IntCounterVec,
    /// What each chain's head subscription did (`ws_url`): made, a block pushed, lost, found
    /// behind the reads.
    ///
    /// Labels: chain, event ([`HEAD_FEED_EVENTS`]).
    pub(crate) rpc_head_feed: IntCounterVec,
    /// The head each endpoint last answered.
    ///
    /// Labels: chain, endpoint (index in `rpc_urls`).
    pub(crate) rpc_endpoint_head: IntGaugeVec,
    /// 1 while the endpoint answers and keeps up (not lagging, not frozen), 0 while demoted.
    ///
    /// Labels: chain, endpoint.
    pub(crate) rpc_endpoint_healthy: IntGaugeVec,
    /// Times the endpoint was demoted (no answer, lagging, or its head frozen while another's
    /// moved).
    ///
    /// Labels: chain, endpoint.
    pub(crate) rpc_endpoint_demotions: IntCounterVec,
    /// etcd attempts by endpoint index, call and outcome (`ok`, `error`, `timeout`).
    ///
    /// Labels: endpoint (index), call, outcome ([`EtcdOutcome`]).
    pub(crate) etcd_requests: IntCounterVec,
    pub(crate) etcd_member_revokes_live_leases: IntGaugeVec,
    /// etcd reads answered from another campaign's read of the same keys in the process.
    ///
    /// Labels: call.
    pub(crate) etcd_shared_reads: IntCounterVec,
    pub(crate) etcd_heartbeats: IntCounterVec,
    /// Labels: outcome.
    pub(crate) etcd_progress_records: IntCounterVec,
    /// Labels: outcome.
    pub(crate) etcd_history_compactions: IntCounterVec,
    /// Labels: pool.
    pub(crate) etcd_connects: IntCounterVec,
    /// Labels: endpoint.
    pub(crate) etcd_db_size: IntGaugeVec,
    /// How long one etcd attempt may take now, per pool: the configured bound, raised while
    /// no endpoint answered within it and lowered again once answers come fast.
    ///
    /// Labels: pool (`elections`, `background`, `command`), call.
    pub(crate) etcd_attempt_bound: prometheus::GaugeVec,
    /// Service-registry writes (register or updateLocation) by outcome (`updated`, `failed`).
    ///
    /// Labels: outcome ([`RegistryUpdate`]).
    pub(crate) registry_updates: IntCounterVec,
    /// 1, labelled with the version.
    ///
    /// Labels: version.
    pub(crate) build_info: IntGaugeVec,
    /// 1 while this pair of a relay serving several waits alone after a failure no retry
    /// fixed (its other pairs go on), else 0.
    pub pair_cannot_serve: prometheus::IntGauge,
    /// The process's allocator, in bytes, read at each scrape: `allocated` (what the relay
    /// holds), `active` (the pages that holds), `resident` (what the allocator keeps in
    /// memory), `mapped`, `retained` (address space kept for reuse, not resident).
    ///
    /// Labels: kind.
    pub(crate) allocator_bytes: IntGaugeVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics { .. }")
    }
}

/// A refresh run before every render.
type RenderHook = Box<dyn Fn() + Send + Sync>;

use crate::families::name;

impl Metrics {
    /// Create and register every metric, and initialise the label sets of `lanes` and every
    /// chain (endpoints `0..endpoints_per_chain`).
    pub fn new(lanes: &[Lane], endpoints_per_chain: usize) -> Result<Self, prometheus::Error> {
        Self::for_pair(lanes, endpoints_per_chain, None)
    }

    /// [`Metrics::new`] for one bridge pair of a relay serving several (`[[pairs]]`): every
    /// series carries `pair="<name>"` (none for a single-pair relay).
    pub fn for_pair(
        lanes: &[Lane],
        endpoints_per_chain: usize,
        pair: Option<&str>,
    ) -> Result<Self, prometheus::Error> {
        let registry = match pair {
            Some(pair) => Registry::new_custom(
                None,
                Some(std::collections::HashMap::from([(
                    "pair".to_owned(),
                    pair.to_owned(),
                )])),
            )?,
            None => Registry::new(),
        };
        let lane = &["lane"];
        let f = crate::families::Families(&registry);
        let (int_gauge, counter) = (
            |n: &str, help: &str, labels: &[&str]| f.int_gauge(n, help, labels),
            |n: &str, help: &str, labels: &[&str]| f.counter(n, help, labels),
        );
        let oldest_pending_age = GaugeVec::new(
            Opts::new(
                name("oldest_pending_age_seconds"),
                "Age of the oldest open request in the local store",
            ),
            lane,
        )?;
        registry.register(Box::new(oldest_pending_age.clone()))?;
        let fence_open = GaugeVec::new(
            Opts::new(
                name("fence_open_seconds"),
                "How much longer this leader may send without another lease renewal and heartbeat landing in etcd (0 when it does not lead)",
            ),
            lane,
        )?;
        registry.register(Box::new(fence_open.clone()))?;
        let handle_latency = HistogramVec::new(
            HistogramOpts::new(
                name("handle_latency_seconds"),
                "Time from a request's indexing to its handle as seen by this relay",
            )
            .buckets(vec![0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 60.0, 300.0]),
            lane,
        )?;
        registry.register(Box::new(handle_latency.clone()))?;
        let transfer_latency = HistogramVec::new(
            HistogramOpts::new(
                name("transfer_latency_seconds"),
                "Seconds from a request's source block to its handle's destination block (block timestamps)",
            )
            .buckets(vec![1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 900.0]),
            lane,
        )?;
        registry.register(Box::new(transfer_latency.clone()))?;
        let signer_queue_seconds = HistogramVec::new(
            HistogramOpts::new(
                name("signer_queue_seconds"),
                "Seconds a transaction waited at the signer's submitter before its send began",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
            &["chain"],
        )?;
        registry.register(Box::new(signer_queue_seconds.clone()))?;
        let signer_sign_seconds = HistogramVec::new(
            HistogramOpts::new(
                name("signer_sign_seconds"),
                "Seconds one signature of the operator's signer took",
            )
            .buckets(vec![
                0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
            &["backend"],
        )?;
        registry.register(Box::new(signer_sign_seconds.clone()))?;
        let gauge = |n: &str, help: &str, labels: &[&str]| f.gauge(n, help, labels);
        let metrics = Self {
            source_head: int_gauge("source_head", "Source chain head seen by the indexer", lane)?,
            indexed_block: int_gauge("indexed_block", "Next source block the indexer reads", lane)?,
            requests_indexed: counter(
                "requests_indexed_total",
                "Requests newly stored by the indexer",
                lane,
            )?,
            indexer_woken_by_push: counter(
                "indexer_woken_by_push_total",
                "Caught-up indexer steps woken by a block the node pushed",
                lane,
            )?,
            nonce_gaps: counter(
                "nonce_gaps_total",
                "Request nonce gaps found and re-scanned",
                lane,
            )?,
            requests: int_gauge(
                "requests",
                "Requests in the local store by status",
                &["lane", "status"],
            )?,
            oldest_pending_age,
            fence_open,
            votes_sent: counter(
                "votes_sent_total",
                "Requests voted for in vote transactions",
                lane,
            )?,
            votes_recording: counter(
                "votes_recording_total",
                "Requests voted in batches planned to record only (ranked before the deciding vote)",
                lane,
            )?,
            votes_tight: counter(
                "votes_tight_total",
                "Requests voted in deciding batches planned by their simulation because the destination's blocks were full",
                lane,
            )?,
            vote_plans_prepared: counter(
                "vote_plans_prepared_total",
                "Vote transactions planned before their requests were final",
                lane,
            )?,
            vote_plans_prepared_used: counter(
                "vote_plans_prepared_used_total",
                "Vote transactions sent with a plan prepared before their requests were final",
                lane,
            )?,
            recording_votes_late: counter(
                "recording_votes_late_total",
                "Requests a vote planned by its simulation (to record, or a deciding vote in full blocks) skipped for gas because more of its items reached the threshold before it landed (voted again as deciding)",
                lane,
            )?,
            votes_skipped: counter(
                "votes_skipped_total",
                "Requests that needed no vote from this relay",
                &["lane", "reason"],
            )?,
            standby_votes: counter(
                "standby_votes_total",
                "Requests due for this relay's vote as a standby (another operator is first for them; those still open are voted), by the rule: passed (the lane's handles passed it by), stalled (old, and the handles stand still), cap (old enough whatever the lane does)",
                &["lane", "rule"],
            )?,
            vote_txs: counter(
                "vote_transactions_total",
                "Vote transactions by outcome",
                &["lane", "outcome"],
            )?,
            handled: counter(
                "handled_total",
                "Requests seen handled on the destination",
                lane,
            )?,
            waiting: counter(
                "waiting_total",
                "Requests put aside because the destination cannot execute them yet",
                lane,
            )?,
            handle_latency,
            transfer_latency,
            recovery_rounds: counter("recovery_rounds_total", "Recovery rounds run", lane)?,
            recovery_stalls: counter(
                "recovery_stalls_total",
                "Recovery ticks that found a request pending since the previous tick and the lower handle nonce unmoved",
                lane,
            )?,
            recovery_requeued: counter(
                "recovery_requeued_total",
                "Requests recovery found unhandled and unvoted and handed to the voter",
                lane,
            )?,
            claims_seen: counter(
                "claims_seen_total",
                "Claims for this operator's services seen in the registry",
                lane,
            )?,
            claims_resolved: counter(
                "claims_resolved_total",
                "Claimed requests seen handled afterwards",
                lane,
            )?,
            stuck_requests: int_gauge(
                "stuck_requests",
                "Open requests waiting on a destination condition, by reason",
                &["lane", "reason"],
            )?,
            rejected_requests: int_gauge(
                "rejected_requests",
                "Requests set aside for good (this operator can never vote them), by reason",
                &["lane", "reason"],
            )?,
            rejected_first_nonce: int_gauge(
                "rejected_first_nonce",
                "The lowest nonce set aside for the reason (-1: none)",
                &["lane", "reason"],
            )?,
            sending_paused: int_gauge(
                "sending_paused",
                "1 while the lane's sending is paused for the reason (indexing and serving go on)",
                &["lane", "reason"],
            )?,
            signer_nonce: int_gauge(
                "signer_nonce",
                "Next nonce of this relay's signer",
                &["chain"],
            )?,
            startup_waits: counter(
                "startup_waits_total",
                "Start attempts that found a dependency not answering (the relay waits and retries)",
                &["component"],
            )?,
            signer_signatures: counter(
                "signer_signatures_total",
                "Signatures asked of the operator's signer, by backend and outcome",
                &["backend", "outcome"],
            )?,
            signer_sign_seconds,
            reorged_transactions: counter(
                "signer_reorged_transactions_total",
                "Transactions of this relay's signer a reorg un-mined and the relay sent again",
                &["chain"],
            )?,
            dropped_resends: counter(
                "signer_dropped_resent_total",
                "Transactions of this relay's signer the node dropped from its pool in flight and the relay sent again",
                &["chain"],
            )?,
            signer_queue_seconds,
            nonce_holes_filled: counter(
                "signer_nonce_holes_filled_total",
                "Nonces of this relay's signer filled with a 0-value transfer to itself",
                &["chain"],
            )?,
            log_spans_opened: counter(
                "log_spans_opened_total",
                "Reads of a bridge's request logs far behind the head (a first start, a restart, a recovery scan) made as wide as the node allows at once, because requestNonce showed few requests since what the reader held",
                &["chain"],
            )?,
            log_disagreements: counter(
                "rpc_log_disagreements_total",
                "Request log reads on which fewer than log_quorum endpoints agreed (nothing indexed)",
                &["chain"],
            )?,
            signer_balance: gauge(
                "signer_balance",
                "Balance of this relay's signer in the chain's native coin",
                &["chain"],
            )?,
            gas_price_gwei: gauge(
                "gas_price_gwei",
                "Gas price the chain quotes (eth_gasPrice), in gwei",
                &["chain"],
            )?,
            chain_unanswered: gauge(
                "chain_unanswered_seconds",
                "How long the chain has owed this process an answer: a call in flight or failed since its last answer (0: none owed); a lane leader hands over past [etcd] step_down_after_secs",
                &["chain"],
            )?,
            chain_head: int_gauge("chain_head", "Latest block of the chain", &["chain"])?,
            chain_up: int_gauge(
                "chain_up",
                "1 while the chain answered the last probe, else 0",
                &["chain"],
            )?,
            request_nonce: int_gauge(
                "request_nonce",
                "Requests made on the lane's source bridge (requestNonce)",
                lane,
            )?,
            lower_handle_nonce: int_gauge(
                "lower_handle_nonce",
                "Every nonce below is handled on the lane's destination",
                lane,
            )?,
            upper_handle_nonce: int_gauge(
                "upper_handle_nonce",
                "Highest handled nonce + 1 on the lane's destination",
                lane,
            )?,
            above_vote_window: int_gauge(
                "requests_above_vote_window",
                "Requests the voter last found at or above the destination's vote window (upperHandleNonce + VOTE_WINDOW), waiting for it to move",
                lane,
            )?,
            transactions_in_flight: int_gauge(
                "transactions_in_flight",
                "The lane's transactions sent and not yet mined (votes or attested batches)",
                lane,
            )?,
            transactions_in_flight_limit: int_gauge(
                "transactions_in_flight_limit",
                "The most transactions the lane may have unmined (voting.max_in_flight, or voting.attested_max_in_flight for an attested lane)",
                lane,
            )?,
            leader: int_gauge(
                "leader",
                "1 while this replica is the lane's active voter (1 when standalone)",
                lane,
            )?,
            leadership_changes: counter(
                "leadership_changes_total",
                "Times this replica gained or lost the lane's leadership",
                lane,
            )?,
            leadership_handovers: counter(
                "leadership_handovers_total",
                "Lanes this replica handed to a replica of its operator that could serve them, because it could not (reason: destination_rpc, source_rpc, signer)",
                &["lane", "reason"],
            )?,
            leadership_resumed: counter(
                "leadership_resumed_total",
                "Terms this replica took back after a restart, its previous process's lease still alive (proven by its store lock)",
                lane,
            )?,
            lease_lapses: counter(
                "lease_lapses_total",
                "Times this leader's lease ran out by its own clock before a renewal came back, the lane kept (its sends were refused in between)",
                lane,
            )?,
            leadership_takeovers: counter(
                "leadership_takeovers_total",
                "Times this replica took the lane over from a leader whose heartbeat stopped for its TTL (before etcd expired its lease)",
                lane,
            )?,
            leader_key_lost: counter(
                "leader_key_lost_total",
                "Times this replica waited, before leading, for the heartbeat of a holder whose leader key was deleted without its release (its lease expired or etcd revoked it): seen deleted as a standby, found in the key's history after creating the key, or that history not readable whole",
                lane,
            )?,
            lease_granted_ttl: int_gauge(
                "lease_granted_ttl_seconds",
                "TTL etcd granted the lane's lease, seconds (above lease_ttl_secs when the cluster's minimum is longer)",
                lane,
            )?,
            lower_advances: counter(
                "lower_advances_total",
                "advanceLowerHandleNonce transactions sent for an idle lane whose lower nonce lagged",
                lane,
            )?,
            refund_steps: counter(
                "refund_steps_total",
                "Steps of the refund path: asked (a requester's refund claim taken), ask_refused (a claim not by the requester), cancel_voted, cancelled (seen at depth), signed, refund_sent, refunded",
                &["lane", "step"],
            )?,
            refunds_waiting: int_gauge(
                "refunds_waiting",
                "Requests cancelled on the destination and not yet refunded on the source",
                lane,
            )?,
            queued_releases: int_gauge(
                "queued_releases",
                "Releases the destination holds back for its delay (pausers may freeze them), as the lane leader read them",
                lane,
            )?,
            queued_releases_frozen: int_gauge(
                "queued_releases_frozen",
                "Queued releases a pauser froze (the owner cancels or releases them), as of the leader's last full scan",
                lane,
            )?,
            handled_mismatch: counter(
                "handled_mismatch_total",
                "Requests executed on the destination under another payload than the one this relay indexed",
                lane,
            )?,
            spent: counter(
                "transactions_spent_gwei_total",
                "What this relay's mined transactions of the lane cost (gas used x effective gas price), in gwei: a hub's pairs share one operator balance per chain, this says which pair spends it",
                lane,
            )?,
            queued_releases_executed: counter(
                "queued_releases_executed_total",
                "executeQueuedRelease transactions sent for due queued releases",
                lane,
            )?,
            fenced_sends: counter(
                "fenced_sends_total",
                "Sends refused because this replica did not lead or could not prove its lease",
                lane,
            )?,
            asset_requested: gauge(
                "asset_requested",
                "Amount requested on the lane's source per source asset, in base units",
                &["lane", "asset"],
            )?,
            asset_released: gauge(
                "asset_released",
                "Amount released on the lane's destination per source asset, in base units",
                &["lane", "asset"],
            )?,
            asset_refunded: gauge(
                "asset_refunded",
                "Amount refunded on the lane's source per source asset after the destination cancelled the request, in base units",
                &["lane", "asset"],
            )?,
            conservation_ok: int_gauge(
                "conservation_ok",
                "1 while released <= requested for the asset (exact comparison), else 0",
                &["lane", "asset"],
            )?,
            conservation_nonces: int_gauge(
                "conservation_nonces",
                "Nonces the conservation check holds: requested and not yet released (open), released before the source scan reached them (held), released without paying the source's request (forged)",
                &["lane", "state"],
            )?,
            vote_divergence: counter(
                "vote_divergence_total",
                "Destination votes whose key differs from the payload this relay observed",
                lane,
            )?,
            operator_votes: counter(
                "operator_votes_total",
                "Votes on the lane's destination by operator, as the conservation scan reads them",
                &["lane", "operator"],
            )?,
            operator_missing_votes: int_gauge(
                "operator_missing_votes",
                "Open requests older than the missing-vote bound the operator has not voted on",
                &["lane", "operator"],
            )?,
            operator_missing_vote_oldest: int_gauge(
                "operator_missing_vote_oldest_seconds",
                "How long the oldest open request the operator has not voted on has waited",
                &["lane", "operator"],
            )?,
            rpc_endpoint_head: int_gauge(
                "rpc_endpoint_head",
                "The head each RPC endpoint last answered",
                &["chain", "endpoint"],
            )?,
            rpc_endpoint_healthy: int_gauge(
                "rpc_endpoint_healthy",
                "1 while the endpoint answers and keeps up with the best one, 0 while demoted",
                &["chain", "endpoint"],
            )?,
            rpc_endpoint_demotions: counter(
                "rpc_endpoint_demotions_total",
                "Demotions of the endpoint: no answer, lagging, or its head frozen while another's moved",
                &["chain", "endpoint"],
            )?,
            rpc_requests: counter(
                "rpc_requests_total",
                "RPC calls by chain, endpoint index, method and outcome",
                &["chain", "endpoint", "method", "outcome"],
            )?,
            rpc_shared_reads: counter(
                "rpc_shared_reads_total",
                "Reads of a chain answered from another task's read in the process (every pair and task on one chain shares its head, its endpoints' probe and its confirmed blocks' logs; the guardians the newest blocks' events, read=\"head logs\"; read=\"bridge counters read alongside\": a bridge's counters read in another's batch); read=\"logs passed: <why>\": a log read the process's log store left to its asker, by why",
                &["chain", "read"],
            )?,
            rpc_head_feed: counter(
                "rpc_head_feed_total",
                "What the chain's head subscription did (a ws_url configured): connected, header (a block pushed: the shared head without a read), lost (ended, or could not be made; the head is read over RPC meanwhile), behind (reads showed a block it had not pushed for 2 s: made again)",
                &["chain", "event"],
            )?,
            etcd_requests: counter(
                "etcd_requests_total",
                "etcd attempts by endpoint index, call and outcome",
                &["endpoint", "call", "outcome"],
            )?,
            etcd_member_revokes_live_leases: int_gauge(
                "etcd_member_revokes_live_leases",
                "1 when the etcd member at this endpoint index runs a version whose stuck raft leader revokes live leases when it resumes (etcd-io/etcd#15247; fixed in 3.4.28 and 3.5.11), 0 when it does not, absent until read",
                &["endpoint"],
            )?,
            etcd_shared_reads: counter(
                "etcd_shared_reads_total",
                "etcd reads answered from another task's read in the process: a standby's read of its leader key served from the one transaction that read every leader key the process's standbys follow (call \"read leader keys\"), an election's lease renewal answered by another election's renewal of the process's one lease (call \"lease keep-alive\")",
                &["call"],
            )?,
            etcd_heartbeats: counter(
                "etcd_heartbeats_total",
                "Leader-key heartbeats of the process's lane leaders by outcome (rewritten: the key still named this replica under its lease and was rewritten; lost: it did not; failed: etcd did not answer). They go to etcd together, one transaction per gathering of the leaders due at once: beside etcd_requests_total{call=\"heartbeat\"} this gives the heartbeats per transaction",
                &["outcome"],
            )?,
            etcd_progress_records: counter(
                "etcd_progress_records_total",
                "Lane progress records (each replica's cursor and latest nonce, the leader's lane cursor) the process wrote to etcd, by outcome (written, failed: etcd did not answer). Every lane's records due at once go in one transaction: beside etcd_requests_total{call=\"write progress\"} this gives the records per transaction",
                &["outcome"],
            )?,
            etcd_history_compactions: counter(
                "etcd_history_compactions_total",
                "Compactions of the etcd cluster's key history by this process (etcd.keep_history_secs; one process and cluster compacts at a time), by outcome (compacted; already: another process had compacted at least as far; failed: etcd did not answer, or refused it). Every heartbeat, progress record and cursor is a new key version; uncompacted, a 64-pair hub's history grew by about 1.6 GB an hour, and etcd refuses every write past its quota",
                &["outcome"],
            )?,
            etcd_connects: counter(
                "etcd_connects_total",
                "Connections to an etcd member this pair's pools started, by pool (elections: the campaigns', on the leadership runtime; background: everything else). Every pool of one name in the process shares one connection per member, so a process makes one per member and pool at its start; more are connections made again after a call failed on one or was abandoned unanswered",
                &["pool"],
            )?,
            etcd_db_size: int_gauge(
                "etcd_db_size_bytes",
                "The database size the etcd member at this endpoint index reports (read with the history compaction's status reads, every keep_history_secs / 10, 1-60 s). etcd refuses every write once it passes its quota (--quota-backend-bytes, 2 GiB by default): no lane can keep a leader then",
                &["endpoint"],
            )?,
            etcd_attempt_bound: gauge(
                "etcd_attempt_bound_seconds",
                "How long one etcd attempt of a kind of call may take now, per pool (elections: the campaigns; background: backups, progress, registry, dashboard; command: the CLI): the configured bound, doubled (up to 4x) each time every endpoint timed out in a row, halved back after three answers in a row under a quarter of it. Above the configured bound, etcd answers that call slower than the lease was configured for",
                &["pool", "call"],
            )?,
            registry_updates: counter(
                "registry_updates_total",
                "Service-registry writes (register, updateLocation) by outcome",
                &["outcome"],
            )?,
            build_info: int_gauge(
                "build_info",
                "Always 1; labelled with the version",
                &["version"],
            )?,
            allocator_bytes: int_gauge(
                "allocator_bytes",
                "The process's allocator by kind: allocated (held by the relay), active, resident, mapped, retained (kept for reuse, not resident); read at each scrape",
                &["kind"],
            )?,
            pair_cannot_serve: {
                let g = prometheus::IntGauge::new(
                    name("pair_cannot_serve"),
                    "1 while this pair of a relay serving several waits alone after a failure no retry fixes (the reason is in /readyz and the log), else 0",
                )?;
                registry.register(Box::new(g.clone()))?;
                g
            },
            backup: crate::BackupMetrics::register(&registry, lanes)?,
            guardian: crate::GuardianMetrics::register(&registry, lanes)?,
            attest: crate::AttestMetrics::register(&registry, lanes)?,
            drift: crate::DriftMetrics::register(&registry)?,
            dashboard: crate::DashboardMetrics::register(&registry)?,
            registry,
            before_render: std::sync::Arc::default(),
        };
        metrics
            .build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        for lane in lanes.iter().map(|l| l.as_str()) {
            for g in [
                &metrics.source_head,
                &metrics.indexed_block,
                &metrics.request_nonce,
                &metrics.lower_handle_nonce,
                &metrics.upper_handle_nonce,
                &metrics.above_vote_window,
                &metrics.transactions_in_flight,
                &metrics.transactions_in_flight_limit,
                &metrics.leader,
                &metrics.lease_granted_ttl,
                &metrics.queued_releases,
                &metrics.queued_releases_frozen,
            ] {
                g.with_label_values(&[lane]).set(0);
            }
            for c in [
                &metrics.requests_indexed,
                &metrics.indexer_woken_by_push,
                &metrics.nonce_gaps,
                &metrics.votes_sent,
                &metrics.votes_recording,
                &metrics.votes_tight,
                &metrics.vote_plans_prepared,
                &metrics.vote_plans_prepared_used,
                &metrics.recording_votes_late,
                &metrics.handled,
                &metrics.waiting,
                &metrics.recovery_rounds,
                &metrics.recovery_stalls,
                &metrics.recovery_requeued,
                &metrics.claims_seen,
                &metrics.claims_resolved,
                &metrics.leadership_changes,
                &metrics.leadership_resumed,
                &metrics.lease_lapses,
                &metrics.leadership_takeovers,
                &metrics.leader_key_lost,
                &metrics.fenced_sends,
                &metrics.lower_advances,
                &metrics.queued_releases_executed,
                &metrics.spent,
                &metrics.vote_divergence,
                &metrics.handled_mismatch,
            ] {
                c.with_label_values(&[lane]).reset();
            }
            for status in REQUEST_STATUSES {
                metrics.requests.with_label_values(&[lane, status]).set(0);
            }
            for state in CONSERVATION_STATES {
                metrics
                    .conservation_nonces
                    .with_label_values(&[lane, state])
                    .set(0);
            }
            for reason in STUCK_REASONS {
                metrics
                    .stuck_requests
                    .with_label_values(&[lane, reason])
                    .set(0);
            }
            for reason in RejectReason::ALL {
                metrics
                    .rejected_first_nonce
                    .with_label_values(&[lane, reason.as_str()])
                    .set(-1);
                metrics
                    .rejected_requests
                    .with_label_values(&[lane, reason.as_str()])
                    .set(0);
            }
            for reason in HANDOVER_REASONS {
                metrics
                    .leadership_handovers
                    .with_label_values(&[lane, reason])
                    .reset();
            }
            for reason in SendingPause::ALL {
                metrics
                    .sending_paused
                    .with_label_values(&[lane, reason.as_str()])
                    .set(0);
            }
            for reason in VOTE_SKIP_REASONS {
                metrics
                    .votes_skipped
                    .with_label_values(&[lane, reason])
                    .reset();
            }
            for rule in StandbyRule::ALL {
                metrics
                    .standby_votes
                    .with_label_values(&[lane, rule.as_str()])
                    .reset();
            }
            for outcome in VOTE_TX_OUTCOMES {
                metrics.vote_txs.with_label_values(&[lane, outcome]).reset();
            }
            for step in REFUND_STEPS {
                metrics
                    .refund_steps
                    .with_label_values(&[lane, step])
                    .reset();
            }
            metrics.refunds_waiting.with_label_values(&[lane]).set(0);
            metrics
                .oldest_pending_age
                .with_label_values(&[lane])
                .set(0.0);
            metrics.fence_open.with_label_values(&[lane]).set(0.0);
            let _ = metrics.handle_latency.with_label_values(&[lane]);
            let _ = metrics.transfer_latency.with_label_values(&[lane]);
            metrics.set_asset(lane, NATIVE_ASSET, 0.0, 0.0, true);
        }
        for outcome in ["updated", "failed"] {
            metrics
                .registry_updates
                .with_label_values(&[outcome])
                .reset();
        }
        for chain in [ChainRole::Main, ChainRole::Service].map(ChainRole::as_str) {
            metrics.signer_nonce.with_label_values(&[chain]).set(0);
            metrics
                .reorged_transactions
                .with_label_values(&[chain])
                .reset();
            metrics
                .nonce_holes_filled
                .with_label_values(&[chain])
                .reset();
            metrics.log_spans_opened.with_label_values(&[chain]).reset();
            let _ = metrics.signer_queue_seconds.with_label_values(&[chain]);
            metrics.dropped_resends.with_label_values(&[chain]).reset();
            metrics
                .log_disagreements
                .with_label_values(&[chain])
                .reset();
            metrics.chain_head.with_label_values(&[chain]).set(0);
            metrics.chain_up.with_label_values(&[chain]).set(0);
            metrics.signer_balance.with_label_values(&[chain]).set(0.0);
            metrics.gas_price_gwei.with_label_values(&[chain]).set(0.0);
            metrics
                .chain_unanswered
                .with_label_values(&[chain])
                .set(0.0);
            for endpoint in 0..endpoints_per_chain.max(1) {
                let endpoint = endpoint.to_string();
                metrics
                    .rpc_endpoint_demotions
                    .with_label_values(&[chain, endpoint.as_str()])
                    .reset();
                for outcome in RPC_OUTCOMES {
                    metrics
                        .rpc_requests
                        .with_label_values(&[chain, endpoint.as_str(), "eth_blockNumber", outcome])
                        .reset();
                }
            }
        }
        Ok(metrics)
    }

    /// Create the `etcd_requests_total` series of the lease keep-alive for `endpoints`
    /// endpoints at 0 (a relay with `[etcd]` calls this at start).
    pub fn init_etcd(&self, endpoints: usize) {
        for endpoint in 0..endpoints {
            for outcome in ETCD_OUTCOMES {
                self.etcd_requests
                    .with_label_values(&[endpoint.to_string().as_str(), ETCD_KEEP_ALIVE, outcome])
                    .reset();
            }
        }
        self.etcd_shared_reads
            .with_label_values(&[ETCD_LEADER_KEYS])
            .reset();
        for outcome in ETCD_HEARTBEAT_OUTCOMES {
            self.etcd_heartbeats.with_label_values(&[outcome]).reset();
        }
        for outcome in ETCD_PROGRESS_OUTCOMES {
            self.etcd_progress_records
                .with_label_values(&[outcome])
                .reset();
        }
        for outcome in ETCD_COMPACTION_OUTCOMES {
            self.etcd_history_compactions
                .with_label_values(&[outcome])
                .reset();
        }
        for pool in ETCD_POOLS {
            self.etcd_connects.with_label_values(&[pool]).reset();
        }
    }

    /// Publish what the conservation check of `lane` holds by nonce.
    pub fn set_conservation_nonces(&self, lane: &str, open: u64, held: u64, forged: u64) {
        for (state, n) in CONSERVATION_STATES.iter().zip([open, held, forged]) {
            self.conservation_nonces
                .with_label_values(&[lane, state])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Publish what `lane`'s source refunded of one asset.
    pub fn set_asset_refunded(&self, lane: &str, asset: &str, refunded: f64) {
        self.asset_refunded
            .with_label_values(&[lane, asset])
            .set(refunded);
    }

    /// Publish one asset's conservation figures of `lane`.
    pub fn set_asset(&self, lane: &str, asset: &str, requested: f64, released: f64, ok: bool) {
        self.asset_requested
            .with_label_values(&[lane, asset])
            .set(requested);
        self.asset_released
            .with_label_values(&[lane, asset])
            .set(released);
        self.conservation_ok
            .with_label_values(&[lane, asset])
            .set(i64::from(ok));
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        for hook in self
            .before_render
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            hook();
        }
        let mut out = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Clamp a count into a gauge's range.
fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Metrics {
    /// Export the signer series of `backend` at zero (the relay's backend is known at start).
    pub fn init_signer(&self, backend: &str) {
        for outcome in SIGNATURE_OUTCOMES {
            self.signer_signatures
                .with_label_values(&[backend, outcome])
                .reset();
        }
        let _ = self.signer_sign_seconds.with_label_values(&[backend]);
    }

    /// Record one signature of the operator's signer: `outcome` is `ok`, `failed`, `timeout`
    /// or `wrong_key`; `seconds` is recorded for successful ones.
    pub fn signature(&self, backend: &str, outcome: &str, seconds: f64) {
        self.signer_signatures
            .with_label_values(&[backend, outcome])
            .inc();
        if outcome == "ok" {
            self.signer_sign_seconds
                .with_label_values(&[backend])
                .observe(seconds);
        }
    }

    /// A start attempt found `component` not answering.
    pub fn startup_wait(&self, component: &str) {
        self.startup_waits.with_label_values(&[component]).inc();
    }

    /// Run `hook` before every render (scrape). For a value that can turn false without an
    /// event: a leader whose lease ran out while its process was paused must read 0 at the
    /// first scrape after it wakes, whichever of its tasks runs first.
    pub fn on_render(&self, hook: impl Fn() + Send + Sync + 'static) {
        self.before_render
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Box::new(hook));
    }

    /// The allocator gauge family (`allocator_bytes{kind}`), for the hook that reads the
    /// allocator's own statistics at each scrape.
    pub fn allocator_bytes(&self) -> IntGaugeVec {
        self.allocator_bytes.clone()
    }

    /// The chain-time transfer latency histogram of `lane` (what the dashboard draws).
    pub fn transfer_latency(&self, lane: Lane) -> Histogram {
        self.transfer_latency.with_label_values(&[lane.as_str()])
    }

    /// Count a service-registry write.
    pub fn registry_update(&self, outcome: RegistryUpdate) {
        self.registry_updates
            .with_label_values(&[outcome.as_str()])
            .inc();
    }
}
