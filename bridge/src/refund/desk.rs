//! The destination side of one lane's refund path: asks, refusals, cancel votes, cancels seen at
//! depth, refund signatures. See [`super`].

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::B256;
use alloy::rpc::types::Filter;
use alloy::sol_types::{SolCall, SolEvent};
use multibridge_contracts::attestation::canonical_bytes;
use multibridge_contracts::bindings::Bridge;
use multibridge_contracts::{Lane, Request, RequestStatus, VoteDomain};
use multibridge_monitoring::LaneMetrics;
use tokio::sync::{mpsc, watch};

use super::{REVOTE_AFTER_SECS, RefundAsk};
use crate::chain::ChainClient;
use crate::chain::lookup::requests_of_tx;
use crate::chain::signer::OperatorSigner;
use crate::chain::submitter::{Job, Submit, SubmitClient};
use crate::store::{SharedStore, unix_now};
use crate::task::{Next, Stepper};

/// Most requests one cancel vote carries.
pub const CANCELS_PER_VOTE: usize = 8;
/// Gas of a cancel vote besides its items (the transaction, the batch checks, the events).
const CANCEL_BASE_GAS: u64 = 150_000;
/// How long an ask for a request not indexed yet is kept for another look.
const ASK_KEPT_FOR: Duration = Duration::from_secs(600);
/// Most asks waiting for their request to be indexed.
const ASKS_KEPT: usize = 1_024;
/// A cancel whose request cannot be found final on the source this many destination blocks
/// later is passed over (logged): the scan must not wait for good behind a request that does
/// not exist.
const GIVE_UP_AFTER_BLOCKS: u64 = 1_000;
/// Most refunds signed per step.
const SIGNED_PER_STEP: usize = 64;
/// How long a cancelled request's source lookup may keep failing while the source answers
/// otherwise before the cancel counts as one whose request is not found (the give-up above then
/// holds for it): a source that fails or is down for a while never costs a refund, and one hash
/// whose lookup fails on a source that answers (a receipt over the answer bound) does not hold
/// the scan for good.
const UNREADABLE_PATIENCE: Duration = Duration::from_secs(600);

/// Since when each cancel's source lookup has failed while the source answered, by nonce.
#[derive(Debug, Default)]
struct Unreadable(std::collections::HashMap<u64, Instant>);

impl Unreadable {
    /// `nonce`'s lookup failed at `now`, the source answering otherwise (`source_answers`) or
    /// not: `true` while it is worth asking again later, `false` once it has failed for
    /// [`UNREADABLE_PATIENCE`] with the source answering (forgotten then). A source that does
    /// not answer starts the patience anew.
    fn failed(&mut self, nonce: u64, now: Instant, source_answers: bool) -> bool {
        if !source_answers {
            self.0.remove(&nonce);
            return true;
        }
        let since = *self.0.entry(nonce).or_insert(now);
        let patient = now.saturating_duration_since(since) < UNREADABLE_PATIENCE;
        if !patient {
            self.0.remove(&nonce);
        }
        patient
    }

    /// `nonce`'s lookup answered.
    fn answered(&mut self, nonce: u64) {
        self.0.remove(&nonce);
    }
}

/// What the desk is told once.
#[derive(Debug, Clone, Copy)]
pub struct DeskSettings {
    /// The lane.
    pub lane: Lane,
    /// Its vote domain (vote keys, the refund digest).
    pub domain: VoteDomain,
    /// `[recovery] refund_after_secs` (0: no cancel is voted).
    pub refund_after: u64,
    /// The destination's confirmations: a cancel is signed once final under them...
    pub confirmations: multibridge_config::Confirmations,
    /// ...and at least the source's depth deep (what the source's refund trusts).
    pub source_depth: u64,
    /// Where the first scan for cancels starts.
    pub scan_from: u64,
    /// Most blocks per `eth_getLogs`.
    pub max_range: u64,
    /// Time between steps.
    pub interval: Duration,
}

/// The desk of one lane (see [`super`]).
pub struct RefundDesk {
    settings: DeskSettings,
    store: SharedStore,
    destination: Arc<ChainClient>,
    /// The source and its confirmations: where a cancelled request this relay never indexed
    /// (or compacted away) is read from its transaction, once final there.
    source: (Arc<ChainClient>, multibridge_config::Confirmations),
    signer: OperatorSigner,
    submit: SubmitClient,
    leading: watch::Receiver<bool>,
    asks: mpsc::Receiver<RefundAsk>,
    /// Asks whose request is not indexed yet, with when they came.
    unindexed: Vec<(RefundAsk, Instant)>,
    /// Where the next look for refunds seen on the source starts.
    seen_from: u64,
    /// The object store this operator publishes its signatures in when it does not expose
    /// HTTP (`voting.attestation_store`), its lane service id and its address.
    objects: Option<(crate::storage::Storage, B256, alloy::primitives::Address)>,
    /// Refunds published there by this process.
    published: std::collections::HashSet<u64>,
    /// Cancels whose request's source lookup is failing.
    unreadable: Unreadable,
    metrics: LaneMetrics,
}

impl RefundDesk {
    /// A desk that has done nothing yet.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: DeskSettings,
        store: SharedStore,
        destination: Arc<ChainClient>,
        source: (Arc<ChainClient>, multibridge_config::Confirmations),
        signer: OperatorSigner,
        submit: SubmitClient,
        leading: watch::Receiver<bool>,
        asks: mpsc::Receiver<RefundAsk>,
        metrics: LaneMetrics,
    ) -> Self {
        Self {
            settings,
            store,
            destination,
            source,
            signer,
            submit,
            leading,
            asks,
            unindexed: Vec::new(),
            unreadable: Unreadable::default(),
            seen_from: 0,
            objects: None,
            published: std::collections::HashSet::new(),
            metrics,
        }
    }

    /// Also publish this operator's refund signatures in `objects` (its attestation store,
    /// lane service id and address).
    pub fn publish_to(
        mut self,
        objects: Option<(crate::storage::Storage, B256, alloy::primitives::Address)>,
    ) -> Self {
        self.objects = objects;
        self
    }

    /// Publish the signed refunds not yet published by this process (a few per step; written
    /// again after a start, which is harmless).
    async fn publish_refunds(&mut self) {
        const PER_STEP: usize = 64;
        let Some((storage, service_id, operator)) = &self.objects else {
            return;
        };
        let lane = self.settings.lane;
        let rows = match self.store.lock().refunds_to_send(lane, 0, usize::MAX) {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the refund signatures to publish");
                return;
            }
        };
        // Refunded ones are done: keep the set to what still waits.
        self.published
            .retain(|n| rows.iter().any(|r| r.nonce == *n));
        let due: Vec<_> = rows
            .into_iter()
            .filter(|r| !self.published.contains(&r.nonce))
            .take(PER_STEP)
            .collect();
        for row in due {
            let Some(signature) = row.signature else {
                continue;
            };
            match super::peers::publish_refund(
                storage,
                *service_id,
                lane,
                *operator,
                row.nonce,
                &signature,
            )
            .await
            {
                Ok(()) => {
                    self.published.insert(row.nonce);
                }
                Err(e) => {
                    tracing::warn!(nonce = row.nonce, error = %e, "cannot publish a refund signature in the attestation store; retrying");
                    return;
                }
            }
        }
    }

    async fn round(&mut self) -> Result<Next, Infallible> {
        let lane = self.settings.lane;
        self.take_asks();
        if self.settings.refund_after > 0 {
            let noted = self.store.lock().note_refusals(lane, unix_now());
            if let Err(e) = noted {
                tracing::warn!(error = %e, "cannot note the requests the destination refuses");
            }
            if *self.leading.borrow() {
                self.vote_cancels().await;
            }
        }
        let more = match self.scan_cancels().await {
            Ok(more) => more,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the destination's cancels; retrying");
                false
            }
        };
        self.sign_refunds().await;
        self.publish_refunds().await;
        self.see_refunds().await;
        match self.store.lock().refunds_waiting(lane) {
            Ok(waiting) => self
                .metrics
                .refunds_waiting
                .set(i64::try_from(waiting).unwrap_or(i64::MAX)),
            Err(e) => tracing::warn!(error = %e, "cannot count the refunds waiting"),
        }
        Ok(if more {
            Next::Now
        } else {
            Next::After(self.settings.interval)
        })
    }

    /// Take the refund claims delivered since the last step: kept only when the claimant is
    /// the request's requester and the request is not handled.
    fn take_asks(&mut self) {
        let lane = self.settings.lane;
        let mut asks: Vec<(RefundAsk, Instant)> = std::mem::take(&mut self.unindexed);
        while let Ok(ask) = self.asks.try_recv() {
            asks.push((ask, Instant::now()));
        }
        for (ask, came) in asks {
            let stored = match self.store.lock().get(lane, ask.nonce) {
                Ok(stored) => stored,
                Err(e) => {
                    tracing::warn!(nonce = ask.nonce, error = %e, "cannot read the request of a refund claim; kept");
                    self.unindexed.push((ask, came));
                    continue;
                }
            };
            let Some(stored) = stored else {
                if came.elapsed() < ASK_KEPT_FOR && self.unindexed.len() < ASKS_KEPT {
                    self.unindexed.push((ask, came));
                } else {
                    tracing::warn!(nonce = ask.nonce, claimant = %ask.claimant, "refund claim for a request this relay never indexed; dropped");
                }
                continue;
            };
            if stored.request.from != ask.claimant {
                self.metrics.refund_step("ask_refused", 1);
                tracing::warn!(nonce = ask.nonce, claimant = %ask.claimant, requester = %stored.request.from, "refund claim not filed by the requester; ignored (only the requester may give up its transfer)");
                continue;
            }
            if stored.status == RequestStatus::Handled {
                tracing::info!(
                    nonce = ask.nonce,
                    "refund claim for a request already handled: nothing to refund"
                );
                continue;
            }
            match self
                .store
                .lock()
                .ask_refund(lane, &stored.request, unix_now())
            {
                Ok(true) => {
                    self.metrics.refund_step("asked", 1);
                    tracing::info!(nonce = ask.nonce, requester = %ask.claimant, refund_after_secs = self.settings.refund_after, "the requester asked for a refund");
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(nonce = ask.nonce, error = %e, "cannot record a refund claim")
                }
            }
        }
    }

    /// Vote to cancel the requests due (the lane leader only).
    async fn vote_cancels(&mut self) {
        let lane = self.settings.lane;
        let due = self.store.lock().refunds_due(
            lane,
            unix_now(),
            self.settings.refund_after,
            REVOTE_AFTER_SECS,
            CANCELS_PER_VOTE,
        );
        let due = match due {
            Ok(due) if due.is_empty() => return,
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the refunds due");
                return;
            }
        };
        let nonces: Vec<u64> = due.iter().map(|r| r.nonce).collect();
        let items = u64::try_from(due.len()).unwrap_or(u64::MAX);
        let input = Bridge::cancelValueTransfersCall { rs: due }.abi_encode();
        // Every item needs ITEM_GAS left at its start or the bridge skips it: the plan is the
        // worst case, never an estimate (which finds the gas at which the items are skipped).
        let gas_limit =
            CANCEL_BASE_GAS.saturating_add(items.saturating_mul(multibridge_contracts::ITEM_GAS));
        let sent = self
            .submit
            .submit(Job {
                to: self.destination.bridge(),
                input: input.into(),
                gas_limit,
                lead: false,
            })
            .await;
        match sent {
            Ok(sent) => {
                if let Err(e) = self.store.lock().cancel_voted(lane, &nonces, unix_now()) {
                    tracing::warn!(error = %e, "cannot record the cancel vote");
                }
                self.metrics.refund_step("cancel_voted", items);
                tracing::info!(?nonces, tx = %sent.hash, "voted to cancel requests due for a refund");
            }
            Err(e) => {
                tracing::warn!(?nonces, error = %e, "cannot send the cancel vote; retrying")
            }
        }
    }

    /// Read the destination's `HandleCancelled` down to the depth and record every cancel of
    /// the request this relay indexed at its nonce. `true`: more blocks to read.
    async fn scan_cancels(&mut self) -> Result<bool, String> {
        let lane = self.settings.lane;
        let head = self.destination.head().await.map_err(|e| e.to_string())?;
        let Some(deep) = head.checked_sub(self.settings.source_depth) else {
            return Ok(false);
        };
        let to = self
            .destination
            .safe_head(head, self.settings.confirmations)
            .await
            .map_err(|e| e.to_string())?
            .min(deep);
        let from = self
            .store
            .lock()
            .cancel_scan_next(lane)
            .map_err(|e| e.to_string())?
            .unwrap_or(self.settings.scan_from);
        if from > to {
            return Ok(false);
        }
        let end = from
            .saturating_add(self.settings.max_range.saturating_sub(1))
            .min(to);
        let filter = Filter::new()
            .address(self.destination.bridge())
            .event_signature(Bridge::HandleCancelled::SIGNATURE_HASH)
            .from_block(from)
            .to_block(end);
        let logs = self
            .destination
            .logs(&filter)
            .await
            .map_err(|e| e.to_string())?;
        for log in logs.iter().filter(|l| !l.removed) {
            let Ok(event) = log.log_decode::<Bridge::HandleCancelled>() else {
                tracing::warn!(tx = ?log.transaction_hash, "undecodable HandleCancelled; ignored");
                continue;
            };
            let event = event.inner.data;
            let block = log.block_number.unwrap_or(end);
            // A source that does not answer is asked again later, from this block; once it
            // has failed for `UNREADABLE_PATIENCE` while the source answers its head, the
            // request counts as not found (and the
            // give-up below holds for it): the scan never waits for good behind one hash.
            let found = match self.request_of(event.nonce, event.srcTxHash).await {
                Ok(found) => {
                    self.unreadable.answered(event.nonce);
                    found
                }
                Err(e) => {
                    let answers = self.source.0.head().await.is_ok();
                    if self.unreadable.failed(event.nonce, Instant::now(), answers) {
                        tracing::warn!(nonce = event.nonce, error = %e, "cannot read a cancelled request's source transaction; read again later");
                        self.store
                            .lock()
                            .set_cancel_scan_next(lane, block)
                            .map_err(|e| e.to_string())?;
                        return Ok(false);
                    }
                    tracing::warn!(nonce = event.nonce, error = %e, "cannot read a cancelled request's source transaction for {} s while the source answers: counted as not found", UNREADABLE_PATIENCE.as_secs());
                    None
                }
            };
            if found.is_none() && block.saturating_add(GIVE_UP_AFTER_BLOCKS) < to {
                tracing::error!(nonce = event.nonce, tx = %event.srcTxHash, block, "the destination cancelled a request this relay cannot find final on the source {GIVE_UP_AFTER_BLOCKS} blocks later: not signing its refund (another operator's relay may; look at the guardian)");
                continue;
            }
            match found {
                None => {
                    // Not final on the source yet as far as this relay can tell: read again
                    // later, from this block.
                    self.store
                        .lock()
                        .set_cancel_scan_next(lane, block)
                        .map_err(|e| e.to_string())?;
                    tracing::info!(
                        nonce = event.nonce,
                        "cancel of a request not final on the source yet; read again later"
                    );
                    return Ok(false);
                }
                Some(request) if self.settings.domain.vote_key(&request) != event.key => {
                    tracing::error!(nonce = event.nonce, key = %event.key, "the destination cancelled another payload than the request indexed at its nonce: not signing a refund");
                }
                Some(request) => {
                    let noted = self
                        .store
                        .lock()
                        .note_cancelled(lane, &request, event.key, block)
                        .map_err(|e| e.to_string())?;
                    if noted {
                        self.metrics.refund_step("cancelled", 1);
                        tracing::info!(
                            nonce = event.nonce,
                            block,
                            "the destination cancelled the request: its refund may be signed"
                        );
                    }
                }
            }
        }
        self.store
            .lock()
            .set_cancel_scan_next(lane, end.saturating_add(1))
            .map_err(|e| e.to_string())?;
        Ok(end < to)
    }

    /// The request at `nonce` as this relay indexed it (the requests table, or the refund row's
    /// copy once compaction dropped it), else as its source transaction `tx` made it once that
    /// is final on the source; `None` while it is not (yet).
    async fn request_of(&self, nonce: u64, tx: B256) -> Result<Option<Request>, String> {
        {
            let store = self.store.lock();
            if let Some(stored) = store
                .get(self.settings.lane, nonce)
                .map_err(|e| e.to_string())?
            {
                return Ok(Some(stored.request));
            }
            if let Some(request) = store
                .refund_of(self.settings.lane, nonce)
                .map_err(|e| e.to_string())?
                .and_then(|row| row.request)
            {
                return Ok(Some(request));
            }
        }
        let (source, confirmations) = &self.source;
        let Some(requests) = requests_of_tx(source, tx)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let Some(request) = requests.into_iter().find(|r| r.nonce == nonce) else {
            return Ok(None);
        };
        let head = source.head().await.map_err(|e| e.to_string())?;
        let safe = source
            .safe_head(head, *confirmations)
            .await
            .map_err(|e| e.to_string())?;
        Ok((request.srcBlockNumber <= safe).then_some(request))
    }

    /// Note the cancelled requests the source refunded meanwhile (whoever sent the refund), a
    /// few per step from a rotating position.
    async fn see_refunds(&mut self) {
        const PER_STEP: usize = 16;
        let lane = self.settings.lane;
        let rows = match self
            .store
            .lock()
            .refunds_unseen(lane, self.seen_from, PER_STEP)
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the refunds not seen yet");
                return;
            }
        };
        self.seen_from = if rows.len() < PER_STEP {
            0
        } else {
            rows.last().map_or(0, |r| r.nonce.saturating_add(1))
        };
        let views = self.source.0.views();
        for row in rows {
            match views.is_refunded(row.nonce).await {
                Ok(true) => {
                    let noted = self.store.lock().note_refunded(lane, row.nonce, unix_now());
                    if let Ok(true) = noted {
                        self.metrics.refund_step("refunded", 1);
                        tracing::info!(nonce = row.nonce, "the source refunded the request");
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read whether the source refunded");
                    return;
                }
            }
        }
    }

    /// Sign the refund of every cancel recorded and not signed yet.
    async fn sign_refunds(&mut self) {
        let lane = self.settings.lane;
        let rows = match self.store.lock().refunds_to_sign(lane, SIGNED_PER_STEP) {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the refunds to sign");
                return;
            }
        };
        for row in rows {
            let Some(request) = row.request else {
                continue;
            };
            let digest: B256 = self
                .settings
                .domain
                .refund_digest(self.settings.domain.vote_key(&request));
            match self.signer.sign_hash(&digest).await {
                Ok(signature) => {
                    let bytes = canonical_bytes(&signature);
                    if let Err(e) = self.store.lock().refund_signed(lane, row.nonce, &bytes) {
                        tracing::warn!(nonce = row.nonce, error = %e, "cannot store a refund signature");
                        continue;
                    }
                    self.metrics.refund_step("signed", 1);
                    tracing::info!(
                        nonce = row.nonce,
                        "signed the refund of a cancelled request"
                    );
                }
                Err(e) => {
                    tracing::warn!(nonce = row.nonce, error = %e, "cannot sign a refund; retrying");
                    return;
                }
            }
        }
    }
}

impl Stepper for RefundDesk {
    type Error = Infallible;

    fn step(&mut self) -> impl Future<Output = Result<Next, Infallible>> + Send {
        self.round()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_lookup_is_asked_again_until_its_patience_runs_out() {
        let mut unreadable = Unreadable::default();
        let t0 = Instant::now();
        assert!(
            unreadable.failed(7, t0, true),
            "one failure: ask again later"
        );
        assert!(unreadable.failed(7, t0 + UNREADABLE_PATIENCE / 2, true));
        // It answered: a later failure starts its patience anew.
        unreadable.answered(7);
        assert!(unreadable.failed(7, t0 + UNREADABLE_PATIENCE, true));
        assert!(!unreadable.failed(7, t0 + UNREADABLE_PATIENCE * 2, true));
        // Given up on and forgotten: nothing kept for it.
        assert!(unreadable.0.is_empty());
        // A source down for longer than the patience gives nothing up: the patience starts
        // when the source answers again.
        let t1 = t0 + UNREADABLE_PATIENCE * 3;
        assert!(unreadable.failed(8, t1, true));
        for k in 1..=3 {
            assert!(unreadable.failed(8, t1 + UNREADABLE_PATIENCE * k, false));
        }
        let back = t1 + UNREADABLE_PATIENCE * 4;
        assert!(unreadable.failed(8, back, true));
        assert!(unreadable.failed(8, back + UNREADABLE_PATIENCE / 2, true));
        assert!(!unreadable.failed(8, back + UNREADABLE_PATIENCE, true));
    }
}
