//! Every metric the relay exports. Names, labels and help text live here only.

use multibridge_contracts::{ChainRole, Lane};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Stable outcome labels of vote transactions.
pub const VOTE_TX_OUTCOMES: [&str; 4] = ["mined", "reverted", "replaced", "superseded"];
/// Stable reasons a request was not voted by this relay (it needed no vote).
pub const VOTE_SKIP_REASONS: [&str; 2] = ["already_handled", "already_voted"];
/// Stable RPC outcome labels.
pub const RPC_OUTCOMES: [&str; 4] = ["ok", "retryable", "rate_limited", "fatal"];
/// Why a request is stuck, as the destination tells (stable labels; `other` for the rest).
pub const STUCK_REASONS: [&str; 6] = [
    "insufficient_liquidity",
    "token_locked",
    "token_not_registered",
    "paused",
    "rate_limited",
    "other",
];
/// The `asset` label of the native coin (tokens are labelled with their source address).
pub const NATIVE_ASSET: &str = "native";
/// Outcomes of one etcd attempt.
pub const ETCD_OUTCOMES: [&str; 3] = ["ok", "error", "timeout"];
/// The etcd call a leader makes every third of its lease TTL (its series exist from the start).
pub const ETCD_KEEP_ALIVE: &str = "lease keep-alive";
/// Stored request statuses (the store's stable names).
pub const REQUEST_STATUSES: [&str; 5] = ["observed", "voting", "voted", "handled", "rejected"];

/// All relay metrics, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Source chain head seen by the indexer, per lane.
    pub source_head: IntGaugeVec,
    /// Next source block the indexer reads, per lane.
    pub indexed_block: IntGaugeVec,
    /// Requests newly stored by the indexer.
    pub requests_indexed: IntCounterVec,
    /// Nonce gaps found (a log an RPC did not return) and re-scanned.
    pub nonce_gaps: IntCounterVec,
    /// Requests in the local store, by status.
    pub requests: IntGaugeVec,
    /// Age of the oldest open request in the store.
    pub oldest_pending_age: GaugeVec,
    /// Requests voted for (one per request in a vote transaction).
    pub votes_sent: IntCounterVec,
    /// Requests that needed no vote from this relay, by reason.
    pub votes_skipped: IntCounterVec,
    /// Vote transactions by outcome.
    pub vote_txs: IntCounterVec,
    /// Requests seen handled on the destination.
    pub handled: IntCounterVec,
    /// Requests waiting for a condition on the destination (liquidity, lock, pause).
    pub waiting: IntCounterVec,
    /// Time from a request's indexing to its handle seen by this relay.
    pub handle_latency: HistogramVec,
    /// Recovery rounds run (one per tick, stalled or not).
    pub recovery_rounds: IntCounterVec,
    /// Ticks at which the lane had pending requests and its lower handle nonce had not moved.
    pub recovery_stalls: IntCounterVec,
    /// Requests recovery found unhandled and not voted by this operator and handed to the voter.
    pub recovery_requeued: IntCounterVec,
    /// Claims for this operator's services seen in the registry.
    pub claims_seen: IntCounterVec,
    /// Claimed requests seen handled afterwards.
    pub claims_resolved: IntCounterVec,
    /// Open requests waiting on a destination condition, by reason.
    pub stuck_requests: IntGaugeVec,
    /// Next nonce of this relay's signer, per chain.
    pub signer_nonce: IntGaugeVec,
    /// Balance of this relay's signer in the chain's native coin (1e18 base units), per chain.
    pub signer_balance: GaugeVec,
    /// Gas price the chain quotes (`eth_gasPrice`), in gwei, per chain.
    pub gas_price_gwei: GaugeVec,
    /// Latest block of each chain as the watcher read it.
    pub chain_head: IntGaugeVec,
    /// 1 while the chain answered the watcher's last probe, else 0.
    pub chain_up: IntGaugeVec,
    /// Requests made on the lane's source bridge (`requestNonce`).
    pub request_nonce: IntGaugeVec,
    /// Every nonce below is handled on the lane's destination (`lowerHandleNonce`).
    pub lower_handle_nonce: IntGaugeVec,
    /// Highest handled nonce + 1 on the lane's destination (`upperHandleNonce`).
    pub upper_handle_nonce: IntGaugeVec,
    /// 1 while this replica is the lane's active voter (always 1 when running standalone).
    pub leader: IntGaugeVec,
    /// Times this replica gained or lost the lane's leadership.
    pub leadership_changes: IntCounterVec,
    /// Sends the fence refused (the replica had lost its lane or could not prove its lease).
    pub fenced_sends: IntCounterVec,
    /// Amount requested on the lane's source, per source asset (locked or burned there).
    pub asset_requested: GaugeVec,
    /// Amount released on the lane's destination, per source asset (unlocked or minted there).
    pub asset_released: GaugeVec,
    /// 1 while released ≤ requested for the asset (compared exactly), 0 when conservation broke.
    pub conservation_ok: IntGaugeVec,
    /// Votes on the destination whose vote key differs from the payload this relay observed.
    pub vote_divergence: IntCounterVec,
    /// RPC calls by chain, endpoint index, method and outcome.
    pub rpc_requests: IntCounterVec,
    /// etcd attempts by endpoint index, call and outcome (`ok`, `error`, `timeout`).
    pub etcd_requests: IntCounterVec,
    /// Service-registry writes (register or updateLocation) by outcome (`updated`, `failed`).
    pub registry_updates: IntCounterVec,
    /// 1, labelled with the version.
    pub build_info: IntGaugeVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics { .. }")
    }
}

fn name(short: &str) -> String {
    format!("{}{short}", crate::METRIC_PREFIX)
}

impl Metrics {
    /// Create and register every metric, and initialise the label sets of `lanes` and every
    /// chain (endpoints `0..endpoints_per_chain`).
    pub fn new(lanes: &[Lane], endpoints_per_chain: usize) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let lane = &["lane"];
        let int_gauge =
            |n: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, prometheus::Error> {
                let g = IntGaugeVec::new(Opts::new(name(n), help), labels)?;
                registry.register(Box::new(g.clone()))?;
                Ok(g)
            };
        let counter =
            |n: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name(n), help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let oldest_pending_age = GaugeVec::new(
            Opts::new(
                name("oldest_pending_age_seconds"),
                "Age of the oldest open request in the local store",
            ),
            lane,
        )?;
        registry.register(Box::new(oldest_pending_age.clone()))?;
        let handle_latency = HistogramVec::new(
            HistogramOpts::new(
                name("handle_latency_seconds"),
                "Time from a request's indexing to its handle as seen by this relay",
            )
            .buckets(vec![0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 60.0, 300.0]),
            lane,
        )?;
        registry.register(Box::new(handle_latency.clone()))?;
        let gauge = |n: &str, help: &str, labels: &[&str]| -> Result<GaugeVec, prometheus::Error> {
            let g = GaugeVec::new(Opts::new(name(n), help), labels)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let metrics = Self {
            source_head: int_gauge("source_head", "Source chain head seen by the indexer", lane)?,
            indexed_block: int_gauge("indexed_block", "Next source block the indexer reads", lane)?,
            requests_indexed: counter(
                "requests_indexed_total",
                "Requests newly stored by the indexer",
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
            votes_sent: counter(
                "votes_sent_total",
                "Requests voted for in vote transactions",
                lane,
            )?,
            votes_skipped: counter(
                "votes_skipped_total",
                "Requests that needed no vote from this relay",
                &["lane", "reason"],
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
            recovery_rounds: counter("recovery_rounds_total", "Recovery rounds run", lane)?,
            recovery_stalls: counter(
                "recovery_stalls_total",
                "Recovery ticks that found the lane pending and its lower handle nonce unmoved",
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
            signer_nonce: int_gauge(
                "signer_nonce",
                "Next nonce of this relay's signer",
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
            conservation_ok: int_gauge(
                "conservation_ok",
                "1 while released <= requested for the asset (exact comparison), else 0",
                &["lane", "asset"],
            )?,
            vote_divergence: counter(
                "vote_divergence_total",
                "Destination votes whose key differs from the payload this relay observed",
                lane,
            )?,
            rpc_requests: counter(
                "rpc_requests_total",
                "RPC calls by chain, endpoint index, method and outcome",
                &["chain", "endpoint", "method", "outcome"],
            )?,
            etcd_requests: counter(
                "etcd_requests_total",
                "etcd attempts by endpoint index, call and outcome",
                &["endpoint", "call", "outcome"],
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
            registry,
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
                &metrics.leader,
            ] {
                g.with_label_values(&[lane]).set(0);
            }
            for c in [
                &metrics.requests_indexed,
                &metrics.nonce_gaps,
                &metrics.votes_sent,
                &metrics.handled,
                &metrics.waiting,
                &metrics.recovery_rounds,
                &metrics.recovery_stalls,
                &metrics.recovery_requeued,
                &metrics.claims_seen,
                &metrics.claims_resolved,
                &metrics.leadership_changes,
                &metrics.fenced_sends,
                &metrics.vote_divergence,
            ] {
                c.with_label_values(&[lane]).reset();
            }
            for status in REQUEST_STATUSES {
                metrics.requests.with_label_values(&[lane, status]).set(0);
            }
            for reason in STUCK_REASONS {
                metrics
                    .stuck_requests
                    .with_label_values(&[lane, reason])
                    .set(0);
            }
            for reason in VOTE_SKIP_REASONS {
                metrics
                    .votes_skipped
                    .with_label_values(&[lane, reason])
                    .reset();
            }
            for outcome in VOTE_TX_OUTCOMES {
                metrics.vote_txs.with_label_values(&[lane, outcome]).reset();
            }
            metrics
                .oldest_pending_age
                .with_label_values(&[lane])
                .set(0.0);
            let _ = metrics.handle_latency.with_label_values(&[lane]);
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
            metrics.chain_head.with_label_values(&[chain]).set(0);
            metrics.chain_up.with_label_values(&[chain]).set(0);
            metrics.signer_balance.with_label_values(&[chain]).set(0.0);
            metrics.gas_price_gwei.with_label_values(&[chain]).set(0.0);
            for endpoint in 0..endpoints_per_chain.max(1) {
                let endpoint = endpoint.to_string();
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
    }

    /// Publish one asset's conservation figures on `lane`.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_set_exists_before_any_event() {
        let m = Metrics::new(&Lane::ALL, 2).unwrap();
        let text = m.render();
        for needle in [
            "multibridge_build_info{version=",
            "multibridge_requests{lane=\"main-to-service\",status=\"observed\"} 0",
            "multibridge_votes_sent_total{lane=\"service-to-main\"} 0",
            "multibridge_vote_transactions_total{lane=\"main-to-service\",outcome=\"replaced\"} 0",
            "multibridge_oldest_pending_age_seconds{lane=\"main-to-service\"} 0",
            "multibridge_signer_nonce{chain=\"service\"} 0",
            "multibridge_recovery_stalls_total{lane=\"main-to-service\"} 0",
            "multibridge_claims_resolved_total{lane=\"service-to-main\"} 0",
            "multibridge_stuck_requests{lane=\"main-to-service\",reason=\"insufficient_liquidity\"} 0",
            "multibridge_rpc_requests_total{chain=\"main\",endpoint=\"1\",method=\"eth_blockNumber\",outcome=\"rate_limited\"} 0",
            "multibridge_handle_latency_seconds_count{lane=\"service-to-main\"} 0",
            "multibridge_lower_handle_nonce{lane=\"main-to-service\"} 0",
            "multibridge_leader{lane=\"service-to-main\"} 0",
            "multibridge_conservation_ok{asset=\"native\",lane=\"main-to-service\"} 1",
            "multibridge_signer_balance{chain=\"main\"} 0",
            "multibridge_chain_up{chain=\"service\"} 0",
            "multibridge_vote_divergence_total{lane=\"main-to-service\"} 0",
            "multibridge_registry_updates_total{outcome=\"failed\"} 0",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        m.votes_sent
            .with_label_values(&["main-to-service"])
            .inc_by(3);
        assert!(
            m.render()
                .contains("multibridge_votes_sent_total{lane=\"main-to-service\"} 3")
        );
    }
}
