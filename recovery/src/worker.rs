//! One lane's recovery worker: a tick reads the chains, decides, scans and re-queues.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use multibridge_contracts::{Lane, NonceState, Request};
use multibridge_monitoring::LaneMetrics;

use crate::detector::{StallDetector, Verdict};
use crate::scan::{ScanPlan, strides};

/// Recovery tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryConfig {
    /// Time between ticks (DESIGN default 5 s).
    pub interval: Duration,
    /// Most source blocks per `eth_getLogs` of a scan.
    pub stride_blocks: u64,
    /// Most requests handed to the voter per round.
    pub max_per_round: usize,
    /// Most claimed nonces remembered at once (the oldest are dropped, with a warning).
    pub max_claims: usize,
    /// How old a claim must be before a nonce the source has not assigned drops it: the
    /// source's `requestNonce` is read at the shared head, which may be a moment behind the
    /// block of a request its claim already names.
    pub bogus_claim_after: Duration,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            stride_blocks: 1_000,
            max_per_round: 1_024,
            max_claims: 4_096,
            bogus_claim_after: Duration::from_secs(30),
        }
    }
}

/// A recovery step failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RecoveryError {
    /// A chain read failed.
    #[error("recovery could not read {what}: {message}")]
    Chain {
        /// What was being read.
        what: &'static str,
        /// The underlying error.
        message: String,
        /// Whether the next tick may succeed.
        retryable: bool,
    },
    /// The voter's queue (the request store) refused the requests.
    #[error("recovery could not hand requests to the voter: {message}")]
    Queue {
        /// The underlying error.
        message: String,
        /// Whether the next tick may succeed.
        retryable: bool,
    },
}

impl RecoveryError {
    /// Whether the next tick may succeed without a person.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Chain { retryable, .. } | Self::Queue { retryable, .. } => *retryable,
        }
    }
}

/// The chain reads recovery needs for one lane.
pub trait LaneChains: Sync {
    /// The source bridge's `requestNonce` (next nonce to be assigned).
    fn request_nonce(&self) -> impl Future<Output = Result<u64, RecoveryError>> + Send;
    /// The destination bridge's `lowerHandleNonce`.
    fn lower_handle_nonce(&self) -> impl Future<Output = Result<u64, RecoveryError>> + Send;
    /// The destination bridge's `recoveryBlockNumber`: no unhandled request is older.
    fn recovery_block(&self) -> impl Future<Output = Result<u64, RecoveryError>> + Send;
    /// The newest source block final at the relay's confirmation depth.
    fn safe_head(&self) -> impl Future<Output = Result<u64, RecoveryError>> + Send;
    /// The source bridge's `requestNonce` at that block: the requests the relays may vote on.
    fn confirmed_request_nonce(&self) -> impl Future<Output = Result<u64, RecoveryError>> + Send;
    /// The requests emitted by the source bridge in `blocks` whose nonce is `wanted`, in nonce
    /// order, at most `limit` (the lowest): only what the round can use is ever held, so a
    /// dense history cannot make recovery's memory grow.
    fn requests_in(
        &self,
        blocks: RangeInclusive<u64>,
        wanted: &(dyn Fn(u64) -> bool + Sync),
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Request>, RecoveryError>> + Send;
    /// The destination state of each nonce, in order.
    fn voting_status(
        &self,
        nonces: &[u64],
    ) -> impl Future<Output = Result<Vec<NonceState>, RecoveryError>> + Send;
}

/// Where recovered requests go: the voter's queue.
pub trait VoteQueue {
    /// Make each request open for a vote (store it if unknown). Returns how many changed.
    fn requeue(&self, requests: &[Request]) -> Result<usize, RecoveryError>;
}

/// What one tick did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Round {
    /// The stall verdict of this tick.
    pub verdict: Verdict,
    /// Source blocks read.
    pub scanned_blocks: u64,
    /// Wanted requests found in the scan.
    pub found: usize,
    /// Found requests already handled on the destination.
    pub already_handled: usize,
    /// Found requests this operator already voted.
    pub already_voted: usize,
    /// Requests handed to the voter.
    pub requeued: usize,
    /// Claims seen handled in this tick.
    pub claims_resolved: usize,
}

/// The recovery worker of one lane.
pub struct Recovery {
    lane: Lane,
    config: RecoveryConfig,
    detector: StallDetector,
    /// At the last tick every pending request waited for the confirmation depth (so a request
    /// confirmed now was confirmed since).
    waited_for_depth: bool,
    /// The highest confirmed `requestNonce` read since the start or the last reset: an endpoint
    /// whose safe head lags behind the ones read before cannot make a confirmed request look
    /// unconfirmed again.
    confirmed_high: u64,
    /// Claimed nonce → when the claim arrived.
    claims: BTreeMap<u64, Instant>,
    metrics: LaneMetrics,
}

impl Recovery {
    /// A worker for the lane of `metrics` (rounds, stalls, re-queued requests and claims are
    /// counted there).
    pub fn new(config: RecoveryConfig, metrics: LaneMetrics) -> Self {
        Self {
            lane: metrics.lane,
            config,
            detector: StallDetector::new(),
            waited_for_depth: false,
            confirmed_high: 0,
            claims: BTreeMap::new(),
            metrics,
        }
    }

    /// The configured tick interval.
    pub fn interval(&self) -> Duration {
        self.config.interval
    }

    /// Claimed nonces not yet seen handled.
    pub fn open_claims(&self) -> Vec<u64> {
        self.claims.keys().copied().collect()
    }

    /// A user claimed `nonce` is stuck: the next tick looks for it whatever the stall verdict.
    pub fn claim(&mut self, nonce: u64) {
        self.metrics.claims_seen.inc();
        self.claims.entry(nonce).or_insert_with(Instant::now);
        while self.claims.len() > self.config.max_claims.max(1) {
            let oldest = self
                .claims
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(n, _)| *n);
            if let Some(n) = oldest {
                tracing::warn!(lane = %self.lane, nonce = n, "too many open claims: forgetting the oldest (the stall detector still covers it)");
                self.claims.remove(&n);
            }
        }
    }

    /// Forget what the previous ticks saw (e.g. on becoming leader): the next tick with pending
    /// requests recovers at once.
    pub fn reset(&mut self) {
        self.detector.reset();
        self.waited_for_depth = false;
        self.confirmed_high = 0;
    }

    /// One tick: observe, and recover what the stall verdict and the claims call for.
    pub async fn tick<C: LaneChains, Q: VoteQueue>(
        &mut self,
        chains: &C,
        queue: &Q,
    ) -> Result<Round, RecoveryError> {
        self.round(chains, queue, true).await
    }

    /// Recover and resolve the open claims only, leaving the stall detector alone (so claims can
    /// be followed more often than the interval without shortening what counts as a stall).
    pub async fn follow_claims<C: LaneChains, Q: VoteQueue>(
        &mut self,
        chains: &C,
        queue: &Q,
    ) -> Result<Round, RecoveryError> {
        self.round(chains, queue, false).await
    }

    async fn round<C: LaneChains, Q: VoteQueue>(
        &mut self,
        chains: &C,
        queue: &Q,
        observe: bool,
    ) -> Result<Round, RecoveryError> {
        self.metrics.recovery_rounds.inc();
        let request_nonce = chains.request_nonce().await?;
        let lower = chains.lower_handle_nonce().await?;
        let verdict = if observe {
            let verdict = self.detector.observe(request_nonce, lower);
            self.confirmed_stall(chains, verdict).await
        } else if request_nonce > lower {
            Verdict::Progressing {
                pending: request_nonce.saturating_sub(lower),
            }
        } else {
            Verdict::Idle
        };
        let mut round = Round {
            verdict,
            scanned_blocks: 0,
            found: 0,
            already_handled: 0,
            already_voted: 0,
            requeued: 0,
            claims_resolved: 0,
        };
        // Claims below the lower nonce are handled; above the request nonce they name nothing.
        let resolved: Vec<u64> = self.claims.range(..lower).map(|(n, _)| *n).collect();
        self.resolve(&resolved, &mut round);
        let grace = self.config.bogus_claim_after;
        let bogus: Vec<u64> = self
            .claims
            .range(request_nonce..)
            .filter(|(_, at)| at.elapsed() >= grace)
            .map(|(n, _)| *n)
            .collect();
        for n in bogus {
            tracing::warn!(lane = %self.lane, nonce = n, request_nonce, "claim names a nonce the source never assigned; ignored");
            self.claims.remove(&n);
        }
        let from_nonce = match verdict {
            Verdict::Stalled { lower, pending } => {
                self.metrics.recovery_stalls.inc();
                tracing::info!(lane = %self.lane, lower, pending, "lane stalled: recovering");
                Some(lower)
            }
            Verdict::Idle | Verdict::Progressing { .. } | Verdict::Arrived { .. } => None,
        };
        let plan = ScanPlan {
            from_nonce,
            below: request_nonce,
            claimed: self.claims.keys().copied().collect::<BTreeSet<u64>>(),
            cap: self.config.max_per_round.max(1),
        };
        if plan.is_empty() {
            return Ok(round);
        }
        let found = self.scan(chains, &plan, &mut round).await?;
        round.found = found.len();
        if found.is_empty() {
            return Ok(round);
        }
        let nonces: Vec<u64> = found.iter().map(|r| r.nonce).collect();
        let states = chains.voting_status(&nonces).await?;
        let mut open = Vec::new();
        let mut handled = Vec::new();
        for (request, state) in found.into_iter().zip(states) {
            match state {
                NonceState::Handled => {
                    round.already_handled = round.already_handled.saturating_add(1);
                    handled.push(request.nonce);
                }
                NonceState::VotedByUs => {
                    round.already_voted = round.already_voted.saturating_add(1);
                }
                NonceState::Open => open.push(request),
            }
        }
        self.resolve(&handled, &mut round);
        if !open.is_empty() {
            round.requeued = queue.requeue(&open)?;
            self.metrics.recovery_requeued.inc_by(round.requeued as u64);
        }
        if round.requeued > 0 {
            tracing::info!(
                lane = %self.lane,
                first = open.first().map(|r| r.nonce),
                count = open.len(),
                requeued = round.requeued,
                "recovered requests handed to the voter"
            );
        }
        Ok(round)
    }

    /// A stall the detector reads from the latest `requestNonce` is one only if a request it
    /// names is confirmed: while every pending request is above the confirmation depth the
    /// relays wait for the depth, not for recovery (on a chain of 12 s blocks, or `finalized`,
    /// a request waits several ticks for it, and each was a scan of the source that could find
    /// nothing). And where the last tick found every pending request waiting for the depth, a
    /// request confirmed now was confirmed since and is being handled (the relays vote it
    /// within a block or two): no stall before the next tick (calling it one logged a stall
    /// after nearly every quiet spell on such a chain). Read only at a stall; a failed read
    /// leaves the stall as it is.
    async fn confirmed_stall<C: LaneChains>(&mut self, chains: &C, verdict: Verdict) -> Verdict {
        let waited_for_depth = std::mem::take(&mut self.waited_for_depth);
        let Verdict::Stalled { lower, pending } = verdict else {
            return verdict;
        };
        let read = chains.confirmed_request_nonce().await;
        if let Ok(confirmed) = &read {
            self.confirmed_high = self.confirmed_high.max(*confirmed);
        }
        match read.map(|_| self.confirmed_high) {
            Ok(confirmed) if confirmed <= lower => {
                tracing::debug!(lane = %self.lane, lower, pending, confirmed, "pending requests wait for the confirmation depth: no stall");
                self.waited_for_depth = true;
                Verdict::Progressing { pending }
            }
            Ok(confirmed) if waited_for_depth => {
                tracing::debug!(lane = %self.lane, lower, pending, confirmed, "pending requests confirmed since the last tick: no stall yet");
                Verdict::Progressing { pending }
            }
            Ok(_) => verdict,
            Err(e) => {
                tracing::debug!(lane = %self.lane, error = %e, "cannot read the confirmed requestNonce: taken as a stall");
                verdict
            }
        }
    }

    fn resolve(&mut self, nonces: &[u64], round: &mut Round) {
        for n in nonces {
            if let Some(at) = self.claims.remove(n) {
                tracing::info!(lane = %self.lane, nonce = n, after_ms = at.elapsed().as_millis() as u64, "claimed request is handled");
                round.claims_resolved = round.claims_resolved.saturating_add(1);
                self.metrics.claims_resolved.inc();
            }
        }
    }

    /// Read the source from the destination's recovery block up to the safe head, stride by
    /// stride, keeping the wanted requests, until the plan is satisfied or the head reached.
    async fn scan<C: LaneChains>(
        &self,
        chains: &C,
        plan: &ScanPlan,
        round: &mut Round,
    ) -> Result<Vec<Request>, RecoveryError> {
        let from = chains.recovery_block().await?;
        let head = chains.safe_head().await?;
        let mut found: BTreeMap<u64, Request> = BTreeMap::new();
        for blocks in strides(from, head, self.config.stride_blocks) {
            let width = blocks
                .end()
                .saturating_sub(*blocks.start())
                .saturating_add(1);
            let room = plan.cap.saturating_sub(found.len());
            let wanted = |nonce: u64| plan.wants(nonce) && !found.contains_key(&nonce);
            let new = chains.requests_in(blocks, &wanted, room).await?;
            for request in new {
                found.entry(request.nonce).or_insert(request);
            }
            round.scanned_blocks = round.scanned_blocks.saturating_add(width);
            if plan.done(found.len()) {
                break;
            }
        }
        // Lowest nonces first: they hold the lane's lower handle nonce back.
        Ok(found.into_values().take(plan.cap).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A lane whose requests sit at known blocks; the destination's view is a set of handled
    /// nonces and a set voted by this operator.
    #[derive(Default)]
    struct FakeLane {
        /// (nonce, source block)
        requests: Vec<(u64, u64)>,
        handled: BTreeSet<u64>,
        voted: BTreeSet<u64>,
        recovery_block: u64,
        safe_head: u64,
        /// Every `requests_in` range asked for.
        scans: Mutex<Vec<RangeInclusive<u64>>>,
    }

    impl FakeLane {
        fn with_requests(n: u64, per_block: u64) -> Self {
            Self {
                requests: (0..n).map(|i| (i, 10 + i / per_block)).collect(),
                recovery_block: 10,
                safe_head: 10 + n / per_block + 5,
                ..Self::default()
            }
        }
        fn lower(&self) -> u64 {
            (0..).find(|n| !self.handled.contains(n)).unwrap()
        }
        fn scanned(&self) -> Vec<RangeInclusive<u64>> {
            self.scans.lock().unwrap().clone()
        }
    }

    impl LaneChains for FakeLane {
        async fn request_nonce(&self) -> Result<u64, RecoveryError> {
            Ok(self.requests.len() as u64)
        }
        async fn lower_handle_nonce(&self) -> Result<u64, RecoveryError> {
            Ok(self.lower())
        }
        async fn recovery_block(&self) -> Result<u64, RecoveryError> {
            Ok(self.recovery_block)
        }
        async fn safe_head(&self) -> Result<u64, RecoveryError> {
            Ok(self.safe_head)
        }
        async fn confirmed_request_nonce(&self) -> Result<u64, RecoveryError> {
            Ok(self
                .requests
                .iter()
                .filter(|(_, block)| *block <= self.safe_head)
                .count() as u64)
        }
        async fn requests_in(
            &self,
            blocks: RangeInclusive<u64>,
            wanted: &(dyn Fn(u64) -> bool + Sync),
            limit: usize,
        ) -> Result<Vec<Request>, RecoveryError> {
            self.scans.lock().unwrap().push(blocks.clone());
            Ok(self
                .requests
                .iter()
                .filter(|(n, b)| blocks.contains(b) && wanted(*n))
                .take(limit)
                .map(|(n, b)| request(*n, *b))
                .collect())
        }
        async fn voting_status(&self, nonces: &[u64]) -> Result<Vec<NonceState>, RecoveryError> {
            Ok(nonces
                .iter()
                .map(|n| {
                    if self.handled.contains(n) {
                        NonceState::Handled
                    } else if self.voted.contains(n) {
                        NonceState::VotedByUs
                    } else {
                        NonceState::Open
                    }
                })
                .collect())
        }
    }

    fn request(nonce: u64, block: u64) -> Request {
        use alloy::primitives::{Address, B256, Bytes, U256};
        Request {
            nonce,
            kind: 0,
            from: Address::ZERO,
            to: Address::ZERO,
            token: Address::ZERO,
            amount: U256::from(1),
            fee: U256::ZERO,
            extraData: Bytes::new(),
            srcChainId: U256::from(1),
            srcBridge: Address::ZERO,
            srcTxHash: B256::ZERO,
            srcBlockNumber: block,
            srcLogIndex: 0,
        }
    }

    #[derive(Default)]
    struct FakeQueue(Mutex<Vec<u64>>);

    impl VoteQueue for FakeQueue {
        fn requeue(&self, requests: &[Request]) -> Result<usize, RecoveryError> {
            self.0
                .lock()
                .unwrap()
                .extend(requests.iter().map(|r| r.nonce));
            Ok(requests.len())
        }
    }

    /// Metrics on a private registry (what a relay would export).
    fn lane_metrics() -> LaneMetrics {
        multibridge_monitoring::Metrics::new(&Lane::ALL, 1)
            .unwrap()
            .lane(Lane::MainToService)
    }

    fn config(stride: u64, cap: usize) -> RecoveryConfig {
        RecoveryConfig {
            stride_blocks: stride,
            max_per_round: cap,
            bogus_claim_after: Duration::ZERO,
            ..RecoveryConfig::default()
        }
    }

    #[tokio::test]
    async fn a_claim_above_the_request_nonce_is_kept_while_young() {
        let lane = FakeLane::with_requests(10, 2);
        let queue = FakeQueue::default();
        let mut r = Recovery::new(RecoveryConfig::default(), lane_metrics());
        r.claim(10); // the next request: its block may be newer than the head read
        r.tick(&lane, &queue).await.unwrap();
        assert_eq!(r.open_claims(), vec![10], "a young claim is not dropped");
    }

    #[tokio::test]
    async fn a_stalled_lane_requeues_exactly_the_unhandled_unvoted_requests() {
        let mut lane = FakeLane::with_requests(20, 4);
        lane.handled = [0, 1, 2, 5, 9].into_iter().collect();
        lane.voted = [3, 7].into_iter().collect();
        let queue = FakeQueue::default();
        let mut r = Recovery::new(config(3, 100), lane_metrics());
        let round = r.tick(&lane, &queue).await.unwrap();
        assert_eq!(
            round.verdict,
            Verdict::Stalled {
                pending: 17,
                lower: 3
            }
        );
        let expected: Vec<u64> = (3..20).filter(|n| ![5, 9, 3, 7].contains(n)).collect();
        assert_eq!(*queue.0.lock().unwrap(), expected);
        assert_eq!(round.already_handled, 2);
        assert_eq!(round.already_voted, 2);
        assert_eq!(round.requeued, expected.len());
    }

    #[tokio::test]
    async fn scans_start_at_the_recovery_block_in_bounded_strides_and_stop_when_all_are_found() {
        let lane = FakeLane::with_requests(8, 1); // nonce n at block 10 + n; head 23
        let queue = FakeQueue::default();
        let mut r = Recovery::new(config(3, 100), lane_metrics());
        let round = r.tick(&lane, &queue).await.unwrap();
        let scans = lane.scanned();
        assert_eq!(*scans[0].start(), 10, "from recoveryBlockNumber");
        assert!(scans.iter().all(|s| s.end() - s.start() < 3), "{scans:?}");
        // Nonces 0..8 sit in blocks 10..=17: the stride 16..=18 finds the last; 19.. not read.
        assert_eq!(scans.last().unwrap(), &(16..=18));
        assert_eq!(round.scanned_blocks, 9);
        assert_eq!(queue.0.lock().unwrap().len(), 8);
    }

    #[tokio::test]
    async fn a_round_is_capped_lowest_nonces_first() {
        let lane = FakeLane::with_requests(50, 10);
        let queue = FakeQueue::default();
        let mut r = Recovery::new(config(100, 16), lane_metrics());
        let round = r.tick(&lane, &queue).await.unwrap();
        assert_eq!(round.requeued, 16);
        assert_eq!(*queue.0.lock().unwrap(), (0..16).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_progressing_lane_is_not_scanned_but_a_stalled_one_is() {
        let mut lane = FakeLane::with_requests(10, 2);
        let queue = FakeQueue::default();
        let mut r = Recovery::new(config(100, 100), lane_metrics());
        r.tick(&lane, &queue).await.unwrap(); // first tick: recovers at once
        let scans_after_first = lane.scanned().len();
        lane.handled = [0, 1].into_iter().collect();
        let round = r.tick(&lane, &queue).await.unwrap();
        assert_eq!(round.verdict, Verdict::Progressing { pending: 8 });
        assert_eq!(
            lane.scanned().len(),
            scans_after_first,
            "no scan while progressing"
        );
        let round = r.tick(&lane, &queue).await.unwrap();
        assert!(matches!(round.verdict, Verdict::Stalled { lower: 2, .. }));
        assert!(lane.scanned().len() > scans_after_first);
    }

    #[tokio::test]
    async fn requests_waiting_for_the_confirmation_depth_are_no_stall() {
        // Four requests mined, two of them confirmed; the two confirmed are handled.
        let mut lane = FakeLane::with_requests(4, 1);
        lane.safe_head = 11;
        lane.handled = [0, 1].into_iter().collect();
        let queue = FakeQueue::default();
        let mut r = Recovery::new(config(100, 100), lane_metrics());
        for tick in 0..3 {
            let round = r.tick(&lane, &queue).await.unwrap();
            assert_eq!(
                round.verdict,
                Verdict::Progressing { pending: 2 },
                "tick {tick}"
            );
        }
        assert!(lane.scanned().is_empty(), "nothing confirmed to look for");
        // The third is confirmed: being handled, no stall at the tick that first sees it...
        lane.safe_head = 12;
        let round = r.tick(&lane, &queue).await.unwrap();
        assert_eq!(round.verdict, Verdict::Progressing { pending: 2 });
        assert!(
            lane.scanned().is_empty(),
            "confirmed only since the last tick"
        );
        // ...and still not handled a tick later: a stall.
        let round = r.tick(&lane, &queue).await.unwrap();
        assert!(matches!(round.verdict, Verdict::Stalled { lower: 2, .. }));
        assert!(!lane.scanned().is_empty());
    }

    #[tokio::test]
    async fn a_confirmed_request_stays_confirmed_when_a_lagging_endpoint_says_otherwise() {
        let mut lane = FakeLane::with_requests(3, 1);
        lane.handled = [0, 1].into_iter().collect();
        let queue = FakeQueue::default();
        let mut r = Recovery::new(config(100, 100), lane_metrics());
        // Nonce 2 (block 12) waits for the depth, then one endpoint shows it confirmed...
        lane.safe_head = 11;
        r.tick(&lane, &queue).await.unwrap();
        lane.safe_head = 12;
        assert_eq!(
            r.tick(&lane, &queue).await.unwrap().verdict,
            Verdict::Progressing { pending: 1 },
            "confirmed since the last tick"
        );
        // ...and the next tick reads one whose safe head lags: still confirmed, still pending.
        lane.safe_head = 11;
        assert!(matches!(
            r.tick(&lane, &queue).await.unwrap().verdict,
            Verdict::Stalled { lower: 2, .. }
        ));
    }

    #[tokio::test]
    async fn a_request_after_a_quiet_spell_is_no_stall_at_its_confirmation_but_one_a_tick_later() {
        // A lane at rest: everything handled.
        let mut lane = FakeLane::with_requests(2, 1);
        lane.safe_head = 11;
        lane.handled = [0, 1].into_iter().collect();
        let queue = FakeQueue::default();
        let mut r = Recovery::new(config(100, 100), lane_metrics());
        assert_eq!(r.tick(&lane, &queue).await.unwrap().verdict, Verdict::Idle);
        // A request comes, waits for the depth a tick, is confirmed the next.
        lane.requests.push((2, 12));
        assert!(matches!(
            r.tick(&lane, &queue).await.unwrap().verdict,
            Verdict::Arrived { .. }
        ));
        assert_eq!(
            r.tick(&lane, &queue).await.unwrap().verdict,
            Verdict::Progressing { pending: 1 },
            "waiting for the depth"
        );
        lane.safe_head = 12;
        assert_eq!(
            r.tick(&lane, &queue).await.unwrap().verdict,
            Verdict::Progressing { pending: 1 },
            "confirmed since the last tick: being handled"
        );
        assert!(
            lane.scanned().is_empty(),
            "no scan for a request being handled"
        );
        // Still unhandled a tick later: a stall.
        assert!(matches!(
            r.tick(&lane, &queue).await.unwrap().verdict,
            Verdict::Stalled { lower: 2, .. }
        ));
        assert!(!lane.scanned().is_empty());
    }

    #[tokio::test]
    async fn a_claim_is_recovered_at_once_while_progressing_and_resolved_when_handled() {
        let mut lane = FakeLane::with_requests(10, 2);
        let queue = FakeQueue::default();
        let mut r = Recovery::new(config(100, 100), lane_metrics());
        lane.handled = [0].into_iter().collect();
        r.tick(&lane, &queue).await.unwrap();
        queue.0.lock().unwrap().clear();
        lane.handled = [0, 1, 2].into_iter().collect();
        r.claim(7);
        r.claim(42); // never assigned
        let round = r.tick(&lane, &queue).await.unwrap();
        assert!(matches!(round.verdict, Verdict::Progressing { .. }));
        assert_eq!(*queue.0.lock().unwrap(), vec![7], "only the claimed nonce");
        assert_eq!(r.open_claims(), vec![7], "the bogus claim is dropped");
        lane.handled.insert(7);
        let round = r.tick(&lane, &queue).await.unwrap();
        assert_eq!(round.claims_resolved, 1);
        assert!(r.open_claims().is_empty());
    }

    #[tokio::test]
    async fn nothing_is_requeued_when_everything_pending_is_already_voted_by_us() {
        let mut lane = FakeLane::with_requests(6, 2);
        lane.voted = (0..6).collect();
        let queue = FakeQueue::default();
        let mut r = Recovery::new(config(100, 100), lane_metrics());
        let round = r.tick(&lane, &queue).await.unwrap();
        assert_eq!(round.already_voted, 6);
        assert_eq!(round.requeued, 0);
        assert!(queue.0.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_idle_lane_reads_two_nonces_and_nothing_else() {
        let mut lane = FakeLane::with_requests(4, 2);
        lane.handled = (0..4).collect();
        let queue = FakeQueue::default();
        let mut r = Recovery::new(config(100, 100), lane_metrics());
        let round = r.tick(&lane, &queue).await.unwrap();
        assert_eq!(round.verdict, Verdict::Idle);
        assert!(lane.scanned().is_empty());
    }

    #[tokio::test]
    async fn a_request_after_a_rest_is_scanned_for_only_once_it_waited_a_whole_interval() {
        let mut lane = FakeLane::with_requests(5, 1);
        lane.handled = (0..4).collect();
        lane.requests.truncate(4);
        let queue = FakeQueue::default();
        let mut r = Recovery::new(config(100, 100), lane_metrics());
        assert_eq!(r.tick(&lane, &queue).await.unwrap().verdict, Verdict::Idle);
        // Nonce 4 is requested after that tick: young, not scanned for.
        lane.requests.push((4, 14));
        let round = r.tick(&lane, &queue).await.unwrap();
        assert_eq!(round.verdict, Verdict::Arrived { pending: 1 });
        assert!(
            lane.scanned().is_empty(),
            "a young request is the indexer's"
        );
        // Still unhandled a tick later: recovered.
        let round = r.tick(&lane, &queue).await.unwrap();
        assert_eq!(
            round.verdict,
            Verdict::Stalled {
                pending: 1,
                lower: 4
            }
        );
        assert_eq!(*queue.0.lock().unwrap(), vec![4]);
    }

    #[tokio::test]
    async fn following_claims_neither_scans_the_stalled_range_nor_moves_the_detector() {
        let lane = FakeLane::with_requests(10, 2);
        let queue = FakeQueue::default();
        let mut r = Recovery::new(config(100, 100), lane_metrics());
        r.claim(4);
        let round = r.follow_claims(&lane, &queue).await.unwrap();
        assert_eq!(*queue.0.lock().unwrap(), vec![4], "only the claim");
        assert!(matches!(round.verdict, Verdict::Progressing { .. }));
        // The detector saw no tick yet: the first real tick still recovers at once.
        let round = r.tick(&lane, &queue).await.unwrap();
        assert!(matches!(round.verdict, Verdict::Stalled { lower: 0, .. }));
    }

    #[test]
    fn claims_are_bounded_oldest_first() {
        let mut r = Recovery::new(
            RecoveryConfig {
                max_claims: 2,
                ..RecoveryConfig::default()
            },
            lane_metrics(),
        );
        r.claim(5);
        std::thread::sleep(Duration::from_millis(2));
        r.claim(6);
        std::thread::sleep(Duration::from_millis(2));
        r.claim(7);
        assert_eq!(r.open_claims(), vec![6, 7]);
    }
}
