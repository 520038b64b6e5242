//! One etcd read for every leader key a process's standbys follow (issue 54).
//!
//! A standby that has seen a leader key reads it at every poll (a tenth of the lease TTL) to
//! follow its heartbeat. A process serving a hub runs one election per chain — 17 for 16
//! service chains — and its standbys' reads alone sent 170 requests a second to etcd at a 1 s
//! TTL, one per election, while a loaded single member answered in up to 650 ms. Here every
//! campaign of the process asks one [`KeyReads`] (per etcd endpoint list): the first asker after
//! its answer aged past `fresh_for` reads every key asked in the last [`ASKED_FOR`] in one
//! transaction of gets (at most [`KEYS_PER_TXN`] each: etcd's default `--max-txn-ops` is 128),
//! and the others are answered from it; a key not in that answer is read with the next one.
//!
//! What a standby does with an answer stays safe when the answer is older than the moment it is
//! served: it counts a heartbeat's silence, and a deletion's wait, from the moment it is
//! served (later than the read: a longer wait, never a shorter one), and it takes a key over
//! only by a compare on the revision it read, which fails if the key changed since.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{KeyValue, Txn, TxnOp, TxnOpResponse};
use multibridge_chain::shared_reads::ProcessBook;

use super::etcd_pool::{EtcdPool, EtcdUnavailable};

/// A key not asked for this long is no longer read with the others.
pub const ASKED_FOR: Duration = Duration::from_secs(5);
/// Most gets in one transaction.
pub const KEYS_PER_TXN: usize = 100;

/// The leader keys of one etcd cluster as this process last read them.
#[derive(Debug)]
pub struct KeyReads {
    /// The `call` label of its reads.
    label: &'static str,
    fresh_for: Duration,
    state: tokio::sync::Mutex<State>,
}

/// Each key's value as one read found it (`None`: absent).
type Values = HashMap<String, Option<KeyValue>>;

#[derive(Debug, Default)]
struct State {
    /// Every key asked recently, and when it was last asked.
    asked: HashMap<String, Instant>,
    /// The last answer: when its read was sent, and each key's value (`None`: absent).
    answer: Option<(Instant, Values)>,
    /// The last read's failure, when it failed: served as long as an answer to the keys that
    /// answer does not hold, so behind an unreachable cluster the askers do not queue up one
    /// full failover each. A failure never hides a fresh answer's keys.
    failed: Option<(Instant, EtcdUnavailable)>,
}

impl State {
    /// What a recent read says of `key`: its fresh answer's value, else its fresh failure;
    /// `None`: read again.
    fn served(
        &self,
        key: &str,
        fresh_for: Duration,
    ) -> Option<Result<Option<KeyValue>, EtcdUnavailable>> {
        let fresh = |sent: &Instant| sent.elapsed() < fresh_for;
        if let Some((sent, values)) = &self.answer
            && fresh(sent)
            && let Some(value) = values.get(key)
        {
            return Some(Ok(value.clone()));
        }
        match &self.failed {
            Some((sent, e)) if fresh(sent) => Some(Err(e.clone())),
            _ => None,
        }
    }
}

impl KeyReads {
    /// Reads named `label`, answered for `fresh_for` from when they were sent.
    pub fn new(label: &'static str, fresh_for: Duration) -> Self {
        Self {
            label,
            fresh_for,
            state: tokio::sync::Mutex::default(),
        }
    }

    /// The reads of the process's readers of one kind (the campaigns' standbys, the registry
    /// syncs: each kind its own, so one kind's reads never wait behind another's), named by
    /// `label` in `etcd_requests_total` and `etcd_shared_reads_total`, for the cluster `pool`
    /// reaches, fresh for `fresh_for` (the first caller's figure: the readers of one kind poll
    /// alike).
    pub fn of(pool: &EtcdPool, label: &'static str, fresh_for: Duration) -> Arc<Self> {
        static BOOK: ProcessBook<(Vec<String>, &'static str), KeyReads> = ProcessBook::new();
        BOOK.get_or_make((pool.endpoints().to_vec(), label), || {
            Self::new(label, fresh_for)
        })
    }

    /// `key` as etcd held it at most `fresh_for` ago (`None`: absent), read through `pool`
    /// together with every other key asked lately.
    pub async fn get(
        &self,
        pool: &EtcdPool,
        key: &str,
    ) -> Result<Option<KeyValue>, EtcdUnavailable> {
        // Held across the read: askers meanwhile wait for its answer instead of sending theirs.
        let mut state = self.state.lock().await;
        state.asked.insert(key.to_owned(), Instant::now());
        match state.served(key, self.fresh_for) {
            Some(Ok(value)) => {
                pool.count_shared(self.label);
                return Ok(value);
            }
            Some(Err(e)) => return Err(e),
            None => {}
        }
        state.asked.retain(|_, at| at.elapsed() < ASKED_FOR);
        let keys: Vec<String> = state.asked.keys().cloned().collect();
        let sent = Instant::now();
        let mut values = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(KEYS_PER_TXN) {
            let answers = pool
                .call(self.label, |mut c| {
                    let ops: Vec<TxnOp> =
                        chunk.iter().map(|k| TxnOp::get(k.as_str(), None)).collect();
                    async move { c.txn(Txn::new().and_then(ops)).await }
                })
                .await;
            let answers = match answers {
                Ok(answers) => answers,
                Err(e) => {
                    // Served from when it is known (a failover can take longer than an
                    // answer stays fresh: stamped at the send, it would serve nobody).
                    state.failed = Some((Instant::now(), e.clone()));
                    return Err(e);
                }
            };
            let got = gets(&answers);
            // Only what etcd answered is kept: a get it left out is no "absent".
            if got.len() == chunk.len() {
                values.extend(chunk.iter().cloned().zip(got));
            }
        }
        let value = match values.get(key) {
            Some(value) => value.clone(),
            None => {
                pool.call("read leader", |mut c| async move {
                    Ok(c.get(key, None).await?.kvs().first().cloned())
                })
                .await?
            }
        };
        state.answer = Some((sent, values));
        state.failed = None;
        Ok(value)
    }
}

/// The first key-value of each get of a transaction, in order.
fn gets(resp: &etcd_client::TxnResponse) -> Vec<Option<KeyValue>> {
    resp.op_responses()
        .into_iter()
        .map(|op| match op {
            TxnOpResponse::Get(get) => get.kvs().first().cloned(),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable() -> EtcdUnavailable {
        EtcdUnavailable {
            what: "read leaders",
            endpoints: "127.0.0.1:1".into(),
            last: "connection refused".into(),
        }
    }

    #[test]
    fn a_failed_read_never_hides_a_fresh_answers_keys() {
        let fresh_for = Duration::from_secs(60);
        let now = Instant::now();
        let mut state = State::default();
        assert!(state.served("a", fresh_for).is_none(), "nothing read yet");
        state.answer = Some((now, Values::from([("a".to_owned(), None)])));
        assert!(matches!(state.served("a", fresh_for), Some(Ok(None))));
        assert!(state.served("b", fresh_for).is_none(), "b is read");
        // b's read failed: askers of b share the failure, a stays answered.
        state.failed = Some((now, unavailable()));
        assert!(matches!(state.served("a", fresh_for), Some(Ok(None))));
        assert!(matches!(state.served("b", fresh_for), Some(Err(_))));
        // Both aged out: read again.
        assert!(state.served("a", Duration::ZERO).is_none());
    }
}
