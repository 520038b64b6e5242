//! How the ready requests become vote transactions: cut by count and calldata bytes, sent
//! within a share of the destination's block gas, split in halves when a node refuses one as too
//! large.

use alloy::primitives::Bytes;
use alloy::transports::RpcError;
use multibridge_contracts::Request;

use super::Entry;
use crate::chain::ChainError;
use crate::chain::submitter::SubmitError;
use crate::store::StoredRequest;

/// Most calldata bytes in one vote transaction: below the 128 KiB transaction size limit of
/// geth-family pools, with room for the transaction's own fields.
pub const MAX_VOTE_BYTES: usize = 96 * 1024;

/// A vote transaction may use at most this share (percent) of the destination's block gas
/// limit, so it fits a block beside other transactions.
pub const MAX_VOTE_BLOCK_SHARE: u64 = 50;

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

/// A vote transaction to estimate (unless its estimate is known) and send.
pub(super) struct PlannedVote {
    pub(super) batch: Vec<Request>,
    pub(super) entry: Entry,
    pub(super) input: Bytes,
    pub(super) estimate: Option<Result<u64, SubmitError>>,
    /// Its estimate is a plan made before its requests were final.
    pub(super) prepared: bool,
}

/// What a step sends: votes, and executions of keys that hold the threshold already.
#[derive(Default)]
pub(super) struct Ready {
    pub(super) vote: Vec<StoredRequest>,
    pub(super) execute: Vec<Request>,
}

/// Most requests in one `executeHandles` (the bridge's batch bound).
pub(super) const MAX_EXECUTE_BATCH: usize = 64;

/// Why a vote transaction was not sent.
pub(super) enum Refusal {
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
