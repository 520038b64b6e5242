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

/// The last renewal of one lease: when it was asked, when it was answered, and what it gave.
type Renewal = Option<(Instant, Instant, Result<Instant, EtcdUnavailable>)>;

/// The process's lease for one etcd cluster and TTL.
#[derive(Debug, Default)]
pub struct SharedLease {
    /// The lease campaigns without one take (`None`: grant one).
    current: tokio::sync::Mutex<Option<Held>>,
    /// Each lease's last renewal, behind its own lock (renewals of different leases — a lane
    /// that resumed an older one after a restart — do not wait for each other).
    renewals: std::sync::Mutex<HashMap<i64, Arc<tokio::sync::Mutex<Renewal>>>>,
    /// Campaigns of the process that have not resigned: the last to resign revokes the leases.
    members: std::sync::atomic::AtomicUsize,
}

/// A lease not renewed for this many polls is dropped from the book.
const STALE_AFTER_POLLS: u32 = 50;

impl SharedLease {
    /// The lease of the process's campaigns for the cluster `pool` reaches, with leases of
    /// `ttl`.
    pub fn of(pool: &EtcdPool, ttl: Duration) -> Arc<Self> {
        static BOOK: ProcessBook<(Vec<String>, Duration), SharedLease> = ProcessBook::new();
        BOOK.get_or_make((pool.endpoints().to_vec(), ttl), Self::default)
    }

    /// A campaign starts using the process's lease.
    pub fn enlist(&self) {
        self.members
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// A campaign resigned; `true` for the last one (its caller revokes the leases).
    pub fn leave(&self) -> bool {
        self.members
            .fetch_update(
                std::sync::atomic::Ordering::SeqCst,
                std::sync::atomic::Ordering::SeqCst,
                |n| Some(n.saturating_sub(1)),
            )
            .is_ok_and(|before| before <= 1)
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

    /// A campaign resumed `id` after a restart (its key and lease proven, under the same TTL
    /// as configured now, since the key's value names it): the process's lease when it has
    /// none yet, so the other campaigns join it instead of granting another.
    pub async fn adopt(&self, id: i64, proven_at: Instant, granted_secs: u64) {
        let mut current = self.current.lock().await;
        if current.is_none() {
            *current = Some(Held {
                id,
                proven_at,
                granted_secs,
                granted_now: false,
            });
        }
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

    /// When the last renewal of `id` that the server answered was sent, if one of the
    /// process's elections renews it (and it was answered within the last poll's worth of
    /// renewals kept).
    pub async fn renewed(&self, id: i64) -> Option<Instant> {
        let slot = self
            .renewals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()?;
        let last = slot.lock().await;
        match &*last {
            Some((_, _, Ok(sent))) => Some(*sent),
            _ => None,
        }
    }

    /// The leases the process's campaigns used (to revoke when the last one resigns).
    pub async fn leases(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .renewals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect();
        if let Some(held) = *self.current.lock().await {
            ids.push(held.id);
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Renew `id` with `renew` and give when the renewal that answered was sent — or share a
    /// renewal of it: one still out when this asker came, or answered and asked less than a
    /// poll before it came (the campaigns wake on one grid, but a campaign's renewal falls due
    /// on every other poll, so a renewal is shared with the next poll's askers too). Only an
    /// answer is shared with askers that came after it; a failure serves those that waited for
    /// it, who would have sent the same request into the same outage.
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
        let came = Instant::now();
        // Held across the renewal: askers meanwhile wait for its answer.
        let mut last = slot.lock().await;
        if let Some((asked, answered, answer)) = &*last {
            let recent = came.saturating_duration_since(*asked) < poll;
            let waited_for_it = *answered >= came;
            if (answer.is_ok() && recent) || waited_for_it {
                pool.count_shared(multibridge_monitoring::metrics::ETCD_KEEP_ALIVE);
                return answer.clone();
            }
        }
        let asked = Instant::now();
        let answer = renew().await;
        *last = Some((asked, Instant::now(), answer.clone()));
        drop(last);
        if let Ok(sent) = answer {
            let mut current = self.current.lock().await;
            if let Some(held) = &mut *current
                && held.id == id
            {
                held.proven_at = held.proven_at.max(sent);
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
                    r.as_ref().is_some_and(|(at, _, _)| at.elapsed() < kept_for)
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
        // A resumed lease becomes the process's when it has none.
        shared.adopt(7, Instant::now(), 1).await;
        shared.adopt(9, Instant::now(), 1).await;
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
    async fn a_failed_renewal_answers_only_those_who_waited_for_it() {
        let shared = SharedLease::default();
        let pool = pool();
        let sent = AtomicUsize::new(0);
        let poll = Duration::from_millis(100);
        let fail = || async {
            sent.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Err(EtcdUnavailable {
                what: "lease keep-alive",
                endpoints: String::new(),
                last: "no answer in time".into(),
            })
        };
        let answers =
            futures::future::join_all((0..5).map(|_| shared.renew(7, poll, &pool, fail))).await;
        assert!(answers.iter().all(Result::is_err));
        assert_eq!(
            sent.load(Ordering::SeqCst),
            1,
            "the waiters shared the failure"
        );
        // An asker that comes after the failure tries again at once.
        shared.renew(7, poll, &pool, fail).await.unwrap_err();
        assert_eq!(sent.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn the_last_campaign_to_resign_is_told_so() {
        let shared = SharedLease::default();
        shared.enlist();
        shared.enlist();
        assert!(!shared.leave());
        assert!(shared.leave());
        assert!(shared.leave(), "never below zero");
    }

    #[tokio::test]
    async fn a_forgotten_lease_is_replaced_once_and_only_if_it_is_still_the_current_one() {
        let shared = SharedLease::default();
        let pool = pool();
        shared.adopt(7, Instant::now(), 1).await;
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
