//! What every client of one chain in the process reads once (issue 54): the chain's head, the
//! health probe's per-endpoint heads, the logs of confirmed blocks (and of the newest blocks for
//! the readers that follow the head, [`crate::head_logs`]), the watchers' balance and gas price,
//! and each bridge's counters per block ([`crate::bridge_counters`]).
//!
//! A relay serving a hub of service chains has a [`ChainClient`](crate::ChainClient) per pair
//! for the main chain, and within each pair the indexer, the voter, the sender, recovery and the
//! watcher all ask the head. Measured on a devnet of 8 pairs at rest, one relay process read the
//! main chain's head 129 times a second (16 per pair) and probed its endpoints once a second per
//! pair — reads that grow with the pairs although they ask the same node the same question.
//! Every client of one chain (same chain id, same endpoints in the same order) now shares one
//! [`SharedReads`]: an answer younger than its slot's `fresh_for` is served to every asker, and
//! while one task reads, the others wait for its answer instead of sending their own.
//!
//! A failed read is shared too, for the same short time: behind a dead endpoint the askers do
//! not queue up one full failover each; each learns of the failure and retries on its own clock.
//!
//! **Logs** ([`LogStore`]): the same 8 pairs read the main chain's logs 66 times a second at rest
//! — each pair's indexer, claims, conservation scan and guardian reading its own contract's
//! events of the same new block. A read of a narrow range of *confirmed* blocks (at or below the
//! shared head less the chain's confirmations, at least one) goes through the store: the first
//! asker reads every event of every contract asked about on the chain over its range, and the
//! others are answered from what it read. What the store keeps:
//! - only blocks already confirmed when they were read (a block above that is always read anew,
//!   so a reorg within the confirmations is seen as before);
//! - at most [`STORE_SPAN`] blocks behind the newest it read and [`STORE_MAX_LOGS`] logs, each for
//!   [`STORE_KEEP`] (a read that would hold more is not kept, and for [`STORE_DENSE_PAUSE`] each
//!   asker reads its own, as before: a backlog's blocks);
//! - only ranges that end near the confirmed head ([`STORE_HEAD_SLACK`]) and are at most twice
//!   as wide as the density the store last saw allows ([`LogSpan`](crate::logs::LogSpan): from
//!   one block, doubling while answers of the whole width are sparse, cut to about
//!   [`TARGET_LOGS`](crate::logs::TARGET_LOGS) logs when dense); it reads nothing ahead of the
//!   asker's range. An asker catching up, or with a wider range, reads its own (filtered by its
//!   topics, bounded by its own span or count). Before, the store read from the asker's range up
//!   to the confirmed head: a relay started on a 100,000-request backlog read 64 blocks of every
//!   contract — 46,000 logs, over the 32 MiB answer bound — and failed every round (its indexer
//!   stopped, each failed answer a 50 MiB peak of its memory); on a 10,000 backlog one such
//!   read held 8,725 logs beside the indexer's counted range of 725;
//! - nothing after a read that failed: the asker reads its own, and so does every asker for
//!   [`STORE_DENSE_PAUSE`];
//! - nothing for a chain without confirmations, or one that counts `finalized`;
//! - an asker that doubts an answer (the indexer finding a nonce gap) drops the blocks from
//!   there on ([`crate::ChainClient::forget_logs_from`]), so its next read asks the node again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use alloy::rpc::types::{Filter, Log};

use crate::logs::LogSpan;

/// How long a head read serves every other asker: a tenth of a 1 s block, so a new block is
/// seen at most that much later than by a read of one's own.
pub const HEAD_FRESH_FOR: Duration = Duration::from_millis(100);

/// How long one probe of every endpoint's head serves the other pairs' watchers (each probes
/// once a round, 1 s; the health rules judge over seconds).
pub const PROBE_FRESH_FOR: Duration = Duration::from_millis(500);

/// How long an account's balance and the gas price serve the other pairs' watchers (each reads
/// them once a round, 1 s).
pub const WALLET_FRESH_FOR: Duration = Duration::from_millis(900);

/// An account's balance and the chain's gas price.
pub type WalletSlot = Slot<(alloy::primitives::U256, u128)>;

/// How long a read of a bridge's threshold slot serves (while no newer block is known): the
/// time from a voter's pre-check to its gas plan, with room; a vote is planned by a slot at most
/// this old (`paused` and the operators' vote bits share it: a vote simulated on a slot from
/// before a pause reverts on chain, as one did when the pause came between the read and the
/// simulation).
pub const THRESHOLD_SLOT_FRESH_FOR: Duration = Duration::from_millis(500);

/// A bridge's threshold storage slot and the highest head it serves.
pub type ThresholdSlot = Slot<(u64, alloy::primitives::B256)>;

/// A bridge's counters ([`crate::bridge_counters`]).
pub type CountersSlot = Slot<crate::bridge_counters::BridgeCounters>;

/// One chain's shared answers.
#[derive(Debug)]
pub struct SharedReads {
    /// The head, through the failover.
    pub(crate) head: Slot<u64>,
    /// The highest head a read of the process was answered (0 before the first): what the
    /// process knows the chain has reached, however long ago it was read.
    pub(crate) newest_head: std::sync::atomic::AtomicU64,
    /// Every endpoint's label and head (or why it did not answer), in `rpc_urls` order.
    pub(crate) probe: Slot<Vec<(String, Result<u64, String>)>>,
    /// Confirmed blocks' logs of every contract asked about.
    pub(crate) logs: LogStore,
    /// The newest blocks' events, for the readers that follow the head.
    pub(crate) head_logs: crate::head_logs::HeadLogs,
    /// When the head moved, so it is not read while it cannot move.
    pub(crate) cadence: Mutex<crate::head_cadence::Cadence>,
    /// Per account: its balance and the chain's gas price (what the watchers show).
    wallets: Mutex<HashMap<Address, Arc<WalletSlot>>>,
    /// Per bridge: its counters at the latest block read ([`crate::bridge_counters`]).
    counters: Mutex<HashMap<Address, Arc<CountersSlot>>>,
    /// Per bridge: its threshold's storage slot, with the head it serves (the votes' gas plan:
    /// read while the voter pre-checks, found by the plan).
    threshold_slots: Mutex<HashMap<Address, Arc<ThresholdSlot>>>,
    /// Which bridges' counters are asked about and which a batch under way reads.
    counters_book: CountersBook,
    /// The latest block's header figures (the senders' fees and checks, the voters' gas plan),
    /// with the highest head they serve (the head the read was asked at, or the block's number
    /// if higher: a node that answers the block a little behind its `eth_blockNumber` still
    /// serves every asker at that head once, instead of each asker reading it again in turn).
    pub(crate) latest_block: Slot<(u64, LatestBlock)>,
    /// The node's suggested priority fee, and the latest block when it was read (the senders'
    /// fee quotes).
    pub(crate) tip: Slot<(u64, u128)>,
    /// The head subscription's state ([`crate::head_feed`]).
    pub(crate) feed: Mutex<crate::head_feed::FeedState>,
    /// The last block the node pushed (0 before the first): the indexers of this chain wait
    /// on it instead of stepping on a timer while a block is due.
    pub(crate) pushed: tokio::sync::watch::Sender<u64>,
}

/// How long the latest block's figures serve the askers whose head is still that block (a
/// reorg at the same height is seen within it; on a chain of 1 s blocks a new block comes
/// first).
pub const LATEST_BLOCK_FRESH_FOR: Duration = Duration::from_secs(1);

/// How long after a bridge's counters were last asked they are still read alongside another
/// bridge's (`SharedReads::counters_batch`): a pair that stopped asking is soon no longer
/// read for.
pub const COUNTERS_ASKED_WITHIN: Duration = Duration::from_secs(5);

/// Longest an asker waits for a batch under way that reads its bridge's counters (then it
/// reads them itself).
pub const COUNTERS_WAIT: Duration = Duration::from_secs(2);

/// After a batch of several bridges' counters failed where one bridge alone was read, how long
/// each asker reads its own bridge alone.
pub const COUNTERS_ALONE_FOR: Duration = Duration::from_secs(60);

/// Which bridges' counters the process asks about, and which a batch under way reads.
#[derive(Debug, Default)]
pub(crate) struct CountersBook {
    /// Per bridge: when its counters were last asked.
    asked: Mutex<HashMap<Address, Instant>>,
    /// The bridges a batch under way reads.
    in_flight: Mutex<HashSet<Address>>,
    /// Until when each asker reads its own bridge alone ([`SharedReads::counters_alone`]).
    alone_until: Mutex<Option<Instant>>,
    /// Woken when a batch lands (or is dropped unfinished).
    landed: tokio::sync::Notify,
}

/// A batch of counters under way: its bridges count as read until it is dropped.
pub(crate) struct CountersBatch<'a> {
    book: &'a CountersBook,
    bridge: Address,
    alongside: Vec<Address>,
}

impl CountersBatch<'_> {
    /// The other bridges read in it.
    pub(crate) fn alongside(&self) -> &[Address] {
        &self.alongside
    }
}

impl Drop for CountersBatch<'_> {
    fn drop(&mut self) {
        {
            let mut in_flight = self
                .book
                .in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            in_flight.remove(&self.bridge);
            for other in &self.alongside {
                in_flight.remove(other);
            }
        }
        self.book.landed.notify_waiters();
    }
}

/// How long a failed read of the latest block is the answer of every asker.
pub const LATEST_BLOCK_FAILURE_SHARED_FOR: Duration = Duration::from_millis(100);

/// What the process's senders and voters need of the chain's latest block, read once a block
/// for all of them: each key's sender read it on every poll of its transactions in flight (a
/// poll every 200 ms), and each voter before every plan (issue 54).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatestBlock {
    /// Its number.
    pub number: u64,
    /// Its unix time.
    pub timestamp: u64,
    /// Its base fee (`None` on a chain without EIP-1559).
    pub base_fee_per_gas: Option<u64>,
    /// Gas its transactions used.
    pub gas_used: u64,
    /// Its gas limit.
    pub gas_limit: u64,
}

impl SharedReads {
    pub(crate) fn new() -> Self {
        Self {
            head: Slot::new(HEAD_FRESH_FOR),
            newest_head: std::sync::atomic::AtomicU64::new(0),
            probe: Slot::new(PROBE_FRESH_FOR),
            logs: LogStore::default(),
            head_logs: crate::head_logs::HeadLogs::default(),
            cadence: Mutex::default(),
            wallets: Mutex::default(),
            counters: Mutex::default(),
            threshold_slots: Mutex::default(),
            counters_book: CountersBook::default(),
            latest_block: Slot::new(LATEST_BLOCK_FRESH_FOR)
                .sharing_failures_for(LATEST_BLOCK_FAILURE_SHARED_FOR),
            tip: Slot::new(LATEST_BLOCK_FRESH_FOR)
                .sharing_failures_for(LATEST_BLOCK_FAILURE_SHARED_FOR),
            feed: Mutex::default(),
            pushed: tokio::sync::watch::Sender::new(0),
        }
    }

    /// The slot of `bridge`'s counters.
    pub(crate) fn counters(&self, bridge: Address) -> Arc<CountersSlot> {
        slot_of(&self.counters, bridge, || {
            Slot::new(crate::bridge_counters::COUNTERS_FRESH_FOR)
                .sharing_failures_for(crate::bridge_counters::FAILURE_SHARED_FOR)
        })
    }

    /// A batch of `bridge`'s counters at shared head `head`, with the other bridges of the chain
    /// worth reading in it ([`CountersBatch::alongside`]): asked within
    /// [`COUNTERS_ASKED_WITHIN`], with no answer at `head` or later and in no other batch under
    /// way (at most [`BRIDGES_PER_BATCH`](crate::bridge_counters::BRIDGES_PER_BATCH) − 1, the most
    /// recently asked first). They count as under way until the batch is dropped.
    pub(crate) fn counters_batch(&self, bridge: Address, head: u64) -> CountersBatch<'_> {
        let now = Instant::now();
        let book = &self.counters_book;
        let alone = book
            .alone_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|until| now < until);
        let mut asked: Vec<(Address, Instant)> = {
            let mut asked = book.asked.lock().unwrap_or_else(|p| p.into_inner());
            asked.retain(|_, at| now.saturating_duration_since(*at) < COUNTERS_ASKED_WITHIN);
            asked
                .iter()
                .filter(|(other, _)| **other != bridge)
                .map(|(other, at)| (*other, *at))
                .collect()
        };
        asked.sort_unstable_by_key(|(_, at)| std::cmp::Reverse(*at));
        let slots = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        let mut in_flight = book.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let alongside: Vec<Address> = asked
            .into_iter()
            .filter(|_| !alone)
            .map(|(other, _)| other)
            .filter(|other| {
                !in_flight.contains(other)
                    && slots
                        .get(other)
                        .is_none_or(|slot| slot.fresh(|kept| kept.block >= head, now).is_none())
            })
            .take(crate::bridge_counters::BRIDGES_PER_BATCH.saturating_sub(1))
            .collect();
        in_flight.insert(bridge);
        in_flight.extend(alongside.iter().copied());
        CountersBatch {
            book,
            bridge,
            alongside,
        }
    }

    /// `bridge`'s counters are asked: it is read alongside other bridges' for
    /// [`COUNTERS_ASKED_WITHIN`].
    pub(crate) fn counters_asked(&self, bridge: Address) {
        self.counters_book
            .asked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(bridge, Instant::now());
    }

    /// A batch of several bridges failed on the asker's own calls where its bridge alone was
    /// read: each reads its own for [`COUNTERS_ALONE_FOR`] (the endpoint may cap a batch's calls).
    pub(crate) fn counters_alone(&self) {
        *self
            .counters_book
            .alone_until
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Instant::now().checked_add(COUNTERS_ALONE_FOR);
    }

    /// Without an answer at `head` or later, wait (at most [`COUNTERS_WAIT`]) while a batch under
    /// way reads `bridge`'s counters, so its asker is answered from it instead of reading them
    /// again.
    pub(crate) async fn counters_landed(&self, bridge: Address, head: u64) {
        if self
            .counters(bridge)
            .fresh(|kept| kept.block >= head, Instant::now())
            .is_some()
        {
            return;
        }
        let book = &self.counters_book;
        let started = tokio::time::Instant::now();
        loop {
            let Some(left) = COUNTERS_WAIT.checked_sub(started.elapsed()) else {
                return;
            };
            let landed = book.landed.notified();
            tokio::pin!(landed);
            landed.as_mut().enable();
            if !book
                .in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&bridge)
            {
                return;
            }
            if tokio::time::timeout(left, landed).await.is_err() {
                return;
            }
        }
    }

    /// The slot of `account`'s balance and the gas price.
    pub(crate) fn wallet(&self, account: Address) -> Arc<WalletSlot> {
        slot_of(&self.wallets, account, || Slot::new(WALLET_FRESH_FOR))
    }

    /// The slot of `bridge`'s threshold storage slot.
    pub(crate) fn threshold_slot(&self, bridge: Address) -> Arc<ThresholdSlot> {
        slot_of(&self.threshold_slots, bridge, || {
            Slot::new(THRESHOLD_SLOT_FRESH_FOR)
                .sharing_failures_for(LATEST_BLOCK_FAILURE_SHARED_FOR)
        })
    }
}

/// The slot of `key` in `slots`, made by `make` the first time.
fn slot_of<T>(
    slots: &Mutex<HashMap<Address, Arc<Slot<T>>>>,
    key: Address,
    make: impl FnOnce() -> Slot<T>,
) -> Arc<Slot<T>> {
    slots
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key)
        .or_insert_with(|| Arc::new(make()))
        .clone()
}

/// The shared reads of the chain `chain_id` reached through `urls` (and whose head is pushed
/// from `ws_url`, if given): the same for every client of the process with the same chain id
/// and endpoints, while one of them lives.
pub fn of(chain_id: u64, urls: &[String], ws_url: Option<&str>) -> Arc<SharedReads> {
    static BOOK: ProcessBook<(u64, Vec<String>), SharedReads> = ProcessBook::new();
    let mut key = urls.to_vec();
    if let Some(ws) = ws_url {
        key.push(format!("newHeads from {ws}"));
    }
    BOOK.get_or_make((chain_id, key), SharedReads::new)
}

/// One value per key for the whole process, alive while somebody holds it: what every task of
/// the process that asks with the same key shares (a chain's reads, an etcd cluster's).
#[derive(Debug)]
pub struct ProcessBook<K, T>(Mutex<BTreeMap<K, Weak<T>>>);

impl<K: Ord, T> Default for ProcessBook<K, T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Ord, T> ProcessBook<K, T> {
    /// An empty book (for a `static`).
    pub const fn new() -> Self {
        Self(Mutex::new(BTreeMap::new()))
    }

    /// The value of `key` while one lives, else a new one from `make`.
    pub fn get_or_make(&self, key: K, make: impl FnOnce() -> T) -> Arc<T> {
        let mut book = self.0.lock().unwrap_or_else(|p| p.into_inner());
        book.retain(|_, value| value.strong_count() > 0);
        if let Some(value) = book.get(&key).and_then(Weak::upgrade) {
            return value;
        }
        let value = Arc::new(make());
        book.insert(key, Arc::downgrade(&value));
        value
    }
}

/// Where an answer came from.
#[derive(Debug)]
pub enum Got<T, E> {
    /// This task read it (its own error, as the read returned it).
    Read(Result<T, E>),
    /// Another task's read, `age` old (its error as text).
    Shared {
        /// The answer.
        answer: Result<T, String>,
        /// How long ago it was read.
        age: Duration,
    },
}

/// One shared answer.
#[derive(Debug)]
pub struct Slot<T> {
    fresh_for: Duration,
    /// How long a failed read is every asker's answer.
    failures_for: Duration,
    last: Mutex<Option<(Instant, Result<T, String>)>>,
    /// Until when a good answer serves however old it is (the head between two blocks).
    hold_until: Mutex<Option<Instant>>,
    /// Held by the task reading, so the others wait for its answer.
    reading: tokio::sync::Mutex<()>,
}

impl<T: Clone> Slot<T> {
    /// A slot whose answers, a failure too, serve for `fresh_for`.
    pub fn new(fresh_for: Duration) -> Self {
        Self {
            fresh_for,
            failures_for: fresh_for,
            last: Mutex::new(None),
            hold_until: Mutex::new(None),
            reading: tokio::sync::Mutex::new(()),
        }
    }

    /// The same slot with a failed read shared for `failures_for` only.
    pub fn sharing_failures_for(mut self, failures_for: Duration) -> Self {
        self.failures_for = failures_for;
        self
    }

    /// The answer that still serves an asker at `now`: a good one it `accepts` while fresh or
    /// held, a failure while [`failures_for`](Self::sharing_failures_for).
    fn fresh(
        &self,
        accepts: impl Fn(&T) -> bool,
        now: Instant,
    ) -> Option<(Result<T, String>, Duration)> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let (at, answer) = last.as_ref()?;
        let age = now.saturating_duration_since(*at);
        let serves = match answer {
            Ok(value) => {
                accepts(value)
                    && (age < self.fresh_for
                        || self
                            .hold_until
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .is_some_and(|until| now < until))
            }
            Err(_) => age < self.failures_for,
        };
        serves.then(|| (answer.clone(), age))
    }

    /// The answer that serves now, if one does, without reading or waiting.
    pub fn peek(&self) -> Option<Result<T, String>> {
        self.fresh(|_| true, Instant::now())
            .map(|(answer, _)| answer)
    }

    /// Drop the answer and its hold (the node pushed a new head): the next asker reads.
    pub fn expire(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.hold(None);
    }

    /// Serve the last good answer until `until` however old it is (`None`: only while fresh).
    pub fn hold(&self, until: Option<Instant>) {
        *self.hold_until.lock().unwrap_or_else(|p| p.into_inner()) = until;
    }

    /// Keep `value`, read by another slot's reader in the same batch, unless this slot holds a
    /// good answer that `value` is not `newer` than; whether it was kept.
    pub fn offer(&self, value: T, newer: impl Fn(&T, &T) -> bool) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, Ok(kept))) = last.as_ref()
            && !newer(&value, kept)
        {
            return false;
        }
        *last = Some((Instant::now(), Ok(value)));
        true
    }

    /// The fresh answer if there is one; else wait for a read under way and take its answer;
    /// else read (`read`) and share what it returns.
    pub async fn get<E, F, Fut>(&self, read: F) -> Got<T, E>
    where
        E: std::fmt::Display,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.get_if(|_| true, read).await
    }

    /// [`get`](Self::get), where a good answer serves only an asker that `accepts` it (the
    /// counters of a block at or past the asker's head).
    pub async fn get_if<E, F, Fut>(&self, accepts: impl Fn(&T) -> bool, read: F) -> Got<T, E>
    where
        E: std::fmt::Display,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if let Some((answer, age)) = self.fresh(&accepts, Instant::now()) {
            return Got::Shared { answer, age };
        }
        let _reading = self.reading.lock().await;
        if let Some((answer, age)) = self.fresh(&accepts, Instant::now()) {
            return Got::Shared { answer, age };
        }
        let answer = read().await;
        let kept = match &answer {
            Ok(value) => Ok(value.clone()),
            Err(e) => Err(e.to_string()),
        };
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), kept));
        Got::Read(answer)
    }
}

/// The widest range (in blocks) answered from the store, and how far behind its newest block
/// it keeps older ones. Wider reads (a catch-up, recovery's strides) go to the node.
pub const STORE_SPAN: u64 = 64;

/// How far below the confirmed head an asker's range may end and still be served: the askers
/// that follow the head (each with its own read of the head, a little older or newer).
pub const STORE_HEAD_SLACK: u64 = 4;

/// The most logs the store holds; a read that would exceed it is not kept (a backlog's blocks:
/// every asker reads its own, bounded by its range as before).
pub const STORE_MAX_LOGS: usize = 2_048;

/// How long a block's logs are kept after they were read.
pub const STORE_KEEP: Duration = Duration::from_secs(20);

/// After a read the store could not keep (a backlog's dense blocks), how long every asker reads
/// its own: one read for the store and one of its own per asker would double the node's work
/// and the relay's largest answer while the backlog lasts.
pub const STORE_DENSE_PAUSE: Duration = Duration::from_secs(5);

/// Confirmed blocks' logs of every contract the chain's clients in the process asked about.
#[derive(Debug, Default)]
pub struct LogStore {
    state: Mutex<StoreState>,
    /// Held by the asker reading for the store, so the others wait for its answer.
    pub(crate) fetching: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct StoreState {
    /// Every address asked about, with the generation that added it.
    addresses: HashMap<Address, u64>,
    generation: u64,
    /// Per block read: the generation of the addresses it was read for, when, its logs.
    blocks: BTreeMap<u64, StoredBlock>,
    held: usize,
    /// Until when the store passes every read (a read it could not keep).
    dense_until: Option<Instant>,
    /// How many blocks one read of every contract may span, from the density of the last.
    span: LogSpan,
}

impl Default for StoreState {
    fn default() -> Self {
        Self {
            addresses: HashMap::new(),
            generation: 0,
            blocks: BTreeMap::new(),
            held: 0,
            dense_until: None,
            span: LogSpan::with_max(STORE_SPAN),
        }
    }
}

#[derive(Debug)]
struct StoredBlock {
    generation: u64,
    at: Instant,
    logs: Vec<Log>,
}

/// What the store says about a read.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Every block of the range is held for every address asked: answer from the store.
    Held,
    /// Read these blocks for every address asked about, then answer from the store.
    Read {
        /// First block to read.
        from: u64,
        /// Last block to read.
        to: u64,
        /// Every address asked about on the chain.
        addresses: Vec<Address>,
        /// The generation of that address set (for [`LogStore::keep`]).
        generation: u64,
    },
    /// The store does not serve this read, for this reason: the asker reads its own range.
    Pass(Pass),
}

/// Why the store leaves a read to its asker (the label of
/// `rpc_shared_reads_total{read="logs passed: …"}`: which rule keeps a hub's reads off the store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// No block range (a block hash, an open end) or an empty one.
    NoRange,
    /// No contract address.
    NoAddress,
    /// The range reaches above the confirmed head: such blocks are always read anew.
    Unconfirmed,
    /// The range is [`STORE_SPAN`] blocks or wider.
    Wide,
    /// The range ends further below the confirmed head than [`STORE_HEAD_SLACK`]: a catch-up.
    CatchUp,
    /// A read for the store failed or held more than it keeps, [`STORE_DENSE_PAUSE`] ago at most.
    Paused,
    /// The missing blocks are wider than twice the span the density seen allows.
    Dense,
    /// The head could not be read, or is not yet above the confirmation depth.
    NoHead,
    /// A read for the store held more than it keeps.
    NotKept,
}

impl Pass {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::NoRange => "logs passed: no range",
            Self::NoAddress => "logs passed: no address",
            Self::Unconfirmed => "logs passed: unconfirmed",
            Self::Wide => "logs passed: wide",
            Self::CatchUp => "logs passed: catch-up",
            Self::Paused => "logs passed: paused",
            Self::Dense => "logs passed: dense",
            Self::NoHead => "logs passed: no head",
            Self::NotKept => "logs passed: not kept",
        }
    }
}

impl LogStore {
    fn state(&self) -> std::sync::MutexGuard<'_, StoreState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What to do for `filter`, given `confirmed` (the newest confirmed block): answer from
    /// the store, read for it first (up to `confirmed`), or pass. Plan, read and keep while
    /// holding [`fetching`](Self::fetching), so no address is added in between.
    pub fn plan(&self, filter: &Filter, confirmed: u64) -> Plan {
        let (Some(from), Some(to)) = (filter.get_from_block(), filter.get_to_block()) else {
            return Plan::Pass(Pass::NoRange);
        };
        if to < from || filter.get_block_hash().is_some() {
            return Plan::Pass(Pass::NoRange);
        }
        if filter.address.is_empty() {
            return Plan::Pass(Pass::NoAddress);
        }
        if to > confirmed {
            return Plan::Pass(Pass::Unconfirmed);
        }
        if to.saturating_sub(from) >= STORE_SPAN {
            return Plan::Pass(Pass::Wide);
        }
        // Not following the head (a catch-up, counted by its asker or not): its blocks may be a
        // backlog's, and one answer of every contract over them is what the asker's own bound
        // was there to avoid.
        if to.saturating_add(STORE_HEAD_SLACK) < confirmed {
            return Plan::Pass(Pass::CatchUp);
        }
        let mut state = self.state();
        if state
            .dense_until
            .is_some_and(|until| Instant::now() < until)
        {
            return Plan::Pass(Pass::Paused);
        }
        state.expire();
        let mut needed = 0u64;
        for address in filter.address.iter() {
            if !state.addresses.contains_key(address) {
                state.generation = state.generation.saturating_add(1);
                let generation = state.generation;
                state.addresses.insert(*address, generation);
            }
            needed = needed.max(state.addresses.get(address).copied().unwrap_or(u64::MAX));
        }
        let first_missing = (from..=to).find(|block| {
            state
                .blocks
                .get(block)
                .is_none_or(|b| b.generation < needed)
        });
        let Some(missing) = first_missing else {
            return Plan::Held;
        };
        // The asker's range, never ahead of it (the blocks after it are unread: a backlog's, as
        // likely as not), when at most twice the span (a sparse answer then doubles it); wider
        // is a range the density seen does not allow in one answer of every contract.
        if to.saturating_sub(missing) >= state.span.blocks().saturating_mul(2) {
            return Plan::Pass(Pass::Dense);
        }
        Plan::Read {
            from: missing,
            to,
            addresses: state.addresses.keys().copied().collect(),
            generation: state.generation,
        }
    }

    /// A read for the store failed (an answer over the bound, an endpoint down): the next are
    /// one block wide, and for [`STORE_DENSE_PAUSE`] every asker reads its own range.
    pub fn failed(&self) {
        let mut state = self.state();
        state.span = LogSpan::with_max(STORE_SPAN);
        state.dense_until = Instant::now().checked_add(STORE_DENSE_PAUSE);
    }

    /// Keep `logs`, read over `from..=to` for every address of `generation` (from its
    /// [`Plan::Read`]); false when they would make the store hold more than
    /// [`STORE_MAX_LOGS`] (nothing kept).
    pub fn keep(&self, from: u64, to: u64, generation: u64, logs: Vec<Log>) -> bool {
        let mut state = self.state();
        state
            .span
            .observe(to.saturating_sub(from).saturating_add(1), logs.len());
        let mut by_block: BTreeMap<u64, Vec<Log>> = (from..=to).map(|b| (b, Vec::new())).collect();
        for log in logs {
            if let Some(block) = log.block_number
                && let Some(kept) = by_block.get_mut(&block)
            {
                kept.push(log);
            }
        }
        let adding: usize = by_block.values().map(Vec::len).sum();
        let replaced: usize = by_block
            .keys()
            .filter_map(|b| state.blocks.get(b))
            .map(|b| b.logs.len())
            .sum();
        let held = state.held.saturating_sub(replaced).saturating_add(adding);
        if held > STORE_MAX_LOGS {
            state.dense_until = Instant::now().checked_add(STORE_DENSE_PAUSE);
            return false;
        }
        let at = Instant::now();
        for (block, logs) in by_block {
            state.blocks.insert(
                block,
                StoredBlock {
                    generation,
                    at,
                    logs,
                },
            );
        }
        state.held = held;
        let newest = state.blocks.keys().next_back().copied().unwrap_or(0);
        let oldest_kept = newest.saturating_sub(STORE_SPAN.saturating_mul(2));
        state.drop_where(|block, _| block < oldest_kept);
        true
    }

    /// The logs of `filter` in its range, from the store, in block order and within a block in
    /// the node's order.
    pub fn answer(&self, filter: &Filter) -> Vec<Log> {
        let (Some(from), Some(to)) = (filter.get_from_block(), filter.get_to_block()) else {
            return Vec::new();
        };
        let state = self.state();
        state
            .blocks
            .range(from..=to)
            .flat_map(|(_, b)| b.logs.iter())
            .filter(|log| filter.rpc_matches(log))
            .cloned()
            .collect()
    }

    /// Drop every block from `block` on: the next read of them asks the node.
    pub fn forget_from(&self, block: u64) {
        self.state().drop_where(|b, _| b >= block);
    }
}

impl StoreState {
    fn expire(&mut self) {
        self.drop_where(|_, b| b.at.elapsed() >= STORE_KEEP);
    }

    fn drop_where(&mut self, drop: impl Fn(u64, &StoredBlock) -> bool) {
        let mut freed = 0usize;
        self.blocks.retain(|block, stored| {
            let gone = drop(*block, stored);
            if gone {
                freed = freed.saturating_add(stored.logs.len());
            }
            !gone
        });
        self.held = self.held.saturating_sub(freed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Keep `answer` in `slot` as a read would (whatever good answer it kept before).
    async fn keep(slot: &Slot<u64>, answer: Result<u64, String>) {
        let _ = slot.get_if(|_| false, || async { answer }).await;
    }

    #[tokio::test]
    async fn bridges_asked_lately_not_read_at_the_head_nor_under_way_ride_along() {
        use crate::bridge_counters::BridgeCounters;
        let reads = SharedReads::new();
        let bridge = |n| Address::repeat_byte(n);
        let at = |block| BridgeCounters {
            block,
            ..Default::default()
        };
        // As `ChainClient::counters` asks: the ask recorded, then the batch.
        let alongside = |asker, head| {
            reads.counters_asked(bridge(asker));
            let mut others = reads
                .counters_batch(bridge(asker), head)
                .alongside()
                .to_vec();
            others.sort();
            others
        };
        let newer = |new: &BridgeCounters, kept: &BridgeCounters| new.block > kept.block;
        // Nothing asked yet besides the asker.
        assert!(alongside(1, 10).is_empty());
        alongside(2, 10);
        alongside(3, 10);
        assert_eq!(alongside(1, 10), vec![bridge(2), bridge(3)]);
        // One already read at the head is not read again; one read before it is.
        reads.counters(bridge(2)).offer(at(10), newer);
        reads.counters(bridge(3)).offer(at(9), newer);
        assert_eq!(alongside(1, 10), vec![bridge(3)]);
        // An offer older than what a slot holds is not kept.
        reads.counters(bridge(2)).offer(at(8), newer);
        assert_eq!(
            reads
                .counters(bridge(2))
                .fresh(|_| true, Instant::now())
                .map(|(answer, _)| answer),
            Some(Ok(at(10)))
        );
        // A bridge in a batch under way is in no other, and its asker waits for that batch.
        let under_way = reads.counters_batch(bridge(1), 11);
        assert_eq!(under_way.alongside(), &[bridge(3), bridge(2)][..]);
        assert!(alongside(4, 11).is_empty());
        // An asker already answered at its head does not wait.
        reads.counters(bridge(2)).offer(at(11), newer);
        let waited = Instant::now();
        reads.counters_landed(bridge(2), 11).await;
        assert!(waited.elapsed() < Duration::from_millis(50));
        let waited = Instant::now();
        let waiting = reads.counters_landed(bridge(3), 11);
        let landing = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(under_way);
        };
        tokio::join!(waiting, landing);
        let waited = waited.elapsed();
        assert!(
            waited >= Duration::from_millis(50) && waited < COUNTERS_WAIT,
            "the asker waited {waited:?} for the batch"
        );
        assert_eq!(alongside(4, 11), vec![bridge(1), bridge(3)]);
        // After a batch failed where one bridge alone was read, each reads its own.
        reads.counters_alone();
        assert!(alongside(1, 13).is_empty());
        *reads.counters_book.alone_until.lock().unwrap() = None;
        // A bridge not asked for a while is no longer read for.
        if let Some(asked) = reads
            .counters_book
            .asked
            .lock()
            .unwrap()
            .get_mut(&bridge(3))
        {
            *asked = Instant::now() - COUNTERS_ASKED_WITHIN;
        }
        assert!(!alongside(1, 14).contains(&bridge(3)));
    }

    #[tokio::test]
    async fn a_good_answer_serves_askers_it_suits_while_fresh_and_a_failure_for_its_own_time() {
        let slot = Slot::<u64>::new(Duration::from_secs(2))
            .sharing_failures_for(Duration::from_millis(100));
        keep(&slot, Ok(10)).await;
        let now = Instant::now();
        let served = |accepts: fn(&u64) -> bool, at| slot.fresh(accepts, at).map(|(a, _)| a);
        assert_eq!(served(|block| *block >= 9, now), Some(Ok(10)));
        assert_eq!(
            served(|block| *block >= 11, now),
            None,
            "the asker's head moved past it"
        );
        let later = now + Duration::from_secs(2);
        assert_eq!(served(|_| true, later), None, "no longer fresh");
        keep(&slot, Err("endpoint down".into())).await;
        let now = Instant::now();
        assert_eq!(served(|_| true, now), Some(Err("endpoint down".into())));
        assert_eq!(
            served(|_| true, now + Duration::from_millis(100)),
            None,
            "a failure is shared for its own, shorter time"
        );
    }

    #[tokio::test]
    async fn one_read_serves_every_asker_while_fresh_and_concurrent_askers_wait_for_it() {
        let slot = Slot::<u64>::new(Duration::from_millis(200));
        let reads = AtomicU32::new(0);
        let read = || async {
            reads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<_, String>(7)
        };
        let answers = futures::future::join_all((0..10).map(|_| slot.get(read))).await;
        assert_eq!(
            reads.load(Ordering::SeqCst),
            1,
            "ten askers at once, one read"
        );
        let own = answers.iter().filter(|g| matches!(g, Got::Read(_))).count();
        assert_eq!(own, 1);
        assert!(answers.iter().all(|g| match g {
            Got::Read(a) => a == &Ok(7),
            Got::Shared { answer, .. } => answer == &Ok(7),
        }));
        // Stale: read again.
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(matches!(slot.get(read).await, Got::Read(Ok(7))));
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_held_answer_serves_past_its_freshness_until_the_hold_ends_and_a_failure_is_never_held()
     {
        let slot = Slot::<u64>::new(Duration::from_millis(20));
        let reads = AtomicU32::new(0);
        let read = || async {
            reads.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(7)
        };
        assert!(matches!(slot.get(read).await, Got::Read(Ok(7))));
        slot.hold(Some(Instant::now() + Duration::from_millis(200)));
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(matches!(slot.get(read).await, Got::Shared { .. }), "held");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            matches!(slot.get(read).await, Got::Read(Ok(7))),
            "hold over"
        );
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        // A failed answer is not held: read again once it is stale, whatever the hold says.
        slot.hold(None);
        tokio::time::sleep(Duration::from_millis(30)).await;
        let failing = || async { Err::<u64, _>("down") };
        assert!(matches!(slot.get(failing).await, Got::Read(Err(_))));
        slot.hold(Some(Instant::now() + Duration::from_secs(5)));
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(matches!(slot.get(read).await, Got::Read(Ok(7))));
    }

    #[tokio::test]
    async fn a_failure_is_shared_briefly_so_askers_do_not_queue_behind_a_dead_endpoint() {
        let slot = Slot::<u64>::new(Duration::from_millis(300));
        let reads = AtomicU32::new(0);
        let failing = || async {
            reads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            Err::<u64, _>("no endpoint answered")
        };
        let started = Instant::now();
        let answers = futures::future::join_all((0..20).map(|_| slot.get(failing))).await;
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "askers queued behind the failure: {:?}",
            started.elapsed()
        );
        assert!(answers.iter().all(|g| match g {
            Got::Read(a) => a.is_err(),
            Got::Shared { answer, .. } => answer.as_ref().is_err_and(|e| e.contains("no endpoint")),
        }));
    }

    fn log(address: Address, topic: u8, block: u64) -> Log {
        Log {
            inner: alloy::primitives::Log {
                address,
                data: alloy::primitives::LogData::new_unchecked(
                    vec![alloy::primitives::B256::repeat_byte(topic)],
                    Default::default(),
                ),
            },
            block_number: Some(block),
            block_hash: Some(alloy::primitives::B256::repeat_byte(block as u8)),
            ..Default::default()
        }
    }

    fn ask(address: Address, from: u64, to: u64) -> Filter {
        Filter::new().address(address).from_block(from).to_block(to)
    }

    /// The read of a plan that reads (its range and generation).
    fn read_of(plan: Plan) -> (u64, u64, u64) {
        match plan {
            Plan::Read {
                from,
                to,
                generation,
                ..
            } => (from, to, generation),
            other => panic!("expected a read: {other:?}"),
        }
    }

    #[test]
    fn the_first_asker_reads_every_watched_contract_over_its_range_and_the_rest_are_answered() {
        let store = LogStore::default();
        let (a, b) = (Address::repeat_byte(1), Address::repeat_byte(2));
        // Pair A's asker: blocks 10..=11, confirmed up to 12. A new store reads two blocks at
        // most, the asker's: nothing ahead of it.
        let Plan::Read {
            from,
            to,
            addresses,
            generation,
        } = store.plan(&ask(a, 10, 11), 12)
        else {
            panic!("an empty store reads");
        };
        assert_eq!((from, to, addresses.clone()), (10, 11, vec![a]));
        assert!(store.keep(
            from,
            to,
            generation,
            vec![log(a, 7, 10), log(a, 8, 11), log(b, 7, 11)]
        ));
        // The same blocks of A: held; topics and range filtered.
        assert_eq!(store.plan(&ask(a, 11, 11), 12), Plan::Held);
        assert_eq!(store.answer(&ask(a, 10, 11)).len(), 2);
        assert_eq!(
            store
                .answer(&ask(a, 10, 11).event_signature(alloy::primitives::B256::repeat_byte(8)))
                .len(),
            1
        );
        assert_eq!(store.answer(&ask(a, 11, 11)).len(), 1);
        // The next block was not read ahead.
        assert_eq!(read_of(store.plan(&ask(a, 11, 12), 12)).0, 12);
        // Pair B's contract was not asked about when 10..=11 was read: read again, for both.
        let Plan::Read {
            addresses,
            generation,
            ..
        } = store.plan(&ask(b, 11, 11), 12)
        else {
            panic!("a new address is not covered by blocks read before it");
        };
        assert_eq!(addresses.len(), 2);
        assert!(store.keep(11, 11, generation, vec![log(a, 8, 11), log(b, 7, 11)]));
        assert_eq!(store.plan(&ask(b, 11, 11), 12), Plan::Held);
        assert_eq!(store.answer(&ask(b, 11, 11)), vec![log(b, 7, 11)]);
        // Block 10 was read before B was watched: B's read of it goes to the node again.
        assert!(matches!(
            store.plan(&ask(b, 10, 11), 12),
            Plan::Read { from: 10, .. }
        ));
    }

    #[test]
    fn unconfirmed_wide_catch_up_or_addressless_reads_pass_and_a_doubted_range_is_read_again() {
        let store = LogStore::default();
        let a = Address::repeat_byte(1);
        assert_eq!(
            store.plan(&ask(a, 10, 13), 12),
            Plan::Pass(Pass::Unconfirmed),
            "above the confirmed head"
        );
        assert_eq!(
            store.plan(&ask(a, 1_000 - STORE_SPAN, 1_000), 1_000),
            Plan::Pass(Pass::Wide),
            "too wide"
        );
        assert_eq!(
            store.plan(&Filter::new().from_block(1).to_block(2), 12),
            Plan::Pass(Pass::NoAddress),
            "no address"
        );
        assert_eq!(
            store.plan(&ask(a, 10, 10), 11 + STORE_HEAD_SLACK),
            Plan::Pass(Pass::CatchUp),
            "a catch-up: the range ends further below the confirmed head than the slack"
        );
        assert_eq!(
            read_of(store.plan(&ask(a, 10, 10), 10 + STORE_HEAD_SLACK)).0,
            10,
            "within the slack"
        );
        let (from, to, generation) = read_of(store.plan(&ask(a, 10, 11), 11));
        assert_eq!((from, to), (10, 11), "twice the span of a new store");
        assert!(store.keep(from, to, generation, vec![log(a, 1, 10)]));
        assert_eq!(store.plan(&ask(a, 10, 11), 11), Plan::Held);
        store.forget_from(11);
        assert_eq!(store.plan(&ask(a, 10, 10), 12), Plan::Held);
        assert!(matches!(
            store.plan(&ask(a, 10, 11), 12),
            Plan::Read { from: 11, .. }
        ));
    }

    /// One answer of every contract stays near the target however dense the blocks: a new store
    /// reads at most two blocks (a backlog's block holds ~700 requests), widens while answers
    /// of its whole width are sparse, narrows to the density a dense answer showed, and leaves
    /// a range wider than twice its span to the asker. Askers that follow the head one block at
    /// a time keep it narrow. A failed read (an answer over the bound) passes and starts narrow.
    #[test]
    fn reads_of_every_contract_are_as_wide_as_the_density_seen_allows() {
        let store = LogStore::default();
        let a = Address::repeat_byte(1);
        // A new store asked for three blocks of a quiet chain: wider than twice one block.
        assert_eq!(store.plan(&ask(a, 100, 102), 102), Plan::Pass(Pass::Dense));
        // One block at a time at the head: sparse, but never the span's whole width twice.
        for block in 100..110 {
            let (from, to, generation) = read_of(store.plan(&ask(a, block, block), block));
            assert!(store.keep(from, to, generation, Vec::new()));
        }
        assert_eq!(store.plan(&ask(a, 110, 114), 114), Plan::Pass(Pass::Dense));
        // Sparse answers of twice the width double it, up to the kept span.
        let mut next = 110u64;
        let mut widest = 0;
        for _ in 0..12 {
            let width = store.state().span.blocks().saturating_mul(2);
            let to = next + width - 1;
            if to.saturating_sub(next) >= STORE_SPAN {
                break;
            }
            let (from, read_to, generation) = read_of(store.plan(&ask(a, next, to), to));
            assert_eq!((from, read_to), (next, to));
            assert!(store.keep(from, to, generation, Vec::new()));
            widest = widest.max(to - from + 1);
            next = to + 1;
        }
        assert_eq!(widest, STORE_SPAN, "widened to the kept span");
        // The store aged out; a dense block (700 logs) keeps the next read to one or two.
        let store = LogStore::default();
        let (from, to, generation) = read_of(store.plan(&ask(a, 10, 10), 10));
        assert!(store.keep(from, to, generation, vec![log(a, 1, 10); 700]));
        assert_eq!(
            store.plan(&ask(a, 11, 13), 13),
            Plan::Pass(Pass::Dense),
            "three dense blocks in one answer would be ~2,100 logs"
        );
        assert_eq!(read_of(store.plan(&ask(a, 11, 11), 13)).1, 11);
        // A failed read: every asker reads its own for a while, then one block at a time.
        store.failed();
        assert_eq!(store.plan(&ask(a, 11, 11), 13), Plan::Pass(Pass::Paused));
    }

    #[test]
    fn a_read_that_would_hold_more_than_the_bound_is_not_kept() {
        let store = LogStore::default();
        let a = Address::repeat_byte(1);
        let Plan::Read {
            from,
            to,
            generation,
            ..
        } = store.plan(&ask(a, 1, 1), 1)
        else {
            panic!("reads");
        };
        let many: Vec<Log> = (0..=STORE_MAX_LOGS).map(|_| log(a, 1, 1)).collect();
        assert!(!store.keep(from, to, generation, many));
        // For a while every asker reads its own.
        assert_eq!(store.plan(&ask(a, 1, 1), 1), Plan::Pass(Pass::Paused));
    }

    #[test]
    fn clients_of_one_chain_share_and_other_chains_or_endpoints_do_not() {
        let urls = vec!["http://127.0.0.1:1".to_owned()];
        let a = of(900_001, &urls, None);
        let b = of(900_001, &urls, None);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &of(900_002, &urls, None)));
        assert!(!Arc::ptr_eq(
            &a,
            &of(900_001, &["http://127.0.0.1:2".to_owned()], None)
        ));
        // A client whose head is pushed from a WebSocket endpoint shares with those of that
        // endpoint only (a client without one never takes another's pushes).
        let ws = of(900_001, &urls, Some("ws://127.0.0.1:1"));
        assert!(!Arc::ptr_eq(&a, &ws));
        assert!(Arc::ptr_eq(
            &ws,
            &of(900_001, &urls, Some("ws://127.0.0.1:1"))
        ));
        assert!(!Arc::ptr_eq(
            &ws,
            &of(900_001, &urls, Some("ws://127.0.0.1:9"))
        ));
    }
}
