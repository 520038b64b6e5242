//! The indexer of one lane: reads `RequestValueTransfer` logs of the source bridge in block
//! ranges up to `head − confirmations`, sized by how many logs they hold ([`LogSpan`]), and
//! stores the requests together with the new cursor in one SQLite transaction. A block above the
//! confirmation depth is never read, so a reorg inside the depth cannot reach the store.
//!
//! Nonce gaps (a log an RPC dropped) rewind the cursor to re-scan, counted from the first nonce
//! the lane ever indexed (a relay started after earlier requests does not look for them); a gap
//! that survives a few re-scans is left to recovery, which finds unhandled requests on the
//! chains without the store.

use std::future::Future;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use multibridge_monitoring::{LaneMetrics, Readiness};

use crate::chain::logs::{LogSpan, blocks_in};
use crate::chain::shared_reads::HEAD_FRESH_FOR;
use crate::chain::{ChainClient, ChainError, ViewError};
use crate::store::{SharedStore, StoreError};
use crate::task::{Next, Retryable, Stepper};
use crate::voter::prepared::{MAX_PREPARED_REQUESTS, PREPARE_AFTER, Upcoming, plannable_within};

/// The readiness component of a lane's indexer.
pub fn indexer_component(lane: multibridge_contracts::Lane) -> String {
    format!("indexer:{lane}")
}

/// Why an indexing step failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexerError {
    /// The source chain could not be read.
    #[error(transparent)]
    View(#[from] ViewError),
    /// The store refused (including a payload conflict, which stops the lane).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ChainError> for IndexerError {
    fn from(e: ChainError) -> Self {
        Self::View(ViewError::Chain(e))
    }
}

impl Retryable for IndexerError {
    fn is_retryable(&self) -> bool {
        match self {
            Self::View(e) => e.is_retryable(),
            Self::Store(e) => e.is_retryable(),
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

/// How the indexer of a lane reads its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexerSettings {
    /// Blocks a request must be buried under (or the chain's finalized block).
    pub confirmations: crate::config::Confirmations,
    /// First block to index.
    pub start_block: u64,
    /// Widest `eth_getLogs` range.
    pub max_block_range: u64,
    /// Pause once caught up.
    pub poll: Duration,
}

/// How many missing nonces one gap check reports.
const GAP_CHECK_LIMIT: usize = 16;
/// Re-scans for one missing nonce before the gap is left to recovery.
const GAP_RESCANS: u32 = 3;

/// The indexer of one lane.
pub struct Indexer {
    source: Arc<ChainClient>,
    settings: IndexerSettings,
    store: SharedStore,
    metrics: LaneMetrics,
    span: LogSpan,
    /// The nonce of the gap being re-scanned and how often it was.
    rescans: Option<(u64, u32)>,
    readiness: Arc<Readiness>,
    component: String,
    /// Rung when new requests are stored (the lane's voter steps at once).
    stored: Arc<tokio::sync::Notify>,
    /// The blocks the source's node pushes: a caught-up indexer steps the moment the next one
    /// comes instead of at its pause's end (which stays its bound while no push comes).
    pushed: tokio::sync::watch::Receiver<u64>,
    /// The source's head as the last step read it.
    head_seen: u64,
    /// Where a caught-up indexer publishes the requests of the block the next head confirms
    /// (the voter plans their votes ahead: [`crate::voter::prepared`]).
    upcoming: Option<Upcoming>,
    /// The block whose requests were last published.
    upcoming_read: Option<u64>,
}

impl Indexer {
    /// An indexer of the lane of `metrics`, reading `source`, reporting its health in
    /// `readiness` (component `indexer:<lane>`).
    pub fn new(
        source: Arc<ChainClient>,
        settings: IndexerSettings,
        store: SharedStore,
        metrics: LaneMetrics,
        readiness: Arc<Readiness>,
    ) -> Self {
        let component = indexer_component(metrics.lane);
        readiness.register(&component);
        Self {
            readiness,
            component,
            pushed: source.pushed_heads(),
            head_seen: 0,
            upcoming: None,
            upcoming_read: None,
            source,
            span: LogSpan::with_max(settings.max_block_range),
            settings,
            store,
            metrics,
            rescans: None,
            stored: Arc::default(),
        }
    }

    /// Ring `stored` whenever new requests are stored.
    pub fn ringing(mut self, stored: Arc<tokio::sync::Notify>) -> Self {
        self.stored = stored;
        self
    }

    /// Publish, once caught up, the requests of the block the next head confirms in `upcoming`.
    pub fn publishing(mut self, upcoming: Upcoming) -> Self {
        self.upcoming = Some(upcoming);
        self
    }

    /// Read and publish the requests of `safe_head + 1`, the block the next head confirms: once
    /// per block, where the confirmation depth is a number of blocks and the chain's next
    /// block is due when a plan can still be made and used ([`plannable_within`]), only from the
    /// process's shared window of the newest blocks' events (no read of its own), within
    /// [`PREPARE_AFTER`]. A failed, slow or unserved read, or a block with more than
    /// [`MAX_PREPARED_REQUESTS`] requests, publishes nothing: their votes are planned when final.
    async fn publish_upcoming(&mut self, head: u64, safe_head: u64) {
        let Some(upcoming) = &self.upcoming else {
            return;
        };
        let block = safe_head.saturating_add(1);
        if !matches!(
            self.settings.confirmations,
            crate::config::Confirmations::Depth(_)
        ) || block > head
            || self.upcoming_read == Some(block)
        {
            return;
        }
        let Some(due) = self
            .source
            .next_block_in()
            .filter(|due_in| plannable_within(*due_in))
            .and_then(|due_in| std::time::Instant::now().checked_add(due_in))
        else {
            return;
        };
        // Bounded: a slow read of the shared window must not hold up the indexing of the
        // block it is about (a plan made later than this would be too late anyway).
        let views = self.source.views();
        let read = tokio::time::timeout(PREPARE_AFTER, views.upcoming_requests(block));
        let lane = self.metrics.lane;
        match read.await {
            Ok(Some(Ok(requests))) => {
                self.upcoming_read = Some(block);
                // A burst is planned when final (the batches of a part of it would not be sent).
                if !requests.is_empty() && requests.len() <= MAX_PREPARED_REQUESTS {
                    upcoming.publish(block, requests, due);
                }
            }
            Ok(Some(Err(e))) => {
                tracing::debug!(%lane, block, error = %e, "the next block's requests could not be read ahead; their votes are planned when it is final");
            }
            Ok(None) => self.upcoming_read = Some(block),
            Err(_) => {
                tracing::debug!(%lane, block, "reading the next block's requests ahead took too long; their votes are planned when it is final");
            }
        }
    }

    /// How long to wait once caught up: until the source's head can next move where the chain
    /// makes blocks on a clock (then every [`HEAD_FRESH_FOR`] until it does: a block is read
    /// about 0.1 s after it comes, where a fixed poll found it half a poll later on average),
    /// never longer than [`CLOCK_WAIT_CAP`] or the configured poll if that is longer (the
    /// indexer's readiness is its steps); the configured poll elsewhere.
    fn caught_up_pause(&self) -> Duration {
        caught_up_pause(self.source.next_block_in(), self.settings.poll)
    }

    /// The next block to read.
    pub fn cursor(&self) -> Result<u64, IndexerError> {
        Ok(self
            .store
            .lock()
            .cursor(self.metrics.lane)?
            .unwrap_or(self.settings.start_block))
    }

    /// Read one range (or find there is nothing final to read) and store what it holds.
    pub async fn step(&mut self) -> Result<Step, IndexerError> {
        let started = std::time::Instant::now();
        let step = self.index().await;
        match &step {
            Ok(_) => self.readiness.ok(&self.component),
            // Failing from the step's start: the pause before it is no failure.
            Err(e) => self.readiness.failed_from(&self.component, e, started),
        }
        step
    }

    /// [`step`](Self::step), logged, with when to come back.
    async fn tick(&mut self) -> Result<Next, IndexerError> {
        Ok(match self.step().await? {
            Step::Indexed { range, found, new } => {
                if found > 0 {
                    tracing::info!(
                        from = range.start(),
                        to = range.end(),
                        found,
                        new,
                        "indexed"
                    );
                }
                Next::Now
            }
            Step::CaughtUp { .. } => Next::After(self.caught_up_pause()),
            Step::Rewound {
                missing,
                from_block,
            } => {
                tracing::warn!(missing, from_block, "re-scanning after a nonce gap");
                Next::After(self.settings.poll)
            }
        })
    }

    async fn index(&mut self) -> Result<Step, IndexerError> {
        let lane = self.metrics.lane;
        // A block pushed from here on wakes the wait after this step (the head is read below).
        self.pushed.borrow_and_update();
        let head = self.source.head().await?;
        self.head_seen = head;
        LaneMetrics::set(&self.metrics.source_head, head);
        let safe_head = self
            .source
            .safe_head(head, self.settings.confirmations)
            .await?;
        let cursor = self.cursor()?;
        LaneMetrics::set(&self.metrics.indexed_block, cursor);
        // Read only when the span will ask whether the rest is sparse (at most once per indexer,
        // never at a caught-up step; it was a store query every step).
        let floor = if self.span.may_open_before(cursor, safe_head) {
            self.store.lock().nonce_floor_from(lane, cursor)?
        } else {
            0
        };
        let Some(range) = self
            .source
            .views()
            .next_request_range(&mut self.span, cursor, safe_head, floor)
            .await
        else {
            self.publish_upcoming(head, safe_head).await;
            return Ok(Step::CaughtUp { safe_head });
        };
        // Never more requests in one answer than the span aims at, however dense the range.
        let range = self
            .source
            .views()
            .requests_within(range, crate::chain::logs::TARGET_LOGS as u64)
            .await;
        let width = blocks_in(&range);
        let requests = match self.source.views().request_logs(range.clone()).await {
            Ok(requests) => requests,
            Err(e) => {
                self.span.failed(width);
                return Err(e.into());
            }
        };
        self.span.observe(width, requests.len());
        for r in &requests {
            tracing::debug!(%lane, nonce = r.nonce, src_tx = %r.srcTxHash, block = r.srcBlockNumber, "request observed");
        }
        let next = range.end().saturating_add(1);
        let new = self.store.lock().record_range(lane, &requests, next)?;
        if new > 0 {
            self.stored.notify_one();
        }
        self.metrics.requests_indexed.inc_by(new as u64);
        LaneMetrics::set(&self.metrics.indexed_block, next);
        if let Some(step) = self.check_gaps()? {
            self.metrics.nonce_gaps.inc();
            return Ok(step);
        }
        Ok(Step::Indexed {
            range,
            found: requests.len(),
            new,
        })
    }

    /// A nonce missing below the highest stored one means a log was dropped: rewind the cursor
    /// to the block of the last request before the gap and read again from there — a few
    /// times; then the gap is left to recovery.
    fn check_gaps(&mut self) -> Result<Option<Step>, IndexerError> {
        let lane = self.metrics.lane;
        let mut store = self.store.lock();
        let Some(&missing) = store.missing_nonces(lane, GAP_CHECK_LIMIT)?.first() else {
            self.rescans = None;
            return Ok(None);
        };
        let tries = match self.rescans {
            Some((nonce, tries)) if nonce == missing => tries.saturating_add(1),
            _ => 1,
        };
        if tries > GAP_RESCANS {
            tracing::error!(%lane, missing, "request nonce gap persists after {GAP_RESCANS} re-scans; leaving it to recovery");
            store.skip_gap(lane, missing)?;
            self.rescans = None;
            return Ok(None);
        }
        self.rescans = Some((missing, tries));
        // The gap check starts at the first indexed nonce, so the one before a gap is stored.
        let from_block = missing
            .checked_sub(1)
            .map(|previous| store.src_block_of(lane, previous))
            .transpose()?
            .flatten()
            .unwrap_or(self.settings.start_block);
        tracing::warn!(%lane, missing, from_block, "request nonce gap: re-scanning");
        store.rewind_cursor(lane, from_block)?;
        // What the process's shared log store holds from there may be the answer that missed
        // the log: the re-scan asks the node.
        self.source.forget_logs_from(from_block);
        Ok(Some(Step::Rewound {
            missing,
            from_block,
        }))
    }
}

/// The longest a caught-up indexer waits for a chain's next block where the configured poll is
/// shorter: its readiness is its steps, so a 12 s chain is still stepped on every second (a
/// step while the head is held asks no node). Capped at the poll itself (250 ms on the devnet)
/// instead, every lane stepped about three times between two 1 s blocks with nothing to find,
/// each step reading its cursor from the store.
pub const CLOCK_WAIT_CAP: Duration = Duration::from_secs(1);

/// Wait `pause`, or less if `pushed` changes meanwhile (or changed since it was last marked
/// seen): whether a push ended the wait. A dropped sender (never while the client lives)
/// leaves the pause alone.
async fn pushed_within(pushed: &mut tokio::sync::watch::Receiver<u64>, pause: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(pause) => false,
        changed = pushed.changed() => {
            if changed.is_err() {
                tokio::time::sleep(pause).await;
            }
            changed.is_ok()
        }
    }
}

/// [`Indexer::caught_up_pause`] from the source's [`ChainClient::next_block_in`] and the
/// configured poll.
fn caught_up_pause(next_block_in: Option<Duration>, poll: Duration) -> Duration {
    next_block_in.map_or(poll, |wait| {
        wait.max(HEAD_FRESH_FOR).min(poll.max(CLOCK_WAIT_CAP))
    })
}

impl Stepper for Indexer {
    type Error = IndexerError;

    fn step(&mut self) -> impl Future<Output = Result<Next, IndexerError>> + Send {
        self.tick()
    }

    /// The pause, ended by the next block the source's node pushes. A block pushed that the
    /// last step's head read did not show yet (a read under way when it came, or an HTTP
    /// endpoint behind the WebSocket one) is looked for again after [`HEAD_FRESH_FOR`].
    async fn wait(&mut self, pause: Duration) {
        let pause = if *self.pushed.borrow() > self.head_seen {
            pause.min(HEAD_FRESH_FOR)
        } else {
            pause
        };
        if pushed_within(&mut self.pushed, pause).await {
            self.metrics.indexer_woken_by_push.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_pushed_block_ends_the_wait_and_nothing_else_does() {
        let pause = Duration::from_millis(700);
        let (sender, mut pushed) = tokio::sync::watch::channel(0u64);
        // Nothing pushed: the whole pause.
        let start = tokio::time::Instant::now();
        assert!(!pushed_within(&mut pushed, pause).await);
        assert_eq!(start.elapsed(), pause);
        // A push during the wait ends it then.
        let start = tokio::time::Instant::now();
        let push = tokio::spawn({
            let sender = sender.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                sender.send_replace(8);
            }
        });
        assert!(pushed_within(&mut pushed, pause).await);
        assert_eq!(start.elapsed(), Duration::from_millis(200));
        push.await.unwrap();
        // A push before the wait began (during the step) and not marked seen: no wait at all.
        pushed.borrow_and_update();
        sender.send_replace(9);
        let start = tokio::time::Instant::now();
        assert!(pushed_within(&mut pushed, pause).await);
        assert_eq!(start.elapsed(), Duration::ZERO);
        // Marked seen at the step's start: the next push is waited for again.
        pushed.borrow_and_update();
        let start = tokio::time::Instant::now();
        assert!(!pushed_within(&mut pushed, pause).await);
        assert_eq!(start.elapsed(), pause);
        // No sender any more: the pause, never a loop that wakes at once.
        drop(sender);
        let start = tokio::time::Instant::now();
        assert!(!pushed_within(&mut pushed, pause).await);
        assert_eq!(start.elapsed(), pause);
    }

    #[test]
    fn a_caught_up_indexer_waits_for_the_next_block_where_the_chain_has_a_clock() {
        let poll = Duration::from_millis(250);
        assert_eq!(caught_up_pause(None, poll), poll, "no clock: the poll");
        assert_eq!(
            caught_up_pause(Some(Duration::from_millis(720)), poll),
            Duration::from_millis(720),
            "until the head can move, though the poll is shorter"
        );
        assert_eq!(
            caught_up_pause(Some(Duration::from_secs(9)), poll),
            CLOCK_WAIT_CAP,
            "never longer than the cap: readiness follows the steps"
        );
        assert_eq!(
            caught_up_pause(Some(Duration::from_secs(9)), Duration::from_secs(2)),
            Duration::from_secs(2),
            "nor than a poll longer than the cap"
        );
        assert_eq!(
            caught_up_pause(Some(Duration::ZERO), poll),
            HEAD_FRESH_FOR,
            "once due: as often as the shared head is read"
        );
    }
}
