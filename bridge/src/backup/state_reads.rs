//! One etcd read for the backup state of every lane of a process (issue 54).
//!
//! Each replica's backup worker reads its lanes' state versions ([`versions`](super::versions))
//! every round, a second apart: one range read per lane. A relay serving 64 service chains has
//! 128 lanes: 128 reads a second per process, the most numerous etcd request of a hub at rest
//! after the progress records and the heartbeats were put in one transaction each.
//!
//! Here the workers of a process ask one [`StateReads`] (per etcd endpoint list). What is asked
//! within [`GATHER`] of each other goes in one transaction of range reads (at most
//! [`RANGES_PER_TXN`]: etcd's default `--max-txn-ops` is 128); the workers wake on one grid per
//! process ([`next_poll`](crate::leadership::heartbeats::next_poll)), so they ask together. Every
//! answer is read after it was asked (never a read kept from before), so a worker sees at least
//! what it wrote itself, as with a read of its own.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{GetOptions, Txn, TxnOp, TxnOpResponse};
use multibridge_chain::shared_reads::ProcessBook;
use tokio::sync::oneshot;

use crate::leadership::etcd_pool::{EtcdPool, EtcdUnavailable};
use crate::leadership::gather::{Collector, Gathering};

/// How long an ask waits for the others of the same round (the workers of a process wake at one
/// instant: they ask within a millisecond or two).
pub const GATHER: Duration = Duration::from_millis(5);
/// Most range reads in one transaction.
pub const RANGES_PER_TXN: usize = 100;
/// The `etcd_requests_total` label of these reads.
pub const READ_STATE: &str = "read state versions";

/// A prefix's keys and values, as one read found them.
pub type Kvs = Vec<(Vec<u8>, Vec<u8>)>;

/// Each prefix's keys and values, or why its read failed.
pub type Answers = Vec<Result<Kvs, EtcdUnavailable>>;

#[derive(Debug)]
struct Asked {
    prefixes: Vec<String>,
    answer: oneshot::Sender<Answers>,
}

/// The backup state reads of one etcd cluster's lanes in this process.
#[derive(Debug, Default)]
pub struct StateReads {
    gathering: Arc<Gathering<Asked>>,
}

impl StateReads {
    /// The state reads of the process for the cluster `pool` reaches.
    pub fn of(pool: &EtcdPool) -> Arc<Self> {
        static BOOK: ProcessBook<Vec<String>, StateReads> = ProcessBook::new();
        BOOK.get_or_make(pool.endpoints().to_vec(), Self::default)
    }

    /// Every key under each of `prefixes` (in that order; each its own outcome: the prefixes of
    /// a process are read in transactions of [`RANGES_PER_TXN`]), read through `pool` with every
    /// other prefix asked meanwhile, after this call.
    pub async fn read(self: &Arc<Self>, pool: &Arc<EtcdPool>, prefixes: Vec<String>) -> Answers {
        let count = prefixes.len();
        let (answer, answered) = oneshot::channel();
        if let Some(collector) = self.gathering.ask(Asked { prefixes, answer }) {
            tokio::spawn(collect(collector, Arc::clone(pool)));
        }
        answered.await.unwrap_or_else(|_| {
            let dropped = EtcdUnavailable {
                what: READ_STATE,
                endpoints: pool.endpoints().join(","),
                last: "the state read was dropped (the process is stopping)".into(),
            };
            vec![Err(dropped); count]
        })
    }
}

/// Wait out [`GATHER`], then read every prefix asked meanwhile and answer each asker.
async fn collect(collector: Collector<Asked>, pool: Arc<EtcdPool>) {
    let asked = collector.collect(GATHER).await;
    let prefixes: Vec<String> = asked
        .iter()
        .flat_map(|a| a.prefixes.iter().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let reads = prefixes
        .chunks(RANGES_PER_TXN)
        .map(|chunk| read_ranges(&pool, chunk));
    let mut found: HashMap<&str, Result<Kvs, EtcdUnavailable>> = HashMap::new();
    for (chunk, answer) in prefixes
        .chunks(RANGES_PER_TXN)
        .zip(futures::future::join_all(reads).await)
    {
        match answer {
            Ok(each) => found.extend(
                chunk
                    .iter()
                    .map(String::as_str)
                    .zip(each.into_iter().map(Ok)),
            ),
            Err(e) => found.extend(chunk.iter().map(|p| (p.as_str(), Err(e.clone())))),
        }
    }
    // Every asker but the one whose ask the read went for was answered by it.
    for _ in asked.iter().skip(1) {
        pool.count_shared(READ_STATE);
    }
    for one in asked {
        let answer = one
            .prefixes
            .iter()
            .map(|p| match found.get(p.as_str()) {
                Some(Ok(kvs)) => Ok(kvs.clone()),
                Some(Err(e)) => Err(e.clone()),
                None => Err(EtcdUnavailable {
                    what: READ_STATE,
                    endpoints: pool.endpoints().join(","),
                    last: format!("{p} was not read"),
                }),
            })
            .collect();
        let _ = one.answer.send(answer);
    }
}

/// One transaction of range reads, one per prefix: each prefix's keys and values, in order.
pub(super) async fn read_ranges(
    pool: &EtcdPool,
    prefixes: &[String],
) -> Result<Vec<Kvs>, EtcdUnavailable> {
    let resp = pool
        .call(READ_STATE, |mut c| {
            let ops: Vec<TxnOp> = prefixes
                .iter()
                .map(|p| TxnOp::get(p.as_str(), Some(GetOptions::new().with_prefix())))
                .collect();
            async move { c.txn(Txn::new().and_then(ops)).await }
        })
        .await?;
    let each: Vec<Kvs> = resp
        .op_responses()
        .into_iter()
        .filter_map(|op| match op {
            TxnOpResponse::Get(get) => Some(
                get.kvs()
                    .iter()
                    .map(|kv| (kv.key().to_vec(), kv.value().to_vec()))
                    .collect(),
            ),
            _ => None,
        })
        .collect();
    if each.len() == prefixes.len() {
        Ok(each)
    } else {
        Err(EtcdUnavailable {
            what: READ_STATE,
            endpoints: pool.endpoints().join(","),
            last: format!(
                "etcd answered {} of {} state reads in one transaction",
                each.len(),
                prefixes.len()
            ),
        })
    }
}
