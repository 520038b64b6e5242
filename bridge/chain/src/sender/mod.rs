//! The transaction sender of one signer on one chain: a gap-free nonce sequence, EIP-1559 fees,
//! receipt tracking, and bounded escalation of transactions that stay unmined.
//!
//! Nonces: the sequence starts at the chain's pending count and advances only when a node took
//! the transaction (or may have: a broadcast that timed out is tracked as sent, and re-sent with
//! the same nonce if it never shows up — so a nonce is never skipped). "Nonce too low" means
//! someone else used the nonce: the sequence is rebuilt from the chain before the next send.
//!
//! Reorgs: a mined transaction is kept (signed bytes and all) until it is [`REORG_DEPTH`] blocks
//! deep. If the chain's nonce falls back below it — a reorg un-mined it and the node did not put
//! it back in its pool (anvil drops them; other clients and a replaced endpoint may too) — it is
//! broadcast again as it was and tracked until mined again. A hole in the sequence that no
//! transaction of this sender can fill (the relay restarted after such a reorg, its old
//! transactions queued above the hole) is filled, after two blocks, with 0-value transfers to
//! itself, so the queued transactions run and the sequence is whole again.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::consensus::TxEnvelope;
use alloy::eips::Encodable2718;
use alloy::network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder};
use alloy::primitives::{Address, B256, Bytes};
use alloy::providers::Provider;
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::transports::TransportError;

use super::fees::{FeePolicy, Fees, escalate, initial_fees, leading};
use super::rpc_error::{ErrorClass, SendRejection, classify_send};
use super::{ChainClient, ChainError};
use crate::fence::{Fence, Fenced};

mod reorg;
mod round;

/// How the sender behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderPolicy {
    /// Fee choice and escalation.
    pub fees: FeePolicy,
    /// A transaction unmined for this long is re-sent with higher fees.
    pub stuck_after: Duration,
    /// Percent added to the gas estimate.
    pub gas_margin_percent: u64,
}

impl SenderPolicy {
    /// The policy of a chain's sender from the `[voting]` section and the chain's own (its fee
    /// cap).
    pub fn new(voting: &crate::config::VotingSettings, chain: &crate::config::ChainConfig) -> Self {
        Self {
            stuck_after: Duration::from_secs(voting.stuck_after_secs),
            gas_margin_percent: voting.gas_margin_percent,
            fees: FeePolicy {
                max_fee_per_gas: u128::from(chain.max_fee_gwei).saturating_mul(1_000_000_000),
                ..Default::default()
            },
        }
    }
}

impl Default for SenderPolicy {
    fn default() -> Self {
        Self {
            fees: FeePolicy::default(),
            stuck_after: Duration::from_secs(15),
            gas_margin_percent: 25,
        }
    }
}

/// Least time before a transaction the node passed over is re-sent (it may just have arrived
/// late for a block; re-sending every poll would flood the node). A bid below the base fee is
/// re-priced once a block passed instead. Otherwise [`SenderPolicy::stuck_after`] applies.
const PRICED_OUT_GRACE: Duration = Duration::from_secs(2);

/// Blocks the next transaction in line may be passed over, however full they were, before it
/// is re-sent with higher fees. A pool that has a transaction it will not mine (anvil kept the
/// next of a sender in its pool, unmined through a dozen blocks — some empty — while it mined
/// other senders' later ones) is only shaken loose by a new version; on a busy chain it is a
/// bid the market passed over for that long.
const PASSED_OVER_BLOCKS: u64 = 3;

/// A failed send.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Simulation says the call reverts; nothing was sent and no nonce used.
    #[error("would revert: {0}")]
    WouldRevert(ChainError),
    /// The signer cannot pay for gas; an operator must fund it.
    #[error("signer {0} has insufficient funds for gas")]
    InsufficientFunds(Address),
    /// The chain could not be reached.
    #[error(transparent)]
    Chain(ChainError),
    /// The transaction could not be built.
    #[error("cannot build transaction: {0}")]
    Sign(String),
    /// The signer did not sign (an HSM or KMS failing or hanging, or the wrong key).
    #[error(transparent)]
    Signer(crate::signer::SignerError),
    /// The fence refused the broadcast: this replica does not lead or cannot prove its lease.
    #[error("not sent: {0}")]
    Fenced(#[from] crate::fence::Fenced),
    /// Another sender used the signer's nonces twice in a row (nonce too low or underpriced
    /// after a resync): two processes send with the same key.
    #[error(
        "nonce {nonce} was taken twice in a row by another sender of this key; is a second relay running with it?"
    )]
    Contended {
        /// The nonce.
        nonce: u64,
    },
}

impl SendError {
    /// Whether the same send may succeed later without a person.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Chain(e) => e.is_retryable(),
            Self::Contended { .. } => true,
            Self::Signer(e) => e.is_retryable(),
            Self::WouldRevert(_) | Self::InsufficientFunds(_) | Self::Sign(_) | Self::Fenced(_) => {
                false
            }
        }
    }

    /// The node's revert error, when the send was refused because the call reverts.
    pub fn revert(&self) -> Option<&TransportError> {
        match self {
            Self::WouldRevert(ChainError::Rejected { source, .. }) => Some(source),
            _ => None,
        }
    }
}

/// A transaction taken by a node (or possibly taken: see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Its nonce.
    pub nonce: u64,
    /// Its hash.
    pub hash: B256,
    /// The gas limit it was sent with.
    pub gas_limit: u64,
}

/// What [`Sender::poll`] found out about a tracked transaction.
#[derive(Debug, Clone)]
pub enum Tracked {
    /// Mined (successfully or reverted: see the receipt status).
    Mined {
        /// Nonce.
        nonce: u64,
        /// The receipt of whichever of its versions was mined.
        receipt: Box<TransactionReceipt>,
    },
    /// Re-sent with higher fees under a new hash.
    Replaced {
        /// Nonce.
        nonce: u64,
        /// The new hash.
        hash: B256,
    },
    /// The nonce was consumed by a transaction this sender does not know (another process with
    /// the same key, or a lost replacement). What it was meant to do must be re-checked.
    Superseded {
        /// Nonce.
        nonce: u64,
    },
    /// Stuck, and its bid can rise no further (the policy's `max_fee_per_gas`, a chain's
    /// `max_fee_gwei`, or `cap_multiplier` × its first bid): re-broadcast as it was, not
    /// raised. While the chain's base fee stays above the bid it waits in the pool (or is
    /// refused by it); it is still tracked and reported when mined.
    AtFeeCap {
        /// Nonce.
        nonce: u64,
        /// The max fee per gas it bids (wei).
        max_fee_per_gas: u128,
    },
}

impl Tracked {
    /// The transaction nonce it is about.
    pub fn nonce(&self) -> u64 {
        match self {
            Self::Mined { nonce, .. }
            | Self::Replaced { nonce, .. }
            | Self::Superseded { nonce }
            | Self::AtFeeCap { nonce, .. } => *nonce,
        }
    }
}

#[derive(Debug)]
struct InFlight {
    request: TransactionRequest,
    hashes: Vec<B256>,
    raw: Bytes,
    first_fees: Fees,
    fees: Fees,
    sent_at: Instant,
    /// Head block when this version was sent.
    sent_block: u64,
}

/// An unmined transaction version, as [`Sender::poll`] sees it.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    age: Duration,
    max_fee: u128,
    sent_block: u64,
    /// All lower nonces are mined: nothing but itself keeps it out of a block.
    next_in_line: bool,
}

impl Waiting {
    /// Whether to re-send it now: unmined for `stuck_after`; or bid below the base fee once a
    /// block passed since it was sent (it cannot be mined until the base fee falls, and with
    /// every sender priced alike blocks stay empty while they wait); or — after a short grace,
    /// when it is next in line — passed over by a block that had room for it after the one it
    /// was sent at (dropped from the node's pool, or a node bug: waiting will not help), or by
    /// more than [`PASSED_OVER_BLOCKS`] blocks however full.
    fn needs_replacement(&self, head: &Head, stuck_after: Duration) -> bool {
        if self.age >= stuck_after {
            return true;
        }
        if self.max_fee < head.base_fee && head.number > self.sent_block {
            return true;
        }
        if self.age < PRICED_OUT_GRACE || !self.next_in_line {
            return false;
        }
        let passed_over = head.number.saturating_sub(self.sent_block);
        (head.had_room && passed_over > 1) || passed_over > PASSED_OVER_BLOCKS
    }
}

/// What [`Sender::poll`] needs to know of the latest block.
#[derive(Debug, Clone, Copy)]
struct Head {
    number: u64,
    base_fee: u128,
    /// Less than half full: a transaction that could be mined would have fit.
    had_room: bool,
}

/// How deep a mined transaction must be before it is forgotten (a reorg may un-mine it).
pub const REORG_DEPTH: u64 = 64;

/// Blocks a hole in the nonce sequence must persist before it is filled with no-op transfers.
const HOLE_PATIENCE_BLOCKS: u64 = 2;

/// Gas of a plain transfer (a hole filler).
const TRANSFER_GAS: u64 = 21_000;

/// Longest a poll with transactions in flight skips the chain while its head stands still
/// ([`Sender::poll`]). A transaction is mined only in a new block, so the head decides; what
/// comes without one — a reorg that replaces the head at the same height, a node that lost its
/// pool — is seen within this.
const STILL_HEAD_RECHECK: Duration = Duration::from_secs(1);

/// How long a fee quote is reused for new transactions (a burst of sends prices once).
const FEES_FRESH_FOR: Duration = Duration::from_millis(250);

/// The sender of one signer on one chain. Only one may exist per (chain, signer) at a time.
pub struct Sender {
    chain: Arc<ChainClient>,
    wallet: EthereumWallet,
    address: Address,
    next_nonce: u64,
    in_flight: BTreeMap<u64, InFlight>,
    policy: SenderPolicy,
    fence: Fence,
    /// The last fee quote: (fees, head block it was priced at, when).
    quote: Option<(Fees, u64, Instant)>,
    /// Transactions seen mined, by nonce, with the block they were mined in, until
    /// [`REORG_DEPTH`] deep.
    mined: BTreeMap<u64, (InFlight, u64)>,
    /// A hole at the chain's nonce: (that nonce, head block when first seen).
    hole: Option<(u64, u64)>,
    /// When the chain's nonce was last read while nothing was in flight.
    idle_check: Option<Instant>,
    /// The head block and the instant of the last poll that read the chain with transactions
    /// in flight (`None` after a poll failed: the next one reads whatever the head says).
    polled: Option<(u64, Instant)>,
    /// The head block the pool was last checked for dropped transactions at (a node drops at
    /// a block, so once per block is enough), set once the check's lookups answered.
    drop_checked: u64,
    /// The chain's nonce was below the sequence when last read (something of this key is
    /// unmined, maybe queued above a hole): keep checking while nothing is in flight.
    behind: bool,
}

/// How a refused broadcast attempt is marked when the fence closed between two attempts.
const FENCED_MARK: &str = "fenced: ";

fn send_class(error: &TransportError) -> ErrorClass {
    if error.to_string().contains(FENCED_MARK) {
        return ErrorClass::Fatal;
    }
    match classify_send(error) {
        SendRejection::Other(class) => class,
        // Each of these needs the sender's decision, not a blind retry.
        _ => ErrorClass::Fatal,
    }
}

impl Sender {
    /// A sender for `signer` on `chain`, its nonce sequence rebuilt from the chain.
    pub async fn new(
        chain: Arc<ChainClient>,
        signer: impl Into<crate::signer::OperatorSigner>,
        policy: SenderPolicy,
    ) -> Result<Self, SendError> {
        let signer = signer.into();
        let address = signer.address();
        let mut sender = Self {
            chain,
            wallet: signer.wallet(),
            address,
            next_nonce: 0,
            in_flight: BTreeMap::new(),
            policy,
            fence: Fence::standalone(),
            quote: None,
            mined: BTreeMap::new(),
            hole: None,
            idle_check: None,
            polled: None,
            drop_checked: 0,
            behind: false,
        };
        sender.resync_nonce().await?;
        Ok(sender)
    }

    /// Check `fence` immediately before every broadcast (new and replacement transactions).
    pub fn with_fence(mut self, fence: Fence) -> Self {
        self.fence = fence;
        self
    }

    /// The signer.
    pub fn address(&self) -> Address {
        self.address
    }

    /// The nonce the next new transaction gets.
    pub fn next_nonce(&self) -> u64 {
        self.next_nonce
    }

    /// Transactions sent and not yet mined.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Rebuild the nonce sequence from the chain's pending count (never below what is in flight).
    pub async fn resync_nonce(&mut self) -> Result<u64, SendError> {
        let address = self.address;
        let pending = self
            .chain
            .call("eth_getTransactionCount", |p| async move {
                p.get_transaction_count(address).pending().await
            })
            .await
            .map_err(SendError::Chain)?;
        let latest = self
            .chain
            .call("eth_getTransactionCount", |p| async move {
                p.get_transaction_count(address).latest().await
            })
            .await
            .map_err(SendError::Chain)?;
        // Transactions of an earlier process are still unmined (maybe queued above a hole a
        // reorg left): poll watches them until the chain's nonce catches up.
        self.behind = latest < pending;
        let after_in_flight = self
            .in_flight
            .keys()
            .next_back()
            .map(|n| n.saturating_add(1))
            .unwrap_or(0);
        self.next_nonce = pending.max(after_in_flight);
        Ok(self.next_nonce)
    }

    /// The latest block: number, base fee (1 gwei on a chain without one) and how full it is
    /// (read once a block for every sender and voter of the chain in the process).
    async fn head(&self) -> Result<Head, SendError> {
        let block = self.chain.latest_block().await.map_err(SendError::Chain)?;
        Ok(Head {
            number: block.number,
            base_fee: block.base_fee_per_gas.map_or(1_000_000_000, u128::from),
            had_room: block.gas_used.saturating_mul(2) < block.gas_limit,
        })
    }

    /// The block a re-send made at the poll's head `polled` counts from, read just before it
    /// leaves: that head, or a newer one the chain's shared head already knows. A poll that
    /// re-broadcast a tail, waited on a signer or replaced several transactions may have crossed
    /// a block, and a replacement counted from the older head would be called passed over a
    /// block early and bid up again. Read before the broadcast, never after: a block sealed
    /// after the bytes left may hold them, and counting from it would look for a drop a block
    /// late (the shared head is held between blocks and lags the node if anything: no read of
    /// its own, so the bytes leave without a wait, and never a block too new).
    fn resent_block(&self, polled: u64) -> u64 {
        resent_block(polled, self.chain.known_head())
    }

    /// Fees to bid now, and the head they were priced at (a quote younger than
    /// [`FEES_FRESH_FOR`] is reused).
    async fn market_fees(&mut self) -> Result<(Fees, u64), SendError> {
        if let Some((fees, block, at)) = self.quote
            && at.elapsed() < FEES_FRESH_FOR
        {
            return Ok((fees, block));
        }
        let head = self.head().await?;
        let fees = self.fees_at(&head).await;
        self.quote = Some((fees, head.number, Instant::now()));
        Ok((fees, head.number))
    }

    /// Fees to bid on top of `head` (its base fee and the node's suggested tip).
    async fn fees_at(&self, head: &Head) -> Fees {
        let tip = self.chain.suggested_tip(head.number).await.unwrap_or(0);
        initial_fees(head.base_fee, tip, &self.policy.fees)
    }

    /// Simulate, price, sign and broadcast a call to `to` with `input` (gas: the estimate plus
    /// the policy's margin).
    pub async fn send(&mut self, to: Address, input: Bytes) -> Result<Sent, SendError> {
        self.send_with_value(to, input, alloy::primitives::U256::ZERO)
            .await
    }

    /// [`send`](Self::send) with native coin attached.
    pub async fn send_with_value(
        &mut self,
        to: Address,
        input: Bytes,
        value: alloy::primitives::U256,
    ) -> Result<Sent, SendError> {
        let call = self.call(to, input, value);
        let estimate = self.estimate(&call).await?;
        let gas_limit =
            estimate.saturating_add(estimate.saturating_mul(self.policy.gas_margin_percent) / 100);
        self.send_call(call, gas_limit, false).await
    }

    /// The transaction request of a call from this signer.
    pub fn call(
        &self,
        to: Address,
        input: Bytes,
        value: alloy::primitives::U256,
    ) -> TransactionRequest {
        TransactionRequest::default()
            .with_from(self.address)
            .with_to(to)
            .with_input(input)
            .with_value(value)
            .with_chain_id(self.chain.chain_id())
    }

    /// The node's gas estimate of `call`; a revert is [`SendError::WouldRevert`].
    pub async fn estimate(&self, call: &TransactionRequest) -> Result<u64, SendError> {
        estimate_gas(&self.chain, call, None).await
    }

    /// Price, sign and broadcast `call` with `gas_limit`, under the next nonce; a `lead`
    /// transaction bids a tip a little above the market's ([`leading`]).
    pub async fn send_call(
        &mut self,
        call: TransactionRequest,
        gas_limit: u64,
        lead: bool,
    ) -> Result<Sent, SendError> {
        let request = call.with_gas_limit(gas_limit);
        let (mut fees, sent_block) = self.market_fees().await?;
        if lead {
            fees = leading(fees, &self.policy.fees);
        }
        // One retry after rebuilding the nonce sequence or raising an underpriced bid.
        let mut retried = false;
        loop {
            let nonce = self.next_nonce;
            let (envelope, raw) = self.sign(&request, nonce, fees).await?;
            let hash = *envelope.tx_hash();
            match self.broadcast(raw.clone()).await {
                Ok(()) | Err(BroadcastError::AlreadyKnown) | Err(BroadcastError::Unknown) => {
                    // Taken, or maybe taken: track it; poll() re-sends it if it never shows up.
                    self.next_nonce = nonce.saturating_add(1);
                    return Ok(self.track(nonce, request, hash, raw, fees, sent_block));
                }
                Err(BroadcastError::NonceTooLow) if !retried => {
                    retried = true;
                    tracing::warn!(signer = %self.address, nonce, "nonce too low: rebuilding the nonce sequence from the chain");
                    self.resync_nonce().await?;
                }
                Err(BroadcastError::Underpriced | BroadcastError::Occupied) if !retried => {
                    retried = true;
                    self.quote = None;
                    let (fresh, _) = self.market_fees().await?;
                    fees = escalate(fees, fresh, fees, &self.policy.fees).unwrap_or(fresh);
                }
                Err(BroadcastError::InsufficientFunds) => {
                    return Err(SendError::InsufficientFunds(self.address));
                }
                Err(
                    BroadcastError::NonceTooLow
                    | BroadcastError::Underpriced
                    | BroadcastError::Occupied,
                ) => {
                    return Err(SendError::Contended { nonce });
                }
                Err(BroadcastError::Refused(e)) => return Err(SendError::Chain(e)),
                Err(BroadcastError::Fenced(f)) => return Err(SendError::Fenced(f)),
            }
        }
    }

    /// Track the transaction of `request` sent under `nonce` as `hash` (`raw` its signed bytes).
    fn track(
        &mut self,
        nonce: u64,
        request: TransactionRequest,
        hash: B256,
        raw: Bytes,
        fees: Fees,
        sent_block: u64,
    ) -> Sent {
        let gas_limit = request.gas.unwrap_or_default();
        self.in_flight.insert(
            nonce,
            InFlight {
                request,
                hashes: vec![hash],
                raw,
                first_fees: fees,
                fees,
                sent_at: Instant::now(),
                sent_block,
            },
        );
        Sent {
            nonce,
            hash,
            gas_limit,
        }
    }

    async fn sign(
        &self,
        request: &TransactionRequest,
        nonce: u64,
        fees: Fees,
    ) -> Result<(TxEnvelope, Bytes), SendError> {
        let envelope = request
            .clone()
            .with_nonce(nonce)
            .with_max_fee_per_gas(fees.max_fee_per_gas)
            .with_max_priority_fee_per_gas(fees.max_priority_fee_per_gas)
            .build(&self.wallet)
            .await
            .map_err(|e| match &e {
                alloy::network::TransactionBuilderError::Signer(inner) => {
                    match crate::signer::signer_error(inner) {
                        Some(signer) => SendError::Signer(signer.clone()),
                        None => SendError::Sign(e.to_string()),
                    }
                }
                _ => SendError::Sign(e.to_string()),
            })?;
        let raw = Bytes::from(envelope.encoded_2718());
        Ok((envelope, raw))
    }

    async fn broadcast(&self, raw: Bytes) -> Result<(), BroadcastError> {
        // The last thing before the bytes leave, on every attempt (the client retries on other
        // endpoints): a replica that lost its lease (paused, partitioned, demoted) must not send,
        // whatever it was doing when it stopped.
        self.fence.check().map_err(BroadcastError::Fenced)?;
        let fence = &self.fence;
        let result = self
            .chain
            .call_classified("eth_sendRawTransaction", send_class, |p| {
                let raw = raw.clone();
                let fenced = fence.check().err();
                async move {
                    if let Some(f) = fenced {
                        return Err(alloy::transports::TransportErrorKind::custom_str(&format!(
                            "{FENCED_MARK}{f}"
                        )));
                    }
                    p.send_raw_transaction(&raw).await.map(|_| ())
                }
            })
            .await;
        match result {
            Ok(()) => Ok(()),
            Err(_) if fence.check().is_err() => Err(BroadcastError::Fenced(
                fence.check().err().unwrap_or(Fenced::NotLeader),
            )),
            Err(ChainError::Rejected { source, .. }) => Err(match classify_send(&source) {
                SendRejection::NonceTooLow => BroadcastError::NonceTooLow,
                SendRejection::AlreadyKnown => BroadcastError::AlreadyKnown,
                SendRejection::Underpriced => BroadcastError::Underpriced,
                SendRejection::ReplacementUnderpriced => BroadcastError::Occupied,
                SendRejection::InsufficientFunds => BroadcastError::InsufficientFunds,
                SendRejection::Other(_) => BroadcastError::Refused(ChainError::Rejected {
                    chain: self.chain.role(),
                    method: "eth_sendRawTransaction",
                    source,
                }),
            }),
            Err(unavailable) => {
                tracing::warn!(signer = %self.address, error = %unavailable, "broadcast outcome unknown: tracking the transaction as sent");
                Err(BroadcastError::Unknown)
            }
        }
    }

    /// Check every transaction in flight: report the mined ones, re-send the stuck ones with
    /// higher fees, and give up on nonces something else consumed; then put back what a reorg
    /// un-mined and fill a hole nothing else can (module docs).
    pub async fn poll(&mut self) -> Result<Vec<Tracked>, SendError> {
        let mut out = Vec::new();
        if self.in_flight.is_empty() {
            // Nothing to track: only whether a reorg took back something mined, at most once a
            // second, and only while something mined is still shallow.
            if self.mined.is_empty() && self.hole.is_none() && !self.behind {
                return Ok(out);
            }
            if self
                .idle_check
                .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
            {
                return Ok(out);
            }
            self.idle_check = Some(Instant::now());
        } else if let Some((polled_head, at)) = self.polled
            && at.elapsed() < STILL_HEAD_RECHECK
            && self
                .chain
                .head()
                .await
                .is_ok_and(|head| head == polled_head)
        {
            // Nothing can have been mined since the last poll: the (shared) head has not moved.
            // Each key's sender read its nonce and the latest block every 200 ms while a
            // transaction was in flight, five times a block at 1 s (issue 54).
            return Ok(out);
        }
        // Whatever fails below, the next poll reads the chain again.
        self.polled = None;
        // The head before the nonce: what the nonce says was mined by a block at or past this
        // one, so a transaction mined after the head read is seen now or at the head's next move.
        // A bid below the current base fee cannot be mined however long it waits (full blocks
        // raise the base fee by up to 12.5 % each): such a transaction is re-priced at once
        // instead of after `stuck_after`.
        let head = self.head().await?;
        let address = self.address;
        let mined_count = self
            .chain
            .call("eth_getTransactionCount", |p| async move {
                p.get_transaction_count(address).latest().await
            })
            .await
            .map_err(SendError::Chain)?;
        self.behind = mined_count < self.next_nonce;
        self.restore_unmined(mined_count, &head).await?;
        self.fill_hole(mined_count, &head).await?;
        self.restore_dropped(mined_count, &head).await?;
        let nonces: Vec<u64> = self.in_flight.keys().copied().collect();
        // The receipts of what the chain mined, looked up at once (a busy key has a block's
        // worth of transactions mined between two polls).
        let this = &*self;
        let lookups = this
            .in_flight
            .range(..mined_count)
            .map(|(nonce, entry)| async move { (*nonce, this.find_receipt(&entry.hashes).await) });
        let mut receipts: BTreeMap<u64, Option<TransactionReceipt>> = BTreeMap::new();
        for (nonce, found) in futures::future::join_all(lookups).await {
            receipts.insert(nonce, found?);
        }
        // Whether the nonce just before was re-sent in this poll: then this one is next in line
        // too (a node that dropped one transaction usually dropped those after it as well, and
        // they would otherwise come back one block at a time).
        let mut resent_before = false;
        for nonce in nonces {
            let Some(entry) = self.in_flight.get(&nonce) else {
                continue;
            };
            if nonce < mined_count {
                // The chain used this nonce: one of our versions was mined, or something else.
                let found = receipts.remove(&nonce).flatten();
                let Some(entry) = self.in_flight.remove(&nonce) else {
                    continue;
                };
                match found {
                    Some(receipt) => {
                        let block = receipt.block_number.unwrap_or(head.number);
                        self.mined.insert(nonce, (entry, block));
                        out.push(Tracked::Mined {
                            nonce,
                            receipt: Box::new(receipt),
                        });
                    }
                    None => out.push(Tracked::Superseded { nonce }),
                }
                continue;
            }
            let waiting = Waiting {
                age: entry.sent_at.elapsed(),
                max_fee: entry.fees.max_fee_per_gas,
                sent_block: entry.sent_block,
                next_in_line: nonce == mined_count || resent_before,
            };
            resent_before = false;
            if waiting.needs_replacement(&head, self.policy.stuck_after) {
                resent_before = true;
                if let Some(tracked) = self.replace(nonce, &head).await? {
                    out.push(tracked);
                }
            }
        }
        // Forget what is deep enough that no reorg this sender survives would take it back.
        self.mined
            .retain(|_, (_, block)| head.number.saturating_sub(*block) <= REORG_DEPTH);
        self.polled = Some((head.number, Instant::now()));
        Ok(out)
    }

    async fn find_receipt(&self, hashes: &[B256]) -> Result<Option<TransactionReceipt>, SendError> {
        for hash in hashes.iter().rev() {
            let hash = *hash;
            let receipt = self
                .chain
                .call("eth_getTransactionReceipt", |p| async move {
                    p.get_transaction_receipt(hash).await
                })
                .await
                .map_err(SendError::Chain)?;
            if receipt.is_some() {
                return Ok(receipt);
            }
        }
        Ok(None)
    }

    /// Re-send a stuck transaction with the same nonce and higher fees; at the fee cap, re-send
    /// the last version as it is (it may have been dropped from the mempool).
    async fn replace(&mut self, nonce: u64, head: &Head) -> Result<Option<Tracked>, SendError> {
        let fresh = self.fees_at(head).await;
        let head = head.number;
        let Some(entry) = self.in_flight.get(&nonce) else {
            return Ok(None);
        };
        let (request, previous, first, last_raw) = (
            entry.request.clone(),
            entry.fees,
            entry.first_fees,
            entry.raw.clone(),
        );
        let Some(fees) = escalate(previous, fresh, first, &self.policy.fees) else {
            tracing::warn!(signer = %self.address, nonce, max_fee = previous.max_fee_per_gas, "fee cap reached: re-broadcasting the last bid");
            let sent_block = self.resent_block(head);
            let _ = self.broadcast(last_raw).await;
            if let Some(entry) = self.in_flight.get_mut(&nonce) {
                entry.sent_at = Instant::now();
                entry.sent_block = sent_block;
            }
            return Ok(Some(Tracked::AtFeeCap {
                nonce,
                max_fee_per_gas: previous.max_fee_per_gas,
            }));
        };
        let (envelope, raw) = self.sign(&request, nonce, fees).await?;
        let hash = *envelope.tx_hash();
        let sent_block = self.resent_block(head);
        match self.broadcast(raw.clone()).await {
            // NonceTooLow: a version was mined meanwhile; the next poll finds its receipt.
            Ok(())
            | Err(BroadcastError::AlreadyKnown)
            | Err(BroadcastError::Unknown)
            | Err(BroadcastError::NonceTooLow) => {}
            Err(BroadcastError::InsufficientFunds) => {
                return Err(SendError::InsufficientFunds(self.address));
            }
            Err(BroadcastError::Underpriced)
            | Err(BroadcastError::Occupied)
            | Err(BroadcastError::Refused(_)) => return Ok(None),
            Err(BroadcastError::Fenced(f)) => return Err(SendError::Fenced(f)),
        }
        if let Some(entry) = self.in_flight.get_mut(&nonce) {
            entry.hashes.push(hash);
            entry.raw = raw;
            entry.fees = fees;
            entry.sent_at = Instant::now();
            entry.sent_block = sent_block;
        }
        tracing::info!(signer = %self.address, nonce, %hash, max_fee = fees.max_fee_per_gas, "replaced stuck transaction");
        Ok(Some(Tracked::Replaced { nonce, hash }))
    }
}

/// [`Sender::resent_block`]: the poll's head, or the newer head the chain knows now.
fn resent_block(polled: u64, now: Option<u64>) -> u64 {
    now.map_or(polled, |now| now.max(polled))
}

/// The node's gas estimate of `call` on `chain`, over the state changed by `overrides`; a revert
/// is [`SendError::WouldRevert`]. Read-only: any task may estimate, only a sender sends.
pub async fn estimate_gas(
    chain: &ChainClient,
    call: &TransactionRequest,
    overrides: Option<&alloy::rpc::types::state::StateOverride>,
) -> Result<u64, SendError> {
    chain
        .call("eth_estimateGas", |p| {
            let request = call.clone();
            let overrides = overrides.cloned();
            // At the latest block, not the node's default (often `pending`): a pending block
            // holds other operators' unmined votes, and ours may be mined before them.
            async move {
                p.estimate_gas(request)
                    .block(alloy::eips::BlockId::latest())
                    .overrides_opt(overrides)
                    .await
            }
        })
        .await
        .map_err(|e| match e {
            ChainError::Rejected { .. } => SendError::WouldRevert(e),
            other => SendError::Chain(other),
        })
}

/// The transaction request of a call from `from` on `chain`.
pub fn call_request(
    chain: &ChainClient,
    from: Address,
    to: Address,
    input: Bytes,
    value: alloy::primitives::U256,
) -> TransactionRequest {
    TransactionRequest::default()
        .with_from(from)
        .with_to(to)
        .with_input(input)
        .with_value(value)
        .with_chain_id(chain.chain_id())
}

enum BroadcastError {
    Fenced(Fenced),
    NonceTooLow,
    AlreadyKnown,
    Underpriced,
    /// Underpriced as a replacement: the node holds another transaction at the nonce.
    Occupied,
    InsufficientFunds,
    /// The node refused the transaction for another reason.
    Refused(ChainError),
    /// No endpoint confirmed either way.
    Unknown,
}

#[cfg(test)]
mod tests;
