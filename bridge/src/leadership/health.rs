//! Whether this replica can serve the lanes it leads, and what it does when it cannot.
//!
//! A leader keeps its etcd lease as long as it reaches etcd, even when it cannot reach one of
//! its lane's chains or its signer fails: its operator's vote is then missing until the fault
//! ends, and with threshold = operators the lane stalls. So a leader that has been *unfit* — its
//! destination chain silent (owing this process an answer for the bound: [`Liveness`], so
//! neither the watcher's pause between probes nor a slow but answering RPC nor one hung
//! endpoint of several counts as silence), its source chain silent the same way or its lane
//! indexer failing since the start of its first failed step (a node that answers its head but not its logs: the
//! indexer reads nothing new, so it signs and votes nothing new; issue 52's soak put an attested
//! lane's batches 5 s late for the whole of such a cut, each waiting for the next operator's
//! turn), or its signer failing — for longer than `[etcd] step_down_after_secs` hands the lane
//! over, but only to a replica of its operator that reports it *can* serve (the `serving` flag
//! of its progress record, fresh): a replica with no healthy peer keeps the lane and keeps
//! trying, as before.
//! After handing over it holds off campaigning (1 s, doubling per handover up to a minute, back
//! to 1 s after a settled term) so two sick replicas never flap the lane between them; an unfit
//! replica does not campaign while a healthy peer exists.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use multibridge_chain::liveness::Liveness;
use multibridge_monitoring::Readiness;

use super::layout::ReplicaProgress;

/// Why a replica cannot serve its lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unfit {
    /// The destination chain has left a call unanswered.
    DestinationRpc,
    /// The source chain has left a call unanswered: nothing new is indexed, voted or signed.
    SourceRpc,
    /// The operator's signer fails.
    Signer,
}

impl Unfit {
    /// The stable label (`multibridge_leadership_handovers_total{reason}`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DestinationRpc => "destination_rpc",
            Self::SourceRpc => "source_rpc",
            Self::Signer => "signer",
        }
    }
}

/// Whether the operator's signer fails, and since its last signature (one per replica: every
/// lane signs with it). The voter of a leading lane reports what its sends see; a follower's
/// progress writer probes now and then. Like the destination's silence, the clock runs from the
/// last success, not from the first failure noticed.
#[derive(Debug, Clone, Default)]
pub struct SignerHealth(Arc<Mutex<SignerState>>);

#[derive(Debug, Default)]
struct SignerState {
    last_ok: Option<Instant>,
    failing_since: Option<Instant>,
}

impl SignerHealth {
    fn with<R>(&self, f: impl FnOnce(&mut SignerState) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The signer failed.
    pub fn failed(&self) {
        self.with(|s| {
            s.failing_since.get_or_insert_with(Instant::now);
        });
    }

    /// The signer signed.
    pub fn answered(&self) {
        self.with(|s| {
            s.last_ok = Some(Instant::now());
            s.failing_since = None;
        });
    }

    /// How long it has been failing, counted from its last signature (from the first failure
    /// if it never signed); `None`: it answers.
    pub fn failing_for(&self) -> Option<Duration> {
        self.with(|s| {
            s.failing_since.map(|since| {
                s.last_ok
                    .filter(|ok| *ok < since)
                    .unwrap_or(since)
                    .elapsed()
            })
        })
    }
}

/// What a lane's campaign asks before leading on or competing.
#[derive(Clone)]
pub struct ServeHealth {
    /// Whether the destination chain answers this process's calls.
    pub destination: Arc<Liveness>,
    /// Whether the source chain does and the lane's indexer reads it, or `None` where the
    /// lane's election also rules other pairs' lanes into the same chain, whose sources are
    /// other chains (a process serving several pairs).
    pub source: Option<SourceHealth>,
    /// The signer's.
    pub signer: SignerHealth,
    /// Unfit for this long hands the lane over.
    pub bound: Duration,
}

/// Whether a lane's source chain answers and its indexer reads it.
#[derive(Clone)]
pub struct SourceHealth {
    /// Whether the source chain answers this process's calls.
    pub chain: Arc<Liveness>,
    /// Readiness, where the lane's indexer records each step (ok or failed).
    pub readiness: Arc<Readiness>,
    /// The indexer's component (`indexer:<lane>`).
    pub indexer: String,
}

impl SourceHealth {
    /// How long the source has left a call unanswered or the indexer has failed (from the start
    /// of its first failed step since its last success), whichever is longer (`None`: neither).
    /// A slow step that succeeds is no failure, nor is the pause between two steps.
    fn silent_for(&self) -> Option<Duration> {
        let failing = self.readiness.failing_for(&self.indexer);
        self.chain.silent_for().max(failing)
    }
}

impl ServeHealth {
    /// Why this replica has been unable to serve for at least the bound, and for how long.
    pub fn unfit(&self) -> Option<(Unfit, Duration)> {
        let silent = Silent {
            destination: self.destination.silent_for(),
            source: self.source.as_ref().and_then(SourceHealth::silent_for),
        };
        unfit_for(silent, self.signer.failing_for(), self.bound)
    }
}

/// How long the destination has left a call unanswered and the source has (or its indexer
/// has failed, from its first failed step's start); `None`: it answers, or nothing was asked.
#[derive(Debug, Clone, Copy, Default)]
struct Silent {
    destination: Option<Duration>,
    source: Option<Duration>,
}

/// [`ServeHealth::unfit`] from its inputs: the chains' silence and the signer failing for
/// `signer`. The destination is named first (nothing reaches the lane), then the source.
fn unfit_for(
    silent: Silent,
    signer: Option<Duration>,
    bound: Duration,
) -> Option<(Unfit, Duration)> {
    let past = |age: Option<Duration>| age.filter(|age| *age >= bound);
    if let Some(silent) = past(silent.destination) {
        return Some((Unfit::DestinationRpc, silent));
    }
    if let Some(silent) = past(silent.source) {
        return Some((Unfit::SourceRpc, silent));
    }
    past(signer).map(|failing| (Unfit::Signer, failing))
}

/// A progress record this old (seconds, by the writers' clocks) says nothing about its replica
/// any more (records are written every 2 s).
pub const PEER_FRESH_SECS: u64 = 6;

/// Another replica (not `me`) whose fresh progress record says it can serve.
pub fn healthy_peer<'a>(
    records: &'a [ReplicaProgress],
    me: &str,
    now_unix: u64,
) -> Option<&'a ReplicaProgress> {
    records.iter().find(|r| {
        r.replica != me && r.serving == Some(true) && now_unix.abs_diff(r.at) <= PEER_FRESH_SECS
    })
}

/// First hold-off after a handover.
const HOLD_FIRST: Duration = Duration::from_secs(1);
/// Longest hold-off.
const HOLD_MAX: Duration = Duration::from_secs(60);
/// A term led this long without handing over resets the hold-off.
const SETTLED: Duration = Duration::from_secs(60);

/// The hold-off after handovers.
#[derive(Debug, Clone)]
pub struct HandoverBackoff {
    next: Duration,
    until: Option<Instant>,
    last: Option<Instant>,
}

impl Default for HandoverBackoff {
    fn default() -> Self {
        Self {
            next: HOLD_FIRST,
            until: None,
            last: None,
        }
    }
}

impl HandoverBackoff {
    /// A handover at `now`: hold off for the current step, and double the next.
    pub fn handed_over(&mut self, now: Instant) -> Duration {
        let hold = self.next;
        self.until = now.checked_add(hold);
        self.last = Some(now);
        self.next = self.next.saturating_mul(2).min(HOLD_MAX);
        hold
    }

    /// Whether this replica must not compete at `now`.
    pub fn holding(&self, now: Instant) -> bool {
        self.until.is_some_and(|until| now < until)
    }

    /// Leading and fit at `now`: a long enough quiet resets the hold-off.
    pub fn leading_fit(&mut self, now: Instant) {
        if self
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= SETTLED)
        {
            self.next = HOLD_FIRST;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_secs(3);

    fn record(replica: &str, serving: Option<bool>, at: u64) -> ReplicaProgress {
        ReplicaProgress {
            replica: replica.into(),
            leader: false,
            cursor: None,
            latest_nonce: None,
            handled: 0,
            at,
            serving,
        }
    }

    /// The destination silent for `destination`, the source for `source` (seconds).
    fn silent(destination: Option<u64>, source: Option<u64>) -> Silent {
        Silent {
            destination: destination.map(Duration::from_secs),
            source: source.map(Duration::from_secs),
        }
    }

    #[test]
    fn unfit_only_past_the_bound_and_the_destination_first() {
        let s = Duration::from_secs;
        assert_eq!(unfit_for(silent(Some(1), Some(1)), None, BOUND), None);
        assert_eq!(
            unfit_for(silent(None, None), None, BOUND),
            None,
            "nothing unanswered"
        );
        assert_eq!(
            unfit_for(silent(Some(3), Some(1)), None, BOUND),
            Some((Unfit::DestinationRpc, s(3)))
        );
        assert_eq!(unfit_for(silent(Some(1), Some(1)), Some(s(2)), BOUND), None);
        assert_eq!(
            unfit_for(silent(Some(1), Some(1)), Some(s(4)), BOUND),
            Some((Unfit::Signer, s(4)))
        );
        assert_eq!(
            unfit_for(silent(Some(5), Some(5)), Some(s(4)), BOUND).map(|u| u.0),
            Some(Unfit::DestinationRpc)
        );
    }

    #[test]
    fn every_reason_to_hand_over_is_a_label_the_metric_knows() {
        for unfit in [Unfit::DestinationRpc, Unfit::SourceRpc, Unfit::Signer] {
            assert!(
                multibridge_monitoring::metrics::HANDOVER_REASONS.contains(&unfit.as_str()),
                "{}",
                unfit.as_str()
            );
        }
    }

    #[test]
    fn a_silent_source_is_unfit_past_the_bound_before_the_signer() {
        let s = Duration::from_secs;
        assert_eq!(unfit_for(silent(Some(1), Some(2)), None, BOUND), None);
        assert_eq!(
            unfit_for(silent(Some(1), Some(3)), None, BOUND),
            Some((Unfit::SourceRpc, s(3)))
        );
        assert_eq!(
            unfit_for(silent(None, Some(4)), Some(s(9)), BOUND),
            Some((Unfit::SourceRpc, s(4))),
            "a destination that answers does not hide a silent source"
        );
        assert_eq!(
            unfit_for(silent(Some(0), None), Some(s(3)), BOUND).map(|u| u.0),
            Some(Unfit::Signer)
        );
    }

    #[test]
    fn a_source_whose_indexer_keeps_failing_is_unfit_while_the_chain_answers_its_head() {
        let readiness = Arc::new(Readiness::new(Duration::from_secs(10)));
        let indexer = "indexer:service-to-main".to_owned();
        let health = ServeHealth {
            destination: Arc::default(),
            source: Some(SourceHealth {
                chain: Arc::default(),
                readiness: readiness.clone(),
                indexer: indexer.clone(),
            }),
            signer: SignerHealth::default(),
            bound: Duration::from_millis(30),
        };
        readiness.ok(&indexer);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(
            health.unfit(),
            None,
            "a slow step that has not failed is no failure"
        );
        readiness.failed(&indexer, &"eth_getLogs: header not found");
        assert_eq!(
            health.unfit(),
            None,
            "the wait before the failed step is no failure"
        );
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(health.unfit().map(|u| u.0), Some(Unfit::SourceRpc));
        readiness.ok(&indexer);
        assert_eq!(health.unfit(), None);
    }

    #[test]
    fn a_failing_signer_counts_from_its_last_signature_until_it_answers() {
        let signer = SignerHealth::default();
        assert_eq!(signer.failing_for(), None);
        signer.failed();
        let first = signer.failing_for().unwrap();
        std::thread::sleep(Duration::from_millis(20));
        signer.failed();
        assert!(signer.failing_for().unwrap() >= first + Duration::from_millis(20));
        signer.answered();
        assert_eq!(signer.failing_for(), None);
        // Signed, then 30 ms later the first failure: the clock runs from the signature.
        std::thread::sleep(Duration::from_millis(30));
        signer.failed();
        assert!(signer.failing_for().unwrap() >= Duration::from_millis(30));
    }

    #[test]
    fn only_a_fresh_other_replica_that_says_it_serves_is_a_healthy_peer() {
        let now = 1_000;
        let records = [
            record("me", Some(true), now),
            record("silent", Some(false), now),
            record("old-version", None, now),
            record("stale", Some(true), now - PEER_FRESH_SECS - 1),
        ];
        assert!(healthy_peer(&records, "me", now).is_none());
        let mut with_peer = records.to_vec();
        with_peer.push(record("peer", Some(true), now - 2));
        assert_eq!(
            healthy_peer(&with_peer, "me", now).map(|r| r.replica.as_str()),
            Some("peer")
        );
    }

    #[test]
    fn handovers_hold_off_longer_each_time_until_a_settled_term() {
        let mut backoff = HandoverBackoff::default();
        let t0 = Instant::now();
        assert!(!backoff.holding(t0));
        assert_eq!(backoff.handed_over(t0), Duration::from_secs(1));
        assert!(backoff.holding(t0 + Duration::from_millis(500)));
        assert!(!backoff.holding(t0 + Duration::from_secs(1)));
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(backoff.handed_over(t1), Duration::from_secs(2));
        backoff.leading_fit(t1 + Duration::from_secs(10));
        let t2 = t1 + Duration::from_secs(20);
        assert_eq!(
            backoff.handed_over(t2),
            Duration::from_secs(4),
            "not settled"
        );
        for _ in 0..10 {
            backoff.handed_over(t2);
        }
        assert_eq!(backoff.handed_over(t2), HOLD_MAX);
        backoff.leading_fit(t2 + SETTLED);
        assert_eq!(backoff.handed_over(t2 + SETTLED), HOLD_FIRST);
    }
}
