//! One etcd transaction for the heartbeats of every lane a process leads (issue 54).
//!
//! A lane leader rewrites its leader key with every lease renewal, a sixth of the TTL apart
//! (the heartbeat its fence needs, see [`campaign`](super::campaign)). Each rewrite is an etcd
//! write: a raft proposal and an fsync on every member. A process serving a hub leads up to one
//! election per chain — 65 for 64 service chains — and sent 6 writes a second per election at a
//! 1 s TTL, one transaction each; three such processes on one etcd member made it answer in up
//! to 650 ms, past what the fence allows, and the leaders stepped down for it.
//!
//! Here every campaign of the process hands its heartbeat to one [`Heartbeats`] (per etcd
//! endpoint list). The heartbeats asked within [`GATHER`] of each other go in one transaction:
//! one nested transaction per key, each with the compare of its own key (its lease and value),
//! so a key that no longer names its leader fails only its own heartbeat. The campaigns poll on
//! one grid per process ([`next_poll`]), so the leaders due at a poll ask together and the
//! process sends one write per renewal round instead of one per election.
//!
//! The fence is extended from the moment the transaction was sent — the instant taken just
//! before it went out, never earlier than any of its heartbeats was asked for — exactly as a
//! heartbeat of its own: every rewrite that succeeded was sent at or after that instant, so a
//! standby that sees the revision unchanged for the TTL after it still finds the old leader's
//! fence closed. A gathering does not wait for an earlier one to come back (under a slow etcd the
//! heartbeats due go on a poll apart, as they did one by one).

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use multibridge_chain::shared_reads::ProcessBook;
use multibridge_monitoring::metrics::{ETCD_HEARTBEAT, ETCD_HEARTBEAT_OUTCOMES};
use tokio::sync::oneshot;

use super::etcd_pool::{EtcdPool, EtcdUnavailable};
use super::gather::{Collector, Gathering};

/// How long a heartbeat waits for the others due at the same poll (the campaigns of a process
/// wake at one instant: they ask within a millisecond or two).
pub const GATHER: Duration = Duration::from_millis(2);
/// Most heartbeats in one transaction (etcd's default `--max-txn-ops` is 128 per level).
pub const KEYS_PER_TXN: usize = 100;

/// One heartbeat's answer: whether the key was rewritten, and the instant its transaction was
/// sent (what the fence is extended from).
#[derive(Debug, Clone, Copy)]
pub struct Beaten {
    /// The key still named its leader under its lease and was rewritten.
    pub rewritten: bool,
    /// When the transaction that carried it was sent.
    pub sent: Instant,
    /// The revision of that transaction (0 when etcd named none).
    pub revision: i64,
}

/// A heartbeat waiting for its gathering.
#[derive(Debug)]
struct Asked {
    key: String,
    value: String,
    lease: i64,
    answer: oneshot::Sender<Result<Beaten, EtcdUnavailable>>,
}

/// The heartbeats of one etcd cluster's lane leaders in this process.
#[derive(Debug, Default)]
pub struct Heartbeats {
    gathering: Arc<Gathering<Asked>>,
}

impl Heartbeats {
    /// The heartbeats of the process for the cluster `pool` reaches.
    pub fn of(pool: &EtcdPool) -> Arc<Self> {
        static BOOK: ProcessBook<Vec<String>, Heartbeats> = ProcessBook::new();
        BOOK.get_or_make(pool.endpoints().to_vec(), Self::default)
    }

    /// Rewrite `key` with `value` under `lease` if it holds exactly that: the heartbeat of its
    /// leader, sent through `pool` with every other heartbeat asked meanwhile.
    pub async fn beat(
        self: &Arc<Self>,
        pool: &Arc<EtcdPool>,
        key: &str,
        value: String,
        lease: i64,
    ) -> Result<Beaten, EtcdUnavailable> {
        let (answer, answered) = oneshot::channel();
        let collector = self.gathering.ask(Asked {
            key: key.to_owned(),
            value,
            lease,
            answer,
        });
        if let Some(collector) = collector {
            tokio::spawn(collect(collector, Arc::clone(pool)));
        }
        answered.await.unwrap_or_else(|_| {
            Err(EtcdUnavailable {
                what: ETCD_HEARTBEAT,
                endpoints: pool.endpoints().join(","),
                last: "the heartbeat's transaction was dropped (the process is stopping)".into(),
            })
        })
    }
}

/// Wait out [`GATHER`], then send what was asked meanwhile and answer each asker.
async fn collect(collector: Collector<Asked>, pool: Arc<EtcdPool>) {
    let asked = collector.collect(GATHER).await;
    let txns = transactions(asked);
    futures::future::join_all(txns.into_iter().map(|txn| send(&pool, txn))).await;
}

/// `asked` cut into transactions of at most [`KEYS_PER_TXN`] heartbeats with no key twice in
/// one (etcd refuses a transaction that writes a key twice, which would fail every heartbeat
/// in it), in the order asked.
fn transactions(asked: Vec<Asked>) -> Vec<Vec<Asked>> {
    let mut txns: Vec<Vec<Asked>> = Vec::new();
    for one in asked {
        let fits = txns
            .iter()
            .position(|txn| txn.len() < KEYS_PER_TXN && txn.iter().all(|a| a.key != one.key));
        match fits {
            Some(i) => txns[i].push(one),
            None => txns.push(vec![one]),
        }
    }
    txns
}

/// The nested transaction of one heartbeat: rewrite the key if it holds this value under this
/// lease.
fn heartbeat_txn(asked: &Asked) -> Txn {
    Txn::new()
        .when([
            Compare::lease(asked.key.as_str(), CompareOp::Equal, asked.lease),
            Compare::value(asked.key.as_str(), CompareOp::Equal, asked.value.as_str()),
        ])
        .and_then([TxnOp::put(
            asked.key.as_str(),
            asked.value.as_str(),
            Some(PutOptions::new().with_lease(asked.lease)),
        )])
}

/// Send one transaction of heartbeats and answer each of them.
async fn send(pool: &EtcdPool, txn: Vec<Asked>) {
    let sent = Instant::now();
    let answer = pool
        .call(ETCD_HEARTBEAT, |mut c| {
            let ops: Vec<TxnOp> = txn
                .iter()
                .map(|asked| TxnOp::txn(heartbeat_txn(asked)))
                .collect();
            async move { c.txn(Txn::new().and_then(ops)).await }
        })
        .await;
    let answer_revision = answer
        .as_ref()
        .ok()
        .and_then(|resp| resp.header())
        .map(|h| h.revision());
    let outcomes = match answer {
        Ok(resp) => {
            let each = rewritten(&resp);
            if each.len() == txn.len() {
                Ok(each)
            } else {
                Err(EtcdUnavailable {
                    what: ETCD_HEARTBEAT,
                    endpoints: pool.endpoints().join(","),
                    last: format!(
                        "etcd answered {} of {} heartbeats in one transaction",
                        each.len(),
                        txn.len()
                    ),
                })
            }
        }
        Err(e) => Err(e),
    };
    let [rewritten_label, lost_label, failed_label] = ETCD_HEARTBEAT_OUTCOMES;
    match outcomes {
        Ok(each) => {
            let revision = answer_revision.unwrap_or(0);
            let done = each.iter().filter(|r| **r).count();
            pool.count_heartbeats(rewritten_label, done);
            pool.count_heartbeats(lost_label, each.len().saturating_sub(done));
            for (asked, rewritten) in txn.into_iter().zip(each) {
                let _ = asked.answer.send(Ok(Beaten {
                    rewritten,
                    sent,
                    revision,
                }));
            }
        }
        Err(e) => {
            pool.count_heartbeats(failed_label, txn.len());
            for asked in txn {
                let _ = asked.answer.send(Err(e.clone()));
            }
        }
    }
}

/// Whether each nested transaction of `resp` succeeded, in order.
fn rewritten(resp: &etcd_client::TxnResponse) -> Vec<bool> {
    resp.op_responses()
        .into_iter()
        .filter_map(|op| match op {
            TxnOpResponse::Txn(txn) => Some(txn.succeeded()),
            _ => None,
        })
        .collect()
}

/// The first poll instant of the process's grid after `after`: every campaign of a process with
/// the same poll wakes at the same instants, so the leaders due at a poll heartbeat together.
pub fn next_poll(after: tokio::time::Instant, poll: Duration) -> tokio::time::Instant {
    static EPOCH: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(tokio::time::Instant::now);
    let poll_ns = poll.as_nanos().max(1);
    let since = after.saturating_duration_since(epoch).as_nanos();
    let polls = since.checked_div(poll_ns).unwrap_or(0).saturating_add(1);
    let offset = u64::try_from(polls.saturating_mul(poll_ns)).unwrap_or(u64::MAX);
    epoch
        .checked_add(Duration::from_nanos(offset))
        .unwrap_or(after)
}

/// The first instant after `after` of the process's grid of `poll` moved `offset` along: work
/// on a grid of its own phase, off the instants the heartbeats are due on.
pub fn next_poll_offset(
    after: tokio::time::Instant,
    poll: Duration,
    offset: Duration,
) -> tokio::time::Instant {
    let shifted = after.checked_sub(offset).unwrap_or(after);
    let at = next_poll(shifted, poll);
    at.checked_add(offset).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(key: &str) -> (Asked, oneshot::Receiver<Result<Beaten, EtcdUnavailable>>) {
        let (answer, rx) = oneshot::channel();
        (
            Asked {
                key: key.into(),
                value: "v".into(),
                lease: 7,
                answer,
            },
            rx,
        )
    }

    #[test]
    fn a_transaction_never_writes_a_key_twice_and_holds_at_most_its_bound() {
        let keys: Vec<String> = (0..KEYS_PER_TXN.saturating_add(5))
            .map(|i| format!("k{i}"))
            .chain(["k0".to_string(), "k1".to_string(), "k0".to_string()])
            .collect();
        let all: Vec<Asked> = keys.iter().map(|k| asked(k).0).collect();
        let txns = transactions(all);
        assert_eq!(txns.iter().map(Vec::len).sum::<usize>(), keys.len());
        for txn in &txns {
            assert!(txn.len() <= KEYS_PER_TXN);
            let mut seen: Vec<&str> = txn.iter().map(|a| a.key.as_str()).collect();
            seen.sort_unstable();
            let n = seen.len();
            seen.dedup();
            assert_eq!(seen.len(), n, "a key twice in one transaction");
        }
        // The first transaction is full, and the order of asking is kept within each.
        assert_eq!(txns[0].len(), KEYS_PER_TXN);
        assert_eq!(txns[0][0].key, "k0");
        assert_eq!(txns[0][1].key, "k1");
    }

    #[tokio::test]
    async fn campaigns_of_a_process_wake_on_one_grid() {
        let poll = Duration::from_millis(100);
        // The process's grid starts at its first use.
        let _ = next_poll(tokio::time::Instant::now(), poll);
        let now = tokio::time::Instant::now();
        let first = next_poll(now, poll);
        assert!(first > now && first.duration_since(now) <= poll);
        // Whenever within the poll before it a campaign asks: the same instant.
        for before in [
            Duration::from_nanos(1),
            Duration::from_millis(1),
            Duration::from_millis(50),
            poll,
        ] {
            let asked = first.checked_sub(before).expect("within the test's clock");
            assert_eq!(next_poll(asked, poll), first, "asked {before:?} before");
        }
        // A step that started on the grid goes again a poll later.
        assert_eq!(next_poll(first, poll).duration_since(first), poll);
    }

    #[tokio::test(start_paused = true)]
    async fn an_offset_grid_keeps_its_phase_between_the_heartbeats() {
        let (second, offset) = (Duration::from_secs(1), Duration::from_millis(50));
        let ms = Duration::from_millis;
        // An instant on the process's grid (another test may have started it elsewhere).
        let base = next_poll(tokio::time::Instant::now(), second);
        let at = |d: Duration| base.checked_add(d).expect("within the test's clock");
        // Asked before the offset instant of its round: that instant; at or after it: the
        // next round's.
        assert_eq!(next_poll_offset(at(ms(10)), second, offset), at(offset));
        assert_eq!(next_poll_offset(at(ms(49)), second, offset), at(offset));
        assert_eq!(
            next_poll_offset(at(offset), second, offset),
            at(second + offset)
        );
        assert_eq!(
            next_poll_offset(at(ms(300)), second, offset),
            at(second + offset)
        );
    }
}
