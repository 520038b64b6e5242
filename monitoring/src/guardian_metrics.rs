//! Metrics of the guardian (issue 38): what it saw, what it did, whether it can act, and
//! whether each bridge is paused.

use multibridge_contracts::{ChainRole, Lane};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Registry};

/// Why the guardian raised an alarm (label `reason`).
pub const ALARM_REASONS: [&str; 3] = ["forged_release", "handled_mismatch", "conservation"];
/// What the guardian sent (label `action`).
pub const ACTIONS: [&str; 2] = ["pause", "freeze"];

/// The guardian metrics.
#[derive(Clone)]
pub struct GuardianMetrics {
    alarms: IntCounterVec,
    actions: IntCounterVec,
    action_failures: IntCounterVec,
    ready: IntGaugeVec,
    bridge_paused: IntGaugeVec,
    handles_checked: IntCounterVec,
    unconfirmed: IntGaugeVec,
    disputes: IntCounterVec,
    unjudged: IntGaugeVec,
    oldest_unjudged: IntGaugeVec,
    resumes_respected: IntCounterVec,
    unfreezes_respected: IntCounterVec,
    reaction: HistogramVec,
}

fn chains() -> [&'static str; 2] {
    [ChainRole::Main.as_str(), ChainRole::Service.as_str()]
}

impl GuardianMetrics {
    /// Register every series in `registry`, the label sets of `lanes` and both chains at 0
    /// (`guardian_ready` at -1: no guardian configured, until one says otherwise).
    pub fn register(registry: &Registry, lanes: &[Lane]) -> Result<Self, prometheus::Error> {
        let f = crate::families::Families(registry);
        let (int_gauge, counter) = (
            |n: &str, help: &str, labels: &[&str]| f.int_gauge(n, help, labels),
            |n: &str, help: &str, labels: &[&str]| f.counter(n, help, labels),
        );
        let metrics = Self {
            alarms: counter(
                "guardian_alarms_total",
                "Breaches the guardian acted on (their evidence held on a quorum of each chain's endpoints): a release the source never requested (forged_release), an executed payload other than the indexed request (handled_mismatch), a release that pays no source request at its nonce (conservation)",
                &["lane", "reason"],
            )?,
            actions: counter(
                "guardian_actions_total",
                "Transactions the guardian's pauser key sent: pause() of a bridge, setQueuedReleaseFrozen of a forged queued release",
                &["chain", "action"],
            )?,
            action_failures: counter(
                "guardian_action_failures_total",
                "Guardian transactions that could not be sent or reverted (retried while the alarm stands)",
                &["chain", "action"],
            )?,
            ready: int_gauge(
                "guardian_ready",
                "1 while the guardian key is a pauser of the chain's bridge, 0 when it is not (it cannot act), -1 without a guardian",
                &["chain"],
            )?,
            bridge_paused: int_gauge(
                "bridge_paused",
                "1 while the chain's bridge is paused, as the guardian last read it (-1: not read)",
                &["chain"],
            )?,
            handles_checked: counter(
                "guardian_handles_checked_total",
                "Executed requests the guardian compared with the source chain's request at the destination's head",
                &["lane"],
            )?,
            unconfirmed: int_gauge(
                "guardian_unconfirmed",
                "Suspected breaches whose evidence has not held on a quorum of endpoints yet (the guardian does not act on them)",
                &["lane"],
            )?,
            disputes: counter(
                "guardian_disputes_total",
                "Suspected breaches an RPC endpoint contradicted (it answered the opposite of the endpoint the finding came from: one of them lies or is broken)",
                &["lane", "chain", "endpoint"],
            )?,
            unjudged: int_gauge(
                "guardian_unjudged",
                "Releases the guardian could not judge yet (their source request out of reach); judged again every round",
                &["lane"],
            )?,
            oldest_unjudged: int_gauge(
                "guardian_oldest_unjudged_seconds",
                "How long the oldest release not judged yet has waited (0: none)",
                &["lane"],
            )?,
            resumes_respected: counter(
                "guardian_resumes_respected_total",
                "Pauses not sent because the bridge was paused after the breach and its owner resumed it since (a guardian that learnt of the breach late, or whose own pause was lifted before its next round): an owner's decision stands; a forged queued release is frozen all the same unless the owner lifted its freeze",
                &["chain"],
            )?,
            unfreezes_respected: counter(
                "guardian_unfreezes_respected_total",
                "Freezes not sent because the owner lifted a freeze of that queued release after the breach (a guardian that learnt of the breach late): an owner's decision stands",
                &["chain"],
            )?,
            reaction: HistogramVec::new(
                HistogramOpts::new(
                    crate::families::name("guardian_reaction_seconds"),
                    "Seconds from the guardian's first sight of a breach (the forged execution read at the destination's head, or the conservation scan's alarm) to its pause of the chain's bridge sent: a forged release is to be paused within two blocks",
                )
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0]),
                &["chain"],
            )?,
        };
        registry.register(Box::new(metrics.reaction.clone()))?;
        for lane in lanes.iter().map(|l| l.as_str()) {
            for reason in ALARM_REASONS {
                metrics.alarms.with_label_values(&[lane, reason]).reset();
            }
            metrics.handles_checked.with_label_values(&[lane]).reset();
            metrics.unconfirmed.with_label_values(&[lane]).set(0);
            metrics.unjudged.with_label_values(&[lane]).set(0);
            metrics.oldest_unjudged.with_label_values(&[lane]).set(0);
        }
        for chain in chains() {
            for action in ACTIONS {
                metrics.actions.with_label_values(&[chain, action]).reset();
                metrics
                    .action_failures
                    .with_label_values(&[chain, action])
                    .reset();
            }
            metrics
                .resumes_respected
                .with_label_values(&[chain])
                .reset();
            metrics
                .unfreezes_respected
                .with_label_values(&[chain])
                .reset();
            let _ = metrics.reaction.with_label_values(&[chain]);
            metrics.ready.with_label_values(&[chain]).set(-1);
            metrics.bridge_paused.with_label_values(&[chain]).set(-1);
        }
        Ok(metrics)
    }

    /// Count an alarm of `lane` for `reason` (one of [`ALARM_REASONS`]).
    pub fn alarm(&self, lane: Lane, reason: &str) {
        self.alarms
            .with_label_values(&[lane.as_str(), reason])
            .inc();
    }

    /// Count a transaction sent on `chain` (`action` one of [`ACTIONS`]).
    pub fn action(&self, chain: ChainRole, action: &str) {
        self.actions
            .with_label_values(&[chain.as_str(), action])
            .inc();
    }

    /// Record that a pause of `chain` was sent `seconds` after the breach was first seen.
    pub fn reacted(&self, chain: ChainRole, seconds: f64) {
        self.reaction
            .with_label_values(&[chain.as_str()])
            .observe(seconds);
    }

    /// Count a transaction that failed on `chain`.
    pub fn action_failed(&self, chain: ChainRole, action: &str) {
        self.action_failures
            .with_label_values(&[chain.as_str(), action])
            .inc();
    }

    /// Count a pause of `chain` not sent because its owner resumed it after the breach.
    pub fn resume_respected(&self, chain: ChainRole) {
        self.resumes_respected
            .with_label_values(&[chain.as_str()])
            .inc();
    }

    /// Count a freeze on `chain` not sent because its owner lifted a freeze of the release
    /// after the breach.
    pub fn unfreeze_respected(&self, chain: ChainRole) {
        self.unfreezes_respected
            .with_label_values(&[chain.as_str()])
            .inc();
    }

    /// Publish whether the guardian key is a pauser of `chain`'s bridge.
    pub fn set_ready(&self, chain: ChainRole, ready: bool) {
        self.ready
            .with_label_values(&[chain.as_str()])
            .set(i64::from(ready));
    }

    /// Publish whether `chain`'s bridge is paused.
    pub fn set_paused(&self, chain: ChainRole, paused: bool) {
        self.bridge_paused
            .with_label_values(&[chain.as_str()])
            .set(i64::from(paused));
    }

    /// Publish how many suspected breaches of `lane` wait for their evidence to hold.
    pub fn set_unconfirmed(&self, lane: Lane, n: usize) {
        self.unconfirmed
            .with_label_values(&[lane.as_str()])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Count a suspected breach of `lane` that endpoint `endpoint` (its index in the chain's
    /// `rpc_urls`) of `chain` contradicted.
    pub fn disputed(&self, lane: Lane, chain: ChainRole, endpoint: usize) {
        self.disputes
            .with_label_values(&[lane.as_str(), chain.as_str(), &endpoint.to_string()])
            .inc();
    }

    /// Publish the releases of `lane` not judged yet and the oldest one's wait.
    pub fn set_unjudged(&self, lane: Lane, n: usize, oldest: Option<std::time::Duration>) {
        self.unjudged
            .with_label_values(&[lane.as_str()])
            .set(i64::try_from(n).unwrap_or(i64::MAX));
        self.oldest_unjudged
            .with_label_values(&[lane.as_str()])
            .set(oldest.map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)));
    }

    /// Count `n` handles of `lane` compared with their source requests.
    pub fn checked(&self, lane: Lane, n: u64) {
        self.handles_checked
            .with_label_values(&[lane.as_str()])
            .inc_by(n);
    }
}
