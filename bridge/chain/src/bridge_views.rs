//! What a chain's `Bridge` contract says: the one place its views and its request logs are read
//! (the indexer, the voter's pre-check, recovery, the watcher, preflight and the CLI all go
//! through here), each call on the client's failover path.

use std::ops::RangeInclusive;

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use multibridge_contracts::bindings::Bridge;
use multibridge_contracts::{ChainRole, NonceState, Request, RequestError, request_from_log};

use super::{ChainClient, ChainError};
use crate::logs::LogSpan;

/// Most nonces asked of `votingStatus` in one call.
const VOTING_STATUS_CHUNK: usize = 256;
/// Most `votingStatus` chunks read at once.
const VOTING_STATUS_CONCURRENCY: usize = 8;

/// A failed read of the bridge.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// The chain could not be read.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// Fewer than `log_quorum` endpoints returned the same request logs: nothing is indexed
    /// (a lying or lagging provider; retried at the next step).
    #[error(
        "{chain}: request logs of blocks {from}..={to}: {agreeing} of {needed} endpoints agree ({answers})"
    )]
    NoQuorum {
        /// The chain.
        chain: ChainRole,
        /// First block read.
        from: u64,
        /// Last block read.
        to: u64,
        /// Most endpoints that returned the same requests.
        agreeing: usize,
        /// Endpoints that must agree.
        needed: usize,
        /// Each endpoint's answer, summarised.
        answers: String,
    },
    /// A log of the bridge did not decode as a request (a different contract at the address,
    /// or a node that returns garbage).
    #[error("{chain}: undecodable request log in block {block:?}: {source}")]
    BadLog {
        /// The chain.
        chain: ChainRole,
        /// Block of the log.
        block: Option<u64>,
        /// Why.
        source: RequestError,
    },
}

impl ViewError {
    /// Whether the same read may succeed later without a person.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Chain(e) => e.is_retryable(),
            Self::BadLog { .. } => false,
            Self::NoQuorum { .. } => true,
        }
    }
}

/// An executed request whose release waits the destination's delay (audit H-2).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QueuedRelease {
    /// The request nonce.
    pub nonce: u64,
    /// The local token (zero address: native coin).
    pub token: Address,
    /// Asset kind (0 native, 1 ERC-20, 2 ERC-721: `amount` is the id).
    pub kind: u8,
    /// Recipient.
    pub to: Address,
    /// Amount, in base units.
    pub amount: U256,
    /// Unix time from which anyone may execute it.
    pub release_at: u64,
    /// A pauser froze it: nobody executes it until the owner lifts the freeze or cancels it.
    pub frozen: bool,
}

/// Most queued releases one `queuedReleasesFrom` call returns (the relay's reads stay bounded
/// whatever the queue's size: audit NEW-M3).
pub const QUEUE_PAGE: u64 = 256;

/// The views of one chain's bridge.
#[derive(Debug, Clone, Copy)]
pub struct BridgeViews<'a> {
    chain: &'a ChainClient,
}

impl<'a> BridgeViews<'a> {
    /// The views of `chain`'s configured bridge.
    pub fn new(chain: &'a ChainClient) -> Self {
        Self { chain }
    }

    /// The bridge's counters at the shared head, read once per block for every task that
    /// watches them ([`ChainClient::counters`]).
    pub async fn counters(&self) -> Result<crate::bridge_counters::BridgeCounters, ChainError> {
        self.chain.counters().await
    }

    /// How many releases this bridge holds back (queued by its outflow limit, the large-release
    /// bound or an owner's settlement).
    pub async fn queued_release_count(&self) -> Result<u64, ChainError> {
        let count = self
            .chain
            .bridge_call("queuedReleaseCount", |b| async move {
                b.queuedReleaseCount().call().await
            })
            .await?;
        Ok(u64::try_from(count).unwrap_or(u64::MAX))
    }

    /// Up to `count` (at most [`QUEUE_PAGE`]) queued releases from queue position `start`, in
    /// one call. Positions move as entries leave (the last takes a leaver's place).
    pub async fn queued_releases_page(
        &self,
        start: u64,
        count: u64,
    ) -> Result<Vec<QueuedRelease>, ChainError> {
        let (start, count) = (U256::from(start), U256::from(count.min(QUEUE_PAGE)));
        let page = self
            .chain
            .bridge_call("queuedReleasesFrom", |b| async move {
                b.queuedReleasesFrom(start, count).call().await
            })
            .await?;
        Ok(page
            .into_iter()
            .map(|q| QueuedRelease {
                nonce: q.nonce,
                token: q.token,
                kind: q.kind,
                to: q.to,
                amount: q.amount,
                release_at: q.releaseAt,
                frozen: q.frozen,
            })
            .collect())
    }

    /// Whether the bridge is paused (requests and handles stopped).
    pub async fn paused(&self) -> Result<bool, ChainError> {
        self.chain
            .bridge_call("paused", |b| async move { b.paused().call().await })
            .await
    }

    /// Whether `account` may pause the bridge and freeze its queued releases.
    pub async fn is_pauser(&self, account: Address) -> Result<bool, ChainError> {
        self.chain
            .bridge_call("isPauser", move |b| async move {
                b.isPauser(account).call().await
            })
            .await
    }

    /// When the queued release of `nonce` is due (unix seconds); `None`: nothing is queued for
    /// it (released at once, executed, cancelled, or never handled).
    pub async fn queued_release_at(&self, nonce: u64) -> Result<Option<u64>, ChainError> {
        let queued = self
            .chain
            .bridge_call("queuedRelease", move |b| async move {
                b.queuedRelease(nonce).call().await
            })
            .await?;
        Ok((queued.releaseAt != 0).then_some(queued.releaseAt))
    }

    /// `requestNonce`: the next nonce this bridge assigns as a source.
    pub async fn request_nonce(&self) -> Result<u64, ChainError> {
        self.chain
            .bridge_call(
                "requestNonce",
                |b| async move { b.requestNonce().call().await },
            )
            .await
    }

    /// `requestNonce` at block `block`: how many requests this bridge had emitted by then.
    pub async fn request_nonce_at(&self, block: u64) -> Result<u64, ChainError> {
        self.chain
            .bridge_call_at_block("requestNonce", |b| async move {
                b.requestNonce()
                    .block(alloy::eips::BlockId::number(block))
                    .call()
                    .await
            })
            .await
    }

    /// The first nonce a request mined from `block` on can have: `requestNonce` at the block
    /// before (0 when the bridge had no code there yet, i.e. `block` is at or before its
    /// deployment). Where that state cannot be read — a node that pruned it (a full node keeps
    /// a few hundred blocks'; a relay restarted long after its bridge was deployed asks for far
    /// older ones), whatever its wording ("missing trie node", "historical state unavailable",
    /// anvil's "block height is H but requested was R") — it is answered from the logs instead:
    /// nonces are handed out one by one, so the first request mined from `block` on carries
    /// exactly that nonce, and with none since, `requestNonce` at the head read is the same
    /// figure, read `max_range` blocks at a time (the chain's configured `max_block_range`,
    /// which its endpoints accept). Only where the logs fail too is it an error.
    pub async fn first_nonce_from(&self, block: u64, max_range: u64) -> Result<u64, ViewError> {
        let Some(before) = block.checked_sub(1) else {
            return Ok(0);
        };
        let from_state = async {
            // Before the deployment there is nothing to call (and a call answers no data).
            if !self.deployed_at(before).await? {
                return Ok(0);
            }
            self.request_nonce_at(before).await
        };
        match from_state.await {
            Ok(nonce) => Ok(nonce),
            Err(e) => {
                tracing::info!(chain = %self.chain.role(), block, error = %e, "the state of that block cannot be read: the first nonce is read from the request logs since");
                self.first_nonce_from_logs(block, max_range).await
            }
        }
    }

    /// [`first_nonce_from`](Self::first_nonce_from) read from the request logs of `block` up to
    /// the head, `max_range` blocks per read.
    async fn first_nonce_from_logs(&self, block: u64, max_range: u64) -> Result<u64, ViewError> {
        let head = self.chain.head().await?;
        let mut from = block;
        while from <= head {
            let to = from
                .saturating_add(max_range.max(1).saturating_sub(1))
                .min(head);
            if let Some(first) = self.request_logs(from..=to).await?.first() {
                return Ok(first.nonce);
            }
            from = to.saturating_add(1);
        }
        // No request since `block`: as many as by the head read.
        Ok(self.request_nonce_at(head).await?)
    }

    /// Whether the bridge has code at `block`.
    async fn deployed_at(&self, block: u64) -> Result<bool, ChainError> {
        let bridge = self.chain.bridge();
        let code = self
            .chain
            .call("eth_getCode", |p| async move {
                p.get_code_at(bridge)
                    .block_id(alloy::eips::BlockId::number(block))
                    .await
            })
            .await?;
        Ok(!code.is_empty())
    }

    /// The next range of request logs to read from `from` up to `to` with `span`. A span still
    /// narrow and short of `to` (it starts at one block and doubles) opens up to the node's limit
    /// when the bridge has emitted few requests since `floor`, a nonce at or below that of every
    /// request mined from `from` on: `requestNonce` now, less `floor`, bounds what the rest of
    /// the range holds. A reader starting far behind the head — a first start from the
    /// deployment, a restart after downtime — read a quiet history in a dozen doubling steps;
    /// a hub's 64 pairs did so with three readers each (indexer, recovery, conservation) against
    /// one main-chain node, about ten seconds before a transfer made meanwhile was indexed.
    /// `floor` 0 is always right (it opens only on a bridge with few requests ever); without
    /// `requestNonce` the span stays as it is. Asked once per span, never past the width a
    /// failed read left ([`LogSpan::failed`]); one endpoint's word, so a wrong one costs at most
    /// one answer of up to the client's `max_answer_mib`, which fails and narrows the span.
    pub async fn next_request_range(
        &self,
        span: &mut LogSpan,
        from: u64,
        to: u64,
        floor: u64,
    ) -> Option<RangeInclusive<u64>> {
        let range = span.next(from, to)?;
        if !span.may_open_before(from, to) {
            return Some(range);
        }
        span.asked();
        match self.request_nonce().await {
            // A node behind the floor (its latest below a stored request) says nothing.
            Ok(now)
                if now
                    .checked_sub(floor)
                    .is_some_and(|n| n <= span.sparse_logs()) =>
            {
                span.open_up();
                self.chain.metrics().log_spans_opened.inc();
                span.next(from, to)
            }
            _ => Some(range),
        }
    }

    /// `blocks` cut short from its end until it holds at most `target` requests, counted
    /// exactly by `requestNonce` at the block before it and at its end (two small reads),
    /// halving the width until it fits or is one block: so an `eth_getLogs` answer — which the
    /// relay holds whole, raw and decoded — stays small however dense the blocks it covers (a
    /// backlog mined while the relays were down). A node that cannot answer for those blocks
    /// (state pruned) gets `blocks` unchanged: the span's density adaptation
    /// ([`crate::logs::LogSpan`]) is then the only bound.
    pub async fn requests_within(
        &self,
        blocks: RangeInclusive<u64>,
        target: u64,
    ) -> RangeInclusive<u64> {
        let (start, mut end) = (*blocks.start(), *blocks.end());
        if end <= start {
            return blocks;
        }
        let before = match start.checked_sub(1) {
            Some(block) => match self.request_nonce_at(block).await {
                Ok(nonce) => nonce,
                // No bridge there yet (a scan from block 0, as the recovery worker's before
                // anything was handled) counts as 0: that range was read whole before, ~5,000
                // logs in one answer at a 10,000 backlog, the relay's peak heap.
                Err(e) => match self.deployed_at(block).await {
                    Ok(false) => 0,
                    _ => {
                        tracing::debug!(block, error = %e, "cannot count the requests of a log range");
                        return blocks;
                    }
                },
            },
            None => 0,
        };
        loop {
            let at_end = match self.request_nonce_at(end).await {
                Ok(nonce) => nonce,
                Err(e) => {
                    tracing::debug!(block = end, error = %e, "cannot count the requests of a log range");
                    return start..=end;
                }
            };
            if at_end.saturating_sub(before) <= target || end == start {
                return start..=end;
            }
            end = start.saturating_add(end.saturating_sub(start) / 2);
        }
    }

    /// `(lowerHandleNonce, upperHandleNonce)` of this bridge as a destination.
    pub async fn handle_nonces(&self) -> Result<(u64, u64), ChainError> {
        // Both at once. Read at the same head or not, lower ≤ every handled nonce's + 1 ≤ upper
        // holds for what each says: both only grow (a reorg aside, which any read can miss).
        futures::future::try_join(
            self.chain.bridge_call("lowerHandleNonce", |b| async move {
                b.lowerHandleNonce().call().await
            }),
            self.chain.bridge_call("upperHandleNonce", |b| async move {
                b.upperHandleNonce().call().await
            }),
        )
        .await
    }

    /// `lowerHandleNonce` alone.
    pub async fn lower_handle_nonce(&self) -> Result<u64, ChainError> {
        self.chain
            .bridge_call("lowerHandleNonce", |b| async move {
                b.lowerHandleNonce().call().await
            })
            .await
    }

    /// `lowerHandleNonce` at block `block`: every nonce below it was handled by then.
    pub async fn lower_handle_nonce_at(&self, block: u64) -> Result<u64, ChainError> {
        self.chain
            .bridge_call("lowerHandleNonce", |b| async move {
                b.lowerHandleNonce()
                    .block(alloy::eips::BlockId::number(block))
                    .call()
                    .await
            })
            .await
    }

    /// Whether `nonce` is handled.
    pub async fn is_handled(&self, nonce: u64) -> Result<bool, ChainError> {
        self.chain
            .bridge_call(
                "isHandled",
                |b| async move { b.isHandled(nonce).call().await },
            )
            .await
    }

    /// `isRefunded(nonce)`: this (source) bridge refunded its request `nonce` (issue 53).
    pub async fn is_refunded(&self, nonce: u64) -> Result<bool, ChainError> {
        self.chain
            .bridge_call(
                "isRefunded",
                |b| async move { b.isRefunded(nonce).call().await },
            )
            .await
    }

    /// `cancelledKey(nonce)`: the vote key this (destination) bridge cancelled the
    /// counterpart's request `nonce` under (zero: not cancelled).
    pub async fn cancelled_key(&self, nonce: u64) -> Result<alloy::primitives::B256, ChainError> {
        self.chain
            .bridge_call("cancelledKey", |b| async move {
                b.cancelledKey(nonce).call().await
            })
            .await
    }

    /// `recoveryBlockNumber`: no unhandled request of the counterpart is older.
    pub async fn recovery_block(&self) -> Result<u64, ChainError> {
        self.chain
            .bridge_call("recoveryBlockNumber", |b| async move {
                b.recoveryBlockNumber().call().await
            })
            .await
    }

    /// The destination state of each nonce for `operator`, in order (`votingStatus`, one call
    /// per 256 nonces).
    pub async fn voting_status(
        &self,
        operator: Address,
        nonces: &[u64],
    ) -> Result<Vec<NonceState>, ChainError> {
        let (handled, voted) = self.voting_flags(operator, nonces, None).await?;
        Ok(handled
            .into_iter()
            .zip(voted)
            .map(|(handled, voted)| NonceState::from_flags(handled, voted))
            .collect())
    }

    /// Which of `nonces` are handled at block `block` (a block at the chain's confirmation
    /// depth: a handle above it may still be reorged away).
    pub async fn handled_at(&self, nonces: &[u64], block: u64) -> Result<Vec<bool>, ChainError> {
        Ok(self
            .voting_flags(Address::ZERO, nonces, Some(block))
            .await?
            .0)
    }

    /// `votingStatus` in chunks, at `block` (latest if `None`): (handled, voted by `operator`).
    /// Up to [`VOTING_STATUS_CONCURRENCY`] chunks are read at once (one after the other they
    /// were most of a pre-check with a few thousand requests open; all at once, tens of calls
    /// at an endpoint that may rate-limit).
    async fn voting_flags(
        &self,
        operator: Address,
        nonces: &[u64],
        block: Option<u64>,
    ) -> Result<(Vec<bool>, Vec<bool>), ChainError> {
        use futures::{StreamExt, TryStreamExt};
        let chunks: Vec<Vec<u64>> = nonces
            .chunks(VOTING_STATUS_CHUNK)
            .map(<[u64]>::to_vec)
            .collect();
        let reads = chunks
            .into_iter()
            .map(|chunk| self.voting_status_chunk(chunk, operator, block));
        let (mut handled, mut voted) = (Vec::with_capacity(nonces.len()), Vec::new());
        let statuses: Vec<_> = futures::stream::iter(reads)
            .buffered(VOTING_STATUS_CONCURRENCY)
            .try_collect()
            .await?;
        for status in statuses {
            handled.extend(status.handled);
            voted.extend(status.voted);
        }
        Ok((handled, voted))
    }

    /// One `votingStatus` call.
    async fn voting_status_chunk(
        &self,
        chunk: Vec<u64>,
        operator: Address,
        block: Option<u64>,
    ) -> Result<Bridge::votingStatusReturn, ChainError> {
        self.chain
            .bridge_call("votingStatus", move |b| {
                let chunk = chunk.clone();
                async move {
                    let call = b.votingStatus(chunk, operator);
                    match block {
                        Some(n) => call.block(alloy::eips::BlockId::number(n)).call().await,
                        None => call.call().await,
                    }
                }
            })
            .await
    }

    /// Votes needed to execute a request.
    pub async fn threshold(&self) -> Result<U256, ChainError> {
        self.chain
            .bridge_call("threshold", |b| async move { b.threshold().call().await })
            .await
    }

    /// Registered operators.
    pub async fn operators(&self) -> Result<Vec<Address>, ChainError> {
        self.chain
            .bridge_call(
                "getOperators",
                |b| async move { b.getOperators().call().await },
            )
            .await
    }

    /// Whether `account` is a registered operator.
    pub async fn is_operator(&self, account: Address) -> Result<bool, ChainError> {
        self.chain
            .bridge_call("isOperator", move |b| async move {
                b.isOperator(account).call().await
            })
            .await
    }

    /// The counterpart bridge this bridge names.
    pub async fn counterpart_bridge(&self) -> Result<Address, ChainError> {
        self.chain
            .bridge_call("counterpartBridge", |b| async move {
                b.counterpartBridge().call().await
            })
            .await
    }

    /// The requests this bridge emitted in `blocks`, in nonce order (removed logs dropped; a
    /// log from any other address is refused, whatever the node's filter did).
    pub async fn request_logs(
        &self,
        blocks: RangeInclusive<u64>,
    ) -> Result<Vec<Request>, ViewError> {
        let bridge = self.chain.bridge();
        let filter = Filter::new()
            .address(bridge)
            .event_signature(Bridge::RequestValueTransfer::SIGNATURE_HASH)
            .from_block(*blocks.start())
            .to_block(*blocks.end());
        if self.chain.log_quorum() > 1 {
            return self.request_logs_agreed(&filter, blocks).await;
        }
        let logs = self.chain.logs(&filter).await?;
        self.decode_requests(&logs)
    }

    /// The requests this bridge emitted in `block`, a block above the confirmation depth, as
    /// the newest blocks' events read once for every reader of the chain in the process
    /// answer ([`ChainClient::logs_in_head_window`]): one endpoint's word, about a block that
    /// may still be replaced; `None` where that window does not serve the block (no node is
    /// asked for this reader alone). Only for planning ahead (a voter's gas estimates for the
    /// block the next head confirms); what is indexed and voted is read at the depth with
    /// [`request_logs`](Self::request_logs).
    pub async fn upcoming_requests(&self, block: u64) -> Option<Result<Vec<Request>, ViewError>> {
        let filter = Filter::new()
            .address(self.chain.bridge())
            .event_signature(Bridge::RequestValueTransfer::SIGNATURE_HASH)
            .from_block(block)
            .to_block(block);
        Some(match self.chain.logs_in_head_window(&filter).await? {
            Ok(logs) => self.decode_requests(&logs),
            Err(e) => Err(e.into()),
        })
    }

    /// The requests of `logs` that the configured bridge emitted (a log from any other address
    /// is not a request of this bridge, whatever a node says), in nonce order.
    fn decode_requests(&self, logs: &[alloy::rpc::types::Log]) -> Result<Vec<Request>, ViewError> {
        let bridge = self.chain.bridge();
        let chain_id = self.chain.chain_id();
        let mut requests = Vec::with_capacity(logs.len());
        for log in logs.iter().filter(|l| !l.removed && l.address() == bridge) {
            let request = request_from_log(log, chain_id).map_err(|source| ViewError::BadLog {
                chain: self.chain.role(),
                block: log.block_number,
                source,
            })?;
            requests.push(request);
        }
        requests.sort_by_key(|r| r.nonce);
        Ok(requests)
    }

    /// The requests in `blocks` as at least `log_quorum` endpoints return them, byte for byte
    /// (audit M-7); fewer agreeing is [`ViewError::NoQuorum`] and nothing is indexed.
    async fn request_logs_agreed(
        &self,
        filter: &Filter,
        blocks: RangeInclusive<u64>,
    ) -> Result<Vec<Request>, ViewError> {
        let needed = self.chain.log_quorum();
        let answers = self
            .chain
            .on_each_endpoint("eth_getLogs", |p| {
                let filter = filter.clone();
                async move { p.get_logs(&filter).await }
            })
            .await;
        let mut groups: Vec<(Vec<Request>, usize)> = Vec::new();
        let mut summary = Vec::new();
        for (label, answer) in answers {
            match answer.map(|logs| self.decode_requests(&logs)) {
                Ok(Ok(requests)) => {
                    summary.push(format!("{label}: {} requests", requests.len()));
                    match groups.iter_mut().find(|(r, _)| *r == requests) {
                        Some((_, n)) => *n = n.saturating_add(1),
                        None => groups.push((requests, 1)),
                    }
                }
                Ok(Err(e)) => summary.push(format!("{label}: {e}")),
                Err(e) => summary.push(format!("{label}: {e}")),
            }
        }
        let agreeing = groups.iter().map(|(_, n)| *n).max().unwrap_or(0);
        match groups.into_iter().find(|(_, n)| *n >= needed) {
            Some((requests, _)) => Ok(requests),
            None => {
                self.chain.metrics().log_disagreements.inc();
                Err(ViewError::NoQuorum {
                    chain: self.chain.role(),
                    from: *blocks.start(),
                    to: *blocks.end(),
                    agreeing,
                    needed,
                    answers: summary.join("; "),
                })
            }
        }
    }
}
