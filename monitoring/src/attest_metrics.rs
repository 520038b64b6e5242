//! Metrics of attested batches (issue 36): what this operator signed, what it fetched from the
//! other operators and what it sent, and per lane the oldest open batch's signatures.

use multibridge_contracts::Lane;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Registry};

/// How a fetch of a peer operator's signatures went (label `outcome`).
pub const FETCH_OUTCOMES: [&str; 5] = ["ok", "unreachable", "garbage", "unlocated", "refused"];

/// The phases of one attested step (label `phase`): reading the open requests from the store
/// and whether the destination handled them, composing their batches, signing this operator's,
/// fetching the others', and estimating and sending the batches due.
pub const STEP_PHASES: [&str; 5] = ["precheck", "compose", "sign", "collect", "send"];

/// How the pre-check of an attested step learned a nonce's state (label `how`): derived from
/// `lowerHandleNonce`/`upperHandleNonce`, or read one by one (`votingStatus`).
pub const PRECHECK_HOW: [&str; 2] = ["derived", "read"];

/// The `turn` label of `attested_batches_sent_total`: the sender's own turn, or a standby's.
pub const SEND_TURNS: [&str; 2] = ["own", "standby"];

/// The `outcome` label of `attestation_pages_written_total`.
pub const PAGE_WRITE_OUTCOMES: [&str; 2] = ["ok", "failed"];

/// The `outcome` label of `attestation_page_requests_total`.
pub const PAGE_REQUEST_OUTCOMES: [&str; 3] = ["served", "cached", "busy"];

/// The attested-batch metrics.
#[derive(Clone)]
pub struct AttestMetrics {
    signed: IntCounterVec,
    fetches: IntCounterVec,
    peer_signatures: IntCounterVec,
    sent: IntCounterVec,
    oldest_signatures: IntGaugeVec,
    oldest_age: IntGaugeVec,
    threshold: IntGaugeVec,
    step_seconds: HistogramVec,
    pages_written: IntCounterVec,
    precheck_nonces: IntCounterVec,
    recoveries: IntCounterVec,
    page_requests: IntCounterVec,
}

impl AttestMetrics {
    /// Register every series in `registry`, the label sets of `lanes` at 0.
    pub fn register(registry: &Registry, lanes: &[Lane]) -> Result<Self, prometheus::Error> {
        let f = crate::families::Families(registry);
        let metrics = Self {
            signed: f.counter(
                "attestations_signed_total",
                "Attested batches this operator signed (its lane leader signs every batch of confirmed requests)",
                &["lane"],
            )?,
            fetches: f.counter(
                "attestation_fetches_total",
                "Fetches of another operator's signatures from the location it publishes in the service registry: ok, unreachable, garbage (a signature not of that operator over the batch's digest, or an unreadable answer: skipped), unlocated (no location registered), refused (a location this relay does not fetch: plain http outside a devnet, an internal address, a file:// path not in voting.peer_stores)",
                &["lane", "operator", "outcome"],
            )?,
            peer_signatures: f.counter(
                "attestation_peer_signatures_total",
                "Valid signatures taken from other operators",
                &["lane", "operator"],
            )?,
            sent: f.counter(
                "attested_batches_sent_total",
                "executeAttested transactions this relay sent: turn=\"own\" (the batch's turn is this operator's) or \"standby\" (another operator's turn, sent after its timeout; a copy of a batch the other sent too executes nothing)",
                &["lane", "turn"],
            )?,
            oldest_signatures: f.int_gauge(
                "attestation_oldest_batch_signatures",
                "Signatures of current operators collected for the lane's oldest open batch (0: no open batch)",
                &["lane"],
            )?,
            oldest_age: f.int_gauge(
                "attestation_oldest_batch_age_seconds",
                "How long the lane's oldest open attested batch has been waiting since this relay composed it (0: none)",
                &["lane"],
            )?,
            threshold: f.int_gauge(
                "attestation_threshold",
                "Signatures an attested batch of the lane needs (the destination's threshold; 0: the lane votes)",
                &["lane"],
            )?,
            step_seconds: HistogramVec::new(
                HistogramOpts::new(
                    crate::families::name("attestation_step_seconds"),
                    "Seconds one phase of an attested step took (compose, sign, collect, send): a batch at the bottom of the vote window waits for its sender's step",
                )
                .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
                &["lane", "phase"],
            )?,
            pages_written: f.counter(
                "attestation_pages_written_total",
                "Pages of this operator's signatures written to its attestation store (voting.attestation_store: the location the registry publishes for an operator without HTTP): ok or failed (retried)",
                &["lane", "outcome"],
            )?,
            precheck_nonces: f.counter(
                "attestation_precheck_nonces_total",
                "Open requests the pre-check of an attested step looked at: how=\"derived\" (below lowerHandleNonce or at or above upperHandleNonce: no read) or \"read\" (between them: votingStatus)",
                &["lane", "how"],
            )?,
            recoveries: f.counter(
                "attestation_recoveries_total",
                "Peer signatures this relay recovered (public-key recovery, the curve arithmetic a page of signatures costs): at most one per batch per page, stopped at a peer's first bad one, bounded per step",
                &["lane"],
            )?,
            page_requests: f.counter(
                "attestation_page_requests_total",
                "Requests of GET /attestations/{lane} (peers' and users' reads of this operator's signatures): served (read from the store), cached (an answer under a second old), busy (refused: every turn taken)",
                &["outcome"],
            )?,
        };
        for outcome in PAGE_REQUEST_OUTCOMES {
            metrics.page_requests.with_label_values(&[outcome]).reset();
        }
        registry.register(Box::new(metrics.step_seconds.clone()))?;
        for lane in lanes.iter().map(|l| l.as_str()) {
            metrics.signed.with_label_values(&[lane]).reset();
            metrics.recoveries.with_label_values(&[lane]).reset();
            for turn in SEND_TURNS {
                metrics.sent.with_label_values(&[lane, turn]).reset();
            }
            for outcome in PAGE_WRITE_OUTCOMES {
                metrics
                    .pages_written
                    .with_label_values(&[lane, outcome])
                    .reset();
            }
            for how in PRECHECK_HOW {
                metrics
                    .precheck_nonces
                    .with_label_values(&[lane, how])
                    .reset();
            }
            metrics.oldest_signatures.with_label_values(&[lane]).set(0);
            metrics.oldest_age.with_label_values(&[lane]).set(0);
            metrics.threshold.with_label_values(&[lane]).set(0);
        }
        Ok(metrics)
    }

    /// Count a request of the signatures route (`outcome` one of [`PAGE_REQUEST_OUTCOMES`]).
    pub fn page_request(&self, outcome: &str) {
        self.page_requests.with_label_values(&[outcome]).inc();
    }

    /// Count `n` peer signatures recovered on `lane`.
    pub fn recovered(&self, lane: Lane, n: u64) {
        self.recoveries
            .with_label_values(&[lane.as_str()])
            .inc_by(n);
    }

    /// Count `n` batches signed on `lane`.
    pub fn signed(&self, lane: Lane, n: u64) {
        self.signed.with_label_values(&[lane.as_str()]).inc_by(n);
    }

    /// Count a fetch from `operator` (`outcome` one of [`FETCH_OUTCOMES`]).
    pub fn fetched(&self, lane: Lane, operator: &str, outcome: &str) {
        self.fetches
            .with_label_values(&[lane.as_str(), operator, outcome])
            .inc();
    }

    /// Count `n` valid signatures taken from `operator`.
    pub fn peer_signatures(&self, lane: Lane, operator: &str, n: u64) {
        self.peer_signatures
            .with_label_values(&[lane.as_str(), operator])
            .inc_by(n);
    }

    /// One `phase` (of [`STEP_PHASES`]) of an attested step on `lane` took `seconds`.
    pub fn step_phase(&self, lane: Lane, phase: &str, seconds: f64) {
        self.step_seconds
            .with_label_values(&[lane.as_str(), phase])
            .observe(seconds);
    }

    /// Count the nonces a pre-check on `lane` derived and read.
    pub fn prechecked(&self, lane: Lane, derived: u64, read: u64) {
        for (how, n) in PRECHECK_HOW.into_iter().zip([derived, read]) {
            self.precheck_nonces
                .with_label_values(&[lane.as_str(), how])
                .inc_by(n);
        }
    }

    /// Count a page of signatures written to the attestation store (`outcome` one of
    /// [`PAGE_WRITE_OUTCOMES`]).
    pub fn page_written(&self, lane: Lane, outcome: &str) {
        self.pages_written
            .with_label_values(&[lane.as_str(), outcome])
            .inc();
    }

    /// Count an attested batch sent on `lane`, in its sender's own turn or as a standby.
    pub fn sent(&self, lane: Lane, standby: bool) {
        let turn = if standby {
            SEND_TURNS[1]
        } else {
            SEND_TURNS[0]
        };
        self.sent.with_label_values(&[lane.as_str(), turn]).inc();
    }

    /// Publish the oldest open batch of `lane`: its signatures and age (`None`: no open batch),
    /// and the threshold.
    pub fn set_oldest(&self, lane: Lane, oldest: Option<(usize, u64)>, threshold: usize) {
        let (signatures, age) = oldest.unwrap_or((0, 0));
        let gauge = |g: &IntGaugeVec, v: u64| {
            g.with_label_values(&[lane.as_str()])
                .set(i64::try_from(v).unwrap_or(i64::MAX));
        };
        gauge(&self.oldest_signatures, signatures as u64);
        gauge(&self.oldest_age, age);
        gauge(&self.threshold, threshold as u64);
    }
}
