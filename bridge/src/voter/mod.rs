//! The voter of one lane: takes the requests that need this operator's vote from the store,
//! pre-checks them on the destination (`votingStatus`: already handled or already voted count as
//! success, not errors), groups the rest into batches and hands them to the lane's submitter;
//! reads the receipts back.
//!
//! Every outcome — a receipt's logs, the pre-check, a refused send, the submitter's tracking —
//! goes through [`Voter::settle`], which applies the one store transition, the metrics and the
//! in-memory record of the request together. The destination reads and the submitter are
//! behind small traits ([`DestinationReads`], [`Submit`]) so each decision is unit-tested with
//! fakes (`tests.rs`).
//!
//! A request the destination cannot execute yet (liquidity short, token locked, bridge paused)
//! stays open with its reason in the store and is retried alone, through the single entry point
//! whose simulation reverts while the condition holds — waiting costs no transaction.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, Bytes, U256};
use alloy::rpc::types::TransactionReceipt;
use alloy::sol_types::SolCall;
use alloy::transports::RpcError;
use multibridge_contracts::bindings::Bridge::{self, BridgeErrors};
use multibridge_contracts::{
    NonceState, RejectReason, Request, RequestStatus, WaitReason, bridge_error_name,
    skip_reason_name,
};
use multibridge_monitoring::{LaneMetrics, SkipReason, VoteTxOutcome};
use tokio::sync::mpsc;

use crate::chain::sender::SendError;
use crate::chain::submitter::{GasPlan, Job, JobEvent, Submit, SubmitError};
use crate::chain::{ChainClient, ChainError};
use crate::store::{SharedStore, StoreError, StoredRequest, Transition, unix_now};

mod committee;
mod pending;
pub use committee::Committee;
pub use pending::{Entry, Outcome, PendingVote, Seen};

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
            gas_margin_percent: v.gas_margin_percent,
            standby_after: Duration::from_secs(v.standby_after_secs),
        }
    }
}

impl Default for VoterConfig {
    fn default() -> Self {
        Self {
            batch_size: 64,
            batch_wait: Duration::from_millis(200),
            retry_after: Duration::from_secs(5),
            max_in_flight: 24,
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

/// The destination reads the voter needs.
pub trait DestinationReads: Send + Sync {
    /// The destination state of each nonce for this operator, in order.
    fn voting_status(
        &self,
        nonces: &[u64],
    ) -> impl Future<Output = Result<Vec<NonceState>, ChainError>> + Send;
    /// The registered operators and the threshold.
    fn committee(&self) -> impl Future<Output = Result<Committee, ChainError>> + Send;
    /// `upperHandleNonce`: the highest handled nonce + 1.
    fn upper_handle_nonce(&self) -> impl Future<Output = Result<u64, ChainError>> + Send;
    /// The gas limit of the destination's latest block.
    fn block_gas_limit(&self) -> impl Future<Output = Result<u64, ChainError>> + Send;
    /// Which of `nonces` are handled at the destination's confirmation depth (a handle above it
    /// may still be reorged away).
    fn handled_final(
        &self,
        nonces: &[u64],
    ) -> impl Future<Output = Result<Vec<bool>, ChainError>> + Send;
    /// The operator's native balance on the destination (what pays for its votes).
    fn signer_balance(&self) -> impl Future<Output = Result<U256, ChainError>> + Send;
    /// How many of `requests` an `executeHandles` would execute now (their vote keys hold the
    /// threshold: a lowered threshold, or an operator set that changed under open votes).
    fn executable(
        &self,
        requests: &[Request],
    ) -> impl Future<Output = Result<u64, ChainError>> + Send;
}

/// The destination bridge as one operator sees it.
pub struct BridgeReads {
    /// The destination chain.
    pub chain: Arc<ChainClient>,
    /// The operator.
    pub operator: Address,
    /// The destination chain's confirmation depth (or its finalized block).
    pub confirmations: crate::config::Confirmations,
}

/// How long a read of the destination's operators and threshold is used.
const COMMITTEE_FRESH_FOR: Duration = Duration::from_secs(30);

impl DestinationReads for BridgeReads {
    async fn voting_status(&self, nonces: &[u64]) -> Result<Vec<NonceState>, ChainError> {
        self.chain
            .views()
            .voting_status(self.operator, nonces)
            .await
    }

    async fn committee(&self) -> Result<Committee, ChainError> {
        let views = self.chain.views();
        let threshold = views.threshold().await?;
        Ok(Committee {
            operators: views.operators().await?,
            threshold: usize::try_from(threshold).unwrap_or(usize::MAX),
        })
    }

    async fn upper_handle_nonce(&self) -> Result<u64, ChainError> {
        Ok(self.chain.views().handle_nonces().await?.1)
    }

    async fn handled_final(&self, nonces: &[u64]) -> Result<Vec<bool>, ChainError> {
        if self.confirmations == crate::config::Confirmations::Depth(0) {
            return Ok(vec![true; nonces.len()]);
        }
        let head = self.chain.head().await?;
        let block = self.chain.safe_head(head, self.confirmations).await?;
        self.chain.views().handled_at(nonces, block).await
    }

    async fn signer_balance(&self) -> Result<U256, ChainError> {
        use alloy::providers::Provider;
        let operator = self.operator;
        self.chain
            .call("eth_getBalance", |p| async move {
                p.get_balance(operator).await
            })
            .await
    }

    async fn executable(&self, requests: &[Request]) -> Result<u64, ChainError> {
        let (rs, from) = (requests.to_vec(), self.operator);
        let executed = self
            .chain
            .bridge_call("executeHandles", |b| {
                let rs = rs.clone();
                async move { b.executeHandles(rs).from(from).call().await }
            })
            .await?;
        Ok(u64::try_from(executed).unwrap_or(u64::MAX))
    }

    async fn block_gas_limit(&self) -> Result<u64, ChainError> {
        use alloy::providers::Provider;
        self.chain
            .call("eth_getBlockByNumber", |p| async move {
                p.get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
                    .await
            })
            .await?
            .map(|b| b.header.gas_limit)
            .ok_or_else(|| ChainError::Unavailable {
                chain: self.chain.role(),
                method: "eth_getBlockByNumber",
                attempts: 1,
                last: "no latest block".into(),
            })
    }
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

/// Most calldata bytes in one vote transaction: below the 128 KiB transaction size limit of
/// geth-family pools, with room for the transaction's own fields.
pub const MAX_VOTE_BYTES: usize = 96 * 1024;

/// A vote transaction may use at most this share (percent) of the destination's block gas
/// limit, so it fits a block beside other transactions.
pub const MAX_VOTE_BLOCK_SHARE: u64 = 50;

/// Whether a node refused a vote's estimate because the signer cannot pay for its gas.
fn is_unfunded_refusal(error: &ChainError) -> bool {
    matches!(error, ChainError::Rejected { source: RpcError::ErrorResp(p), .. }
        if crate::chain::rpc_error::is_insufficient_funds(&p.message))
}

/// Whether a node's refusal of a vote (at the estimate or the broadcast) says the transaction is
/// too large to ever be accepted as it is: above the block gas limit, above the node's gas
/// allowance or size limit, or its fee above the node's cap. Smaller batches may pass; a single
/// request refused this way can never be voted.
pub fn is_oversize_refusal(error: &ChainError) -> bool {
    let ChainError::Rejected {
        source: RpcError::ErrorResp(p),
        ..
    } = error
    else {
        return false;
    };
    crate::chain::rpc_error::is_too_large(&p.message)
}

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
    /// Test-only fault injection: vote a payload that differs from the observed one.
    tamper: bool,
    /// The destination's operators and threshold, and when they were read.
    committee: Option<(Committee, Instant)>,
    /// The destination's block gas limit, and when it was read.
    gas_limit: Option<(u64, Instant)>,
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
            tamper: false,
            committee: None,
            gas_limit: None,
            metrics,
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
        let lane = self.metrics.lane;
        let mut store = self.store.lock();
        let transition = match &outcome {
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
        };
        // The latency is measured from the row's first indexing, read before it changes.
        let observed_at = match outcome {
            Outcome::Handled => store.get(lane, nonce)?.map(|r| r.observed_at),
            _ => None,
        };
        let changed = store.apply(lane, nonce, &transition)?;
        drop(store);
        if matches!(
            outcome,
            Outcome::Handled | Outcome::VotedByUs | Outcome::Rejected(..)
        ) {
            self.out_of_gas.remove(&nonce);
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
        Ok(())
    }

    /// Read the events of the vote transactions, then pre-check and send what is ready.
    pub async fn step(&mut self) -> Result<VoteStep, VoterError> {
        let mut step = VoteStep::default();
        self.track(&mut step)?;
        let room = self.config.max_in_flight.saturating_sub(self.in_flight());
        if room == 0 {
            return Ok(step);
        }
        let Ready { vote, execute } = self.ready(room, &mut step).await?;
        if vote.is_empty() && execute.is_empty() {
            return Ok(step);
        }
        let singles = self.singles_until.is_some_and(|t| Instant::now() < t);
        let chunk = if singles {
            1
        } else {
            self.config.batch_size.clamp(1, 64)
        };
        let (gas_budget, block_gas) = self.gas_budget().await?;
        // Requests whose keys hold the threshold already are executed first (one transaction);
        // requests that waited for a condition go alone through the single entry point (its
        // simulation reverts while the condition holds: no transaction); the rest in batches
        // bounded by count and by calldata bytes.
        let (waiting, fresh): (Vec<StoredRequest>, Vec<StoredRequest>) =
            vote.into_iter().partition(|r| r.waiting.is_some());
        let fresh: Vec<Request> = fresh.into_iter().map(|r| r.request).collect();
        let mut planned: Vec<(Vec<Request>, Entry)> = Vec::new();
        if !execute.is_empty() {
            planned.push((execute, Entry::Execute));
        }
        planned.extend(
            waiting
                .into_iter()
                .map(|r| (vec![r.request], Entry::Single)),
        );
        planned.extend(
            batches(&fresh, chunk, MAX_VOTE_BYTES)
                .into_iter()
                .map(|b| (b, Entry::Batch)),
        );
        planned.truncate(room);
        // The estimates are reads: all at once, then the sends in order. A batch that is too
        // large for the destination (gas above the budget, or refused as too large) is split in
        // halves and estimated again; a single request that is too large is set aside.
        let inputs: Vec<Bytes> = planned
            .iter()
            .map(|(batch, entry)| self.input(batch, *entry))
            .collect();
        let estimates =
            futures::future::join_all(inputs.iter().map(|input| self.estimate(input.clone())))
                .await;
        let mut work: std::collections::VecDeque<PlannedVote> = planned
            .into_iter()
            .zip(inputs)
            .zip(estimates)
            .map(|(((batch, entry), input), estimate)| PlannedVote {
                batch,
                entry,
                input,
                estimate: Some(estimate),
            })
            .collect();
        // Splitting may make more transactions than planned: never more than `room` in flight.
        let mut sent_txs = 0usize;
        while let Some(PlannedVote {
            batch,
            entry,
            input,
            estimate,
        }) = work.pop_front()
        {
            if sent_txs >= room {
                break;
            }
            let estimate = match estimate {
                Some(estimate) => estimate,
                None => self.estimate(input.clone()).await,
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
            let refusal = match estimate {
                Ok(gas_limit) if gas_limit <= gas_budget || batch.len() == 1 => {
                    let gas_limit = gas_limit.min(block_gas);
                    match self.send(&batch, entry, input, gas_limit, &mut step).await {
                        Ok(()) => {
                            sent_txs = sent_txs.saturating_add(1);
                            continue;
                        }
                        // Refused by the node at the broadcast: nothing sent, no nonce used.
                        Err(VoterError::Submit(SubmitError::Send(SendError::Chain(
                            e @ ChainError::Rejected { .. },
                        )))) => Refusal::Node(e),
                        Err(other) => return Err(other),
                    }
                }
                Ok(gas_limit) => Refusal::OverBudget(gas_limit),
                Err(SubmitError::Send(SendError::WouldRevert(e))) if is_unfunded_refusal(&e) => {
                    return Err(
                        SubmitError::Send(SendError::InsufficientFunds(self.operator)).into(),
                    );
                }
                Err(SubmitError::Send(SendError::WouldRevert(e))) => Refusal::Node(e),
                Err(other) => return Err(other.into()),
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
                    });
                }
                continue;
            }
            match refusal {
                Refusal::Node(e) if !too_large => self.refused(&batch, entry, &e, &mut step)?,
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
                            &mut step,
                        )?;
                    }
                }
            }
        }
        Ok(step)
    }

    /// The gas a vote transaction may use (a share of the destination's block gas limit) and
    /// the block gas limit itself (read again every [`GAS_LIMIT_FRESH_FOR`]).
    async fn gas_budget(&mut self) -> Result<(u64, u64), VoterError> {
        let limit = match self.gas_limit {
            Some((limit, at)) if at.elapsed() < GAS_LIMIT_FRESH_FOR => limit,
            _ => {
                let limit = self.destination.block_gas_limit().await?;
                self.gas_limit = Some((limit, Instant::now()));
                limit
            }
        };
        Ok((limit.saturating_mul(MAX_VOTE_BLOCK_SHARE) / 100, limit))
    }

    /// The gas limit of a vote with calldata `input`.
    async fn estimate(&self, input: Bytes) -> Result<u64, SubmitError> {
        self.submit
            .estimate(
                self.bridge,
                input,
                GasPlan::Vote {
                    bridge: self.bridge,
                    margin_percent: self.config.gas_margin_percent,
                },
            )
            .await
    }

    /// Apply every event the submitter reported since the last step.
    fn track(&mut self, step: &mut VoteStep) -> Result<(), VoterError> {
        while let Ok(event) = self.events.try_recv() {
            match event {
                JobEvent::Mined {
                    nonce,
                    receipt,
                    gas_limit,
                } => {
                    let outcome = if receipt.status() {
                        VoteTxOutcome::Mined
                    } else if receipt.gas_used >= gas_limit {
                        VoteTxOutcome::OutOfGas
                    } else {
                        VoteTxOutcome::Reverted
                    };
                    self.metrics.vote_tx(outcome);
                    if outcome != VoteTxOutcome::Mined {
                        let carried = self.requests_of(nonce);
                        tracing::warn!(
                            lane = %self.metrics.lane,
                            tx = %receipt.transaction_hash,
                            outcome = outcome.as_str(),
                            gas_used = receipt.gas_used,
                            gas_limit,
                            requests = carried.len(),
                            nonce = %nonce_ranges(&carried),
                            "vote transaction reverted; re-checking its requests"
                        );
                    }
                    if outcome == VoteTxOutcome::OutOfGas {
                        self.ran_out_of_gas(nonce, gas_limit, step)?;
                    } else {
                        self.apply_receipt(nonce, &receipt, step)?;
                    }
                }
                JobEvent::Replaced { nonce, hash } => {
                    self.metrics.vote_tx(VoteTxOutcome::Replaced);
                    for request in self.requests_of(nonce) {
                        self.settle(request, Outcome::Replaced(hash), Seen::Tracking, step)?;
                    }
                }
                JobEvent::Superseded { nonce } | JobEvent::Abandoned { nonce } => {
                    if matches!(event, JobEvent::Superseded { .. }) {
                        self.metrics.vote_tx(VoteTxOutcome::Superseded);
                    }
                    // Unknown outcome: the pre-check of a later step finds out.
                    for request in self.requests_of(nonce) {
                        self.settle(request, Outcome::VoteGone, Seen::Tracking, step)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// A vote transaction ran out of gas on chain, which its plan (simulation + the bridge's
    /// worst case per item, checked by the bridge before every item) should make impossible:
    /// what it carried goes alone for a while, each with twice the worst-case headroom; a
    /// request whose vote runs out of gas again is set aside with its reason (an alert names the
    /// nonce), never resent without bound.
    fn ran_out_of_gas(
        &mut self,
        tx_nonce: u64,
        gas_limit: u64,
        step: &mut VoteStep,
    ) -> Result<(), VoterError> {
        self.singles_until = Instant::now().checked_add(self.config.retry_after);
        if self.out_of_gas.len() >= MAX_OUT_OF_GAS_REMEMBERED {
            self.out_of_gas.clear();
        }
        for nonce in self.requests_of(tx_nonce) {
            if self.out_of_gas.insert(nonce) {
                self.settle(nonce, Outcome::VoteGone, Seen::Receipt, step)?;
            } else {
                let detail = format!(
                    "its vote ran out of gas twice, the second time alone with {gas_limit} gas"
                );
                self.settle(
                    nonce,
                    Outcome::Rejected(RejectReason::OutOfGas, detail),
                    Seen::Receipt,
                    step,
                )?;
            }
        }
        Ok(())
    }

    /// The requests the vote transaction with nonce `tx_nonce` carries.
    fn requests_of(&self, tx_nonce: u64) -> Vec<u64> {
        self.pending
            .iter()
            .filter(|(_, p)| p.tx_nonce == tx_nonce)
            .map(|(n, _)| *n)
            .collect()
    }

    /// A vote transaction was mined: its logs say what became of each request it carried.
    fn apply_receipt(
        &mut self,
        tx_nonce: u64,
        receipt: &TransactionReceipt,
        step: &mut VoteStep,
    ) -> Result<(), VoterError> {
        let carried = self.requests_of(tx_nonce);
        if !receipt.status() {
            for nonce in carried {
                self.settle(nonce, Outcome::VoteGone, Seen::Receipt, step)?;
            }
            return Ok(());
        }
        let mut outcomes: BTreeMap<u64, Outcome> = BTreeMap::new();
        for log in receipt.inner.logs() {
            if let Ok(e) = log.log_decode::<Bridge::HandleValueTransfer>() {
                outcomes.insert(e.inner.data.nonce, Outcome::Handled);
            } else if let Ok(e) = log.log_decode::<Bridge::VoteCast>() {
                if e.inner.data.operator == self.operator {
                    outcomes
                        .entry(e.inner.data.nonce)
                        .or_insert(Outcome::VotedByUs);
                }
            } else if let Ok(e) = log.log_decode::<Bridge::HandleSkipped>() {
                let name = skip_reason_name(e.inner.data.reason.0);
                outcomes.insert(e.inner.data.nonce, skipped(name, e.inner.data.reason.0));
            }
        }
        for nonce in carried {
            // A request the transaction carried but no log mentions: re-check it.
            let outcome = outcomes.remove(&nonce).unwrap_or(Outcome::VoteGone);
            self.settle(nonce, outcome, Seen::Receipt, step)?;
        }
        Ok(())
    }

    /// The requests to vote now (enough to fill `room` transactions), after the pre-check
    /// settled the rest, and the voted ones that can be executed without more votes.
    async fn ready(&mut self, room: usize, step: &mut VoteStep) -> Result<Ready, VoterError> {
        let lane = self.metrics.lane;
        let limit = self.config.batch_size.saturating_mul(room).max(64);
        let retry_after = self.config.retry_after.as_secs().max(1);
        let committee = self.committee().await?;
        let (me, standby_after, now) = (self.operator, self.config.standby_after, unix_now());
        // Requests that need our vote, skipping those in flight; requests we already voted are
        // re-checked separately (least recently checked first), so neither kind can hold up the
        // other however many there are.
        let (candidates, recheck) = {
            let store = self.store.lock();
            let window = limit.saturating_add(self.pending.len());
            let candidates: Vec<StoredRequest> = store
                .needing_vote(lane, retry_after, window)?
                .into_iter()
                .filter(|r| !self.pending.contains_key(&r.request.nonce))
                .take(limit)
                .collect();
            let recheck = store.stale_voted(lane, retry_after, limit)?;
            (candidates, recheck)
        };
        // A request another operator is first for waits (deferred in the store, so it stays out
        // of the window until it is due); when due it is voted only if the lane moved past it.
        let mut upper = None;
        let mut open = Vec::with_capacity(candidates.len().saturating_add(recheck.len()));
        for r in candidates {
            let nonce = r.request.nonce;
            if committee.as_ref().is_none_or(|c| c.is_primary(nonce, me)) {
                open.push(r);
                continue;
            }
            let upper = match upper {
                Some(upper) => upper,
                None if r.not_before.is_none() => 0,
                None => *upper.insert(self.destination.upper_handle_nonce().await?),
            };
            match committee::standby(nonce, r.observed_at, now, upper, standby_after) {
                committee::Standby::Vote => open.push(r),
                committee::Standby::Until(until) => {
                    self.store
                        .lock()
                        .apply(lane, nonce, &Transition::Deferred { until })?;
                }
            }
        }
        open.extend(recheck);
        if open.is_empty() {
            return Ok(Ready::default());
        }
        let nonces: Vec<u64> = open.iter().map(|r| r.request.nonce).collect();
        let states = self.destination.voting_status(&nonces).await?;
        let mut ready = Vec::new();
        let mut long_voted = Vec::new();
        let mut handled: Vec<(u64, bool)> = Vec::new();
        for (stored, state) in open.into_iter().zip(states) {
            let nonce = stored.request.nonce;
            let voted = stored.status == RequestStatus::Voted;
            let outcome = match state {
                // Final only at the destination's confirmation depth (audit M-3): another
                // operator's handle may still be reorged away; until then it is left as it is.
                NonceState::Handled => {
                    handled.push((nonce, voted));
                    continue;
                }
                NonceState::VotedByUs if voted => {
                    if now.saturating_sub(stored.observed_at) >= EXECUTE_CHECK_AFTER_SECS
                        && long_voted.len() < MAX_EXECUTE_BATCH
                    {
                        long_voted.push(stored.request.clone());
                    }
                    Outcome::StillVoted
                }
                NonceState::VotedByUs => Outcome::VotedByUs,
                // Our vote is gone (a reorg on the destination): vote again.
                NonceState::Open if voted => Outcome::VoteGone,
                NonceState::Open => {
                    ready.push(stored);
                    continue;
                }
            };
            self.settle(nonce, outcome, Seen::PreCheck, step)?;
        }
        if !handled.is_empty() {
            let nonces: Vec<u64> = handled.iter().map(|(n, _)| *n).collect();
            // A node that cannot serve state that deep (not an archive node, or a safe block
            // before the bridge existed) must not stop voting: the handle counts as seen at the
            // head, and recovery reopens it should the destination later say it is open.
            let finals = match self.destination.handled_final(&nonces).await {
                Ok(finals) => finals,
                Err(e) => {
                    tracing::warn!(lane = %lane, error = %e, "cannot read handles at the destination's confirmation depth; taking them as seen at the head");
                    vec![true; nonces.len()]
                }
            };
            let recheck_at = unix_now().saturating_add(NOT_FINAL_RECHECK_SECS);
            for ((nonce, voted), is_final) in handled.into_iter().zip(finals) {
                if is_final {
                    self.settle(nonce, Outcome::Handled, Seen::PreCheck, step)?;
                } else if voted {
                    // Back of the re-check queue, so newer work is not starved.
                    self.store.lock().apply(lane, nonce, &Transition::Touched)?;
                } else {
                    self.store.lock().apply(
                        lane,
                        nonce,
                        &Transition::Deferred { until: recheck_at },
                    )?;
                }
            }
        }
        // Voted long ago and still open: if the keys already hold the threshold (a lowered
        // threshold), nobody's vote will execute them — an execution will (one read finds out).
        let execute = if long_voted.is_empty() {
            Vec::new()
        } else {
            match self.destination.executable(&long_voted).await {
                Ok(0) => Vec::new(),
                Ok(n) => {
                    tracing::info!(lane = %lane, executable = n, nonce = %nonce_ranges(&long_voted.iter().map(|r| r.nonce).collect::<Vec<_>>()), "requests hold the threshold without being executed: executing them");
                    long_voted
                }
                Err(e) => {
                    tracing::debug!(lane = %lane, error = %e, "cannot check whether voted requests are executable");
                    Vec::new()
                }
            }
        };
        Ok(Ready {
            vote: ready,
            execute,
        })
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

    /// The destination's committee, read again every [`COMMITTEE_FRESH_FOR`]; `None` when
    /// standing by is off (everyone votes at once).
    async fn committee(&mut self) -> Result<Option<Committee>, VoterError> {
        if self.config.standby_after.is_zero() {
            return Ok(None);
        }
        if let Some((committee, at)) = &self.committee
            && at.elapsed() < COMMITTEE_FRESH_FOR
        {
            return Ok(Some(committee.clone()));
        }
        let committee = self.destination.committee().await?;
        self.committee = Some((committee.clone(), Instant::now()));
        Ok(Some(committee))
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
        };
        let sent = self.submit.submit(job).await?;
        let vote = PendingVote {
            tx_nonce: sent.nonce,
            tx: sent.hash,
            entry,
        };
        let nonces: Vec<u64> = batch.iter().map(|r| r.nonce).collect();
        for n in &nonces {
            self.settle(*n, Outcome::Sent(vote), Seen::Tracking, step)?;
        }
        tracing::debug!(lane = %self.metrics.lane, nonce = %nonce_ranges(&nonces), tx = %sent.hash, tx_nonce = sent.nonce, gas_limit, count = nonces.len(), ?entry, "vote sent");
        step.sent = step.sent.saturating_add(batch.len());
        if entry != Entry::Execute {
            self.metrics.votes_sent.inc_by(batch.len() as u64);
        }
        Ok(())
    }

    /// The destination refuses the vote: find out why and act on it.
    fn refused(
        &mut self,
        batch: &[Request],
        entry: Entry,
        error: &ChainError,
        step: &mut VoteStep,
    ) -> Result<(), VoterError> {
        if entry == Entry::Execute {
            // Settled or changed since the read that found them executable: the next re-check
            // looks again.
            tracing::debug!(lane = %self.metrics.lane, error = %error, "execution would revert; re-checking later");
            return Ok(());
        }
        let decoded = match error {
            ChainError::Rejected {
                source: RpcError::ErrorResp(p),
                ..
            } => p.as_decoded_interface_error::<BridgeErrors>(),
            _ => None,
        };
        if let Some(BridgeErrors::NotOperator(_)) = decoded {
            return Err(VoterError::NotOperator(self.operator));
        }
        if batch.len() > 1 {
            // One bad item spoils a batch: go one by one for a while.
            tracing::warn!(lane = %self.metrics.lane, error = %error, "batch vote would revert; sending one by one");
            self.singles_until = Instant::now().checked_add(self.config.retry_after);
            return Ok(());
        }
        let Some(request) = batch.first() else {
            return Ok(());
        };
        let outcome = match &decoded {
            // Settled between the pre-check and the send: still success, not an error.
            Some(BridgeErrors::AlreadyHandled(_)) => Outcome::Handled,
            Some(BridgeErrors::AlreadyVoted(_)) => Outcome::VotedByUs,
            Some(e) => {
                let name = bridge_error_name(e);
                let detail = format!("destination refuses: {e:?}");
                match (
                    WaitReason::from_bridge_error(&name),
                    RejectReason::from_bridge_error(&name),
                ) {
                    (_, Some(reject)) => Outcome::Rejected(reject, detail),
                    (Some(wait), None) => Outcome::Waiting(wait, detail),
                    (None, None) => Outcome::Waiting(WaitReason::Other, detail),
                }
            }
            None => Outcome::Waiting(WaitReason::Other, format!("destination refuses: {error}")),
        };
        self.settle(request.nonce, outcome, Seen::Refusal, step)
    }
}

/// A vote transaction to estimate (unless its estimate is known) and send.
struct PlannedVote {
    batch: Vec<Request>,
    entry: Entry,
    input: Bytes,
    estimate: Option<Result<u64, SubmitError>>,
}

/// What a step sends: votes, and executions of keys that hold the threshold already.
#[derive(Default)]
struct Ready {
    vote: Vec<StoredRequest>,
    execute: Vec<Request>,
}

/// Most requests in one `executeHandles` (the bridge's batch bound).
const MAX_EXECUTE_BATCH: usize = 64;

/// Why a vote transaction was not sent.
enum Refusal {
    /// Its gas limit is above the share of the block gas limit a vote may use.
    OverBudget(u64),
    /// A node refused it (at the estimate or the broadcast).
    Node(ChainError),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OverBudget(gas) => write!(f, "needs {gas} gas, above the vote budget"),
            Self::Node(e) => write!(f, "{e}"),
        }
    }
}

/// `requests` in order, cut into batches of at most `count` requests and `max_bytes` of vote
/// calldata (a request larger than `max_bytes` alone goes in a batch of its own).
pub fn batches(requests: &[Request], count: usize, max_bytes: usize) -> Vec<Vec<Request>> {
    let mut out: Vec<Vec<Request>> = Vec::new();
    let mut current: Vec<Request> = Vec::new();
    let mut bytes = 0usize;
    for r in requests {
        let size = encoded_size(r);
        if !current.is_empty()
            && (current.len() >= count.max(1) || bytes.saturating_add(size) > max_bytes)
        {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes = bytes.saturating_add(size);
        current.push(r.clone());
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The ABI size of one request in a vote: 13 head words, the offset word, and its extraData
/// padded to words.
fn encoded_size(r: &Request) -> usize {
    let words = r.extraData.len().div_ceil(32);
    (15usize.saturating_add(words)).saturating_mul(32)
}

/// What a `HandleSkipped` with the named reason means for the request.
fn skipped(name: Option<&str>, selector: [u8; 4]) -> Outcome {
    match name {
        Some("AlreadyHandled") => Outcome::Handled,
        // Our vote is on chain (a vote skipped as already voted, or an execution of a key still
        // below the threshold).
        Some("AlreadyVoted" | "BelowThreshold") => Outcome::VotedByUs,
        // Not taken: the gas left was below the bridge's worst case for one more item (what the
        // items before it did on chain cost more than simulated). Voted again at once.
        Some("GasBudgetTooLow") => Outcome::VoteGone,
        Some(name) => {
            let detail = format!("destination skipped the vote: {name}");
            match (
                WaitReason::from_bridge_error(name),
                RejectReason::from_bridge_error(name),
            ) {
                (_, Some(reject)) => Outcome::Rejected(reject, detail),
                (Some(wait), None) => Outcome::Waiting(wait, detail),
                (None, None) => Outcome::Waiting(WaitReason::Other, detail),
            }
        }
        None => Outcome::Waiting(
            WaitReason::Other,
            format!(
                "destination skipped the vote: 0x{}",
                alloy::hex::encode(selector)
            ),
        ),
    }
}

/// Nonces as compact ranges for a log line (`3-7,9`), so a batch's line names every request.
pub fn nonce_ranges(nonces: &[u64]) -> String {
    let mut sorted = nonces.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = Vec::new();
    let mut iter = sorted.into_iter().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek().is_some_and(|&n| Some(n) == end.checked_add(1)) {
            end = iter.next().unwrap_or(end);
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    out.join(",")
}
