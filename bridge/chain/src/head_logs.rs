//! The newest blocks' events, read once for every reader at one head (issue 54).
//!
//! Its readers: every pair's guardian (below), and every caught-up lane indexer reading the
//! requests of the block its next head confirms, for the voter's plans made ahead
//! ([`BridgeViews::upcoming_requests`](crate::bridge_views::BridgeViews::upcoming_requests),
//! which reads nothing of its own where the window does not serve it).
//!
//! Every pair's guardian watches its destination's new releases up to the head: it judges a
//! release in the block it is mined, so it cannot wait for the confirmed logs of the
//! [`LogStore`](crate::shared_reads::LogStore). On a hub's main chain that was one `eth_getLogs`
//! per pair and block (17 a second of a 16-pair relay's 40 main-chain requests at rest), sent in
//! the instant every other pair reacts to the same block. [`HeadLogs`] holds one window: the
//! logs of every (contract, event) asked at the head, over the blocks its widest asker asked, read
//! at the shared head. It answers a reader:
//! - whose head is at or below the window's (a new block makes a new window: a block above the
//!   confirmations may still be replaced, so no answer serves a newer head than it was read at),
//! - for at most [`HEAD_LOGS_FRESH_FOR`], and until the node pushes its next header where the
//!   chain's head is pushed (`ws_url`): a header that replaces the head at its height drops the
//!   window at once. Without a push, a reader within those 500 ms of a replacement is answered
//!   with the replaced block's logs, as a reader that read on its own just before it would
//!   have been: a guardian reads each block once, a known limit of its watch;
//! - whose blocks lie within the window's and whose (contract, event) pairs were all asked
//!   before it was read.
//!
//! Otherwise the reader reads the window anew for every reader (the others wait for it), from
//! the lower of its range's start and the standing window's, up to the head. It does not serve:
//! - a range wider than [`HEAD_LOGS_SPAN`] blocks from the head (a catch-up reads its own);
//! - a filter without a contract or an event, or with topics past the event's;
//! - anyone for [`HEAD_LOGS_PAUSE`] after a window's read failed: every reader reads its own, as
//!   before, so a dead endpoint does not queue every pair's guardian behind one read in turn.
//!
//! A window's answer holding more than [`HEAD_LOGS_MAX`] logs answers its reader but is not
//! kept, and every reader reads its own for [`HEAD_LOGS_PAUSE`]. Only the readers that ask for it use it
//! ([`ChainClient::logs_at_head`](crate::ChainClient::logs_at_head)).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256};
use alloy::rpc::types::{Filter, Log};

/// How long a window serves the readers at its head.
pub const HEAD_LOGS_FRESH_FOR: Duration = Duration::from_millis(500);

/// The widest range a window reads: blocks from the head back.
pub const HEAD_LOGS_SPAN: u64 = 8;

/// After a window's read failed, how long every reader reads its own range.
pub const HEAD_LOGS_PAUSE: Duration = Duration::from_secs(5);

/// The most logs a window keeps.
pub const HEAD_LOGS_MAX: usize = 2_048;

/// One chain's window of the newest blocks' events.
#[derive(Debug, Default)]
pub struct HeadLogs {
    state: Mutex<WindowState>,
    /// Held by the reader reading for the window, so the others wait for its answer.
    pub(crate) fetching: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct WindowState {
    /// Every (contract, event) asked about, with the generation that added it.
    asked: HashMap<(Address, B256), u64>,
    generation: u64,
    window: Option<Window>,
    /// Until when every reader reads its own (a window's read failed).
    paused_until: Option<Instant>,
}

#[derive(Debug)]
struct Window {
    /// The head it was read at (its last block).
    head: u64,
    from: u64,
    generation: u64,
    at: Instant,
    logs: Vec<Log>,
}

/// A window's read: every (contract, event) asked, over `from..=head`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowRead {
    /// First block.
    pub from: u64,
    /// Last block: the head it is read at.
    pub head: u64,
    /// Every contract asked about.
    pub addresses: Vec<Address>,
    /// Every event asked about.
    pub events: Vec<B256>,
    generation: u64,
}

impl WindowRead {
    /// The `eth_getLogs` filter of the read.
    pub fn filter(&self) -> Filter {
        Filter::new()
            .address(self.addresses.clone())
            .event_signature(self.events.clone())
            .from_block(self.from)
            .to_block(self.head)
    }
}

/// What the window says about a read.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadPlan {
    /// The window holds the range for the filter: its logs.
    Held(Vec<Log>),
    /// Read the window anew, then answer from what was read.
    Read(WindowRead),
    /// The window does not serve this read: the reader reads its own.
    Pass,
}

impl HeadLogs {
    fn state(&self) -> std::sync::MutexGuard<'_, WindowState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What to do for `filter`, given `head` (the shared head). Plan, read and keep while
    /// holding `fetching`, so no (contract, event) is added in between.
    pub fn plan(&self, filter: &Filter, head: u64) -> HeadPlan {
        let (Some(from), Some(to)) = (filter.get_from_block(), filter.get_to_block()) else {
            return HeadPlan::Pass;
        };
        let events = &filter.topics[0];
        if to < from
            || filter.get_block_hash().is_some()
            || filter.address.is_empty()
            || events.is_empty()
            || filter.topics[1..].iter().any(|t| !t.is_empty())
        {
            return HeadPlan::Pass;
        }
        let mut state = self.state();
        let now = Instant::now();
        if state.paused_until.is_some_and(|until| now < until) {
            return HeadPlan::Pass;
        }
        let mut needed = 0u64;
        for address in filter.address.iter() {
            for event in events.iter() {
                let generation = match state.asked.get(&(*address, *event)) {
                    Some(generation) => *generation,
                    None => {
                        state.generation = state.generation.saturating_add(1);
                        let generation = state.generation;
                        state.asked.insert((*address, *event), generation);
                        generation
                    }
                };
                needed = needed.max(generation);
            }
        }
        let standing = state
            .window
            .as_ref()
            .filter(|w| now.saturating_duration_since(w.at) < HEAD_LOGS_FRESH_FOR);
        if let Some(window) = standing
            && window.head >= head
            && window.generation >= needed
            && window.from <= from
            && to <= window.head
        {
            return HeadPlan::Held(matching(filter, &window.logs));
        }
        // A window read at a newer head than the reader's stands for the chain's head.
        let head = standing.map_or(head, |w| w.head.max(head));
        let from = standing
            .filter(|w| w.head == head)
            .map_or(from, |w| w.from.min(from));
        if to > head || head.saturating_sub(from) >= HEAD_LOGS_SPAN {
            return HeadPlan::Pass;
        }
        let addresses: BTreeSet<Address> = state.asked.keys().map(|(a, _)| *a).collect();
        let events: BTreeSet<B256> = state.asked.keys().map(|(_, e)| *e).collect();
        HeadPlan::Read(WindowRead {
            from,
            head,
            addresses: addresses.into_iter().collect(),
            events: events.into_iter().collect(),
            generation: state.generation,
        })
    }

    /// Keep `logs`, what `read` answered, unless they are more than [`HEAD_LOGS_MAX`]: then, as
    /// after a failure, every reader reads its own for [`HEAD_LOGS_PAUSE`] (each read of every
    /// contract would be that large again).
    pub fn keep(&self, read: &WindowRead, logs: Vec<Log>) {
        let mut state = self.state();
        if logs.len() > HEAD_LOGS_MAX {
            state.window = None;
            state.paused_until = Instant::now().checked_add(HEAD_LOGS_PAUSE);
            return;
        }
        state.window = Some(Window {
            head: read.head,
            from: read.from,
            generation: read.generation,
            at: Instant::now(),
            logs,
        });
    }

    /// The node pushed a header (a new block, or one that replaced the head at its height): the
    /// window is read again by the next reader, so no reader at the replaced block is answered
    /// from before it.
    pub fn forget(&self) {
        self.state().window = None;
    }

    /// A window's read failed: for [`HEAD_LOGS_PAUSE`] every reader reads its own.
    pub fn failed(&self) {
        let mut state = self.state();
        state.window = None;
        state.paused_until = Instant::now().checked_add(HEAD_LOGS_PAUSE);
    }
}

/// The logs of `logs` that `filter` asks for (its contracts and events, in its blocks), in the
/// node's order. A log without a block number goes to every reader of its contract and event:
/// each reader's own read would have had it, and says what is wrong with it.
pub fn matching(filter: &Filter, logs: &[Log]) -> Vec<Log> {
    let (from, to) = (filter.get_from_block(), filter.get_to_block());
    logs.iter()
        .filter(|log| {
            filter.matches(&log.inner)
                && log.block_number.is_none_or(|block| {
                    from.is_none_or(|from| block >= from) && to.is_none_or(|to| block <= to)
                })
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::{Bytes, LogData};

    const RELEASE: B256 = B256::repeat_byte(0xaa);
    const OTHER_EVENT: B256 = B256::repeat_byte(0xbb);

    fn bridge(n: u8) -> Address {
        Address::repeat_byte(n)
    }

    fn asked(bridge: Address, event: B256, from: u64, to: u64) -> Filter {
        Filter::new()
            .address(bridge)
            .event_signature(event)
            .from_block(from)
            .to_block(to)
    }

    fn log(bridge: Address, event: B256, block: u64) -> Log {
        Log {
            inner: alloy::primitives::Log {
                address: bridge,
                data: LogData::new_unchecked(vec![event], Bytes::new()),
            },
            block_number: Some(block),
            block_hash: Some(B256::with_last_byte(block as u8)),
            ..Default::default()
        }
    }

    /// Plan `filter` at `head`; a read is answered with those of `chain` it asks for.
    fn ask(window: &HeadLogs, filter: &Filter, head: u64, chain: &[Log]) -> (bool, Vec<Log>) {
        match window.plan(filter, head) {
            HeadPlan::Held(logs) => (false, logs),
            HeadPlan::Read(read) => {
                let answer = matching(&read.filter(), chain);
                window.keep(&read, answer.clone());
                (true, matching(filter, &answer))
            }
            HeadPlan::Pass => panic!("the window passed {filter:?} at head {head}"),
        }
    }

    #[test]
    fn readers_at_one_head_share_one_read_and_each_gets_its_own_contract() {
        let window = HeadLogs::default();
        let chain = [
            log(bridge(1), RELEASE, 10),
            log(bridge(2), RELEASE, 10),
            log(bridge(2), OTHER_EVENT, 10),
        ];
        // Both contracts known before the first read (the second pair's guardian asked once).
        assert!(ask(&window, &asked(bridge(2), RELEASE, 9, 9), 9, &chain).0);
        let (read, first) = ask(&window, &asked(bridge(1), RELEASE, 10, 10), 10, &chain);
        assert!(read, "a new head is read");
        assert_eq!(first, vec![chain[0].clone()]);
        let (read, second) = ask(&window, &asked(bridge(2), RELEASE, 10, 10), 10, &chain);
        assert!(
            !read,
            "the second reader at the head is answered from the window"
        );
        assert_eq!(
            second,
            vec![chain[1].clone()],
            "only its contract and event"
        );
    }

    #[test]
    fn a_new_head_a_new_contract_or_a_wider_range_is_read_again() {
        let window = HeadLogs::default();
        let chain = [log(bridge(1), RELEASE, 10), log(bridge(3), RELEASE, 11)];
        assert!(ask(&window, &asked(bridge(1), RELEASE, 10, 10), 10, &chain).0);
        // A contract not asked when the window was read.
        let (read, logs) = ask(&window, &asked(bridge(3), RELEASE, 10, 10), 10, &chain);
        assert!(read && logs.is_empty());
        // A range starting below the window: read from there, and the window keeps it.
        assert!(ask(&window, &asked(bridge(1), RELEASE, 9, 10), 10, &chain).0);
        assert!(!ask(&window, &asked(bridge(3), RELEASE, 9, 10), 10, &chain).0);
        // The next block.
        let (read, logs) = ask(&window, &asked(bridge(3), RELEASE, 11, 11), 11, &chain);
        assert!(read);
        assert_eq!(logs, vec![chain[1].clone()]);
        // A reader still at the older head reads the newer window back to its block; the
        // window then serves both heads' readers.
        let (read, logs) = ask(&window, &asked(bridge(1), RELEASE, 10, 10), 10, &chain);
        assert!(read);
        assert_eq!(logs, vec![chain[0].clone()]);
        assert!(!ask(&window, &asked(bridge(3), RELEASE, 10, 11), 11, &chain).0);
        assert!(!ask(&window, &asked(bridge(1), RELEASE, 10, 10), 10, &chain).0);
    }

    #[test]
    fn a_window_serves_for_its_freshness_only() {
        let window = HeadLogs::default();
        assert!(ask(&window, &asked(bridge(1), RELEASE, 10, 10), 10, &[]).0);
        if let Some(w) = window.state().window.as_mut() {
            w.at = Instant::now() - HEAD_LOGS_FRESH_FOR;
        }
        assert!(
            ask(&window, &asked(bridge(1), RELEASE, 10, 10), 10, &[]).0,
            "a window as old as its freshness is read again (a reorg at one height)"
        );
    }

    #[test]
    fn catch_ups_open_filters_and_a_failed_read_are_left_to_the_reader() {
        let window = HeadLogs::default();
        let wide = asked(bridge(1), RELEASE, 100 - HEAD_LOGS_SPAN, 100);
        assert_eq!(window.plan(&wide, 100), HeadPlan::Pass);
        let no_event = Filter::new().address(bridge(1)).from_block(1).to_block(1);
        assert_eq!(window.plan(&no_event, 1), HeadPlan::Pass);
        let by_sender = asked(bridge(1), RELEASE, 1, 1).topic1(B256::ZERO);
        assert_eq!(window.plan(&by_sender, 1), HeadPlan::Pass);
        let ahead = asked(bridge(1), RELEASE, 5, 6);
        assert_eq!(window.plan(&ahead, 5), HeadPlan::Pass);
        assert!(matches!(
            window.plan(&asked(bridge(1), RELEASE, 5, 5), 5),
            HeadPlan::Read(_)
        ));
        window.failed();
        assert_eq!(
            window.plan(&asked(bridge(1), RELEASE, 5, 5), 5),
            HeadPlan::Pass
        );
    }

    #[test]
    fn an_answer_over_the_bound_is_not_kept() {
        let window = HeadLogs::default();
        let chain: Vec<Log> = (0..=HEAD_LOGS_MAX)
            .map(|_| log(bridge(1), RELEASE, 10))
            .collect();
        let (read, logs) = ask(&window, &asked(bridge(1), RELEASE, 10, 10), 10, &chain);
        assert!(read && logs.len() == chain.len());
        assert_eq!(
            window.plan(&asked(bridge(1), RELEASE, 10, 10), 10),
            HeadPlan::Pass,
            "after an answer over the bound each reader reads its own"
        );
    }

    #[test]
    fn a_pushed_header_drops_the_window() {
        let window = HeadLogs::default();
        assert!(ask(&window, &asked(bridge(1), RELEASE, 10, 10), 10, &[]).0);
        assert!(!ask(&window, &asked(bridge(1), RELEASE, 10, 10), 10, &[]).0);
        // Block 10 replaced at its height: the next reader at 10 reads it again.
        window.forget();
        let replaced = [log(bridge(1), RELEASE, 10)];
        let (read, logs) = ask(&window, &asked(bridge(1), RELEASE, 10, 10), 10, &replaced);
        assert!(read);
        assert_eq!(logs, replaced.to_vec());
    }

    #[test]
    fn a_log_without_its_block_goes_to_every_reader_of_its_event() {
        let mut unplaced = log(bridge(1), RELEASE, 0);
        unplaced.block_number = None;
        unplaced.block_hash = None;
        let chain = [unplaced.clone(), log(bridge(1), RELEASE, 12)];
        assert_eq!(
            matching(&asked(bridge(1), RELEASE, 10, 10), &chain),
            vec![unplaced]
        );
        assert!(matching(&asked(bridge(2), RELEASE, 10, 12), &chain).is_empty());
    }
}
