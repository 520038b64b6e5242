//! The head pushed by the node (issue 54): one `newHeads` subscription per chain and process,
//! where the chain's config gives a `ws_url`.
//!
//! Without it every client of a chain shares one head read ([`crate::shared_reads`]) held
//! between blocks ([`crate::head_cadence`]): about four `eth_blockNumber` a block per chain and
//! process, and a block seen up to a poll (100 ms) after it came. On a hub of 64 service chains
//! that was 1,581 requests a second over six relay processes at rest, more than a third of all
//! they sent.
//!
//! With a subscription, a pushed block is a **wake-up, never the head**: the head served to the
//! process is always what a read over `rpc_urls` (with their failover) answered — the node the
//! logs, the views and the confirmations are read from. A push
//! - drops the shared head's answer, so the next asker reads it at once (one `eth_blockNumber`
//!   a block per chain and process, in the moment the block came);
//! - times the chain's clock exactly ([`crate::head_cadence::Cadence::pushed`]).
//!
//! A read that finds the block the subscription last pushed is held until 250 ms
//! ([`FEED_GRACE`]) after the next block is due, or [`FEED_QUIET`] on a chain without a clock,
//! at most [`LONGEST_HOLD`](crate::head_cadence::LONGEST_HOLD): the next push drops it sooner.
//! What else is not trusted to the subscription:
//! - a read that finds the head past the last push says it is behind: the head is held as
//!   without it, and if it has not caught up within [`BEHIND_FOR`] it is made again;
//! - a read below the last push (the WebSocket node ahead of the one read, a reorg) is held only
//!   as without a subscription: the reads decide;
//! - its endpoint must answer the configured chain id, checked at every connect;
//! - it is made again, never resumed by the transport; a lost or unmakeable one leaves the head
//!   to the reads meanwhile ([`RECONNECT_FIRST`] doubling to [`RECONNECT_LAST`]).
//!
//! Only each header's `number` is decoded (a chain whose headers carry other fields works the
//! same), and frames are bounded ([`MAX_FRAME`]).

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use alloy::primitives::U64;
use alloy::providers::{Provider, ProviderBuilder, WsConnect};
use alloy::pubsub::{ConnectionHandle, PubSubConnect};
use alloy::transports::ws::WebSocketConfig;
use alloy::transports::{TransportErrorKind, TransportResult};
use futures::StreamExt;
use multibridge_contracts::ChainRole;
use multibridge_monitoring::ChainMetrics;
use tracing::Instrument;

use crate::head_cadence::LONGEST_HOLD;
use crate::shared_reads::SharedReads;

/// How long after the next block is due a read that found the last pushed block still serves.
pub const FEED_GRACE: Duration = Duration::from_millis(250);

/// How long such a read serves on a chain without a learned clock.
pub const FEED_QUIET: Duration = Duration::from_secs(1);

/// How long reads may show the head past the subscription's before it is made again.
pub const BEHIND_FOR: Duration = Duration::from_secs(2);

/// The first wait before making a lost subscription again.
pub const RECONNECT_FIRST: Duration = Duration::from_millis(500);

/// The longest wait between two attempts to make the subscription.
pub const RECONNECT_LAST: Duration = Duration::from_secs(10);

/// The longest connect, chain id check or subscribe.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest WebSocket frame or message accepted from the endpoint.
pub const MAX_FRAME: usize = 256 * 1024;

/// The subscription's state, shared by every client of the chain in the process.
#[derive(Debug, Default)]
pub struct FeedState {
    /// A feed task runs for the chain (one per process).
    started: bool,
    /// The subscription is up.
    connected: bool,
    /// The last head it pushed (since it was last made).
    last: Option<u64>,
    /// Since when reads have shown the head past `last`, and the highest they showed.
    ahead: Option<(Instant, u64)>,
}

/// Start the head subscription of the chain `chain_id` whose reads are `shared`, at `url`,
/// unless one runs already (on the current tokio runtime; outside one, none: the head is read
/// as before).
pub(crate) fn start(
    shared: &Arc<SharedReads>,
    url: &str,
    chain_id: u64,
    role: ChainRole,
    metrics: ChainMetrics,
) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    {
        let mut state = shared.feed_state();
        if state.started {
            return;
        }
        state.started = true;
    }
    let task = Feed {
        shared: Arc::downgrade(shared),
        url: url.to_owned(),
        chain_id,
        metrics,
    };
    let span = tracing::info_span!("head_feed", chain = %role);
    runtime.spawn(task.run().instrument(span));
}

/// The task that keeps one chain's subscription.
struct Feed {
    shared: Weak<SharedReads>,
    url: String,
    chain_id: u64,
    metrics: ChainMetrics,
}

/// Why one subscription ended.
enum Ended {
    /// Nobody reads the chain any more: the task ends.
    Unused,
    /// It was lost or never made; made again after a back-off.
    Lost(String),
}

/// Clears the chain's feed state when the task ends however it ends (a panic, its runtime shut
/// down): the head is read as without a subscription, and the next client may start one.
struct Stopped(Weak<SharedReads>);

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Some(reads) = self.0.upgrade() {
            *reads.feed_state() = FeedState::default();
        }
    }
}

/// A WebSocket connection made once: the transport's own reconnect is refused, so a lost
/// connection ends the subscription and [`Feed::run`] makes it again, timed and counted (the
/// transport would otherwise try once, with no bound on how long the attempt may hang).
#[derive(Clone)]
struct Once(WsConnect);

impl PubSubConnect for Once {
    fn is_local(&self) -> bool {
        self.0.is_local()
    }

    async fn connect(&self) -> TransportResult<ConnectionHandle> {
        self.0.connect().await
    }

    async fn try_reconnect(&self) -> TransportResult<ConnectionHandle> {
        Err(TransportErrorKind::non_retryable_str(
            "the relay makes a lost head subscription again itself",
        ))
    }
}

/// The one field of a pushed header the relay reads.
#[derive(Debug, Clone, serde::Deserialize)]
struct Pushed {
    number: U64,
}

impl Feed {
    async fn run(self) {
        let _stopped = Stopped(self.shared.clone());
        let mut wait = RECONNECT_FIRST;
        loop {
            let started = Instant::now();
            match self.follow().await {
                Ended::Unused => return,
                Ended::Lost(why) => {
                    self.metrics.head_feed("lost");
                    tracing::warn!(reason = %why, retry_in = ?wait, "head subscription lost: the head is read over RPC meanwhile");
                }
            }
            let Some(reads) = self.shared.upgrade() else {
                return;
            };
            {
                let mut state = reads.feed_state();
                state.connected = false;
                state.ahead = None;
            }
            drop(reads);
            // A subscription that lasted resets the back-off; one lost at once doubles it.
            if started.elapsed() > RECONNECT_LAST {
                wait = RECONNECT_FIRST;
            }
            tokio::time::sleep(wait).await;
            wait = wait.saturating_mul(2).min(RECONNECT_LAST);
        }
    }

    /// Make the subscription and wake the shared head from it until it ends.
    async fn follow(&self) -> Ended {
        let config = WebSocketConfig::default()
            .read_buffer_size(8 * 1024)
            .write_buffer_size(0)
            .max_message_size(Some(MAX_FRAME))
            .max_frame_size(Some(MAX_FRAME));
        let connect = Once(WsConnect::new(self.url.as_str()).with_config(config));
        let provider = match within(
            "connect",
            ProviderBuilder::new().connect_pubsub_with(connect),
        )
        .await
        {
            Ok(provider) => provider,
            Err(lost) => return lost,
        };
        match within("eth_chainId", provider.get_chain_id()).await {
            Ok(id) if id == self.chain_id => {}
            Ok(id) => {
                return Ended::Lost(format!(
                    "the WebSocket endpoint serves chain {id}, not the configured {}: check ws_url",
                    self.chain_id
                ));
            }
            Err(lost) => return lost,
        }
        let mut headers = match within(
            "eth_subscribe",
            provider.subscribe::<_, Pushed>(("newHeads".to_owned(),)),
        )
        .await
        {
            Ok(subscription) => subscription.into_stream(),
            Err(lost) => return lost,
        };
        {
            let Some(reads) = self.shared.upgrade() else {
                return Ended::Unused;
            };
            let mut state = reads.feed_state();
            state.connected = true;
            // What an earlier subscription pushed says nothing of this one: until it pushes,
            // no read counts it behind.
            state.last = None;
            state.ahead = None;
        }
        self.metrics.head_feed("connected");
        tracing::info!("head subscription up: each block is read the moment the node has it");
        let mut check = tokio::time::interval(BEHIND_FOR.checked_div(2).unwrap_or(BEHIND_FOR));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                header = headers.next() => {
                    let Some(header) = header else {
                        return Ended::Lost("the subscription ended".to_owned());
                    };
                    let Some(reads) = self.shared.upgrade() else {
                        return Ended::Unused;
                    };
                    let block = header.number.to::<u64>();
                    reads.pushed_head(block);
                    self.metrics.head_feed("header");
                    tracing::debug!(block, "head pushed");
                }
                _ = check.tick() => {
                    let Some(reads) = self.shared.upgrade() else {
                        return Ended::Unused;
                    };
                    if let Some((since, head)) = reads.feed_state().ahead
                        && since.elapsed() >= BEHIND_FOR
                    {
                        self.metrics.head_feed("behind");
                        return Ended::Lost(format!("reads showed block {head}, the subscription had not pushed it {BEHIND_FOR:?} later"));
                    }
                }
            }
        }
    }
}

/// `step` of making the subscription, bounded by [`CONNECT_TIMEOUT`]; a failure as the
/// subscription lost, its text without the URLs in it (they may carry API keys).
async fn within<T, E: std::fmt::Display>(
    step: &str,
    future: impl std::future::IntoFuture<Output = Result<T, E>>,
) -> Result<T, Ended> {
    let why = match tokio::time::timeout(CONNECT_TIMEOUT, future).await {
        Ok(Ok(value)) => return Ok(value),
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!("no answer in {CONNECT_TIMEOUT:?}"),
    };
    let why = multibridge_monitoring::redact::redact_urls(&why).into_owned();
    Err(Ended::Lost(format!("{step}: {why}")))
}

impl SharedReads {
    pub(crate) fn feed_state(&self) -> std::sync::MutexGuard<'_, FeedState> {
        self.feed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The node pushed block `head`: the chain's clock timed by it, and the shared head's
    /// answer and the head's logs window dropped so the next asker reads them (the push itself
    /// is never served).
    pub(crate) fn pushed_head(&self, head: u64) {
        self.cadence
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pushed(head, Instant::now());
        {
            let mut state = self.feed_state();
            state.last = Some(head);
            if state.ahead.is_some_and(|(_, ahead)| head >= ahead) {
                state.ahead = None;
            }
        }
        self.head.expire();
        self.head_logs.forget();
        // After the expiry: a task woken by it reads the new head, not the held one.
        self.pushed.send_replace(head);
    }

    /// A read of the head asked at `asked` answered `head`: learn the chain's clock from it and
    /// hold it until the next block can come — where the subscription is up and last pushed this
    /// very block, until [`FEED_GRACE`] after the next is due (its push drops it sooner), or
    /// [`FEED_QUIET`] without a clock. A read past the last push marks the subscription behind.
    /// Every read raises the newest head the process knows (`newest_head`).
    pub(crate) fn head_read(&self, head: u64, asked: Instant) {
        self.newest_head
            .fetch_max(head, std::sync::atomic::Ordering::Relaxed);
        let now = Instant::now();
        let mut confirms_push = false;
        {
            let mut state = self.feed_state();
            match state.last {
                Some(last) if state.connected && head > last => {
                    state.ahead = Some(match state.ahead {
                        Some((since, ahead)) => (since, ahead.max(head)),
                        None => (now, head),
                    });
                }
                // Below the last push: a read asked before the block came, or a node behind
                // the WebSocket one. Neither times the clock (the push did); the answer serves
                // only while fresh, so the block is read again within a poll.
                Some(last) if state.connected && head < last => {
                    drop(state);
                    self.head.hold(None);
                    return;
                }
                Some(_) if state.connected => confirms_push = state.ahead.is_none(),
                _ => {}
            }
        }
        let hold = {
            let mut cadence = self.cadence.lock().unwrap_or_else(|p| p.into_inner());
            cadence.observe(head, asked);
            let hold = cadence.hold_until();
            if confirms_push {
                let longest = now.checked_add(LONGEST_HOLD);
                cadence
                    .next_due()
                    .and_then(|due| due.checked_add(FEED_GRACE))
                    .filter(|until| *until > now)
                    .or_else(|| now.checked_add(FEED_QUIET))
                    .map(|until| longest.map_or(until, |longest| until.min(longest)))
                    .or(hold)
            } else {
                hold
            }
        };
        self.head.hold(hold);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared_reads::{Got, HEAD_FRESH_FOR};

    /// A read of the head answering `head`, through the shared slot as `ChainClient::head` does.
    async fn read(reads: &SharedReads, head: u64) {
        let got = reads
            .head
            .get_if(|_| false, || async { Ok::<u64, String>(head) })
            .await;
        assert!(matches!(got, Got::Read(Ok(h)) if h == head));
        reads.head_read(head, Instant::now());
    }

    /// Past a read's freshness.
    async fn after_fresh() {
        tokio::time::sleep(HEAD_FRESH_FOR.saturating_add(Duration::from_millis(50))).await;
    }

    #[tokio::test]
    async fn a_push_is_never_the_head_it_makes_the_next_asker_read() {
        let reads = SharedReads::new();
        reads.feed_state().connected = true;
        read(&reads, 6).await;
        assert_eq!(reads.head.peek(), Some(Ok(6)));

        // Block 7 pushed: the answer is dropped, not replaced by the push.
        reads.pushed_head(7);
        assert_eq!(reads.head.peek(), None, "the next asker reads");
        // The read finds the pushed block: held past a read's freshness (no clock: 1 s).
        read(&reads, 7).await;
        after_fresh().await;
        assert_eq!(reads.head.peek(), Some(Ok(7)), "held until the next push");

        // A read that answers below the last push (asked before block 8 came, or a node behind
        // the WebSocket one) serves only while fresh: the block is read again.
        reads.pushed_head(8);
        read(&reads, 7).await;
        assert_eq!(reads.head.peek(), Some(Ok(7)));
        after_fresh().await;
        assert_eq!(reads.head.peek(), None, "read again, never the pushed 8");

        // A read past the last push: the subscription is behind, until it pushes that block.
        read(&reads, 9).await;
        assert_eq!(reads.feed_state().ahead.map(|(_, head)| head), Some(9));
        reads.pushed_head(9);
        assert!(reads.feed_state().ahead.is_none());
    }

    #[tokio::test]
    async fn a_push_wakes_the_waiters_once_the_held_head_is_dropped() {
        let reads = SharedReads::new();
        reads.feed_state().connected = true;
        read(&reads, 6).await;
        let mut pushed = reads.pushed.subscribe();
        assert!(
            !pushed.has_changed().expect("sender alive"),
            "nothing pushed yet"
        );
        let waiter = tokio::spawn(async move {
            pushed.changed().await.expect("sender alive");
            *pushed.borrow_and_update()
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "no push, no wake");
        reads.pushed_head(7);
        let woken = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("woken by the push")
            .expect("waiter ran");
        assert_eq!(woken, 7);
        assert_eq!(
            reads.head.peek(),
            None,
            "the woken waiter reads the new head"
        );
    }

    #[tokio::test]
    async fn only_a_read_that_confirms_the_last_push_is_held_by_the_subscription() {
        let reads = SharedReads::new();
        read(&reads, 5).await;
        after_fresh().await;
        assert_eq!(
            reads.head.peek(),
            None,
            "no clock, no subscription: read again"
        );
        {
            let mut state = reads.feed_state();
            state.connected = true;
            state.last = Some(5);
        }
        read(&reads, 5).await;
        after_fresh().await;
        assert_eq!(reads.head.peek(), Some(Ok(5)));
    }
}
