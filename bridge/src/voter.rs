//! The voter of one lane: takes the open requests from the store, pre-checks each on the
//! destination (`isHandled`, `hasVoted` — both count as success, not errors), groups the rest
//! into batches and hands them to the sender; reads the receipts back into request statuses.
//!
//! A request the destination cannot execute yet (liquidity short, token locked, bridge paused)
//! stays open with its reason noted and is retried after a pause — never dropped.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, Bytes};
use alloy::rpc::types::TransactionReceipt;
use alloy::sol_types::{SolCall, SolError};
use alloy::transports::RpcError;
use multibridge_contracts::bindings::Bridge::{self, BridgeErrors};
use multibridge_contracts::{Lane, Request};
use multibridge_monitoring::Metrics;
use multibridge_recovery::NonceState;

use crate::chain::{ChainClient, ChainError};
use crate::sender::{SendError, Sender, Tracked};
use crate::store::{Status, Store, StoreError, StoredRequest};

/// Voter tuning.
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
}

impl Default for VoterConfig {
    fn default() -> Self {
        Self {
            batch_size: 64,
            batch_wait: Duration::from_millis(200),
            retry_after: Duration::from_secs(5),
            max_in_flight: 12,
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
    /// The sender failed.
    #[error(transparent)]
    Send(#[from] SendError),
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
            Self::Send(e) => e.is_retryable(),
            Self::NotOperator(_) => false,
        }
    }
}

/// What one step did (for logs and metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VoteStep {
    /// Votes sent in this step.
    pub sent: usize,
    /// Requests found already handled or already voted by the pre-check (no transaction).
    pub skipped: usize,
    /// Requests that became `handled`.
    pub handled: usize,
    /// Requests left waiting with a reason.
    pub waiting: usize,
}

/// The voter of one lane.
pub struct Voter {
    lane: Lane,
    destination: Arc<ChainClient>,
    bridge: Address,
    operator: Address,
    store: Arc<Mutex<Store>>,
    sender: Sender,
    config: VoterConfig,
    /// Sender nonce → request nonces its transaction votes for.
    in_flight: HashMap<u64, Vec<u64>>,
    /// Request nonces with a vote in flight.
    voting: HashSet<u64>,
    /// Request nonces not to retry before the instant.
    backoff: HashMap<u64, Instant>,
    /// After a batch would revert, send one by one to find the culprit.
    singles_until: Option<Instant>,
    /// Requests the destination skipped for a condition (liquidity, lock): retried alone through
    /// the single entry point, whose simulation reverts while the condition holds — so waiting
    /// costs no transaction.
    waiting: HashSet<u64>,
    /// Test-only fault injection: vote a payload that differs from the observed one.
    tamper: bool,
    metrics: Option<Arc<Metrics>>,
}

impl Voter {
    /// A voter for `lane` writing to `destination`'s bridge through `sender`.
    pub fn new(
        lane: Lane,
        destination: Arc<ChainClient>,
        bridge: Address,
        store: Arc<Mutex<Store>>,
        sender: Sender,
        config: VoterConfig,
    ) -> Self {
        Self {
            lane,
            destination,
            bridge,
            operator: sender.address(),
            store,
            sender,
            config,
            in_flight: HashMap::new(),
            voting: HashSet::new(),
            backoff: HashMap::new(),
            singles_until: None,
            waiting: HashSet::new(),
            tamper: false,
            metrics: None,
        }
    }

    /// The nonce the signer's next new transaction gets.
    pub fn next_nonce(&self) -> u64 {
        self.sender.next_nonce()
    }

    /// Vote transactions sent and not yet mined.
    pub fn in_flight(&self) -> usize {
        self.sender.in_flight()
    }

    /// Export voting activity in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Count `by` on a lane-labelled counter.
    fn count(&self, pick: impl Fn(&Metrics) -> &prometheus::IntCounterVec, by: usize) {
        if let Some(m) = &self.metrics {
            pick(m)
                .with_label_values(&[self.lane.as_str()])
                .inc_by(by as u64);
        }
    }

    /// Count a vote transaction outcome.
    fn count_tx(&self, outcome: &str) {
        if let Some(m) = &self.metrics {
            m.vote_txs
                .with_label_values(&[self.lane.as_str(), outcome])
                .inc();
        }
    }

    /// Count a request that needed no vote from us.
    fn count_skip(&self, reason: &str) {
        if let Some(m) = &self.metrics {
            m.votes_skipped
                .with_label_values(&[self.lane.as_str(), reason])
                .inc();
        }
    }

    /// A request became handled: count it and observe its latency since indexing.
    fn observe_handled(&self, observed_at: Option<u64>) {
        self.count(|m| &m.handled, 1);
        if let (Some(m), Some(observed_at)) = (&self.metrics, observed_at) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default();
            m.handle_latency
                .with_label_values(&[self.lane.as_str()])
                .observe((now - observed_at as f64).max(0.0));
        }
    }

    /// Fault injection for tests of invariant 3: every vote carries a tampered amount.
    pub fn tamper_payloads(&mut self, on: bool) {
        self.tamper = on;
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Track receipts, then pre-check and send what is ready.
    pub async fn step(&mut self) -> Result<VoteStep, VoterError> {
        let mut step = VoteStep::default();
        self.track(&mut step).await?;
        let room = self
            .config
            .max_in_flight
            .saturating_sub(self.sender.in_flight());
        if room == 0 {
            return Ok(step);
        }
        let ready = self.ready(&mut step).await?;
        if ready.is_empty() {
            return Ok(step);
        }
        let singles = self.singles_until.is_some_and(|t| Instant::now() < t);
        let chunk = if singles {
            1
        } else {
            self.config.batch_size.clamp(1, 64)
        };
        let (waiting, fresh): (Vec<Request>, Vec<Request>) = ready
            .into_iter()
            .partition(|r| self.waiting.contains(&r.nonce));
        let mut room = room;
        for request in &waiting {
            if room == 0 {
                break;
            }
            if self
                .send_batch(std::slice::from_ref(request), true, &mut step)
                .await?
            {
                room = room.saturating_sub(1);
            }
        }
        for batch in fresh.chunks(chunk).take(room) {
            self.send_batch(batch, false, &mut step).await?;
        }
        Ok(step)
    }

    /// Requests whose receipts arrived get their statuses from the logs.
    async fn track(&mut self, step: &mut VoteStep) -> Result<(), VoterError> {
        for tracked in self.sender.poll().await? {
            match tracked {
                Tracked::Mined { nonce, receipt } => {
                    self.count_tx(if receipt.status() {
                        "mined"
                    } else {
                        "reverted"
                    });
                    let requests = self.in_flight.remove(&nonce).unwrap_or_default();
                    for n in &requests {
                        self.voting.remove(n);
                    }
                    self.apply_receipt(&receipt, step)?;
                }
                Tracked::Superseded { nonce } => {
                    self.count_tx("superseded");
                    // Unknown outcome: the pre-check of the next step finds out.
                    for n in self.in_flight.remove(&nonce).unwrap_or_default() {
                        self.voting.remove(&n);
                    }
                }
                Tracked::Replaced { nonce, hash } => {
                    self.count_tx("replaced");
                    let requests = self.in_flight.get(&nonce).cloned().unwrap_or_default();
                    let mut store = self.store();
                    for n in requests {
                        store.mark_voting(self.lane, n, hash)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn apply_receipt(
        &mut self,
        receipt: &TransactionReceipt,
        step: &mut VoteStep,
    ) -> Result<(), VoterError> {
        let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        if !receipt.status() {
            tracing::warn!(lane = %self.lane, tx = %receipt.transaction_hash, gas_used = receipt.gas_used, "vote transaction reverted; re-checking its requests");
            return Ok(());
        }
        let mut settled = HashSet::new();
        for log in receipt.inner.logs() {
            if let Ok(e) = log.log_decode::<Bridge::HandleValueTransfer>() {
                let observed_at = store
                    .get(self.lane, e.inner.data.nonce)?
                    .map(|r| r.observed_at);
                store.set_status(self.lane, e.inner.data.nonce, &Status::Handled)?;
                tracing::debug!(lane = %self.lane, nonce = e.inner.data.nonce, tx = %receipt.transaction_hash, "handled by our vote");
                self.observe_handled(observed_at);
                self.waiting.remove(&e.inner.data.nonce);
                settled.insert(e.inner.data.nonce);
                step.handled = step.handled.saturating_add(1);
            } else if let Ok(e) = log.log_decode::<Bridge::VoteCast>() {
                if e.inner.data.operator == self.operator && !settled.contains(&e.inner.data.nonce)
                {
                    store.set_status(self.lane, e.inner.data.nonce, &Status::Voted)?;
                }
            } else if let Ok(e) = log.log_decode::<Bridge::HandleSkipped>() {
                let nonce = e.inner.data.nonce;
                let reason = e.inner.data.reason;
                if reason == Bridge::AlreadyHandled::SELECTOR {
                    let observed_at = store.get(self.lane, nonce)?.map(|r| r.observed_at);
                    store.set_status(self.lane, nonce, &Status::Handled)?;
                    self.observe_handled(observed_at);
                } else if reason == Bridge::AlreadyVoted::SELECTOR {
                    store.set_status(self.lane, nonce, &Status::Voted)?;
                } else {
                    store.note_waiting(self.lane, nonce, &skip_reason(reason))?;
                    self.count(|m| &m.waiting, 1);
                    step.waiting = step.waiting.saturating_add(1);
                    self.waiting.insert(nonce);
                    let until = self.retry_at(Instant::now());
                    self.backoff.insert(nonce, until);
                }
            }
        }
        Ok(())
    }

    /// Open requests not in flight and not backing off, after the pre-check.
    async fn ready(&mut self, step: &mut VoteStep) -> Result<Vec<Request>, VoterError> {
        let now = Instant::now();
        self.backoff.retain(|_, until| *until > now);
        let limit = self.config.batch_size.saturating_mul(4).max(64);
        // Requests that need our vote, skipping those in flight or put aside; requests we already
        // voted are re-checked separately (least recently checked first), so neither kind can hold
        // up the other however many there are.
        let (candidates, recheck) = {
            let store = self.store();
            let window = limit
                .saturating_add(self.voting.len())
                .saturating_add(self.backoff.len());
            let candidates: Vec<StoredRequest> = store
                .needing_vote(self.lane, window)?
                .into_iter()
                .filter(|r| {
                    !self.voting.contains(&r.request.nonce)
                        && !self.backoff.contains_key(&r.request.nonce)
                })
                .take(limit)
                .collect();
            let recheck =
                store.stale_voted(self.lane, self.config.retry_after.as_secs().max(1), limit)?;
            (candidates, recheck)
        };
        let open: Vec<StoredRequest> = candidates.into_iter().chain(recheck).collect();
        if open.is_empty() {
            return Ok(Vec::new());
        }
        let nonces: Vec<u64> = open.iter().map(|r| r.request.nonce).collect();
        let checks = voting_status(&self.destination, self.operator, &nonces).await?;
        let mut ready = Vec::new();
        let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        for (stored, check) in open.into_iter().zip(checks) {
            let nonce = stored.request.nonce;
            match check {
                NonceState::Handled => {
                    self.waiting.remove(&nonce);
                    store.set_status(self.lane, nonce, &Status::Handled)?;
                    self.count_skip("already_handled");
                    self.observe_handled(Some(stored.observed_at));
                    step.skipped = step.skipped.saturating_add(1);
                    step.handled = step.handled.saturating_add(1);
                }
                NonceState::VotedByUs if stored.status == Status::Voted => {
                    // Still waiting for the other operators: look again later.
                    store.touch(self.lane, nonce)?;
                }
                NonceState::VotedByUs => {
                    store.set_status(self.lane, nonce, &Status::Voted)?;
                    self.count_skip("already_voted");
                    step.skipped = step.skipped.saturating_add(1);
                }
                NonceState::Open if stored.status == Status::Voted => {
                    // Our vote is gone (e.g. a reorg on the destination): vote again.
                    store.set_status(self.lane, nonce, &Status::Observed)?;
                }
                NonceState::Open => ready.push(stored.request),
            }
        }
        Ok(ready)
    }

    /// Send one vote transaction for `batch`; `single_entry` uses `handleValueTransfer` (one
    /// request, reverting on any refusal) instead of the batch entry point. Returns whether a
    /// transaction was sent.
    async fn send_batch(
        &mut self,
        batch: &[Request],
        single_entry: bool,
        step: &mut VoteStep,
    ) -> Result<bool, VoterError> {
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
        let input: Bytes = match (single_entry, payloads.first()) {
            (true, Some(r)) => Bridge::handleValueTransferCall { r: r.clone() }
                .abi_encode()
                .into(),
            _ => Bridge::handleValueTransfersCall { rs: payloads }
                .abi_encode()
                .into(),
        };
        match self.sender.send(self.bridge, input).await {
            Ok(sent) => {
                let nonces: Vec<u64> = batch.iter().map(|r| r.nonce).collect();
                let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
                for n in &nonces {
                    store.mark_voting(self.lane, *n, sent.hash)?;
                    self.voting.insert(*n);
                }
                drop(store);
                tracing::debug!(lane = %self.lane, nonce = %nonce_ranges(&nonces), tx = %sent.hash, tx_nonce = sent.nonce, count = nonces.len(), "vote sent");
                self.in_flight.insert(sent.nonce, nonces);
                step.sent = step.sent.saturating_add(batch.len());
                self.count(|m| &m.votes_sent, batch.len());
                if let Some(m) = &self.metrics {
                    m.signer_nonce
                        .with_label_values(&[self.lane.destination().as_str()])
                        .set(i64::try_from(self.sender.next_nonce()).unwrap_or(i64::MAX));
                }
                Ok(true)
            }
            Err(SendError::WouldRevert(e)) => self.refused(batch, &e, step).map(|()| false),
            Err(other) => Err(other.into()),
        }
    }

    /// The destination refuses the vote: find out why and act on it.
    fn refused(
        &mut self,
        batch: &[Request],
        error: &ChainError,
        step: &mut VoteStep,
    ) -> Result<(), VoterError> {
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
            tracing::warn!(lane = %self.lane, error = %error, "batch vote would revert; sending one by one");
            self.singles_until = Some(self.retry_at(Instant::now()));
            return Ok(());
        }
        let Some(request) = batch.first() else {
            return Ok(());
        };
        let mut store = self.store.lock().unwrap_or_else(|p| p.into_inner());
        match decoded {
            // Settled between the pre-check and the send: still success, not an error.
            Some(BridgeErrors::AlreadyHandled(_)) => {
                self.waiting.remove(&request.nonce);
                let observed_at = store.get(self.lane, request.nonce)?.map(|r| r.observed_at);
                store.set_status(self.lane, request.nonce, &Status::Handled)?;
                self.count_skip("already_handled");
                self.observe_handled(observed_at);
            }
            Some(BridgeErrors::AlreadyVoted(_)) => {
                store.set_status(self.lane, request.nonce, &Status::Voted)?;
                self.count_skip("already_voted");
            }
            other => {
                let reason = match other {
                    Some(e) => format!("destination refuses: {e:?}"),
                    None => format!("destination refuses: {error}"),
                };
                tracing::warn!(lane = %self.lane, nonce = request.nonce, %reason, "request waits");
                store.note_waiting(self.lane, request.nonce, &reason)?;
                self.backoff
                    .insert(request.nonce, self.retry_at(Instant::now()));
                step.waiting = step.waiting.saturating_add(1);
            }
        }
        Ok(())
    }

    /// When a request put aside at `now` may be tried again.
    fn retry_at(&self, now: Instant) -> Instant {
        now.checked_add(self.config.retry_after).unwrap_or(now)
    }

    /// The batch wait configured.
    pub fn batch_wait(&self) -> Duration {
        self.config.batch_wait
    }
}

/// The destination state of each nonce for `operator` (`isHandled` / `hasVoted`), one
/// `votingStatus` call per 256 nonces. Shared by the voter's pre-check and recovery.
pub async fn voting_status(
    destination: &ChainClient,
    operator: Address,
    nonces: &[u64],
) -> Result<Vec<NonceState>, ChainError> {
    const CHUNK: usize = 256;
    let mut out = Vec::with_capacity(nonces.len());
    for chunk in nonces.chunks(CHUNK) {
        let chunk = chunk.to_vec();
        let status = destination
            .bridge_call("votingStatus", |b| {
                let chunk = chunk.clone();
                async move { b.votingStatus(chunk, operator).call().await }
            })
            .await?;
        out.extend(
            status
                .handled
                .iter()
                .zip(&status.voted)
                .map(|(handled, voted)| match (*handled, *voted) {
                    (true, _) => NonceState::Handled,
                    (false, true) => NonceState::VotedByUs,
                    (false, false) => NonceState::Open,
                }),
        );
    }
    Ok(out)
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

fn skip_reason(selector: alloy::primitives::FixedBytes<4>) -> String {
    let name = [
        (
            Bridge::InsufficientLiquidity::SELECTOR,
            "InsufficientLiquidity",
        ),
        (Bridge::TokenIsLocked::SELECTOR, "TokenIsLocked"),
        (Bridge::TokenNotRegistered::SELECTOR, "TokenNotRegistered"),
        (Bridge::WrongSource::SELECTOR, "WrongSource"),
        (Bridge::UnknownKind::SELECTOR, "UnknownKind"),
    ]
    .into_iter()
    .find(|(s, _)| *s == selector.0)
    .map(|(_, n)| n.to_owned())
    .unwrap_or_else(|| format!("0x{}", alloy::hex::encode(selector)));
    format!("destination skipped the vote: {name}")
}

#[cfg(test)]
mod tests {
    use super::nonce_ranges;

    #[test]
    fn nonce_ranges_name_every_nonce_compactly() {
        assert_eq!(nonce_ranges(&[]), "");
        assert_eq!(nonce_ranges(&[4]), "4");
        assert_eq!(nonce_ranges(&[7, 3, 4, 5, 9, 9]), "3-5,7,9");
        assert_eq!(
            nonce_ranges(&[u64::MAX - 1, u64::MAX]),
            format!("{}-{}", u64::MAX - 1, u64::MAX)
        );
    }
}
