//! Attested batches (issue 36, `voting.mode = "attestations"`): instead of a vote transaction
//! per operator, every operator's replicas sign each batch of confirmed requests (an
//! EIP-712 digest, [`multibridge_contracts::attestation`]) and serves its signatures
//! ([`http`]); the relays fetch each other's through the service registry ([`peers`]), and
//! once a batch holds a threshold of current operators' signatures one operator sends it in one
//! `executeAttested` transaction. Whose turn it is follows from the batch's digest (fair over
//! time, so the gas is shared); the others send it only after `standby_after` times their
//! distance from that operator — a down operator delays its batches by that much, no more.
//!
//! [`Attestor`] is the voter's planner in this mode: the voter still pre-checks, sends through
//! the lane's submitter and reads receipts (a `HandleValueTransfer` marks a request handled
//! whoever sent it).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, Bytes};
use alloy::sol_types::SolCall;
use multibridge_contracts::attestation::{canonical_bytes, pack_signatures, recover_signer};
use multibridge_contracts::bindings::Bridge;
use multibridge_contracts::{Lane, Request, VoteDomain};
use multibridge_monitoring::attest_metrics::STEP_PHASES;
use multibridge_monitoring::{AttestMetrics, StatusBoard};

use crate::chain::signer::{OperatorSigner, SignerError};
use crate::store::attestations::OwnAttestation;
use crate::store::{SharedStore, StoreError};
use crate::turns::{Committee, distance, turn_of};
use collect::PeerError;

pub mod collect;
pub mod location;
pub mod page;
pub mod serve;

use collect::PeerSource;

/// A peer is asked again at most this often.
const FETCH_EVERY: Duration = Duration::from_millis(250);
/// How many times `standby_after` a standby waits while the destination's blocks are full.
const FULL_STANDBY_FACTOR: u32 = 4;
/// How long a step waits for the peers' answers before it goes on with what it has.
const COLLECT_WAIT: Duration = Duration::from_millis(250);

/// A batch still short of signatures this long no longer sets where the pages of peers'
/// signatures start while younger batches wait too.
const STALE_BATCH: Duration = Duration::from_secs(30);

/// Every this many fetch rounds, pages start at the lowest short batch however old.
const STALE_EVERY: u64 = 8;

/// An attested step (plan and sends) this long is logged with its phases.
const SLOW_STEP: Duration = Duration::from_secs(1);

/// Most open batches shown in `/status` per lane.
const STATUS_BATCHES: usize = 10;

/// Most peer signatures one step recovers, over all pages (audit A3-M4: a recovery is ~0.3 ms
/// of curve arithmetic; a 1 MiB page holds ~4,000 entries). What is left over is fetched again.
const RECOVERIES_PER_STEP: usize = 256;

/// A peer that served a bad signature is not asked again before this; each bad page doubles it
/// up to [`GARBAGE_BACKOFF_MAX`], a clean page clears it.
const GARBAGE_BACKOFF: Duration = Duration::from_secs(1);
/// The longest a peer serving garbage waits between fetches.
const GARBAGE_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Why planning attested batches failed.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The operator's signer did not sign.
    #[error(transparent)]
    Signer(#[from] SignerError),
}

/// One batch as this relay composed it, with the signatures it holds.
#[derive(Debug, Clone)]
pub struct BatchState {
    /// Its requests, in nonce order.
    pub requests: Vec<Request>,
    /// The digest operators sign.
    pub digest: B256,
    /// Valid signatures by signer (canonical 65 bytes).
    pub signatures: BTreeMap<Address, [u8; 65]>,
    composed_at: Instant,
    complete_at: Option<Instant>,
    /// Its worst case does not fit one transaction on the destination: its requests are voted
    /// (audit A3-L8), never signed.
    by_votes: bool,
}

/// Gas an attested item may cost at most, beside its calldata (a token release with its
/// views and credits, the record of the executed key, the events): the bound the relays agree
/// on whether a batch fits one transaction (measured in forge at about 30-40k per native or
/// ERC-20 item).
pub const ATTESTED_ITEM_GAS_BOUND: u64 = 50_000;
/// Gas one byte of an attested batch's calldata may cost at most, execution included (the
/// audit's 32 requests with 1 KiB of extraData: 2.53M gas for 48,420 bytes, 52 a byte with the
/// items' own cost).
pub const ATTESTED_BYTE_GAS_BOUND: u64 = 48;

/// The worst case every relay computes alike for a batch of `requests`: whether it fits one
/// transaction of at most `budget` gas (the share of a block a vote may take). Every relay
/// decides the same for the same batch, so a batch that does not fit is voted by all of them
/// (votes and signatures never add up: all must agree).
pub fn fits_one_transaction(requests: &[Request], budget: u64) -> bool {
    let bytes = Bridge::executeAttestedCall {
        rs: requests.to_vec(),
        signatures: Bytes::new(),
    }
    .abi_encode()
    .len() as u64;
    let worst = (requests.len() as u64)
        .saturating_mul(ATTESTED_ITEM_GAS_BOUND)
        .saturating_add(bytes.saturating_mul(ATTESTED_BYTE_GAS_BOUND))
        .saturating_add(multibridge_contracts::ITEM_GAS)
        .saturating_add(100_000);
    worst <= budget
}

impl BatchState {
    fn first(&self) -> u64 {
        self.requests.first().map_or(0, |r| r.nonce)
    }

    /// Signatures of operators of `committee`.
    fn counting(&self, committee: &Committee) -> usize {
        self.signatures
            .keys()
            .filter(|a| committee.operators.contains(a))
            .count()
    }
}

/// An attested batch to send now.
#[derive(Debug, Clone)]
pub struct AttestedSend {
    /// Its first nonce.
    pub first: u64,
    /// Every request of the batch (handled ones included: the bridge skips them).
    pub requests: Vec<Request>,
    /// `executeAttested`'s signatures argument.
    pub signatures: Bytes,
    /// Another operator's turn: sent after its timeout.
    pub standby: bool,
}

/// The planner of one lane's attested batches.
pub struct Attestor {
    lane: Lane,
    domain: VoteDomain,
    me: Address,
    signer: OperatorSigner,
    store: SharedStore,
    peers: Arc<dyn PeerSource>,
    standby_after: Duration,
    metrics: AttestMetrics,
    board: Option<Arc<StatusBoard>>,
    batches: BTreeMap<u64, BatchState>,
    last_fetch: HashMap<Address, Instant>,
    /// Fetches still out: a step waits for them at most [`COLLECT_WAIT`], a later step takes
    /// what they bring.
    fetching: tokio::task::JoinSet<(Address, Result<Vec<OwnAttestation>, PeerError>)>,
    /// The operator each fetch out asks.
    fetching_from: HashMap<tokio::task::Id, Address>,
    rounds: u64,
    last_phases: [Duration; 4],
    /// The writer of this operator's signature pages (`voting.attestation_store`).
    pages: Option<serve::PageSender>,
    /// Peers that served a bad signature: not asked before the instant, and the next wait.
    backoff: HashMap<Address, (Instant, Duration)>,
    /// Recoveries left in this step's budget.
    recoveries_left: usize,
    /// The most gas one transaction of a batch may take (a vote's share of the destination's
    /// block); a batch whose worst case is more is voted instead.
    transaction_budget: u64,
}

impl Attestor {
    /// The planner of `lane` (votes bound to `domain`) for operator `me` signing with `signer`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        lane: Lane,
        domain: VoteDomain,
        me: Address,
        signer: OperatorSigner,
        store: SharedStore,
        peers: Arc<dyn PeerSource>,
        standby_after: Duration,
        metrics: AttestMetrics,
    ) -> Self {
        Self {
            lane,
            domain,
            me,
            signer,
            store,
            peers,
            standby_after,
            metrics,
            board: None,
            batches: BTreeMap::new(),
            last_fetch: HashMap::new(),
            fetching: tokio::task::JoinSet::new(),
            fetching_from: HashMap::new(),
            rounds: 0,
            last_phases: [Duration::ZERO; 4],
            pages: None,
            backoff: HashMap::new(),
            recoveries_left: RECOVERIES_PER_STEP,
            transaction_budget: u64::MAX,
        }
    }

    /// The most gas one transaction may take on the destination (see [`fits_one_transaction`]).
    pub fn set_transaction_budget(&mut self, budget: u64) {
        self.transaction_budget = budget;
    }

    /// The open nonces of the batches too large for one transaction: they are voted.
    pub fn by_votes(&self, open: &[u64]) -> Vec<u64> {
        let open: std::collections::BTreeSet<u64> = open.iter().copied().collect();
        self.batches
            .values()
            .filter(|b| b.by_votes)
            .flat_map(|b| b.requests.iter().map(|r| r.nonce))
            .filter(|n| open.contains(n))
            .collect()
    }

    /// Also tell `pages` (the writer to the attestation store) of every page this operator's
    /// signatures are in: signed now, or read from the store after a start.
    pub fn with_pages(mut self, pages: serve::PageSender) -> Self {
        self.pages = Some(pages);
        self
    }

    /// Show the open batches in `/status` → `attestations`.
    pub fn with_board(mut self, board: Arc<StatusBoard>) -> Self {
        self.board = Some(board);
        self
    }

    /// The step whose [`plan`](Self::plan) ran last sent `batches` of the `due` ones in `send`
    /// (more due than sent: `voting.attested_max_in_flight` held the rest): count the send phase and
    /// log a step of [`SLOW_STEP`] or more with its phases (the batches due waited that long
    /// for this relay).
    pub fn finish_step(&self, send: Duration, batches: usize, due: usize) {
        let [precheck, compose, sign, collect] = self.last_phases;
        self.metrics
            .step_phase(self.lane, STEP_PHASES[4], send.as_secs_f64());
        let total = [precheck, compose, sign, collect, send]
            .into_iter()
            .fold(Duration::ZERO, Duration::saturating_add);
        if total >= SLOW_STEP {
            let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
            tracing::info!(lane = %self.lane, batches, due, precheck_ms = ms(precheck), compose_ms = ms(compose), sign_ms = ms(sign), collect_ms = ms(collect), send_ms = ms(send), "slow attested step: the batches due waited this long for this relay");
        }
    }

    /// The pre-check of the step about to [`plan`](Self::plan) took `took`.
    pub fn precheck_took(&mut self, took: Duration) {
        self.last_phases[0] = took;
        self.metrics
            .step_phase(self.lane, STEP_PHASES[0], took.as_secs_f64());
    }

    /// Count a pre-check that derived the state of `derived` nonces and read `read`.
    pub fn count_precheck(&self, derived: usize, read: usize) {
        self.metrics
            .prechecked(self.lane, derived as u64, read as u64);
    }

    /// Count a batch sent.
    pub fn count_sent(&self, standby: bool) {
        self.metrics.sent(self.lane, standby);
    }

    /// Forget what was collected for the batch starting at `first` (its send was refused: an
    /// operator may have been removed; the signatures are fetched again).
    pub fn forget(&mut self, first: u64) {
        self.batches.remove(&first);
    }

    /// The batches to send now for the open requests `open` (ascending nonces) under
    /// `committee`: compose their batches, sign what this operator has not, fetch the others'
    /// signatures, and return the batches that hold a threshold and whose turn is this
    /// operator's (or whose turn passed to it).
    ///
    /// While the destination's blocks are full (`destination_full`), a standby waits
    /// [`FULL_STANDBY_FACTOR`] times as long: a batch then waits in the node's pool behind
    /// others for seconds however well its turn's operator does, and a standby's copy would
    /// execute nothing and take the room of a batch that would.
    /// A standby replica's step: compose the batches of `open`, sign them and collect the
    /// other operators' signatures, but send nothing. Every replica of an operator signs, so
    /// the operator's signatures never wait for its election (a signature is the same whoever
    /// of its replicas makes it: the signer is deterministic, or any valid one will do; only a
    /// send needs the term), and a standby that takes the lane over holds complete batches.
    pub async fn sign_standby(
        &mut self,
        open: &[u64],
        committee: &Committee,
    ) -> Result<(), AttestError> {
        self.compose(open)?;
        if committee.operators.contains(&self.me) {
            self.sign_own().await?;
        }
        self.collect(committee).await;
        Ok(())
    }

    pub async fn plan(
        &mut self,
        open: &[u64],
        committee: &Committee,
        destination_full: bool,
    ) -> Result<Vec<AttestedSend>, AttestError> {
        let started = Instant::now();
        self.compose(open)?;
        let composed = Instant::now();
        if committee.operators.contains(&self.me) {
            self.sign_own().await?;
        }
        let signed = Instant::now();
        self.collect(committee).await;
        let now = Instant::now();
        self.last_phases = [
            self.last_phases[0],
            composed.saturating_duration_since(started),
            signed.saturating_duration_since(composed),
            now.saturating_duration_since(signed),
        ];
        for (phase, took) in STEP_PHASES.iter().zip(self.last_phases).skip(1) {
            self.metrics
                .step_phase(self.lane, phase, took.as_secs_f64());
        }
        let mut sends = Vec::new();
        for state in self.batches.values_mut() {
            if state.by_votes || state.counting(committee) < committee.threshold.max(1) {
                continue;
            }
            let complete_at = *state.complete_at.get_or_insert(now);
            let Some(distance) = distance(&state.digest, &committee.operators, self.me) else {
                // Not an operator any more: anyone may send, but the operators come first.
                continue;
            };
            let factor = if destination_full {
                FULL_STANDBY_FACTOR
            } else {
                1
            };
            let wait = self
                .standby_after
                .saturating_mul(u32::try_from(distance).unwrap_or(u32::MAX))
                .saturating_mul(factor);
            if now.saturating_duration_since(complete_at) < wait {
                continue;
            }
            let chosen: Vec<(Address, [u8; 65])> = state
                .signatures
                .iter()
                .filter(|(a, _)| committee.operators.contains(a))
                .take(committee.threshold.max(1))
                .map(|(a, s)| (*a, *s))
                .collect();
            sends.push(AttestedSend {
                first: state.first(),
                requests: state.requests.clone(),
                signatures: pack_signatures(&chosen),
                standby: distance > 0,
            });
        }
        self.publish(committee);
        Ok(sends)
    }

    /// Compose the batches of the open requests; keep only batches with an open request.
    fn compose(&mut self, open: &[u64]) -> Result<(), AttestError> {
        let open_set: std::collections::BTreeSet<u64> = open.iter().copied().collect();
        self.batches
            .retain(|_, b| b.requests.iter().any(|r| open_set.contains(&r.nonce)));
        let store = self.store.clone();
        // Every nonce a batch holds, once: asking each batch for each open nonce was most of a
        // step's CPU with thousands of open requests in view.
        let mut covered: std::collections::HashSet<u64> = self
            .batches
            .values()
            .flat_map(|b| b.requests.iter().map(|r| r.nonce))
            .collect();
        for &nonce in open {
            if covered.contains(&nonce) {
                continue;
            }
            let requests = store.lock().batch_of(self.lane, nonce)?;
            let Some(first) = requests.first().map(|r| r.nonce) else {
                continue;
            };
            let digest = self.domain.batch_digest(&requests);
            covered.extend(requests.iter().map(|r| r.nonce));
            let by_votes = !fits_one_transaction(&requests, self.transaction_budget);
            if by_votes {
                tracing::warn!(lane = %self.lane, first, count = requests.len(), budget = self.transaction_budget, "an attested batch's worst case does not fit one transaction on the destination: its requests are voted");
            }
            self.batches.insert(
                first,
                BatchState {
                    requests,
                    digest,
                    signatures: BTreeMap::new(),
                    composed_at: Instant::now(),
                    complete_at: None,
                    by_votes,
                },
            );
        }
        Ok(())
    }

    /// Sign every batch this operator has not signed (a signature already in the store for the
    /// same digest is used again).
    async fn sign_own(&mut self) -> Result<(), AttestError> {
        let mut signed = 0u64;
        let mut pages = std::collections::BTreeSet::new();
        for state in self.batches.values_mut() {
            if state.by_votes || state.signatures.contains_key(&self.me) {
                continue;
            }
            let first = state.first();
            let stored = self.store.lock().attestation(self.lane, first)?;
            let bytes = match stored {
                Some(own)
                    if own.digest == state.digest
                        && recover_signer(&state.digest, &own.signature) == Some(self.me) =>
                {
                    let mut bytes = [0u8; 65];
                    bytes.copy_from_slice(&own.signature);
                    bytes
                }
                _ => {
                    let signature = self.signer.sign_hash(&state.digest).await?;
                    let bytes = canonical_bytes(&signature);
                    let count = state.requests.len() as u64;
                    self.store.record_attestation(
                        self.lane,
                        &OwnAttestation {
                            first_nonce: first,
                            count,
                            digest: state.digest,
                            signature: Bytes::copy_from_slice(&bytes),
                        },
                    )?;
                    signed = signed.saturating_add(1);
                    bytes
                }
            };
            state.signatures.insert(self.me, bytes);
            pages.insert(page::page_of(first));
        }
        if let Some(writer) = &self.pages {
            for page in pages {
                // A closed channel: the writer stopped with the lane.
                let _ = writer.send(page);
            }
        }
        if signed > 0 {
            self.metrics.signed(self.lane, signed);
            tracing::debug!(lane = %self.lane, signed, "attested batches signed");
        }
        Ok(())
    }

    /// Ask every other operator of `committee` that a batch below the threshold lacks, at most
    /// every [`FETCH_EVERY`] each; keep only signatures that recover to that operator over the
    /// digest this relay computed.
    async fn collect(&mut self, committee: &Committee) {
        let threshold = committee.threshold.max(1);
        // A batch a peer has not signed for long (it may never: composed otherwise there) does
        // not hold the page of the others back: pages start at the lowest recent one.
        // Every [`STALE_EVERY`]th round the stale ones are asked for too.
        self.rounds = self.rounds.wrapping_add(1);
        let recent = !self.rounds.is_multiple_of(STALE_EVERY)
            && self.batches.values().any(|b| {
                b.counting(committee) < threshold && b.composed_at.elapsed() < STALE_BATCH
            });
        let mut wanted: BTreeMap<Address, u64> = BTreeMap::new();
        for state in self.batches.values() {
            if state.by_votes
                || state.counting(committee) >= threshold
                || (recent && state.composed_at.elapsed() >= STALE_BATCH)
            {
                continue;
            }
            for op in &committee.operators {
                if *op != self.me && !state.signatures.contains_key(op) {
                    let from = wanted.entry(*op).or_insert(u64::MAX);
                    *from = (*from).min(state.first());
                }
            }
        }
        let now = Instant::now();
        self.recoveries_left = RECOVERIES_PER_STEP;
        let asking: std::collections::HashSet<Address> =
            self.fetching_from.values().copied().collect();
        wanted.retain(|op, _| {
            !asking.contains(op)
                && self
                    .last_fetch
                    .get(op)
                    .is_none_or(|at| now.saturating_duration_since(*at) >= FETCH_EVERY)
                && self.backoff.get(op).is_none_or(|(until, _)| now >= *until)
        });
        let lane = self.lane;
        for (op, from) in wanted {
            self.last_fetch.insert(op, now);
            let peers = self.peers.clone();
            let task = self
                .fetching
                .spawn(async move { (op, peers.fetch(lane, op, from).await) });
            self.fetching_from.insert(task.id(), op);
        }
        // The answers that come within COLLECT_WAIT count in this step; a slow peer's count in
        // a later one, and the batches the others complete are not held back by it.
        let deadline = tokio::time::Instant::now()
            .checked_add(COLLECT_WAIT)
            .unwrap_or_else(tokio::time::Instant::now);
        while !self.fetching.is_empty() {
            match tokio::time::timeout_at(deadline, self.fetching.join_next_with_id()).await {
                Ok(Some(Ok((id, (op, answer))))) => {
                    self.fetching_from.remove(&id);
                    self.take_page(op, answer, committee).await;
                }
                Ok(Some(Err(failed))) => {
                    // The fetch task panicked or was cancelled: asked again next round.
                    self.fetching_from.remove(&failed.id());
                }
                Ok(None) | Err(_) => break,
            }
        }
    }

    /// Keep what `op` answered that recovers to `op` over this relay's digests; count the rest.
    /// A batch that holds the threshold of `committee` already takes no more: recovering a
    /// signature is most of a relay's curve arithmetic, and a page answers for every batch
    /// from its start, also the ones another peer completed meanwhile. One such signature per
    /// page is still checked, so a peer serving garbage is counted even while the others
    /// suffice.
    ///
    /// What one page may cost (audit A3-M4): one entry per batch this relay holds (a repeated
    /// batch is skipped), within the step's [`RECOVERIES_PER_STEP`], recovered off the async
    /// workers; the first bad signature ends the page, and the peer is not asked again before
    /// its backoff.
    async fn take_page(
        &mut self,
        op: Address,
        answer: Result<Vec<OwnAttestation>, PeerError>,
        committee: &Committee,
    ) {
        let threshold = committee.threshold.max(1);
        let lane = self.lane;
        let label = op.to_string();
        let page = match answer {
            Ok(page) => page,
            Err(e) => {
                self.metrics.fetched(lane, &label, e.outcome());
                tracing::debug!(%lane, operator = %op, error = %e, "no signatures from a peer operator");
                return;
            }
        };
        // (first nonce, digest, signature, complete) to recover, at most one per batch.
        let mut candidates: Vec<(u64, B256, [u8; 65], bool)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let (mut mismatched, mut spot_checked) = (0u64, false);
        for att in page {
            if candidates.len() >= self.recoveries_left {
                break;
            }
            if !seen.insert(att.first_nonce) {
                continue;
            }
            let Some(state) = self.batches.get(&att.first_nonce) else {
                continue;
            };
            // Held already, byte for byte, over the same digest: checked when it came.
            if att.digest == state.digest
                && state
                    .signatures
                    .get(&op)
                    .is_some_and(|held| held.as_slice() == att.signature.as_ref())
            {
                continue;
            }
            let complete = state.counting(committee) >= threshold;
            if complete && spot_checked {
                continue;
            }
            spot_checked |= complete;
            // Another digest for the batch costs nothing to skip (no recovery).
            if att.digest != state.digest || att.signature.len() != 65 {
                mismatched = mismatched.saturating_add(1);
                continue;
            }
            let mut bytes = [0u8; 65];
            bytes.copy_from_slice(&att.signature);
            candidates.push((att.first_nonce, state.digest, bytes, complete));
        }
        let count = candidates.len();
        self.recoveries_left = self.recoveries_left.saturating_sub(count);
        // Recovered in order off the async workers; the first that is not `op`'s ends it.
        let recovered = tokio::task::spawn_blocking(move || {
            let mut good = Vec::with_capacity(candidates.len());
            let mut recoveries = 0u64;
            for (first, digest, signature, complete) in candidates {
                recoveries = recoveries.saturating_add(1);
                if recover_signer(&digest, &signature) != Some(op) {
                    return (good, recoveries, true);
                }
                if !complete {
                    good.push((first, digest, signature));
                }
            }
            (good, recoveries, false)
        })
        .await;
        let (good, recoveries, failed) = recovered.unwrap_or_else(|_| (Vec::new(), 0, true));
        self.metrics.recovered(lane, recoveries);
        let mut taken = 0u64;
        for (first, digest, signature) in good {
            if let Some(state) = self.batches.get_mut(&first)
                && state.digest == digest
                && state.signatures.insert(op, signature).is_none()
            {
                taken = taken.saturating_add(1);
            }
        }
        if failed {
            let wait = self
                .backoff
                .get(&op)
                .map_or(GARBAGE_BACKOFF, |(_, w)| w.saturating_mul(2))
                .min(GARBAGE_BACKOFF_MAX);
            let until = Instant::now()
                .checked_add(wait)
                .unwrap_or_else(Instant::now);
            self.backoff.insert(op, (until, wait));
            self.metrics.fetched(lane, &label, "garbage");
            tracing::warn!(%lane, operator = %op, checked = count, wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), "a peer operator served a signature that is not its own over this relay's digest: the rest of its page is skipped and it is not asked again before the wait");
        } else if mismatched > 0 {
            self.backoff.remove(&op);
            self.metrics.fetched(lane, &label, "garbage");
            tracing::warn!(%lane, operator = %op, mismatched, "a peer operator served signatures over other digests than this relay's: skipped");
        } else {
            self.backoff.remove(&op);
            self.metrics.fetched(lane, &label, "ok");
        }
        if taken > 0 {
            self.metrics.peer_signatures(lane, &label, taken);
        }
    }

    /// The metrics of the oldest open batch and `/status` → `attestations.<lane>`.
    fn publish(&self, committee: &Committee) {
        let oldest = self
            .batches
            .values()
            .next()
            .map(|b| (b.counting(committee), b.composed_at.elapsed().as_secs()));
        self.metrics
            .set_oldest(self.lane, oldest, committee.threshold);
        if let Some(board) = &self.board {
            let batches: Vec<serde_json::Value> = self
                .batches
                .values()
                .take(STATUS_BATCHES)
                .map(|b| {
                    serde_json::json!({
                        "first_nonce": b.first(),
                        "count": b.requests.len(),
                        "digest": b.digest,
                        "signers": b.signatures.keys().collect::<Vec<_>>(),
                        "counting": b.counting(committee),
                        "threshold": committee.threshold,
                        "turn": turn_of(&b.digest, &committee.operators),
                        "waiting_secs": b.composed_at.elapsed().as_secs(),
                    })
                })
                .collect();
            board.set_entry(
                "attestations",
                self.lane.as_str(),
                serde_json::json!({ "open_batches": self.batches.len(), "oldest": batches }),
            );
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::Store;
    use alloy::primitives::U256;
    use alloy::signers::SignerSync;
    use alloy::signers::local::PrivateKeySigner;

    /// A native request of `nonce` mined in source block `block` (also `execute`'s tests).
    pub(crate) fn request(nonce: u64, block: u64) -> Request {
        Request {
            nonce,
            kind: 0,
            from: Address::repeat_byte(1),
            to: Address::repeat_byte(2),
            token: Address::ZERO,
            amount: U256::from(5),
            fee: U256::ZERO,
            extraData: Bytes::new(),
            srcChainId: U256::from(1),
            srcBridge: Address::repeat_byte(9),
            srcTxHash: B256::repeat_byte(u8::try_from(nonce).unwrap()),
            srcBlockNumber: block,
            srcLogIndex: 0,
        }
    }

    fn domain() -> VoteDomain {
        VoteDomain {
            src_chain_id: 1,
            src_bridge: Address::repeat_byte(9),
            dst_chain_id: 2,
            dst_bridge: Address::repeat_byte(8),
        }
    }

    /// An attestor of main-to-service for `me` over `store`, asking `peers`; its metrics'
    /// registry beside it.
    fn attestor(
        me: &PrivateKeySigner,
        store: SharedStore,
        peers: Arc<dyn PeerSource>,
        standby_after: Duration,
    ) -> (Attestor, prometheus::Registry) {
        let lane = Lane::MainToService;
        let registry = prometheus::Registry::new();
        let metrics = AttestMetrics::register(&registry, &[lane]).unwrap();
        let attestor = Attestor::new(
            lane,
            domain(),
            me.address(),
            OperatorSigner::local(me.clone()),
            store,
            peers,
            standby_after,
            metrics,
        );
        (attestor, registry)
    }

    /// What a peer serves for `batches` when it signs with `key`.
    fn signed_page(key: &PrivateKeySigner, batches: &[Vec<Request>]) -> Vec<OwnAttestation> {
        batches
            .iter()
            .map(|b| {
                let digest = domain().batch_digest(b);
                let sig = key.sign_hash_sync(&digest).unwrap();
                OwnAttestation {
                    first_nonce: b[0].nonce,
                    count: b.len() as u64,
                    digest,
                    signature: Bytes::copy_from_slice(&canonical_bytes(&sig)),
                }
            })
            .collect()
    }

    /// Peers that sign with their own key (honest) or with another key (garbage), over the
    /// batches of a store of their own composed alike.
    struct FakePeers {
        honest: PrivateKeySigner,
        liar: (Address, PrivateKeySigner),
        batches: Vec<Vec<Request>>,
        asked: std::sync::Mutex<Vec<Address>>,
    }

    impl PeerSource for FakePeers {
        fn fetch(
            &self,
            _lane: Lane,
            operator: Address,
            _from: u64,
        ) -> futures::future::BoxFuture<'_, Result<Vec<OwnAttestation>, PeerError>> {
            self.asked.lock().unwrap().push(operator);
            let key = if operator == self.honest.address() {
                Some(&self.honest)
            } else if operator == self.liar.0 {
                Some(&self.liar.1)
            } else {
                None
            };
            let page = key.map(|key| signed_page(key, &self.batches));
            Box::pin(async move { page.ok_or(PeerError::Unlocated) })
        }
    }

    #[tokio::test]
    async fn batches_follow_blocks_garbage_is_skipped_and_turns_decide_who_sends() {
        let me = PrivateKeySigner::random();
        let honest = PrivateKeySigner::random();
        let liar_key = PrivateKeySigner::random();
        let liar = Address::repeat_byte(0x77); // serves signatures of another key
        let mut store = Store::open_in_memory("attest test").unwrap();
        let lane = Lane::MainToService;
        // Block 11: nonces 30..=33 (one batch across 32); block 13: nonce 34 (odd blocks after
        // empty ones: each its own batch, `batch_blocks`).
        let requests: Vec<Request> = (30..=33)
            .map(|n| request(n, 11))
            .chain(std::iter::once(request(34, 13)))
            .collect();
        store.record_range(lane, &requests, 14).unwrap();
        let store = SharedStore::new(store);
        let batches = vec![requests[0..4].to_vec(), requests[4..5].to_vec()];
        let peers = Arc::new(FakePeers {
            honest: honest.clone(),
            liar: (liar, liar_key),
            batches: batches.clone(),
            asked: Default::default(),
        });
        let (mut attestor, registry) =
            attestor(&me, store.clone(), peers.clone(), Duration::from_secs(3600));
        let committee = Committee {
            operators: vec![me.address(), honest.address(), liar],
            threshold: 2,
        };
        let open: Vec<u64> = (30..=34).collect();
        let sends = attestor.plan(&open, &committee, false).await.unwrap();
        // The batches as composed: one per (block, window).
        let composed: Vec<Vec<u64>> = attestor
            .batches
            .values()
            .map(|b| b.requests.iter().map(|r| r.nonce).collect())
            .collect();
        assert_eq!(composed, vec![vec![30, 31, 32, 33], vec![34]]);
        for state in attestor.batches.values() {
            assert!(state.signatures.contains_key(&me.address()), "signed own");
            assert!(
                state.signatures.contains_key(&honest.address()),
                "took the honest peer's"
            );
            assert!(!state.signatures.contains_key(&liar), "skipped the liar's");
        }
        // Own signatures are stored for the HTTP API.
        assert_eq!(
            store.lock().attestations_from(lane, 0, 10).unwrap().len(),
            2
        );
        // Sent now: exactly the batches whose turn is mine (the others wait an hour here).
        let mine: Vec<u64> = attestor
            .batches
            .values()
            .filter(|b| distance(&b.digest, &committee.operators, me.address()) == Some(0))
            .map(BatchState::first)
            .collect();
        let sent: Vec<u64> = sends.iter().map(|s| s.first).collect();
        assert_eq!(sent, mine);
        for send in &sends {
            let digest = domain().batch_digest(&send.requests);
            let signers: Vec<Address> = send
                .signatures
                .chunks(65)
                .map(|c| recover_signer(&digest, c).unwrap())
                .collect();
            let mut expected = vec![me.address(), honest.address()];
            expected.sort();
            assert_eq!(signers, expected, "two signers, ascending");
        }
        let garbage = registry
            .gather()
            .iter()
            .find(|f| f.name() == "multibridge_attestation_fetches_total")
            .map(|f| {
                f.get_metric()
                    .iter()
                    .filter(|m| m.get_label().iter().any(|l| l.value() == "garbage"))
                    .map(|m| m.get_counter().get_value())
                    .sum::<f64>()
            })
            .unwrap_or_default();
        assert_eq!(garbage, 1.0, "the liar's page counted as garbage once");
        // A second round asks nobody: every batch holds the threshold.
        peers.asked.lock().unwrap().clear();
        attestor.plan(&open, &committee, false).await.unwrap();
        assert!(peers.asked.lock().unwrap().is_empty());
        // Handled requests leave: nothing open, nothing kept.
        assert!(
            attestor
                .plan(&[], &committee, false)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(attestor.batches.is_empty());
    }

    /// Peers that each sign with their own key, over the same batches.
    struct KeyedPeers {
        keys: Vec<PrivateKeySigner>,
        batches: Vec<Vec<Request>>,
    }

    impl PeerSource for KeyedPeers {
        fn fetch(
            &self,
            _lane: Lane,
            operator: Address,
            _from: u64,
        ) -> futures::future::BoxFuture<'_, Result<Vec<OwnAttestation>, PeerError>> {
            let page = self
                .keys
                .iter()
                .find(|k| k.address() == operator)
                .map(|key| signed_page(key, &self.batches));
            Box::pin(async move { page.ok_or(PeerError::Unlocated) })
        }
    }

    /// A batch that holds the threshold takes no more signatures (each would be recovered for
    /// nothing): with four honest peers answering at once and a threshold of two, every batch
    /// keeps this operator's and exactly one other.
    #[tokio::test]
    async fn a_complete_batch_takes_no_more_signatures() {
        let me = PrivateKeySigner::random();
        let keys: Vec<PrivateKeySigner> = (0..4).map(|_| PrivateKeySigner::random()).collect();
        let lane = Lane::MainToService;
        let mut store = Store::open_in_memory("attest test").unwrap();
        // One request per odd block after an empty one: a batch each.
        let requests: Vec<Request> = (0..8).map(|n| request(n, 11 + 2 * n)).collect();
        store.record_range(lane, &requests, 40).unwrap();
        let peers = Arc::new(KeyedPeers {
            keys: keys.clone(),
            batches: requests.iter().map(|r| vec![r.clone()]).collect(),
        });
        let (mut attestor, _registry) = attestor(
            &me,
            SharedStore::new(store),
            peers,
            Duration::from_secs(3600),
        );
        let committee = Committee {
            operators: std::iter::once(me.address())
                .chain(keys.iter().map(PrivateKeySigner::address))
                .collect(),
            threshold: 2,
        };
        let open: Vec<u64> = (0..8).collect();
        attestor.plan(&open, &committee, false).await.unwrap();
        assert_eq!(attestor.batches.len(), 8);
        for state in attestor.batches.values() {
            assert_eq!(state.signatures.len(), 2, "{:?}", state.signatures.keys());
            assert!(state.signatures.contains_key(&me.address()));
        }
    }

    /// A hostile peer (audit A3-M4): every answer is a page of `entries` copies of one entry —
    /// the right digest of the first batch and a garbage signature (`garbage`), or its own valid
    /// signature.
    struct FloodingPeer {
        key: PrivateKeySigner,
        batch: Vec<Request>,
        entries: usize,
        garbage: bool,
        asked: std::sync::atomic::AtomicUsize,
    }

    impl PeerSource for FloodingPeer {
        fn fetch(
            &self,
            _lane: Lane,
            operator: Address,
            _from: u64,
        ) -> futures::future::BoxFuture<'_, Result<Vec<OwnAttestation>, PeerError>> {
            if operator != self.key.address() {
                return Box::pin(async { Err(PeerError::Unlocated) });
            }
            self.asked
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut entry = signed_page(&self.key, std::slice::from_ref(&self.batch)).remove(0);
            if self.garbage {
                let mut sig = entry.signature.to_vec();
                sig[10] ^= 0xff;
                entry.signature = Bytes::from(sig);
            }
            let page = vec![entry; self.entries];
            Box::pin(async move { Ok(page) })
        }
    }

    fn recoveries(registry: &prometheus::Registry) -> f64 {
        registry
            .gather()
            .iter()
            .find(|f| f.name() == "multibridge_attestation_recoveries_total")
            .map_or(0.0, |f| f.get_metric()[0].get_counter().get_value())
    }

    /// Audit A3-M4: a 1 MiB page of ~4,000 copies of one entry cost every relay ~1 s of curve
    /// arithmetic per fetch inside its voter's step. Now a page costs at most one recovery per
    /// batch it holds: a garbage copy ends the page after one, and the peer is not asked again
    /// before its backoff; valid copies are taken once.
    #[tokio::test]
    async fn a_page_of_duplicates_costs_one_recovery_and_garbage_backs_the_peer_off() {
        for garbage in [true, false] {
            let me = PrivateKeySigner::random();
            let key = PrivateKeySigner::random();
            let lane = Lane::MainToService;
            let mut store = Store::open_in_memory("attest test").unwrap();
            let requests: Vec<Request> = (0..4).map(|n| request(n, 10)).collect();
            store.record_range(lane, &requests, 40).unwrap();
            let peer = Arc::new(FloodingPeer {
                key: key.clone(),
                batch: requests.clone(),
                entries: 4_000,
                garbage,
                asked: Default::default(),
            });
            let (mut attestor, registry) = attestor(
                &me,
                SharedStore::new(store),
                peer.clone(),
                Duration::from_secs(3600),
            );
            let committee = Committee {
                operators: vec![me.address(), key.address(), Address::repeat_byte(0x33)],
                threshold: 3,
            };
            let open: Vec<u64> = (0..4).collect();
            let started = Instant::now();
            attestor.plan(&open, &committee, false).await.unwrap();
            assert!(
                started.elapsed() < Duration::from_millis(500),
                "{:?}",
                started.elapsed()
            );
            assert_eq!(recoveries(&registry), 1.0, "garbage: {garbage}");
            let state = attestor.batches.values().next().unwrap();
            assert_eq!(state.signatures.contains_key(&key.address()), !garbage);
            // Asked again at once (past FETCH_EVERY): a garbage peer waits out its backoff.
            tokio::time::sleep(FETCH_EVERY).await;
            attestor.plan(&open, &committee, false).await.unwrap();
            let asked = peer.asked.load(std::sync::atomic::Ordering::Relaxed);
            if garbage {
                assert_eq!(asked, 1, "a peer serving garbage is backed off");
                assert_eq!(recoveries(&registry), 1.0);
            } else {
                // Its signature is held: nothing more to ask it.
                assert_eq!(asked, 1);
                assert_eq!(recoveries(&registry), 1.0);
            }
        }
    }

    /// One peer that answers honestly, but only after `delay`.
    struct SlowPeer {
        key: PrivateKeySigner,
        batches: Vec<Vec<Request>>,
        delay: Duration,
    }

    impl PeerSource for SlowPeer {
        fn fetch(
            &self,
            _lane: Lane,
            _operator: Address,
            _from: u64,
        ) -> futures::future::BoxFuture<'_, Result<Vec<OwnAttestation>, PeerError>> {
            let page = signed_page(&self.key, &self.batches);
            let delay = self.delay;
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok(page)
            })
        }
    }

    #[tokio::test]
    async fn a_slow_peer_does_not_hold_a_step_and_its_answer_counts_in_a_later_one() {
        let me = PrivateKeySigner::random();
        let slow = PrivateKeySigner::random();
        let lane = Lane::MainToService;
        let mut store = Store::open_in_memory("attest test").unwrap();
        let requests: Vec<Request> = (0..4).map(|n| request(n, 10)).collect();
        store.record_range(lane, &requests, 12).unwrap();
        let delay = COLLECT_WAIT * 4;
        let peers = Arc::new(SlowPeer {
            key: slow.clone(),
            batches: vec![requests.clone()],
            delay,
        });
        let (mut attestor, _registry) =
            attestor(&me, SharedStore::new(store), peers, Duration::ZERO);
        let committee = Committee {
            operators: vec![me.address(), slow.address()],
            threshold: 2,
        };
        let open: Vec<u64> = (0..4).collect();
        let started = Instant::now();
        let sends = attestor.plan(&open, &committee, false).await.unwrap();
        assert!(
            started.elapsed() < delay,
            "the step waited {:?} for a peer answering after {delay:?}",
            started.elapsed()
        );
        assert!(
            sends.is_empty(),
            "one signature of two: nothing to send yet"
        );
        // The answer arrives while the relay does other things; the next step takes it
        // without asking again.
        let deadline = Instant::now() + delay * 4;
        let sends = loop {
            tokio::time::sleep(COLLECT_WAIT).await;
            let sends = attestor.plan(&open, &committee, false).await.unwrap();
            if !sends.is_empty() || Instant::now() > deadline {
                break sends;
            }
        };
        assert_eq!(sends.len(), 1, "the batch, with the slow peer's signature");
        let signers: Vec<Address> = sends[0]
            .signatures
            .chunks(65)
            .map(|c| recover_signer(&domain().batch_digest(&requests), c).unwrap())
            .collect();
        let mut expected = vec![me.address(), slow.address()];
        expected.sort();
        assert_eq!(signers, expected);
    }

    /// Peers that never answer anything.
    struct NoPeers;

    impl PeerSource for NoPeers {
        fn fetch(
            &self,
            _lane: Lane,
            _operator: Address,
            _from: u64,
        ) -> futures::future::BoxFuture<'_, Result<Vec<OwnAttestation>, PeerError>> {
            Box::pin(async { Err(PeerError::Unlocated) })
        }
    }

    #[tokio::test]
    async fn a_standby_waits_longer_while_the_destination_is_full() {
        let me = PrivateKeySigner::random();
        let other = Address::repeat_byte(0x42);
        let lane = Lane::MainToService;
        let mut store = Store::open_in_memory("attest test").unwrap();
        // One request per odd block after an empty one: a batch each, turns spread over both
        // operators.
        let requests: Vec<Request> = (0..16).map(|n| request(n, 11 + 2 * n)).collect();
        store.record_range(lane, &requests, 60).unwrap();
        let standby_after = Duration::from_millis(100);
        let (mut attestor, _registry) = attestor(
            &me,
            SharedStore::new(store),
            Arc::new(NoPeers),
            standby_after,
        );
        let mut operators = vec![me.address(), other];
        operators.sort();
        // Threshold one: this operator's signature completes every batch at once.
        let committee = Committee {
            operators,
            threshold: 1,
        };
        let open: Vec<u64> = (0..16).collect();
        let first = attestor.plan(&open, &committee, false).await.unwrap();
        assert!(first.iter().all(|s| !s.standby), "own turns at once");
        let theirs = 16 - first.len();
        assert!(theirs > 0, "some batches are the other operator's turn");
        tokio::time::sleep(standby_after * 2).await;
        // Full blocks: the other operator's batches may just wait for room; no copies yet.
        let full = attestor.plan(&open, &committee, true).await.unwrap();
        assert_eq!(full.iter().filter(|s| s.standby).count(), 0);
        // Not full: past the timeout, this relay stands in for the other.
        let spare = attestor.plan(&open, &committee, false).await.unwrap();
        assert_eq!(spare.iter().filter(|s| s.standby).count(), theirs);
        // And full blocks hold a standby only so long.
        tokio::time::sleep(standby_after * FULL_STANDBY_FACTOR).await;
        let late = attestor.plan(&open, &committee, true).await.unwrap();
        assert_eq!(late.iter().filter(|s| s.standby).count(), theirs);
    }
}
