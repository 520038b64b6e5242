//! The transaction sender of one signer on one chain: a gap-free nonce sequence, EIP-1559 fees,
//! receipt tracking, and bounded escalation of transactions that stay unmined.
//!
//! Nonces: the sequence starts at the chain's pending count and advances only when a node took
//! the transaction (or may have: a broadcast that timed out is tracked as sent, and re-sent with
//! the same nonce if it never shows up — so a nonce is never skipped). "Nonce too low" means
//! someone else used the nonce: the sequence is rebuilt from the chain before the next send.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::consensus::TxEnvelope;
use alloy::eips::{BlockNumberOrTag, Encodable2718};
use alloy::network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder};
use alloy::primitives::{Address, B256, Bytes};
use alloy::providers::Provider;
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::transports::TransportError;

use super::fees::{FeePolicy, Fees, escalate, initial_fees};
use super::rpc_error::{ErrorClass, SendRejection, classify_send};
use super::{ChainClient, ChainError};
use crate::leadership::fence::{Fence, Fenced};

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

impl Default for SenderPolicy {
    fn default() -> Self {
        Self {
            fees: FeePolicy::default(),
            stuck_after: Duration::from_secs(15),
            gas_margin_percent: 25,
        }
    }
}

/// Least time between two versions of a transaction re-sent early — because its bid fell below
/// the base fee or the node passed it over (the base fee may fall back by itself, and re-sending
/// every poll would flood the node). Otherwise [`SenderPolicy::stuck_after`] applies.
const PRICED_OUT_GRACE: Duration = Duration::from_secs(2);

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
    /// The transaction could not be built or signed.
    #[error("cannot sign transaction: {0}")]
    Sign(String),
    /// The fence refused the broadcast: this replica does not lead or cannot prove its lease.
    #[error("not sent: {0}")]
    Fenced(#[from] crate::leadership::fence::Fenced),
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
}

impl Tracked {
    /// The transaction nonce it is about.
    pub fn nonce(&self) -> u64 {
        match self {
            Self::Mined { nonce, .. }
            | Self::Replaced { nonce, .. }
            | Self::Superseded { nonce } => *nonce,
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
    /// Whether to re-send it now: unmined for `stuck_after`, or — after a short grace — bid below
    /// the base fee (it cannot be mined until the base fee falls) or passed over by a block that
    /// had room for it after the one it was sent at (dropped from the node's pool, or a node
    /// bug: waiting will not help).
    fn needs_replacement(&self, head: &Head, stuck_after: Duration) -> bool {
        if self.age >= stuck_after {
            return true;
        }
        if self.age < PRICED_OUT_GRACE {
            return false;
        }
        let priced_out = self.max_fee < head.base_fee;
        let passed_over =
            self.next_in_line && head.had_room && head.number > self.sent_block.saturating_add(1);
        priced_out || passed_over
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

/// The sender of one signer on one chain. Only one may exist per (chain, signer) at a time.
pub struct Sender {
    chain: Arc<ChainClient>,
    wallet: EthereumWallet,
    address: Address,
    next_nonce: u64,
    in_flight: BTreeMap<u64, InFlight>,
    policy: SenderPolicy,
    fence: Fence,
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
        signer: PrivateKeySigner,
        policy: SenderPolicy,
    ) -> Result<Self, SendError> {
        let address = signer.address();
        let mut sender = Self {
            chain,
            wallet: EthereumWallet::from(signer),
            address,
            next_nonce: 0,
            in_flight: BTreeMap::new(),
            policy,
            fence: Fence::standalone(),
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
        let after_in_flight = self
            .in_flight
            .keys()
            .next_back()
            .map(|n| n.saturating_add(1))
            .unwrap_or(0);
        self.next_nonce = pending.max(after_in_flight);
        Ok(self.next_nonce)
    }

    /// The latest block: number, base fee (1 gwei on a chain without one) and how full it is.
    async fn head(&self) -> Result<Head, SendError> {
        let block = self
            .chain
            .call("eth_getBlockByNumber", |p| async move {
                p.get_block_by_number(BlockNumberOrTag::Latest).await
            })
            .await
            .map_err(SendError::Chain)?;
        Ok(block.map_or(
            Head {
                number: 0,
                base_fee: 1_000_000_000,
                had_room: false,
            },
            |b| Head {
                number: b.header.number,
                base_fee: b.header.base_fee_per_gas.map_or(1_000_000_000, u128::from),
                had_room: b.header.gas_used.saturating_mul(2) < b.header.gas_limit,
            },
        ))
    }

    /// Fees to bid now, and the head they were priced at.
    async fn market_fees(&self) -> Result<(Fees, u64), SendError> {
        let head = self.head().await?;
        Ok((self.fees_at(&head).await, head.number))
    }

    /// Fees to bid on top of `head` (its base fee and the node's suggested tip).
    async fn fees_at(&self, head: &Head) -> Fees {
        let tip = self
            .chain
            .call("eth_maxPriorityFeePerGas", |p| async move {
                p.get_max_priority_fee_per_gas().await
            })
            .await
            .unwrap_or(0);
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
        self.send_call(call, gas_limit).await
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
        self.chain
            .call("eth_estimateGas", |p| {
                let request = call.clone();
                async move { p.estimate_gas(request).await }
            })
            .await
            .map_err(|e| match e {
                ChainError::Rejected { .. } => SendError::WouldRevert(e),
                other => SendError::Chain(other),
            })
    }

    /// Price, sign and broadcast `call` with `gas_limit`, under the next nonce.
    pub async fn send_call(
        &mut self,
        call: TransactionRequest,
        gas_limit: u64,
    ) -> Result<Sent, SendError> {
        let request = call.with_gas_limit(gas_limit);
        let (mut fees, sent_block) = self.market_fees().await?;
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
                    self.in_flight.insert(
                        nonce,
                        InFlight {
                            request: request.clone(),
                            hashes: vec![hash],
                            raw,
                            first_fees: fees,
                            fees,
                            sent_at: Instant::now(),
                            sent_block,
                        },
                    );
                    return Ok(Sent {
                        nonce,
                        hash,
                        gas_limit,
                    });
                }
                Err(BroadcastError::NonceTooLow) if !retried => {
                    retried = true;
                    tracing::warn!(signer = %self.address, nonce, "nonce too low: rebuilding the nonce sequence from the chain");
                    self.resync_nonce().await?;
                }
                Err(BroadcastError::Underpriced) if !retried => {
                    retried = true;
                    let (fresh, _) = self.market_fees().await?;
                    fees = escalate(fees, fresh, fees, &self.policy.fees).unwrap_or(fresh);
                }
                Err(BroadcastError::InsufficientFunds) => {
                    return Err(SendError::InsufficientFunds(self.address));
                }
                Err(BroadcastError::NonceTooLow | BroadcastError::Underpriced) => {
                    return Err(SendError::Contended { nonce });
                }
                Err(BroadcastError::Refused(e)) => return Err(SendError::Chain(e)),
                Err(BroadcastError::Fenced(f)) => return Err(SendError::Fenced(f)),
            }
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
            .map_err(|e| SendError::Sign(e.to_string()))?;
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
    /// higher fees, and give up on nonces something else consumed.
    pub async fn poll(&mut self) -> Result<Vec<Tracked>, SendError> {
        let mut out = Vec::new();
        if self.in_flight.is_empty() {
            return Ok(out);
        }
        let address = self.address;
        let mined_count = self
            .chain
            .call("eth_getTransactionCount", |p| async move {
                p.get_transaction_count(address).latest().await
            })
            .await
            .map_err(SendError::Chain)?;
        // A bid below the current base fee cannot be mined however long it waits (full blocks
        // raise the base fee by up to 12.5 % each): such a transaction is re-priced at once
        // instead of after `stuck_after`.
        let head = self.head().await?;
        let nonces: Vec<u64> = self.in_flight.keys().copied().collect();
        for nonce in nonces {
            let Some(entry) = self.in_flight.get(&nonce) else {
                continue;
            };
            let hashes = entry.hashes.clone();
            if let Some(receipt) = self.find_receipt(&hashes).await? {
                self.in_flight.remove(&nonce);
                out.push(Tracked::Mined {
                    nonce,
                    receipt: Box::new(receipt),
                });
                continue;
            }
            if nonce < mined_count {
                // Mined, but none of our hashes: look once more (a receipt may have just landed).
                self.in_flight.remove(&nonce);
                out.push(Tracked::Superseded { nonce });
                continue;
            }
            let waiting = Waiting {
                age: entry.sent_at.elapsed(),
                max_fee: entry.fees.max_fee_per_gas,
                sent_block: entry.sent_block,
                next_in_line: nonce == mined_count,
            };
            if waiting.needs_replacement(&head, self.policy.stuck_after)
                && let Some(tracked) = self.replace(nonce, &head).await?
            {
                out.push(tracked);
            }
        }
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
            tracing::warn!(signer = %self.address, nonce, "fee cap reached: re-broadcasting the last bid");
            let _ = self.broadcast(last_raw).await;
            if let Some(entry) = self.in_flight.get_mut(&nonce) {
                entry.sent_at = Instant::now();
                entry.sent_block = head;
            }
            return Ok(None);
        };
        let (envelope, raw) = self.sign(&request, nonce, fees).await?;
        let hash = *envelope.tx_hash();
        match self.broadcast(raw.clone()).await {
            // NonceTooLow: a version was mined meanwhile; the next poll finds its receipt.
            Ok(())
            | Err(BroadcastError::AlreadyKnown)
            | Err(BroadcastError::Unknown)
            | Err(BroadcastError::NonceTooLow) => {}
            Err(BroadcastError::InsufficientFunds) => {
                return Err(SendError::InsufficientFunds(self.address));
            }
            Err(BroadcastError::Underpriced) | Err(BroadcastError::Refused(_)) => return Ok(None),
            Err(BroadcastError::Fenced(f)) => return Err(SendError::Fenced(f)),
        }
        if let Some(entry) = self.in_flight.get_mut(&nonce) {
            entry.hashes.push(hash);
            entry.raw = raw;
            entry.fees = fees;
            entry.sent_at = Instant::now();
            entry.sent_block = head;
        }
        tracing::info!(signer = %self.address, nonce, %hash, max_fee = fees.max_fee_per_gas, "replaced stuck transaction");
        Ok(Some(Tracked::Replaced { nonce, hash }))
    }
}

enum BroadcastError {
    Fenced(Fenced),
    NonceTooLow,
    AlreadyKnown,
    Underpriced,
    InsufficientFunds,
    /// The node refused the transaction for another reason.
    Refused(ChainError),
    /// No endpoint confirmed either way.
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    const GWEI: u128 = 1_000_000_000;
    const STUCK: Duration = Duration::from_secs(15);

    fn waiting(age_secs: u64, max_fee: u128, sent_block: u64, next_in_line: bool) -> Waiting {
        Waiting {
            age: Duration::from_secs(age_secs),
            max_fee,
            sent_block,
            next_in_line,
        }
    }

    fn head(number: u64, base_fee: u128, had_room: bool) -> Head {
        Head {
            number,
            base_fee,
            had_room,
        }
    }

    #[test]
    fn a_fresh_well_priced_transaction_waits() {
        let w = waiting(3, 2 * GWEI, 10, true);
        assert!(!w.needs_replacement(&head(11, GWEI, false), STUCK));
        assert!(
            !w.needs_replacement(&head(11, GWEI, true), STUCK),
            "one block is normal"
        );
    }

    #[test]
    fn anything_unmined_past_stuck_after_is_replaced() {
        let w = waiting(15, 2 * GWEI, 10, false);
        assert!(w.needs_replacement(&head(11, GWEI, false), STUCK));
    }

    #[test]
    fn a_bid_below_the_base_fee_is_replaced_after_the_grace_only() {
        let h = head(12, 3 * GWEI, false);
        assert!(!waiting(1, 2 * GWEI, 10, false).needs_replacement(&h, STUCK));
        assert!(waiting(2, 2 * GWEI, 10, false).needs_replacement(&h, STUCK));
        assert!(!waiting(2, 3 * GWEI, 10, false).needs_replacement(&h, STUCK));
    }

    #[test]
    fn passed_over_only_counts_for_the_next_in_line_and_a_block_with_room() {
        let roomy_later = head(12, GWEI, true);
        assert!(waiting(3, 2 * GWEI, 10, true).needs_replacement(&roomy_later, STUCK));
        // Behind a lower nonce it just waits its turn.
        assert!(!waiting(3, 2 * GWEI, 10, false).needs_replacement(&roomy_later, STUCK));
        // Full blocks: no room was there to take it.
        assert!(!waiting(3, 2 * GWEI, 10, true).needs_replacement(&head(12, GWEI, false), STUCK));
        // The block right after sending may have been built before it arrived.
        assert!(!waiting(3, 2 * GWEI, 10, true).needs_replacement(&head(11, GWEI, true), STUCK));
    }
}
