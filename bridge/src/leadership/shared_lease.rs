//! One etcd lease for every election of a process (issue 54).
//!
//! Each election held a lease of its own, renewed a sixth of the TTL apart: a process serving a
//! hub of 32 service chains renewed 65 leases six times a second (384 keep-alive streams a
//! second at a 1 s TTL, each a request etcd's raft leader handles), and on a loaded single
//! member those renewals timed out and the leaders stepped down by the hundreds. Here the
//! campaigns of a process (per etcd endpoint list and TTL) share one lease, as etcd's own
//! sessions do: the first campaign that needs one grants it and the others take it; a renewal
//! is sent for all of them at once — the campaigns poll on one grid, and a renewal of the same
//! lease sent at most half a poll ago (or still out) answers the others — so the process
//! renews one lease whatever the number of its elections.
//!
//! What each campaign does with a shared answer stays as safe as with its own: its fence is
//! extended from the instant the renewal (or grant) was *sent*, and a renewal of the lease its
//! key lives under sent at that instant proves the key lived until then plus the TTL, whichever
//! campaign asked for it. A lane that stops leading releases its key and keeps the lease (its
//! other lanes live under it); the lease is revoked only when the process stops, after every
//! key was released. A lease the server says is gone is replaced once, for every campaign: the
//! first to see it gone with its own fence closed forgets it, and the next asker grants anew.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use multibridge_chain::shared_reads::ProcessBook;

use super::etcd_pool::{EtcdPool, EtcdUnavailable};

/// A lease the process's campaigns hold, as a campaign takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The lease.
    pub id: i64,
    /// When the last grant or renewal of it that the server answered was sent.
    pub proven_at: Instant,
    /// The TTL the server granted, seconds.
    pub granted_secs: u64,
    /// Granted for this asker (`false`: taken from the process's lease).
    pub granted_now: bool,
}

/// The last renewal of one lease: when it was sent and what it gave.
type Renewal = Option<(Instant, Result<Instant, EtcdUnavailable>)>;

/// The process's lease for one etcd cluster and TTL.
#[derive(Debug, Default)]
pub struct SharedLease {
    /// The lease campaigns without one take (`None`: grant one).
    current: tokio::sync::Mutex<Option<Held>>,
    /// Each lease's last renewal, behind its own lock (renewals of different leases — a lane
    /// that resumed an older one after a restart — do not wait for each other).
    renewals: std::sync::Mutex<HashMap<i64, Arc<tokio::sync::Mutex<Renewal>>>>,
}

/// A renewal's answer serves the askers that come within the poll divided by this after it
/// was asked (the campaigns of a process wake at the same instant of their grid).
const SHARED_FOR_POLLS: u32 = 2;
/// A lease not renewed for this many polls is dropped from the book.
const STALE_AFTER_POLLS: u32 = 50;

impl SharedLease {
    /// The lease of the process's campaigns for the cluster `pool` reaches, with leases of
    /// `ttl`.
    pub fn of(pool: &EtcdPool, ttl: Duration) -> Arc<Self> {
        static BOOK: ProcessBook<(Vec<String>, Duration), SharedLease> = ProcessBook::new();
        BOOK.get_or_make((pool.endpoints().to_vec(), ttl), Self::default)
    }

    /// The process's lease, granted (through `pool`, with `ttl`) when there is none; askers
    /// meanwhile wait for that grant instead of sending theirs.
    pub async fn take(&self, pool: &EtcdPool, ttl: Duration) -> Result<Held, EtcdUnavailable> {
        let mut current = self.current.lock().await;
        if let Some(held) = *current {
            return Ok(Held {
                granted_now: false,
                ..held
            });
        }
        let secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        let sent = Instant::now();
        let (id, granted) = pool
            .call("lease grant", |mut c| async move {
                let resp = c.lease_grant(secs, None).await?;
                Ok((resp.id(), resp.ttl()))
            })
            .await?;
        let held = Held {
            id,
            proven_at: sent,
            granted_secs: u64::try_from(granted).unwrap_or(0),
            granted_now: true,
        };
        *current = Some(held);
        Ok(held)
    }

    /// The server said `id` is gone and the asker's own clock agrees: the next asker grants a
    /// new lease (unless another already replaced it).
    pub async fn forget(&self, id: i64) {
        let mut current = self.current.lock().await;
        if current.is_some_and(|held| held.id == id) {
            *current = None;
        }
        self.renewals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    /// Renew `id` with `renew` — or take the answer of a renewal of it asked less than half a
    /// poll ago, or still out — and give when the renewal that answered was sent. A lease nobody held yet (one a lane resumed after a restart) becomes
    /// the process's lease when renewed.
    pub async fn renew<F, Fut>(
        &self,
        id: i64,
        poll: Duration,
        pool: &EtcdPool,
        renew: F,
    ) -> Result<Instant, EtcdUnavailable>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Instant, EtcdUnavailable>>,
    {
        let slot = self
            .renewals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id)
            .or_default()
            .clone();
        // Held across the renewal: askers meanwhile wait for its answer.
        let mut last = slot.lock().await;
        let shared_for = poll.checked_div(SHARED_FOR_POLLS).unwrap_or_default();
        if let Some((asked, answer)) = &*last
            && asked.elapsed() < shared_for
        {
            pool.count_shared(multibridge_monitoring::metrics::ETCD_KEEP_ALIVE);
            return answer.clone();
        }
        let asked = Instant::now();
        let answer = renew().await;
        *last = Some((asked, answer.clone()));
        drop(last);
        if let Ok(sent) = answer {
            let mut current = self.current.lock().await;
            match &mut *current {
                Some(held) if held.id == id => held.proven_at = held.proven_at.max(sent),
                Some(_) => {}
                None => {
                    *current = Some(Held {
                        id,
                        proven_at: sent,
                        granted_secs: 0,
                        granted_now: false,
                    });
                }
            }
        }
        // Leases no longer renewed (replaced, or resumed by a lane that has moved on) are
        // dropped from the book.
        let kept_for = poll.saturating_mul(STALE_AFTER_POLLS);
        self.renewals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, slot| {
                // One in use (locked) is kept.
                slot.try_lock().map_or(true, |r| {
                    r.as_ref().is_some_and(|(at, _)| at.elapsed() < kept_for)
                })
            });
        answer
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use multibridge_contracts::Lane;
    use multibridge_monitoring::Metrics;

    use super::*;

    fn pool() -> EtcdPool {
        let metrics = Metrics::new(&Lane::ALL, 1).unwrap();
        EtcdPool::new(
            vec!["http://127.0.0.1:1".into()],
            Duration::from_millis(100),
            metrics.etcd(),
        )
    }

    #[tokio::test]
    async fn campaigns_polling_together_send_one_renewal_and_a_later_poll_sends_another() {
        let shared = SharedLease::default();
        let pool = pool();
        let sent = AtomicUsize::new(0);
        let poll = Duration::from_millis(100);
        let renew = || async {
            sent.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(Instant::now())
        };
        let answers =
            futures::future::join_all((0..40).map(|_| shared.renew(7, poll, &pool, renew))).await;
        assert_eq!(
            sent.load(Ordering::SeqCst),
            1,
            "one renewal for 40 campaigns"
        );
        let first = answers[0].clone().unwrap();
        assert!(answers.iter().all(|a| a.as_ref().ok() == Some(&first)));
        // A resumed lease nobody held becomes the process's.
        assert_eq!(
            shared.take(&pool, Duration::from_secs(1)).await.unwrap().id,
            7
        );
        tokio::time::sleep(poll).await;
        shared.renew(7, poll, &pool, renew).await.unwrap();
        assert_eq!(sent.load(Ordering::SeqCst), 2, "the next poll renews again");
        // Another lease is renewed on its own.
        shared.renew(8, poll, &pool, renew).await.unwrap();
        assert_eq!(sent.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_forgotten_lease_is_replaced_once_and_only_if_it_is_still_the_current_one() {
        let shared = SharedLease::default();
        let pool = pool();
        let poll = Duration::from_millis(100);
        shared
            .renew(7, poll, &pool, || async { Ok(Instant::now()) })
            .await
            .unwrap();
        // Forgetting another lease keeps the current one.
        shared.forget(9).await;
        assert_eq!(
            shared.take(&pool, Duration::from_secs(1)).await.unwrap().id,
            7
        );
        shared.forget(7).await;
        // No current lease: a grant is needed, which this pool (no etcd) cannot give.
        let grant = tokio::time::timeout(
            Duration::from_secs(5),
            shared.take(&pool, Duration::from_secs(1)),
        )
        .await
        .expect("the grant gave up in time");
        assert!(grant.is_err(), "granted without etcd: {grant:?}");
    }
}
