//! The voter of one lane: takes the requests that need this operator's vote from the store,
//! pre-checks them on the destination (`votingStatus`: already handled or already voted count as
//! success, not errors), groups the rest into batches and hands them to the lane's submitter;
//! reads the receipts back.
//!
//! Every outcome — a receipt's logs, the pre-check, a refused send, the submitter's tracking —
//! goes through [`Voter::settle`], which applies the one store transition, the metrics and the
//! in-memory record of the request together.
//!
//! | file | part |
//! |---|---|
//! | this file | [`Voter`]: `settle`, `step` (plan, estimate, send), the gas budget |
//! | `precheck.rs` | which stored requests need a vote now (standing by, the one `votingStatus` read) |
//! | `batch.rs` | batches by count and bytes, the vote budget, oversize refusals |
//! | `decode.rs` | the submitter's events, receipts, skips and refusals into outcomes |
//! | `reads.rs` | [`DestinationReads`] (a trait, faked in `tests/`) and [`BridgeReads`] |
//! | `pending.rs` | a vote in flight and its outcomes (who is first for a nonce: [`crate::turns`]) |
//!
//! A request the destination cannot execute yet (liquidity short, token locked, bridge paused)
//! stays open with its reason in the store and is retried alone, through the single entry point
//! whose simulation reverts while the condition holds — waiting costs no transaction.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, Bytes, U256};
use alloy::sol_types::SolCall;
use multibridge_contracts::bindings::Bridge;
use multibridge_contracts::{RejectReason, Request};
use multibridge_monitoring::{LaneMetrics, SkipReason};
use tokio::sync::mpsc;

use crate::chain::ChainError;
use crate::chain::sender::SendError;
use crate::chain::submitter::{GasPlan, Job, JobEvent, Submit, SubmitError};
use crate::store::{SharedStore, StoreError, StoredRequest, Transition};

mod attested;
mod batch;
mod decode;
mod nonce_seen;
mod pending;
mod precheck;
pub mod prepared;
mod reads;
pub use crate::turns::Committee;
use batch::{MAX_EXECUTE_BATCH, PlannedVote, Ready, Refusal};
pub use batch::{MAX_VOTE_BLOCK_SHARE, MAX_VOTE_BYTES, batches, is_oversize_refusal, nonce_ranges};
pub use pending::{Entry, Outcome, PendingVote, Seen};
pub use reads::{BridgeReads, DestinationReads};

#[cfg(test)]
mod tests;

/// Voter tuning (from `[voting]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VoterConfig {
    /// Most requests in one vote transaction (the bridge takes at most 64).
    pub batch_size: usize,
    /// How long to wait for more requests before sending a part-full batch.
    pub batch_wait: Duration,
    /// Pause before retrying a request the destination cannot execute yet.
    pub retry_after: Duration,
    /// Most vote transactions unmined at once.
    pub max_in_flight: usize,
    /// Most `executeAttested` transactions unmined at once (attested mode).
    pub attested_max_in_flight: usize,
    /// Percent added to the gas estimate.
    pub gas_margin_percent: u64,
    /// A request this operator is not among the first `threshold` for waits this long before
    /// it votes ([`Committee`]); zero: every operator votes at once.
    pub standby_after: Duration,
}

impl From<&crate::config::VotingSettings> for VoterConfig {
    fn from(v: &crate::config::VotingSettings) -> Self {
        Self {
            batch_size: v.batch_size,
            batch_wait: Duration::from_millis(v.batch_wait_ms),
            retry_after: Duration::from_secs(v.retry_after_secs),
            max_in_flight: v.max_in_flight,
            attested_max_in_flight: v.attested_max_in_flight,
            gas_margin_percent: v.gas_margin_percent,
            standby_after: Duration::from_secs(v.standby_after_secs),
        }
    }
}

impl Default for VoterConfig {
    fn default() -> Self {
        Self {
            batch_size: 32,
            batch_wait: Duration::from_millis(200),
            retry_after: Duration::from_secs(5),
            max_in_flight: 24,
            attested_max_in_flight: 64,
            gas_margin_percent: 5,
            standby_after: Duration::from_secs(5),
        }
    }
}

/// A voting step failure.
#[derive(Debug, thiserror::Error)]
pub enum VoterError {
    /// The destination could not be read.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The submitter failed.
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// This relay's key is not a registered operator of the destination bridge.
    #[error("{0} is not a registered operator of the destination bridge")]
    NotOperator(Address),
}

impl VoterError {
    /// Whether the next step may succeed without a person.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Chain(e) => e.is_retryable(),
            Self::Store(e) => e.is_retryable(),
            Self::Submit(e) => e.is_retryable(),
            Self::NotOperator(_) => false,
        }
    }

    /// The signer cannot pay for gas: sending waits until it is funded (nothing else stops).
    pub fn is_unfunded(&self) -> bool {
        matches!(
            self,
            Self::Submit(SubmitError::Send(SendError::InsufficientFunds(_)))
        )
    }

    /// The signer did not sign and may later (an HSM unplugged or hanging, KMS throttled):
    /// sending waits until a probe signature succeeds (nothing else stops).
    pub fn signer_unavailable(&self) -> Option<&crate::chain::signer::SignerError> {
        match self {
            Self::Submit(SubmitError::Send(SendError::Signer(e))) if e.is_retryable() => Some(e),
            _ => None,
        }
    }

    /// The fence refused a send: this replica does not lead the lane any more.
    pub fn is_fenced(&self) -> bool {
        matches!(self, Self::Submit(SubmitError::Send(SendError::Fenced(_))))
    }
}

/// What one step did (for logs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VoteStep {
    /// Requests voted in this step.
    pub sent: usize,
    /// Requests found already handled or already voted (no transaction).
    pub skipped: usize,
    /// Requests that became `handled`.
    pub handled: usize,
    /// Requests left waiting with a reason.
    pub waiting: usize,
}

/// How long a read of the destination's operators and threshold is used (both planners).
const COMMITTEE_FRESH_FOR: Duration = Duration::from_secs(10);

/// How a lane brings its requests to the threshold: the one executor (pre-check, send, track
/// receipts, settle) runs one of two planners.
pub enum Plan {
    /// Every operator votes ([`Voter::step`]'s vote planner).
    Votes,
    /// The operators sign batches and one transaction executes each ([`crate::attest`]).
    Attested(Box<crate::attest::Attestor>),
}

/// What became of one planned transaction at the send ([`Voter::try_send`]).
enum Tried {
    /// Sent, with this gas limit (the estimate capped at the block's).
    Sent(u64),
    /// Not sent: why (nothing left the relay, no nonce used).
    Refused(Refusal),
}

/// A request handled at the head but not yet at the confirmation depth is looked at again
/// after this long (it stays out of the voting window meanwhile).
const NOT_FINAL_RECHECK_SECS: u64 = 2;

/// A request this operator voted that is still not executed this long after it was indexed is
/// checked for being executable without more votes (audit L-2: a lowered threshold).
const EXECUTE_CHECK_AFTER_SECS: u64 = 30;

/// Most requests remembered as having run out of gas (past it the memory starts over: a
/// request then gets one more try before it is set aside).
const MAX_OUT_OF_GAS_REMEMBERED: usize = 4096;

/// How long a read of the destination's block gas limit is used.
const GAS_LIMIT_FRESH_FOR: Duration = Duration::from_secs(60);
/// Requests waiting for a condition get at most `1 / WAITING_ROOM_SHARE` of the transaction
/// slots of a step while fresh requests are there.
const WAITING_ROOM_SHARE: usize = 4;

/// Fewest requests expected to record that are voted in a batch of their own
/// ([`Entry::Record`]); fewer ride in the deciding batch (one transaction less, and the block
/// space a recording plan saves matters when blocks are full: in a backlog).
const MIN_RECORD_BATCH: usize = 8;

/// How long a read of the destination's latest block counts for whether its blocks are full
/// (about half a block at 1 s blocks).
const FULLNESS_FRESH_FOR: Duration = Duration::from_millis(500);

/// How often the vote window is read again while requests wait for it.
const WINDOW_RECHECK: Duration = Duration::from_secs(1);

/// The voter of one lane.
pub struct Voter<D, S> {
    bridge: Address,
    operator: Address,
    store: SharedStore,
    destination: D,
    submit: S,
    events: mpsc::UnboundedReceiver<JobEvent>,
    config: VoterConfig,
    /// Request nonce → its vote in flight.
    pending: BTreeMap<u64, PendingVote>,
    /// After a batch would revert or ran out of gas, send one by one until then to find the
    /// culprit.
    singles_until: Option<Instant>,
    /// Requests carried by a vote that ran out of gas on chain: voted again alone with twice the
    /// worst-case headroom; one that runs out again is set aside (`out_of_gas`).
    out_of_gas: std::collections::BTreeSet<u64>,
    /// Requests a vote planned to record skipped for gas (`GasBudgetTooLow`: it landed after the
    /// threshold was reached, with a recording vote's gas): voted again as deciding votes.
    decide_next: std::collections::BTreeSet<u64>,
    /// Test-only fault injection: vote a payload that differs from the observed one.
    tamper: bool,
    /// The destination's operators and threshold, and when they were read.
    committee: Option<(Committee, Instant)>,
    /// The destination's block gas limit, and when it was read.
    gas_limit: Option<(u64, Instant)>,
    /// What a native item needs left at its start on the destination bridge (its code does not
    /// change: read once).
    native_item_gas: Option<u64>,
    /// Whether the destination's latest block was full, and when it was read.
    full: Option<(bool, Instant)>,
    /// When a read last found the destination's latest block full.
    last_full: Option<tokio::time::Instant>,
    /// When this step began, found what is ready, and had its estimates: the "vote sent" log
    /// line says where a vote's time went.
    marks: StepMarks,
    /// The destination's `upperHandleNonce` as last read for the vote window.
    upper_seen: Option<u64>,
    /// The destination's `lowerHandleNonce` as a standby read it: whether it moved lately.
    lower_seen: nonce_seen::NonceSeen,
    /// Some requests are noted as waiting for the vote window: it is read again every
    /// [`WINDOW_RECHECK`] (when it last was) and they are released as soon as it moves.
    window_waits: Option<Instant>,
    /// The planner: votes, or attested batches.
    plan: Plan,
    /// The requests of the block the source's next head confirms, as the lane's indexer
    /// publishes them, and the last publication planned ([`prepared`]).
    upcoming: prepared::Upcoming,
    upcoming_seen: u64,
    /// Vote plans made for them before they were final.
    prepared: prepared::PreparedPlans,
    metrics: LaneMetrics,
}

impl<D: DestinationReads, S: Submit> Voter<D, S> {
    /// A voter for the lane of `metrics`, voting on `bridge` as `operator` through `submit`
    /// (whose transactions' events arrive on `events`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        bridge: Address,
        operator: Address,
        store: SharedStore,
        destination: D,
        submit: S,
        events: mpsc::UnboundedReceiver<JobEvent>,
        config: VoterConfig,
        metrics: LaneMetrics,
    ) -> Self {
        Self {
            bridge,
            operator,
            store,
            destination,
            submit,
            events,
            config,
            pending: BTreeMap::new(),
            singles_until: None,
            out_of_gas: std::collections::BTreeSet::new(),
            decide_next: std::collections::BTreeSet::new(),
            tamper: false,
            committee: None,
            gas_limit: None,
            native_item_gas: None,
            full: None,
            last_full: None,
            marks: StepMarks::default(),
            upper_seen: None,
            lower_seen: nonce_seen::NonceSeen::default(),
            window_waits: None,
            plan: Plan::Votes,
            upcoming: prepared::Upcoming::default(),
            upcoming_seen: 0,
            prepared: prepared::PreparedPlans::default(),
            metrics,
        }
    }

    /// Plan ahead the votes of the requests the lane's indexer publishes in `upcoming`.
    pub fn preparing(&mut self, upcoming: prepared::Upcoming) {
        self.upcoming = upcoming;
    }

    /// Execute through attested batches planned by `attestor` instead of voting.
    pub fn attest_with(&mut self, attestor: crate::attest::Attestor) {
        self.plan = Plan::Attested(Box::new(attestor));
    }

    /// The attested planner, in attested mode.
    fn attestor(&mut self) -> Option<&mut crate::attest::Attestor> {
        match &mut self.plan {
            Plan::Attested(attestor) => Some(attestor),
            Plan::Votes => None,
        }
    }

    /// Fault injection for tests of invariant 3: every vote carries a tampered amount.
    pub fn tamper_payloads(&mut self, on: bool) {
        self.tamper = on;
    }

    /// The signer's balance on the destination.
    pub async fn signer_balance(&self) -> Result<U256, VoterError> {
        Ok(self.destination.signer_balance().await?)
    }

    /// The batch wait configured.
    pub fn batch_wait(&self) -> Duration {
        self.config.batch_wait
    }

    /// Vote transactions in flight.
    pub fn in_flight(&self) -> usize {
        let mut txs: Vec<u64> = self.pending.values().map(|p| p.tx_nonce).collect();
        txs.sort_unstable();
        txs.dedup();
        txs.len()
    }

    /// A voting term starts: whatever the previous term had in flight is re-checked on the
    /// chain (the store reopens it, the pre-check finds out). Returns how many were reopened.
    pub fn start_term(&mut self) -> Result<usize, VoterError> {
        while self.events.try_recv().is_ok() {}
        self.pending.clear();
        self.singles_until = None;
        self.out_of_gas.clear();
        self.decide_next.clear();
        Ok(self.store.lock().reopen_in_flight(self.metrics.lane)?)
    }

    /// The one transition function: apply `outcome` for request `nonce` (learnt as `seen`) to
    /// the store, the metrics and the in-memory record.
    pub fn settle(
        &mut self,
        nonce: u64,
        outcome: Outcome,
        seen: Seen,
        step: &mut VoteStep,
    ) -> Result<(), VoterError> {
        self.settle_all(vec![(nonce, outcome)], seen, step)
    }

    /// [`settle`](Self::settle) for many requests, learnt the same way: their store transitions
    /// in one transaction.
    pub fn settle_all(
        &mut self,
        outcomes: Vec<(u64, Outcome)>,
        seen: Seen,
        step: &mut VoteStep,
    ) -> Result<(), VoterError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let lane = self.metrics.lane;
        let applied: Vec<(bool, Option<u64>)> = self.store.lock().in_transaction(|store| {
            outcomes
                .iter()
                .map(|(nonce, outcome)| {
                    // The latency is measured from the row's first indexing, read before it
                    // changes.
                    let observed_at = match outcome {
                        Outcome::Handled => store.observed_at(lane, *nonce)?,
                        _ => None,
                    };
                    let changed = store.apply(lane, *nonce, &transition_of(outcome))?;
                    Ok((changed, observed_at))
                })
                .collect()
        })?;
        for ((nonce, outcome), (changed, observed_at)) in outcomes.into_iter().zip(applied) {
            self.settled(nonce, outcome, seen, changed, observed_at, step);
        }
        Ok(())
    }

    /// The metrics and the in-memory record of a settled request (its row `changed`).
    fn settled(
        &mut self,
        nonce: u64,
        outcome: Outcome,
        seen: Seen,
        changed: bool,
        observed_at: Option<u64>,
        step: &mut VoteStep,
    ) {
        let lane = self.metrics.lane;
        if matches!(
            outcome,
            Outcome::Handled | Outcome::VotedByUs | Outcome::Rejected(..)
        ) {
            self.out_of_gas.remove(&nonce);
            self.decide_next.remove(&nonce);
        }
        match outcome {
            Outcome::Sent(vote) => {
                self.pending.insert(nonce, vote);
            }
            Outcome::Replaced(tx) => {
                if let Some(vote) = self.pending.get_mut(&nonce) {
                    vote.tx = tx;
                }
            }
            Outcome::Handled => {
                self.pending.remove(&nonce);
                if changed {
                    self.metrics.handled.inc();
                    step.handled = step.handled.saturating_add(1);
                    if let Some(observed_at) = observed_at {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_secs_f64())
                            .unwrap_or_default();
                        self.metrics
                            .handle_latency
                            .observe((now - observed_at as f64).max(0.0));
                    }
                    tracing::debug!(%lane, nonce, ?seen, "handled");
                }
                if matches!(seen, Seen::PreCheck | Seen::Refusal) {
                    self.metrics.skipped(SkipReason::AlreadyHandled);
                    step.skipped = step.skipped.saturating_add(1);
                }
            }
            Outcome::VotedByUs => {
                self.pending.remove(&nonce);
                if matches!(seen, Seen::PreCheck | Seen::Refusal) {
                    self.metrics.skipped(SkipReason::AlreadyVoted);
                    step.skipped = step.skipped.saturating_add(1);
                }
            }
            Outcome::StillVoted => {}
            Outcome::VoteGone => {
                self.pending.remove(&nonce);
            }
            Outcome::Waiting(reason, detail) => {
                self.pending.remove(&nonce);
                self.metrics.waiting.inc();
                step.waiting = step.waiting.saturating_add(1);
                tracing::warn!(%lane, nonce, reason = reason.as_str(), %detail, "request waits");
            }
            Outcome::Rejected(reason, detail) => {
                self.pending.remove(&nonce);
                tracing::error!(%lane, nonce, reason = reason.as_str(), %detail, "request set aside: this operator cannot vote it");
            }
        }
    }

    /// Read the events of the vote transactions, then pre-check and send what is ready.
    pub async fn step(&mut self) -> Result<VoteStep, VoterError> {
        let mut step = VoteStep::default();
        self.marks = StepMarks::default();
        self.track(&mut step)?;
        let limit = match self.plan {
            Plan::Votes => self.config.max_in_flight,
            Plan::Attested(_) => self.config.attested_max_in_flight,
        };
        let in_flight = self.in_flight();
        self.metrics
            .transactions_in_flight
            .set(i64::try_from(in_flight).unwrap_or(i64::MAX));
        self.metrics
            .transactions_in_flight_limit
            .set(i64::try_from(limit).unwrap_or(i64::MAX));
        let room = limit.saturating_sub(in_flight);
        if let Plan::Attested(_) = self.plan {
            // Attested mode signs (and serves) even while its own sends are full.
            self.step_attested(room, &mut step).await?;
            return Ok(step);
        }
        if room == 0 {
            return Ok(step);
        }
        let began = Instant::now();
        let Ready { vote, execute } = self.ready(room, &mut step).await?;
        if vote.is_empty() && execute.is_empty() {
            // Between blocks: plan what the next one will make final.
            self.prepare_upcoming(room).await;
            return Ok(step);
        }
        self.marks = StepMarks {
            began: Some(began),
            ready: Some(Instant::now()),
            estimated: None,
        };
        self.send_votes(vote, execute, room, &mut step).await?;
        Ok(step)
    }

    /// Plan the votes of `vote` and the executions of `execute` (keys holding the threshold)
    /// and send them, at most `room` transactions: batches by count, calldata bytes and gas,
    /// split when too large, a single request too large set aside.
    async fn send_votes(
        &mut self,
        vote: Vec<StoredRequest>,
        execute: Vec<Request>,
        room: usize,
        step: &mut VoteStep,
    ) -> Result<(), VoterError> {
        let chunk = self.chunk();
        let (gas_budget, _) = self.gas_budget().await?;
        // Requests whose keys hold the threshold already are executed first (one transaction);
        // requests that waited for a condition go alone through the single entry point (its
        // simulation reverts while the condition holds: no transaction); the rest in batches
        // bounded by count and by calldata bytes.
        // One that waited for the vote window only waited for its turn: it goes in a batch.
        let (waiting, fresh): (Vec<StoredRequest>, Vec<StoredRequest>) =
            vote.into_iter().partition(|r| {
                r.waiting
                    .is_some_and(|w| w != multibridge_contracts::WaitReason::VoteWindow)
            });
        let fresh: Vec<Request> = fresh.into_iter().map(|r| r.request).collect();
        let fresh_batches = self.fresh_batches(fresh, chunk).await?;
        let mut planned: Vec<(Vec<Request>, Entry)> = Vec::new();
        if !execute.is_empty() {
            planned.push((execute, Entry::Execute));
        }
        // Requests that wait for a condition (one transaction slot each) get at most a quarter
        // of the room while fresh requests are there, so however many wait — a user can make
        // many wait for liquidity — they never crowd out the lane; and at least one slot, so
        // they are never starved either.
        let waiting_slots = if fresh_batches.is_empty() {
            room
        } else {
            (room / WAITING_ROOM_SHARE).max(1)
        };
        planned.extend(
            waiting
                .into_iter()
                .take(waiting_slots)
                .map(|r| (vec![r.request], Entry::Single)),
        );
        planned.extend(fresh_batches);
        planned.truncate(room);
        // The estimates are reads: all at once, then the sends in order. A batch that is too
        // large for the destination (gas above the budget, or refused as too large) is split in
        // halves and estimated again; a single request that is too large is set aside.
        let inputs = self.inputs(&planned);
        let native_item_gas = self.native_item_gas().await?;
        let item_gas = |batch: &[Request]| multibridge_contracts::item_gas(batch, native_item_gas);
        // A plan made before the requests were final serves the same calldata.
        let prepared: Vec<Option<u64>> = inputs
            .iter()
            .zip(&planned)
            .map(|(input, (_, entry))| self.prepared.take(input, *entry))
            .collect();
        let from_plans: Vec<bool> = prepared.iter().map(Option::is_some).collect();
        let estimates = self
            .estimates(&planned, &inputs, prepared, native_item_gas)
            .await;
        self.marks.estimated = Some(Instant::now());
        let mut work: std::collections::VecDeque<PlannedVote> = planned
            .into_iter()
            .zip(inputs)
            .zip(estimates)
            .zip(from_plans)
            .map(
                |((((batch, entry), input), estimate), prepared)| PlannedVote {
                    batch,
                    entry,
                    input,
                    estimate: Some(estimate),
                    prepared,
                },
            )
            .collect();
        // Splitting may make more transactions than planned: never more than `room` in flight.
        let mut sent_txs = 0usize;
        while let Some(PlannedVote {
            batch,
            entry,
            input,
            estimate,
            prepared,
        }) = work.pop_front()
        {
            if sent_txs >= room {
                break;
            }
            let estimate = match estimate {
                Some(estimate) => estimate,
                None => self.estimate(input.clone(), entry, item_gas(&batch)).await,
            };
            // A request whose vote ran out of gas before goes again with twice the worst-case
            // headroom (it is alone: the voter sends singles for a while after an out-of-gas).
            let estimate = estimate.map(|gas| {
                if batch.iter().any(|r| self.out_of_gas.contains(&r.nonce)) {
                    gas.saturating_add(multibridge_contracts::ITEM_GAS)
                } else {
                    gas
                }
            });
            let budget = if batch.len() == 1 {
                u64::MAX
            } else {
                gas_budget
            };
            let refusal = match self
                .try_send(&batch, entry, input, estimate, budget, step)
                .await?
            {
                Tried::Sent(_) => {
                    sent_txs = sent_txs.saturating_add(1);
                    if prepared {
                        self.metrics.vote_plans_prepared_used.inc();
                    }
                    continue;
                }
                Tried::Refused(refusal) => refusal,
            };
            let too_large = match &refusal {
                Refusal::OverBudget(_) => true,
                Refusal::Node(e) => is_oversize_refusal(e),
            };
            if too_large && batch.len() > 1 {
                let (low, high) = batch.split_at(batch.len() / 2);
                tracing::info!(lane = %self.metrics.lane, nonce = %nonce_ranges(&batch.iter().map(|r| r.nonce).collect::<Vec<_>>()), refusal = %refusal, "vote batch too large for the destination: splitting it");
                for half in [high, low] {
                    let half = half.to_vec();
                    let input = self.input(&half, entry);
                    work.push_front(PlannedVote {
                        batch: half,
                        entry,
                        input,
                        estimate: None,
                        prepared: false,
                    });
                }
                continue;
            }
            match refusal {
                Refusal::Node(e) if !too_large => self.refused(&batch, entry, &e, step)?,
                refusal => {
                    // One request whose vote alone is too large: no vote of it can ever be sent.
                    for r in &batch {
                        self.settle(
                            r.nonce,
                            Outcome::Rejected(
                                RejectReason::Oversized,
                                format!(
                                    "its vote alone is too large for the destination: {refusal}"
                                ),
                            ),
                            Seen::Refusal,
                            step,
                        )?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The vote transactions of `fresh` (requests voted now, not waiting for a condition), in
    /// the order they are sent, at most `chunk` requests each: recording batches, deciding
    /// batches, and deciding batches planned by their simulation while the destination's
    /// blocks are full.
    async fn fresh_batches(
        &mut self,
        fresh: Vec<Request>,
        chunk: usize,
    ) -> Result<Vec<(Vec<Request>, Entry)>, VoterError> {
        // A vote expected to record (ranked before the deciding vote) is planned and sent apart
        // from one expected to decide: its gas limit need not cover executing (issue 54).
        // Only where enough of them record to fill a batch of their own (a backlog): a few
        // go in the deciding batch, which costs a transaction less than sending them apart.
        let recorders = self.recorders().await?;
        let (record, decide): (Vec<Request>, Vec<Request>) = fresh
            .into_iter()
            .partition(|r| recorders.as_ref().is_some_and(|c| self.records(c, r.nonce)));
        // Recording batches of at least MIN_RECORD_BATCH (none while sending one by one); a
        // smaller remainder rides in the deciding batches.
        let mut decide = decide;
        let mut record_batches = Vec::new();
        if chunk >= MIN_RECORD_BATCH {
            record_batches = batches(&record, chunk, MAX_VOTE_BYTES);
            if record_batches
                .last()
                .is_some_and(|b| b.len() < MIN_RECORD_BATCH)
            {
                decide.extend(record_batches.pop().unwrap_or_default());
            }
        } else {
            decide.extend(record);
        }
        decide.sort_by_key(|r| r.nonce);
        // While the destination's blocks are full, deciding votes are planned by what their
        // simulation does now (issue 54): every share of a block one reserves beyond its use
        // is kept from every other transaction, ours and the chain's other users'. Those a vote
        // planned so skipped for gas are planned as deciding (`decide_next`).
        let tight_plan =
            !decide.is_empty() && recorders.is_some() && self.destination_full().await?;
        let (tight, decide): (Vec<Request>, Vec<Request>) = decide
            .into_iter()
            .partition(|r| tight_plan && !self.decide_next.contains(&r.nonce));
        // The recording batches go first: a block takes an account's transactions in nonce
        // order, so a leading tip counts only if nothing of this step is sent before it.
        Ok(record_batches
            .into_iter()
            .map(|b| (b, Entry::Record))
            .chain(
                batches(&decide, chunk, MAX_VOTE_BYTES)
                    .into_iter()
                    .map(|b| (b, Entry::Batch)),
            )
            .chain(
                batches(&tight, chunk, MAX_VOTE_BYTES)
                    .into_iter()
                    .map(|b| (b, Entry::Tight)),
            )
            .collect())
    }

    /// How many requests a vote transaction carries now: one while the culprit of a batch that
    /// would revert or ran out of gas is looked for, else the configured batch size.
    fn chunk(&self) -> usize {
        if self.singles_until.is_some_and(|t| Instant::now() < t) {
            1
        } else {
            self.config.batch_size.clamp(1, 64)
        }
    }

    /// Plan the votes of the requests the lane's indexer published for the block the next head
    /// confirms, and keep their estimates for the send ([`prepared`]): the batches and calldata
    /// the send will make of them, if they are still all there is to vote then. Only requests
    /// this operator is first for, none in flight. A failure is left for the send to meet.
    async fn prepare_upcoming(&mut self, room: usize) {
        if !matches!(self.plan, Plan::Votes) {
            return;
        }
        let Some((upcoming, by)) = self.upcoming.due(&mut self.upcoming_seen) else {
            return;
        };
        let lane = self.metrics.lane;
        let by = tokio::time::Instant::from_std(by);
        let planned = match self.plan_ahead(upcoming, room, by).await {
            Ok(planned) => planned,
            Err(e) => {
                tracing::debug!(%lane, error = %e, "votes not planned ahead; planned when final");
                return;
            }
        };
        if planned > 0 {
            self.metrics.vote_plans_prepared.inc_by(planned as u64);
        }
    }

    /// [`prepare_upcoming`](Self::prepare_upcoming) of `upcoming`, at most `room` transactions,
    /// the estimates given up at `by`: how many plans were kept. What the block's own step reads
    /// too (the committee, whether the blocks are full) is read to the end whenever it is due: a
    /// read cut off here would be read again in the instant of the block, where every lane of the
    /// chain reads (after a quiet time, every lane's committee at once). Only the estimates, the
    /// work of a plan alone, never run into the block. Only deciding batches with room in the blocks
    /// ([`Entry::Batch`]): their plan simulates the executing path, whatever votes land before
    /// them; a recording or tight plan goes by what the vote does at `latest`, which before the
    /// block is final never shows another operator's vote.
    async fn plan_ahead(
        &mut self,
        upcoming: Vec<Request>,
        room: usize,
        by: tokio::time::Instant,
    ) -> Result<usize, VoterError> {
        let committee = self.committee().await?;
        let me = self.operator;
        let requests: Vec<Request> = upcoming
            .into_iter()
            .filter(|r| {
                !self.pending.contains_key(&r.nonce)
                    && committee.as_ref().is_none_or(|c| c.is_primary(r.nonce, me))
            })
            .collect();
        // A burst is planned at its block: the batches of a part of it would not be those sent.
        if requests.is_empty() || requests.len() > prepared::MAX_PREPARED_REQUESTS {
            return Ok(0);
        }
        let chunk = self.chunk();
        let mut planned = self.fresh_batches(requests, chunk).await?;
        planned.retain(|(_, entry)| *entry == Entry::Batch);
        planned.truncate(room);
        if planned.is_empty() {
            return Ok(0);
        }
        let native_item_gas = self.native_item_gas().await?;
        let inputs = self.inputs(&planned);
        let estimates = self.estimates(
            &planned,
            &inputs,
            vec![None; planned.len()],
            native_item_gas,
        );
        // Never into the block it plans for: the step would hold up that block's votes.
        let Ok(estimates) = tokio::time::timeout_at(by, estimates).await else {
            tracing::debug!(lane = %self.metrics.lane, "planning votes ahead took too long; planned when final");
            return Ok(0);
        };
        let mut kept = 0usize;
        for (((batch, entry), input), estimate) in planned.into_iter().zip(inputs).zip(estimates) {
            let nonces: Vec<u64> = batch.iter().map(|r| r.nonce).collect();
            match estimate {
                Ok(gas) => {
                    tracing::debug!(lane = %self.metrics.lane, nonce = %nonce_ranges(&nonces), ?entry, gas, "vote planned before its requests are final");
                    if self.prepared.keep(&input, entry, gas, batch) {
                        kept = kept.saturating_add(1);
                    }
                }
                Err(e) => {
                    tracing::debug!(lane = %self.metrics.lane, nonce = %nonce_ranges(&nonces), error = %e, "vote not planned ahead");
                }
            }
        }
        Ok(kept)
    }

    /// The gas a vote transaction may use (a share of the destination's block gas limit) and
    /// the block gas limit itself (read again every [`GAS_LIMIT_FRESH_FOR`]).
    async fn gas_budget(&mut self) -> Result<(u64, u64), VoterError> {
        let limit = match self.gas_limit {
            Some((limit, at)) if at.elapsed() < GAS_LIMIT_FRESH_FOR => limit,
            _ => {
                let limit = self.destination.latest_block_gas().await?.limit;
                self.gas_limit = Some((limit, Instant::now()));
                limit
            }
        };
        Ok((limit.saturating_mul(MAX_VOTE_BLOCK_SHARE) / 100, limit))
    }

    /// Whether the destination's latest block is full ([`reads::BlockGas::is_full`]), read at
    /// most every [`FULLNESS_FRESH_FOR`].
    async fn destination_full(&mut self) -> Result<bool, VoterError> {
        if let Some((full, at)) = self.full
            && at.elapsed() < FULLNESS_FRESH_FOR
        {
            return Ok(full);
        }
        let block = self.destination.latest_block_gas().await?;
        let (full, now) = (block.is_full(), Instant::now());
        self.full = Some((full, now));
        if full {
            self.last_full = Some(tokio::time::Instant::now());
        }
        // The same read answers `gas_budget` for its while.
        self.gas_limit = Some((block.limit, now));
        Ok(full)
    }

    /// Whether the destination's blocks were full at any read within `within` (a backlog's
    /// blocks run at 92-96 % on average, some below the mark: a standby must not take one
    /// block with room for the end of the queue).
    async fn full_within(&mut self, within: Duration) -> Result<bool, VoterError> {
        Ok(self.destination_full().await?
            || self.last_full.is_some_and(|at| at.elapsed() <= within))
    }

    /// What a native item needs left at its start on the destination bridge (read once).
    async fn native_item_gas(&mut self) -> Result<u64, VoterError> {
        if let Some(gas) = self.native_item_gas {
            return Ok(gas);
        }
        let gas = self.destination.native_item_gas().await?;
        self.native_item_gas = Some(gas);
        Ok(gas)
    }

    /// The calldata of each of `planned`'s vote transactions.
    fn inputs(&self, planned: &[(Vec<Request>, Entry)]) -> Vec<Bytes> {
        planned
            .iter()
            .map(|(batch, entry)| self.input(batch, *entry))
            .collect()
    }

    /// The gas limits of `planned`'s vote transactions (calldata `inputs`), all estimated at
    /// once but those `known` already; a native item needs `native_item_gas` left at its start.
    async fn estimates(
        &self,
        planned: &[(Vec<Request>, Entry)],
        inputs: &[Bytes],
        known: Vec<Option<u64>>,
        native_item_gas: u64,
    ) -> Vec<Result<u64, SubmitError>> {
        futures::future::join_all(inputs.iter().zip(planned).zip(known).map(
            |((input, (batch, entry)), known)| async move {
                match known {
                    Some(gas) => Ok(gas),
                    None => {
                        let item_gas = multibridge_contracts::item_gas(batch, native_item_gas);
                        self.estimate(input.clone(), *entry, item_gas).await
                    }
                }
            },
        ))
        .await
    }

    /// The gas limit of a vote with calldata `input` sent through `entry`, one of whose items
    /// may need `item_gas` left at its start to execute ([`multibridge_contracts::item_gas`]).
    async fn estimate(
        &self,
        input: Bytes,
        entry: Entry,
        item_gas: u64,
    ) -> Result<u64, SubmitError> {
        let (bridge, margin_percent) = (self.bridge, self.config.gas_margin_percent);
        let plan = match entry {
            Entry::Record | Entry::Tight => GasPlan::Record {
                bridge,
                margin_percent,
                item_gas,
            },
            _ => GasPlan::Vote {
                bridge,
                margin_percent,
                item_gas,
            },
        };
        self.submit.estimate(self.bridge, input, plan).await
    }

    /// The committee to tell recording votes by, when votes are ranked (standing by is on) and
    /// the threshold is above one: `None` plans every vote as deciding.
    async fn recorders(&mut self) -> Result<Option<Committee>, VoterError> {
        Ok(self.committee().await?.filter(|c| c.threshold > 1))
    }

    /// Whether this operator's vote of `nonce` is expected to record only: its rank comes
    /// before the deciding vote's (the threshold's last), and no earlier vote of it planned to
    /// record was skipped for gas (that one landed after the threshold: it decides now).
    fn records(&self, committee: &Committee, nonce: u64) -> bool {
        !self.decide_next.contains(&nonce)
            && committee
                .rank(nonce, self.operator)
                .is_some_and(|rank| rank.saturating_add(1) < committee.threshold)
    }

    /// The calldata of a vote (or execution) of `batch` through `entry`.
    fn input(&self, batch: &[Request], entry: Entry) -> Bytes {
        let payloads: Vec<Request> = batch
            .iter()
            .cloned()
            .map(|mut r| {
                if self.tamper {
                    r.amount = r.amount.saturating_add(alloy::primitives::U256::from(1));
                }
                r
            })
            .collect();
        // Normally the batch entry point, even for one request: there a request settled by the
        // other operators meanwhile is skipped (HandleSkipped) instead of reverting the vote.
        match (entry, payloads.first()) {
            (Entry::Single, Some(r)) => Bridge::handleValueTransferCall { r: r.clone() }
                .abi_encode()
                .into(),
            (Entry::Execute, _) => Bridge::executeHandlesCall { rs: payloads }
                .abi_encode()
                .into(),
            _ => Bridge::handleValueTransfersCall { rs: payloads }
                .abi_encode()
                .into(),
        }
    }

    /// The destination's committee, read again every [`COMMITTEE_FRESH_FOR`] (the one read
    /// both planners use).
    async fn committee_now(&mut self) -> Result<Committee, VoterError> {
        if let Some((committee, at)) = &self.committee
            && at.elapsed() < COMMITTEE_FRESH_FOR
        {
            return Ok(committee.clone());
        }
        let committee = self.destination.committee().await?;
        self.committee = Some((committee.clone(), Instant::now()));
        Ok(committee)
    }

    /// The committee the vote planner ranks by; `None` when standing by is off (everyone votes
    /// at once).
    async fn committee(&mut self) -> Result<Option<Committee>, VoterError> {
        if self.config.standby_after.is_zero() {
            return Ok(None);
        }
        self.committee_now().await.map(Some)
    }

    /// The one send path of both planners: take `estimate` (of `input`, the calldata of
    /// `batch` through `entry`), send it capped at the destination's block gas limit unless it
    /// is over `budget`, and say what became of it. An unfunded signer, a fence and anything
    /// that is not the destination's or a node's refusal are errors of the step.
    async fn try_send(
        &mut self,
        batch: &[Request],
        entry: Entry,
        input: Bytes,
        estimate: Result<u64, SubmitError>,
        budget: u64,
        step: &mut VoteStep,
    ) -> Result<Tried, VoterError> {
        match estimate {
            Ok(gas_limit) if gas_limit <= budget => {
                let block_gas = self.gas_limit.map_or(u64::MAX, |(limit, _)| limit);
                let gas_limit = gas_limit.min(block_gas);
                match self.send(batch, entry, input, gas_limit, step).await {
                    Ok(()) => Ok(Tried::Sent(gas_limit)),
                    // Refused by the node at the broadcast: nothing sent, no nonce used.
                    Err(VoterError::Submit(SubmitError::Send(SendError::Chain(
                        e @ ChainError::Rejected { .. },
                    )))) => Ok(Tried::Refused(Refusal::Node(e))),
                    Err(other) => Err(other),
                }
            }
            Ok(gas_limit) => Ok(Tried::Refused(Refusal::OverBudget(gas_limit))),
            Err(SubmitError::Send(SendError::WouldRevert(e))) if e.is_unfunded_refusal() => {
                // Sending waits until the key is funded; signing and serving go on.
                Err(SubmitError::Send(SendError::InsufficientFunds(self.operator)).into())
            }
            Err(SubmitError::Send(SendError::WouldRevert(e))) => {
                Ok(Tried::Refused(Refusal::Node(e)))
            }
            Err(other) => Err(other.into()),
        }
    }

    /// Send the vote transaction for `batch` (its calldata `input`).
    async fn send(
        &mut self,
        batch: &[Request],
        entry: Entry,
        input: Bytes,
        gas_limit: u64,
        step: &mut VoteStep,
    ) -> Result<(), VoterError> {
        let job = Job {
            to: self.bridge,
            input,
            gas_limit,
            lead: entry == Entry::Record,
        };
        let sent = self.submit.submit(job).await?;
        let vote = PendingVote {
            tx_nonce: sent.nonce,
            tx: sent.hash,
            entry,
        };
        let nonces: Vec<u64> = batch.iter().map(|r| r.nonce).collect();
        self.settle_all(
            nonces.iter().map(|n| (*n, Outcome::Sent(vote))).collect(),
            Seen::Tracking,
            step,
        )?;
        let (ready_ms, plan_ms, send_ms) = self.marks.split();
        tracing::debug!(lane = %self.metrics.lane, nonce = %nonce_ranges(&nonces), tx = %sent.hash, tx_nonce = sent.nonce, gas_limit, count = nonces.len(), ?entry, ready_ms, plan_ms, send_ms, "vote sent");
        step.sent = step.sent.saturating_add(batch.len());
        if !matches!(entry, Entry::Execute | Entry::Attested) {
            self.metrics.votes_sent.inc_by(batch.len() as u64);
        }
        if entry == Entry::Record {
            self.metrics.votes_recording.inc_by(batch.len() as u64);
        }
        if entry == Entry::Tight {
            self.metrics.votes_tight.inc_by(batch.len() as u64);
        }
        Ok(())
    }
}

/// When a vote step began, found what is ready and had its estimates (for the log).
#[derive(Debug, Default, Clone, Copy)]
struct StepMarks {
    began: Option<Instant>,
    ready: Option<Instant>,
    estimated: Option<Instant>,
}

impl StepMarks {
    /// Milliseconds spent finding what is ready, planning (estimates included) and since the
    /// estimates (every send of the step before this one included), as far as the marks tell
    /// (0 for a part without both its marks: an attested batch has none).
    fn split(&self) -> (u64, u64, u64) {
        let ms = |from: Option<Instant>, to: Option<Instant>| match (from, to) {
            (Some(from), Some(to)) => {
                u64::try_from(to.saturating_duration_since(from).as_millis()).unwrap_or(u64::MAX)
            }
            _ => 0,
        };
        let now = Some(Instant::now());
        (
            ms(self.began, self.ready),
            ms(self.ready, self.estimated),
            ms(self.estimated, now),
        )
    }
}

/// The store transition of an outcome.
fn transition_of(outcome: &Outcome) -> Transition {
    match outcome {
        Outcome::Sent(vote) => Transition::Sent { tx: vote.tx },
        Outcome::Replaced(tx) => Transition::Replaced { tx: *tx },
        Outcome::Handled => Transition::Handled,
        Outcome::VotedByUs => Transition::Voted,
        Outcome::StillVoted => Transition::Touched,
        Outcome::VoteGone => Transition::Reopened,
        Outcome::Waiting(reason, detail) => Transition::Waiting {
            reason: *reason,
            detail: detail.clone(),
        },
        Outcome::Rejected(reason, detail) => Transition::Rejected {
            reason: *reason,
            detail: detail.clone(),
        },
    }
}
