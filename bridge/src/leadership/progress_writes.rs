//! One etcd transaction for the progress records of every lane of a process (issue 54).
//!
//! Every lane writes its replica's progress record (and, while it leads, the lane cursor) every
//! two seconds ([`progress`](super::progress)). Each was a put of its own: a raft proposal and
//! an fsync on every member. A relay serving 64 service chains has 128 lanes: about 100 writes
//! a second per process, three processes 300 — nearly all of the etcd writes of a hub at rest
//! (the heartbeats already go in one transaction per poll).
//!
//! Here the lanes of a process hand their records to one [`ProgressWrites`] per etcd endpoint
//! list, which writes what was handed in at the next instant of a process grid every
//! [`FLUSH_EVERY`] ([`next_poll`](super::heartbeats::next_poll)), in one transaction of puts. A
//! key handed in twice keeps the later value (as two puts would), so no transaction writes a key
//! twice (etcd refuses that). The lanes keep their own phases: woken on one grid, every lane of
//! a hub read its store at the same instant every two seconds, and the store's lock held the
//! voters back behind them (a 32-pair hub's worst lane p99 rose 0.3 s). A record is written up
//! to [`FLUSH_EVERY`] later than before, well inside what a peer's record may age
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

#[derive(Default)]
struct Pending {
    /// Key → the latest value handed in.
    writes: BTreeMap<String, String>,
    /// A collector is waiting for the next flush and will take `writes`.
    collecting: bool,
}

/// The progress records of one etcd cluster's lanes in this process.
#[derive(Default)]
pub struct ProgressWrites {
    pending: Mutex<Pending>,
}

impl std::fmt::Debug for ProgressWrites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProgressWrites")
    }
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
        let collect = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.writes.extend(writes);
            !std::mem::replace(&mut pending.collecting, true)
        };
        if collect {
            tokio::spawn(Arc::clone(self).collect(Arc::clone(pool)));
        }
    }

    /// Wait for the next flush, then send what was handed in meanwhile.
    async fn collect(self: Arc<Self>, pool: Arc<EtcdPool>) {
        let writes = {
            // Dropped before it took the records (the runtime stops): the next record handed in
            // starts a collector, which takes them.
            let guard = Collecting(&self);
            tokio::time::sleep_until(next_poll(tokio::time::Instant::now(), FLUSH_EVERY)).await;
            guard.take()
        };
        let txns = transactions(writes);
        futures::future::join_all(txns.into_iter().map(|txn| send(&pool, txn))).await;
    }
}

/// Clears `collecting` when the collector is dropped before it took the records.
struct Collecting<'a>(&'a ProgressWrites);

impl Collecting<'_> {
    fn take(self) -> BTreeMap<String, String> {
        let mut pending = self.0.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.collecting = false;
        std::mem::take(&mut pending.writes)
    }
}

impl Drop for Collecting<'_> {
    fn drop(&mut self) {
        let mut pending = self.0.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.collecting = false;
    }
}

/// `writes` cut into transactions of at most [`KEYS_PER_TXN`] puts (each key once: they come
/// from a map).
fn transactions(writes: BTreeMap<String, String>) -> Vec<Vec<(String, String)>> {
    let writes: Vec<(String, String)> = writes.into_iter().collect();
    writes
        .chunks(KEYS_PER_TXN)
        .map(<[(String, String)]>::to_vec)
        .collect()
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
