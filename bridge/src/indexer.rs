//! The indexer of one lane: reads `RequestValueTransfer` logs of the source bridge in bounded
//! block ranges up to `head − confirmations`, and stores the requests together with the new
//! cursor in one SQLite transaction. A block above the confirmation depth is never read, so a
//! reorg inside the depth cannot reach the store. Nonce gaps (a log an RPC dropped) rewind the
//! cursor to re-scan.
//!
//! What to query next ([`next_range`]) is separate from the loop that does it ([`Indexer::step`]).

use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};

use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use multibridge_contracts::bindings::Bridge;
use multibridge_contracts::{Lane, Request, RequestError, request_from_log};
use multibridge_monitoring::Metrics;

use crate::chain::{ChainClient, ChainError};
use crate::config::ChainConfig;
use crate::store::{Store, StoreError};

/// The block range to query next, or `None` when the cursor is past the safe head.
pub fn next_range(cursor: u64, safe_head: u64, max_range: u64) -> Option<RangeInclusive<u64>> {
    if cursor > safe_head || max_range == 0 {
        return None;
    }
    let end = cursor
        .saturating_add(max_range.saturating_sub(1))
        .min(safe_head);
    Some(cursor..=end)
}

/// Why an indexing step failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexerError {
    /// The source chain could not be read.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The store refused (including a payload conflict, which stops the lane).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A log of the bridge did not decode as a request.
    #[error("{lane}: undecodable request log in block {block:?}: {source}")]
    BadLog {
        /// Lane.
        lane: Lane,
        /// Block of the log.
        block: Option<u64>,
        /// Why.
        source: RequestError,
    },
}

impl IndexerError {
    /// Whether the next step may succeed without a person.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Chain(e) => e.is_retryable(),
            Self::Store(e) => e.is_retryable(),
            Self::BadLog { .. } => false,
        }
    }
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A range was indexed.
    Indexed {
        /// The blocks read.
        range: RangeInclusive<u64>,
        /// Requests found in it.
        found: usize,
        /// Of those, new to the store.
        new: usize,
    },
    /// Nothing final to read yet.
    CaughtUp {
        /// The safe head.
        safe_head: u64,
    },
    /// A nonce gap was found and the cursor rewound to re-scan from `from_block`.
    Rewound {
        /// First missing nonce.
        missing: u64,
        /// Where the re-scan starts.
        from_block: u64,
    },
}

/// The indexer of one lane.
pub struct Indexer {
    lane: Lane,
    source: Arc<ChainClient>,
    bridge: alloy::primitives::Address,
    confirmations: u64,
    start_block: u64,
    max_range: u64,
    store: Arc<Mutex<Store>>,
    metrics: Option<Arc<Metrics>>,
}

/// How many missing nonces one gap check reports.
const GAP_CHECK_LIMIT: usize = 16;

impl Indexer {
    /// An indexer of `lane` reading the source chain `source` as configured in `config`.
    pub fn new(
        lane: Lane,
        source: Arc<ChainClient>,
        config: &ChainConfig,
        store: Arc<Mutex<Store>>,
    ) -> Self {
        Self {
            lane,
            source,
            bridge: config.bridge,
            confirmations: config.confirmations,
            start_block: config.start_block,
            max_range: config.max_block_range.max(1),
            store,
            metrics: None,
        }
    }

    /// Export progress in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn gauge(&self, pick: impl Fn(&Metrics) -> &prometheus::IntGaugeVec, value: u64) {
        if let Some(m) = &self.metrics {
            pick(m)
                .with_label_values(&[self.lane.as_str()])
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        }
    }

    fn count(&self, pick: impl Fn(&Metrics) -> &prometheus::IntCounterVec, by: usize) {
        if let Some(m) = &self.metrics {
            pick(m)
                .with_label_values(&[self.lane.as_str()])
                .inc_by(by as u64);
        }
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The next block to read.
    pub fn cursor(&self) -> Result<u64, IndexerError> {
        Ok(self.store().cursor(self.lane)?.unwrap_or(self.start_block))
    }

    /// Read one range (or find there is nothing final to read) and store what it holds.
    pub async fn step(&self) -> Result<Step, IndexerError> {
        let head = self.source.head().await?;
        self.gauge(|m| &m.source_head, head);
        let safe_head = head.saturating_sub(self.confirmations);
        let cursor = self.cursor()?;
        self.gauge(|m| &m.indexed_block, cursor);
        let Some(range) = next_range(cursor, safe_head, self.max_range) else {
            return Ok(Step::CaughtUp { safe_head });
        };
        let requests = self.fetch(range.clone()).await?;
        for r in &requests {
            tracing::debug!(lane = %self.lane, nonce = r.nonce, src_tx = %r.srcTxHash, block = r.srcBlockNumber, "request observed");
        }
        let next = range.end().saturating_add(1);
        let new = self.store().record_range(self.lane, &requests, next)?;
        self.count(|m| &m.requests_indexed, new);
        self.gauge(|m| &m.indexed_block, next);
        if let Some(step) = self.check_gaps()? {
            self.count(|m| &m.nonce_gaps, 1);
            return Ok(step);
        }
        Ok(Step::Indexed {
            range,
            found: requests.len(),
            new,
        })
    }

    async fn fetch(&self, range: RangeInclusive<u64>) -> Result<Vec<Request>, IndexerError> {
        fetch_requests(&self.source, self.bridge, self.lane, range).await
    }

    /// A nonce missing below the highest stored one means a log was dropped: rewind the cursor
    /// to the block of the last request before the gap and read again from there.
    fn check_gaps(&self) -> Result<Option<Step>, IndexerError> {
        let mut store = self.store();
        let Some(&missing) = store.missing_nonces(self.lane, 0, GAP_CHECK_LIMIT)?.first() else {
            return Ok(None);
        };
        let from_block = match missing.checked_sub(1) {
            Some(previous) => store
                .src_block_of(self.lane, previous)?
                .unwrap_or(self.start_block),
            None => self.start_block,
        };
        tracing::warn!(lane = %self.lane, missing, from_block, "request nonce gap: re-scanning");
        store.rewind_cursor(self.lane, from_block)?;
        Ok(Some(Step::Rewound {
            missing,
            from_block,
        }))
    }
}

/// The requests `bridge` on `source` emitted in `range`, in nonce order (removed logs dropped).
/// Shared by the indexer and the recovery worker.
pub async fn fetch_requests(
    source: &ChainClient,
    bridge: alloy::primitives::Address,
    lane: Lane,
    range: RangeInclusive<u64>,
) -> Result<Vec<Request>, IndexerError> {
    let filter = Filter::new()
        .address(bridge)
        .event_signature(Bridge::RequestValueTransfer::SIGNATURE_HASH)
        .from_block(*range.start())
        .to_block(*range.end());
    let logs = source
        .call("eth_getLogs", |p| {
            let filter = filter.clone();
            async move { p.get_logs(&filter).await }
        })
        .await?;
    let chain_id = source.chain_id();
    let mut requests = Vec::with_capacity(logs.len());
    for log in logs.iter().filter(|l| !l.removed) {
        let request = request_from_log(log, chain_id).map_err(|source| IndexerError::BadLog {
            lane,
            block: log.block_number,
            source,
        })?;
        requests.push(request);
    }
    requests.sort_by_key(|r| r.nonce);
    Ok(requests)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_bounded_and_never_pass_the_safe_head() {
        assert_eq!(next_range(10, 100, 50), Some(10..=59));
        assert_eq!(next_range(60, 100, 50), Some(60..=100));
        assert_eq!(next_range(100, 100, 50), Some(100..=100));
        assert_eq!(next_range(101, 100, 50), None);
        assert_eq!(next_range(0, 0, 1), Some(0..=0));
        assert_eq!(next_range(5, 100, 0), None);
        assert_eq!(
            next_range(u64::MAX - 1, u64::MAX, u64::MAX),
            Some(u64::MAX - 1..=u64::MAX)
        );
    }
}
