//! One request's vote as the voter tracks it, and the outcomes that move it: what came back from
//! a receipt, the pre-check, a refused send or the submitter's tracking. [`super::Voter::settle`]
//! is the one function that turns an outcome into the store transition, the metrics and the
//! in-memory record.

use alloy::primitives::B256;
use multibridge_contracts::{RejectReason, WaitReason};

/// A vote in flight for one request (the voter keeps nothing else in memory: waiting reasons
/// and retry times are in the store, so the voter's memory does not grow with the backlog).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingVote {
    /// Nonce of the vote transaction.
    pub tx_nonce: u64,
    /// Its latest hash.
    pub tx: B256,
    /// The entry point it was sent through.
    pub entry: Entry,
}

/// The bridge entry point a vote transaction calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Entry {
    /// `handleValueTransfers`: a batch of votes; an item the bridge refuses is skipped
    /// (`HandleSkipped`) and the rest proceeds.
    Batch,
    /// `handleValueTransfers` of requests this operator's vote is expected to record only (its
    /// committee rank comes before the deciding vote's): planned with the recording gas
    /// ([`GasPlan::Record`](crate::chain::submitter::GasPlan::Record)) and sent with a leading
    /// tip, so in a block holding the deciding vote too it goes first.
    Record,
    /// `handleValueTransfers` of requests this operator's vote is expected to decide, sent while
    /// the destination's blocks are full (issue 54): planned as its simulation at `latest` says
    /// ([`GasPlan::Record`](crate::chain::submitter::GasPlan::Record): the recording gas while
    /// it only records there), with the market's tip. A deciding vote that lands before the
    /// votes ranked ahead of it only records and would have held a block's room for executing
    /// it never did; one that lands after them executes what its gas fits and the bridge skips
    /// the rest (`GasBudgetTooLow`), voted again as deciding.
    Tight,
    /// `handleValueTransfer`: one vote that reverts on any refusal (a request that waited: its
    /// simulation reverts, at no cost, while the condition holds).
    Single,
    /// `executeHandles`: executes requests whose vote key already holds the threshold (after a
    /// lowered threshold); votes nothing.
    Execute,
    /// `executeAttested`: a batch carrying a threshold of operators' signatures (attested
    /// mode); votes nothing.
    Attested,
}

/// What happened to a request's vote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A vote transaction for it was broadcast.
    Sent(PendingVote),
    /// Its vote transaction was re-sent under a new hash.
    Replaced(B256),
    /// It is executed on the destination.
    Handled,
    /// This operator's vote is on chain (not executed yet).
    VotedByUs,
    /// Still voted and not executed: look again later.
    StillVoted,
    /// Its vote is not on its way any more, or gone from the chain: vote again.
    VoteGone,
    /// The destination cannot execute it yet.
    Waiting(WaitReason, String),
    /// No vote of this operator can ever count for it.
    Rejected(RejectReason, String),
}

/// Where an outcome was learnt (what it means for the metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// From a mined vote transaction's logs.
    Receipt,
    /// From the destination's state before sending (no transaction needed).
    PreCheck,
    /// From the node refusing to send (the call would revert).
    Refusal,
    /// From the submitter (sent, replaced, superseded, abandoned).
    Tracking,
}
