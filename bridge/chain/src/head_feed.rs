//! The head pushed by the node (issue 54): one `newHeads` subscription per chain and process,
//! where the chain's config gives a `ws_url`.
//!
//! Without it every client of a chain shares one head read ([`crate::shared_reads`]) held
//! between blocks ([`crate::head_cadence`]): about three `eth_blockNumber` a block per chain and
//! process, and a block seen up to a poll (100 ms) after it came. On a hub of 64 service chains
//! that was 240 requests a second per relay process at rest — 43 % of all it sent — and most of
//! the nodes' work at rest (the anvils of a 64-chain devnet used 0.07 cores with the relays
//! stopped, 0.8 with them running).
//!
//! With a subscription, each block the node pushes is the shared head at once, served to every
//! asker until the next block is due plus [`FEED_GRACE`] (on a chain without a clock, for
//! [`FEED_QUIET`]); the head is not read while blocks come on time. What is not trusted to it:
//! - when the hold lapses (a block late, the subscription silent), the head is read as before;
//!   while the subscription is up, a read that finds the head where the subscription left it
//!   holds it for [`FEED_QUIET`] more (a quiet chain is still read once a second);
//! - a read that finds the head past the last block pushed means the subscription is behind:
//!   the head is read as before from then on, and if the subscription has not caught up within
//!   [`BEHIND_FOR`] it is dropped and made again;
//! - a subscription that ends or cannot be made is made again with a back-off
//!   ([`RECONNECT_FIRST`] doubling to [`RECONNECT_LAST`]); meanwhile the head is read as before;
//! - a read's answer never replaces a newer pushed head ([`crate::shared_reads::Slot::put`]).
//!
//! The subscription is on the node behind the first of `rpc_urls` (its WebSocket endpoint): the
//! head it pushes is what the reads of that endpoint would say, a block earlier. Its frames are
//! bounded ([`MAX_FRAME`]): a header is a kilobyte; an endpoint cannot make the relay hold more.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use alloy::providers::{Provider, ProviderBuilder, WsConnect};
use alloy::transports::ws::WebSocketConfig;
use futures::StreamExt;
use multibridge_contracts::ChainRole;
use multibridge_monitoring::ChainMetrics;
use tracing::Instrument;

use crate::shared_reads::SharedReads;

/// How long after the next block is due a pushed head still serves without a read.
pub const FEED_GRACE: Duration = Duration::from_millis(250);

/// How long a pushed head (or a read confirming it) serves on a chain without a learned clock.
pub const FEED_QUIET: Duration = Duration::from_secs(1);

/// How long reads may show the head past the subscription's before it is made again.
pub const BEHIND_FOR: Duration = Duration::from_secs(2);

/// The first wait before making a lost subscription again.
pub const RECONNECT_FIRST: Duration = Duration::from_millis(500);

/// The longest wait between two attempts to make the subscription.
pub const RECONNECT_LAST: Duration = Duration::from_secs(10);

/// The longest connect or subscribe.
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
    /// The last head it pushed.
    last: Option<u64>,
    /// Since when reads have shown the head past `last`, and the highest they showed.
    ahead: Option<(Instant, u64)>,
}

/// Start the head subscription of the chain whose reads are `shared`, at `url`, unless one
/// runs already (on the current tokio runtime; outside one, none: the head is read as before).
pub(crate) fn start(shared: &Arc<SharedReads>, url: &str, role: ChainRole, metrics: ChainMetrics) {
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
    let weak = Arc::downgrade(shared);
    let span = tracing::info_span!("head_feed", chain = %role);
    runtime.spawn(run(weak, url.to_owned(), metrics).instrument(span));
}

/// Why one subscription ended.
enum Ended {
    /// Nobody reads the chain any more: the task ends.
    Unused,
    /// It was lost or never made; made again after a back-off.
    Lost(String),
}

async fn run(shared: Weak<SharedReads>, url: String, metrics: ChainMetrics) {
    let mut wait = RECONNECT_FIRST;
    loop {
        let started = Instant::now();
        match follow(&shared, &url, &metrics).await {
            Ended::Unused => return,
            Ended::Lost(why) => {
                metrics.head_feed("lost");
                tracing::warn!(reason = %why, retry_in = ?wait, "head subscription lost: the head is read over RPC meanwhile");
            }
        }
        let Some(reads) = shared.upgrade() else {
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

/// Make the subscription and feed the shared head from it until it ends.
async fn follow(shared: &Weak<SharedReads>, url: &str, metrics: &ChainMetrics) -> Ended {
    let config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME));
    // No retries inside the transport: a lost connection ends the subscription here, and the
    // head is read over RPC until it is made again.
    let connect = WsConnect::new(url).with_config(config).with_max_retries(0);
    let provider =
        match tokio::time::timeout(CONNECT_TIMEOUT, ProviderBuilder::new().connect_ws(connect))
            .await
        {
            Ok(Ok(provider)) => provider,
            Ok(Err(e)) => return Ended::Lost(format!("connect: {}", redacted(&e.to_string()))),
            Err(_) => return Ended::Lost(format!("connect: no answer in {CONNECT_TIMEOUT:?}")),
        };
    let subscription = match tokio::time::timeout(CONNECT_TIMEOUT, provider.subscribe_blocks())
        .await
    {
        Ok(Ok(subscription)) => subscription,
        Ok(Err(e)) => {
            return Ended::Lost(format!("eth_subscribe: {}", redacted(&e.to_string())));
        }
        Err(_) => return Ended::Lost(format!("eth_subscribe: no answer in {CONNECT_TIMEOUT:?}")),
    };
    let mut headers = subscription.into_stream();
    {
        let Some(reads) = shared.upgrade() else {
            return Ended::Unused;
        };
        reads.feed_state().connected = true;
    }
    metrics.head_feed("connected");
    tracing::info!("head subscription up: blocks are seen as the node makes them");
    let mut check = tokio::time::interval(BEHIND_FOR.checked_div(2).unwrap_or(BEHIND_FOR));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            header = headers.next() => {
                let Some(header) = header else {
                    return Ended::Lost("the subscription ended".to_owned());
                };
                let Some(reads) = shared.upgrade() else {
                    return Ended::Unused;
                };
                reads.pushed_head(header.number);
                metrics.head_feed("header");
            }
            _ = check.tick() => {
                let Some(reads) = shared.upgrade() else {
                    return Ended::Unused;
                };
                if let Some((since, head)) = reads.feed_state().ahead
                    && since.elapsed() >= BEHIND_FOR
                {
                    metrics.head_feed("behind");
                    return Ended::Lost(format!("reads showed block {head}, the subscription had not pushed it {BEHIND_FOR:?} later"));
                }
            }
        }
    }
}

/// An error's text without the URLs in it (they may carry API keys).
fn redacted(text: &str) -> String {
    multibridge_monitoring::redact::redact_urls(text).into_owned()
}

impl SharedReads {
    pub(crate) fn feed_state(&self) -> std::sync::MutexGuard<'_, FeedState> {
        self.feed.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The node pushed block `head`: the shared head, served until the next block is due plus
    /// [`FEED_GRACE`] (on a chain without a clock, for [`FEED_QUIET`]).
    pub(crate) fn pushed_head(&self, head: u64) {
        let now = Instant::now();
        let hold = {
            let mut cadence = self.cadence.lock().unwrap_or_else(|p| p.into_inner());
            cadence.pushed(head, now);
            cadence
                .next_due()
                .and_then(|due| due.checked_add(FEED_GRACE))
                .filter(|until| *until > now)
                .unwrap_or_else(|| now.checked_add(FEED_QUIET).unwrap_or(now))
        };
        {
            let mut state = self.feed_state();
            state.last = Some(head);
            if state.ahead.is_some_and(|(_, ahead)| head >= ahead) {
                state.ahead = None;
            }
        }
        self.head.put(head, Some(hold));
    }

    /// A read of the head asked at `asked` answered `head`: learn the chain's clock from it and
    /// hold the head until the next block can come — for [`FEED_QUIET`] at least where the
    /// subscription is up and already pushed this block. A read behind the pushed head changes
    /// nothing (the push is newer); one past it marks the subscription behind.
    pub(crate) fn head_read(&self, head: u64, asked: Instant) {
        let now = Instant::now();
        let quiet = {
            let mut state = self.feed_state();
            match state.last {
                Some(last) if state.connected && head < last => return,
                Some(last) if state.connected && head > last => {
                    state.ahead = Some(match state.ahead {
                        Some((since, ahead)) => (since, ahead.max(head)),
                        None => (now, head),
                    });
                    false
                }
                Some(_) if state.connected => state.ahead.is_none(),
                _ => false,
            }
        };
        let hold = {
            let mut cadence = self.cadence.lock().unwrap_or_else(|p| p.into_inner());
            cadence.observe(head, asked);
            cadence.hold_until()
        };
        let hold = if quiet {
            now.checked_add(FEED_QUIET)
                .map(|quiet| hold.map_or(quiet, |hold| hold.max(quiet)))
        } else {
            hold
        };
        self.head.hold(hold);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared_reads::{Got, HEAD_FRESH_FOR};

    #[tokio::test]
    async fn a_pushed_head_serves_without_a_read_and_no_older_read_replaces_it() {
        let reads = SharedReads::new();
        reads.feed_state().connected = true;
        reads.pushed_head(7);
        assert_eq!(reads.head.peek(), Some(Ok(7)));
        // Past the freshness of a read: held (a chain without a clock: FEED_QUIET).
        tokio::time::sleep(HEAD_FRESH_FOR.saturating_add(Duration::from_millis(50))).await;
        assert_eq!(reads.head.peek(), Some(Ok(7)), "held without a read");

        // A read asked before block 8 was pushed answers 7 after the push: 8 stays.
        let got = reads
            .head
            .get_if(
                |_| false,
                || async {
                    reads.pushed_head(8);
                    Ok::<u64, String>(7)
                },
            )
            .await;
        assert!(matches!(got, Got::Read(Ok(7))));
        reads.head_read(7, Instant::now());
        assert_eq!(
            reads.head.peek(),
            Some(Ok(8)),
            "the push is newer than the read"
        );
        assert!(reads.feed_state().ahead.is_none());

        // A read that shows the node past the last push: the subscription is behind, until it
        // pushes that block.
        reads.head_read(9, Instant::now());
        assert_eq!(reads.feed_state().ahead.map(|(_, head)| head), Some(9));
        reads.pushed_head(9);
        assert!(reads.feed_state().ahead.is_none());
    }

    #[tokio::test]
    async fn without_a_subscription_a_read_is_held_only_by_the_chains_clock() {
        let reads = SharedReads::new();
        reads.head.put(5, None);
        reads.head_read(5, Instant::now());
        tokio::time::sleep(HEAD_FRESH_FOR.saturating_add(Duration::from_millis(50))).await;
        assert_eq!(
            reads.head.peek(),
            None,
            "no clock learned, no subscription: read again"
        );
        // Up, and the read finds the head where the subscription left it: held FEED_QUIET.
        {
            let mut state = reads.feed_state();
            state.connected = true;
            state.last = Some(5);
        }
        reads.head.put(5, None);
        reads.head_read(5, Instant::now());
        tokio::time::sleep(HEAD_FRESH_FOR.saturating_add(Duration::from_millis(50))).await;
        assert_eq!(reads.head.peek(), Some(Ok(5)));
    }
}
