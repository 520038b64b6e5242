//! One etcd transaction for the progress records of every lane of a process (issue 54).
//!
//! Every lane writes its replica's progress record (and, while it leads, the lane cursor) every
//! two seconds ([`progress`](super::progress)). Each was a put of its own: a raft proposal and
//! an fsync on every member. A relay serving 64 service chains has 128 lanes: about 100 writes
//! a second per process, three processes 300 — nearly all of the etcd writes of a hub at rest
//! (the heartbeats already go in one transaction per poll).
//!
//! Here the lanes of a process hand their records to one [`ProgressWrites`] per etcd endpoint
//! list, whose one collector writes what was handed in at the next instant of a process grid
//! every [`FLUSH_EVERY`] ([`next_poll`](super::heartbeats::next_poll)), in one transaction of
//! puts, and goes on until a flush finds nothing (never two sends at once). A key handed in
//! twice keeps the later value (as two puts would), so no transaction writes a key twice (etcd
//! refuses that). The lanes keep their own phases: woken on one grid, every lane of a hub would
//! read its store at the same instant. A record is written up to [`FLUSH_EVERY`] later than
//! before, well inside what a peer's record may age
//! ([`PEER_FRESH_SECS`](super::health::PEER_FRESH_SECS)). The records are for operators and
//! for a leader choosing whom to hand a lane to; nothing waits for the write, and a failure is
//! counted and logged, as a failed put was.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Txn, TxnOp};
use multibridge_chain::shared_reads::ProcessBook;
use multibridge_monitoring::metrics::{ETCD_PROGRESS, ETCD_PROGRESS_OUTCOMES};

use super::etcd_pool::EtcdPool;
use super::heartbeats::{KEYS_PER_TXN, next_poll};

/// How often the records handed in are written: at most this much later than each lane made
/// its record.
pub const FLUSH_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, Default)]
struct Pending {
    /// Key → the latest value handed in.
    writes: BTreeMap<String, String>,
    /// A collector is running: it writes `writes` at the next flush, and again until nothing is
    /// left. Never two at once, so a record retried on another endpoint cannot overwrite a
    /// newer one written meanwhile, and a slow etcd gets one transaction at a time.
    collecting: bool,
}

/// The progress records of one etcd cluster's lanes in this process.
#[derive(Debug, Default)]
pub struct ProgressWrites {
    pending: Mutex<Pending>,
}

impl ProgressWrites {
    /// The progress writes of the process for the cluster `pool` reaches.
    pub fn of(pool: &EtcdPool) -> Arc<Self> {
        static BOOK: ProcessBook<Vec<String>, ProgressWrites> = ProcessBook::new();
        BOOK.get_or_make(pool.endpoints().to_vec(), Self::default)
    }

    /// Write `writes` through `pool` with every other record handed in meanwhile; returns at
    /// once.
    pub fn put(self: &Arc<Self>, pool: &Arc<EtcdPool>, writes: Vec<(String, String)>) {
        if let Some(collector) = self.hand_in(writes) {
            tokio::spawn(collector.run(Arc::clone(pool)));
        }
    }

    /// Add `writes` to what is pending; a collector to start if none runs.
    fn hand_in(self: &Arc<Self>, writes: Vec<(String, String)>) -> Option<Collector> {
        let mut pending = self.lock();
        pending.writes.extend(writes);
        (!std::mem::replace(&mut pending.collecting, true)).then(|| Collector {
            writes: Arc::clone(self),
            armed: true,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The one collector of a [`ProgressWrites`]: built (and the flag set) before it is spawned,
/// so a task dropped before it ever ran (the runtime stops) still clears the flag and the next
/// record handed in starts another.
struct Collector {
    writes: Arc<ProgressWrites>,
    /// Clear the flag when dropped (not once it cleared it itself under the lock).
    armed: bool,
}

impl Collector {
    /// At each flush, write what was handed in; stop (clearing the flag under the same lock)
    /// once a flush finds nothing.
    async fn run(mut self, pool: Arc<EtcdPool>) {
        loop {
            tokio::time::sleep_until(next_poll(tokio::time::Instant::now(), FLUSH_EVERY)).await;
            let Some(writes) = self.take() else {
                return;
            };
            for txn in transactions(writes) {
                send(&pool, txn).await;
            }
        }
    }

    /// What is pending, or `None` (and the flag cleared) if nothing is.
    fn take(&mut self) -> Option<BTreeMap<String, String>> {
        let mut pending = self.writes.lock();
        if pending.writes.is_empty() {
            pending.collecting = false;
            self.armed = false;
            return None;
        }
        Some(std::mem::take(&mut pending.writes))
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if self.armed {
            self.writes.lock().collecting = false;
        }
    }
}

/// `writes` cut into transactions of at most [`KEYS_PER_TXN`] puts (each key once: they come
/// from a map).
fn transactions(writes: BTreeMap<String, String>) -> Vec<Vec<(String, String)>> {
    let mut writes = writes.into_iter().peekable();
    let mut txns = Vec::new();
    while writes.peek().is_some() {
        txns.push(writes.by_ref().take(KEYS_PER_TXN).collect());
    }
    txns
}

/// Send one transaction of puts; count and log what became of them.
async fn send(pool: &EtcdPool, txn: Vec<(String, String)>) {
    let result = pool
        .call(ETCD_PROGRESS, |mut c| {
            let ops: Vec<TxnOp> = txn
                .iter()
                .map(|(key, value)| TxnOp::put(key.as_str(), value.as_str(), None))
                .collect();
            async move { c.txn(Txn::new().and_then(ops)).await.map(|_| ()) }
        })
        .await;
    let [written, failed] = ETCD_PROGRESS_OUTCOMES;
    match result {
        Ok(()) => pool.count_progress(written, txn.len()),
        Err(e) => {
            pool.count_progress(failed, txn.len());
            tracing::debug!(records = txn.len(), error = %e, "progress not written");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writes(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn one_collector_at_a_time_and_the_later_value_of_a_key_wins() {
        let book = Arc::new(ProgressWrites::default());
        let first = book.hand_in(writes(&[("a", "1"), ("b", "1")]));
        assert!(first.is_some(), "the first record starts a collector");
        assert!(
            book.hand_in(writes(&[("a", "2")])).is_none(),
            "no second collector while one runs"
        );
        let mut collector = first.expect("checked");
        let taken = collector.take().expect("records pending");
        assert_eq!(taken.get("a").map(String::as_str), Some("2"));
        assert_eq!(taken.len(), 2);
        // Handed in while the collector sends: still its own (no overlapping sends).
        assert!(book.hand_in(writes(&[("c", "1")])).is_none());
        assert_eq!(collector.take().map(|w| w.len()), Some(1));
        assert!(
            collector.take().is_none(),
            "nothing left: the collector ends"
        );
        drop(collector);
        assert!(
            book.hand_in(writes(&[("d", "1")])).is_some(),
            "the next record starts a collector again"
        );
    }

    #[test]
    fn a_collector_dropped_before_it_ran_lets_the_next_record_start_one() {
        let book = Arc::new(ProgressWrites::default());
        let never_ran = book.hand_in(writes(&[("a", "1")]));
        drop(never_ran);
        let next = book.hand_in(writes(&[("b", "1")]));
        let mut next = next.expect("the flag was cleared by the dropped collector");
        assert_eq!(
            next.take().map(|w| w.into_keys().collect::<Vec<_>>()),
            Some(vec!["a".to_owned(), "b".to_owned()]),
            "the first record was kept for it"
        );
    }

    #[test]
    fn records_go_in_transactions_of_at_most_the_limit_each_key_once() {
        let mut writes = BTreeMap::new();
        for i in 0..(KEYS_PER_TXN * 2 + 5) {
            writes.insert(format!("dir/progress/{i:04}"), format!("{i}"));
        }
        // A key handed in twice keeps the later value (the map), so it is written once.
        writes.insert("dir/progress/0000".into(), "later".into());
        let txns = transactions(writes);
        assert_eq!(
            txns.iter().map(Vec::len).collect::<Vec<_>>(),
            [KEYS_PER_TXN, KEYS_PER_TXN, 5]
        );
        let keys: std::collections::BTreeSet<&String> =
            txns.iter().flatten().map(|(k, _)| k).collect();
        assert_eq!(keys.len(), KEYS_PER_TXN * 2 + 5, "no key twice");
        assert_eq!(txns[0][0], ("dir/progress/0000".into(), "later".into()));
    }
}
