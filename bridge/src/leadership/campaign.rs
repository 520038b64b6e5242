//! One lane's election among the replicas of one operator (or, with the lane scope, among every
//! operator's replicas): compare-and-create of the leader key bound to this replica's lease,
//! lease renewals every sixth of the TTL (raced over every endpoint, retried at every poll while
//! they fail), and stepping down as soon as the lease cannot be proven. The leader key's value
//! names the replica and the URL it advertises.
//!
//! An etcd leader election (a member killed or paused, quorum intact) leaves the cluster unable
//! to renew leases for about the election timeout. A leader that could not prove its lease in
//! that time stops sending (the fence) but keeps its lease id: as soon as etcd answers again, a
//! renewal that the server grants and a leader key that still names this replica *resume* the
//! term — nobody else can have led while that key lived — instead of waiting for the old key to
//! expire on the server (which a new etcd leader postpones by a full TTL).
//!
//! etcd's election API blocks in `campaign` on a single endpoint; a transaction through the
//! endpoint pool is the same protocol (first to create the key under a live lease leads; the key
//! disappears with the lease) and survives a dead member.

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use multibridge_contracts::Lane;
use multibridge_monitoring::{LaneMetrics, Readiness};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::etcd_pool::{EtcdPool, EtcdUnavailable};
use crate::chain::fence::Fence;

/// What the leader key holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderInfo {
    /// The replica's name.
    pub replica: String,
    /// Its HTTP API URL (published in the service registry).
    pub url: String,
    /// The operator it votes for.
    pub operator: String,
}

/// Who the leader key of an election names (`None`: no leader, or a value this version cannot
/// read).
pub async fn read_leader(
    pool: &EtcdPool,
    key: &str,
) -> Result<Option<LeaderInfo>, EtcdUnavailable> {
    let value = pool.get("read leader", key).await?;
    Ok(value.and_then(|v| serde_json::from_slice(&v).ok()))
}

/// The lease a campaign holds, readable from outside its task so a stopping replica can revoke
/// it.
#[derive(Debug, Clone, Default)]
pub struct HeldLease(Arc<std::sync::Mutex<Option<i64>>>);

impl HeldLease {
    fn set(&self, lease: Option<i64>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = lease;
    }

    fn take(&self) -> Option<i64> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// How long a stopping replica tries to revoke a lease.
const RESIGN_TIMEOUT: Duration = Duration::from_secs(2);

/// Give a lane up when the replica stops: close the fence, then revoke the campaign's lease,
/// which deletes the leader key so a follower leads at its next poll instead of after the TTL.
/// Call only once nothing can broadcast any more. Best effort: if etcd cannot be reached the
/// lease simply runs out.
pub async fn resign(pool: &EtcdPool, fence: &Fence, held: &HeldLease) {
    fence.lead(false);
    fence.expire();
    let Some(lease) = held.take() else {
        return;
    };
    let revoke = pool.call("lease revoke", |mut c| async move {
        c.lease_revoke(lease).await.map(|_| ())
    });
    match tokio::time::timeout(RESIGN_TIMEOUT, revoke).await {
        Ok(Ok(())) => tracing::info!("lease revoked; a follower can lead at once"),
        Ok(Err(e)) => tracing::warn!(error = %e, "lease not revoked; it runs out by its TTL"),
        Err(_) => tracing::warn!("lease revoke timed out; it runs out by its TTL"),
    }
}

/// The readiness component of etcd.
pub const ETCD_COMPONENT: &str = "etcd";

/// One lane's campaign.
pub struct Campaign {
    /// Lane.
    pub lane: Lane,
    /// The leader key.
    pub key: String,
    /// This replica.
    pub me: LeaderInfo,
    /// Lease TTL.
    pub ttl: Duration,
    /// etcd.
    pub pool: Arc<EtcdPool>,
    /// The lane's fence (this task opens and closes it).
    pub fence: Fence,
    /// The lease this campaign holds.
    pub held: HeldLease,
    /// Leading or not, for the voter.
    pub leading: watch::Sender<bool>,
    /// The lane's metrics (`leader`, `leadership_changes_total`).
    pub metrics: LaneMetrics,
    /// Readiness (`etcd`).
    pub readiness: Arc<Readiness>,
}

/// How often a follower retries the key and a leader checks it still holds it.
fn poll_interval(ttl: Duration) -> Duration {
    ttl.checked_div(10)
        .unwrap_or_default()
        .clamp(Duration::from_millis(100), Duration::from_millis(500))
}

impl Campaign {
    fn set_leader(&self, leader: bool, why: &str) {
        if *self.leading.borrow() == leader {
            return;
        }
        self.fence.lead(leader);
        let _ = self.leading.send(leader);
        let lane = self.lane.as_str();
        self.metrics.leader.set(i64::from(leader));
        self.metrics.leadership_changes.inc();
        if leader {
            tracing::info!(%lane, key = %self.key, reason = why, "leading the lane");
        } else {
            tracing::warn!(%lane, reason = why, "stepped down");
        }
    }

    async fn grant(&self) -> Result<i64, EtcdUnavailable> {
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let sent = Instant::now();
        let id = self
            .pool
            .call("lease grant", |mut c| async move {
                Ok(c.lease_grant(ttl, None).await?.id())
            })
            .await?;
        self.fence.extend(sent, self.ttl);
        Ok(id)
    }

    /// Renew `lease`; `Ok(false)` when the server says it is gone.
    async fn renew(&self, lease: i64) -> Result<bool, EtcdUnavailable> {
        let sent = Instant::now();
        let ttl = self
            .pool
            .race(
                multibridge_monitoring::metrics::ETCD_KEEP_ALIVE,
                |mut c| async move {
                    let (mut keeper, mut stream) = c.lease_keep_alive(lease).await?;
                    keeper.keep_alive().await?;
                    Ok(stream.message().await?.map_or(0, |r| r.ttl()))
                },
            )
            .await?;
        if ttl <= 0 {
            return Ok(false);
        }
        // The server counts the TTL from when its leader handled the renewal, which is after
        // it was sent: counting from `sent` keeps this replica's view the shorter one.
        self.fence
            .extend(sent, Duration::from_secs(u64::try_from(ttl).unwrap_or(0)));
        Ok(true)
    }

    /// Try to create the leader key under `lease`; `true` when this replica now holds it.
    async fn try_lead(&self, lease: i64) -> Result<bool, EtcdUnavailable> {
        let value = serde_json::to_string(&self.me).unwrap_or_default();
        let key = self.key.clone();
        self.pool
            .call("campaign", |mut c| {
                let (key, value) = (key.clone(), value.clone());
                async move {
                    let txn = Txn::new()
                        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                        .and_then([TxnOp::put(
                            key,
                            value,
                            Some(PutOptions::new().with_lease(lease)),
                        )]);
                    Ok(c.txn(txn).await?.succeeded())
                }
            })
            .await
    }

    /// Whether the leader key names this replica *under `lease`* (a key left by an earlier
    /// process of the same replica lives on another lease, which may expire any moment).
    async fn holds(&self, lease: i64) -> Result<bool, EtcdUnavailable> {
        let key = self.key.as_str();
        let kv = self
            .pool
            .race("read leader", |mut c| async move {
                let resp = c.get(key, None).await?;
                Ok(resp
                    .kvs()
                    .first()
                    .map(|kv| (kv.value().to_vec(), kv.lease())))
            })
            .await?;
        Ok(kv.is_some_and(|(value, held_by)| {
            held_by == lease
                && serde_json::from_slice::<LeaderInfo>(&value).ok().as_ref() == Some(&self.me)
        }))
    }

    /// Run until the task is aborted.
    pub async fn run(self) {
        self.readiness.register(ETCD_COMPONENT);
        let poll = poll_interval(self.ttl);
        let renew_every = renew_interval(self.ttl);
        let mut lease: Option<i64> = None;
        let mut renewed_at = Instant::now();
        loop {
            // First, before any etcd call: a replica that wakes from a pause (its clock jumped
            // past its lease) is no leader, whatever it last believed.
            self.step_down_unless_proven();
            let step = self.step(&mut lease, &mut renewed_at, renew_every).await;
            match step {
                Ok(()) => self.readiness.ok(ETCD_COMPONENT),
                Err(e) => {
                    self.readiness.failed(ETCD_COMPONENT, &e);
                    tracing::warn!(lane = %self.lane, error = %e, "etcd unavailable");
                }
            }
            // Whatever etcd says, a lease this replica cannot prove ends its leadership (the
            // lease id is kept: a renewal the server still grants resumes the term).
            self.step_down_unless_proven();
            self.held.set(lease);
            tokio::time::sleep(poll).await;
        }
    }

    fn step_down_unless_proven(&self) {
        if !self.fence.lease_valid() {
            self.set_leader(false, "lease not proven valid by this replica's clock");
        }
    }

    async fn step(
        &self,
        lease: &mut Option<i64>,
        renewed_at: &mut Instant,
        renew_every: Duration,
    ) -> Result<(), EtcdUnavailable> {
        let id = match *lease {
            Some(id) => id,
            None => {
                let id = self.grant().await?;
                *lease = Some(id);
                *renewed_at = Instant::now();
                id
            }
        };
        // Renew when due, and at every poll while the lease is not proven (a failed renewal is
        // retried at once, not a renewal interval later).
        if renewed_at.elapsed() >= renew_every || !self.fence.lease_valid() {
            let renewed = match self.renew(id).await {
                Ok(renewed) => renewed,
                // etcd revoked the lease (it ran out while the cluster had no quorum): once this
                // replica's own clock says it is over too, take a new one. While the fence still
                // holds, the same answer from one lagging member is not believed.
                Err(e) if is_lease_gone(&e) && !self.fence.lease_valid() => false,
                Err(e) => return Err(e),
            };
            if !renewed {
                self.fence.expire();
                self.set_leader(false, "lease expired on the server");
                *lease = None;
                return Ok(());
            }
            *renewed_at = Instant::now();
        }
        if *self.leading.borrow() {
            if !self.holds(id).await? {
                self.set_leader(false, "the leader key names another replica");
            }
        } else if self.fence.lease_valid() {
            // A key that names this replica under its live lease is this replica's term (after
            // an etcd outage that outlasted the fence): resume it rather than wait for it.
            if self.holds(id).await? {
                self.set_leader(true, "resumed: the leader key and its lease are still ours");
            } else if self.try_lead(id).await? {
                self.set_leader(true, "won");
            }
        }
        Ok(())
    }
}

/// Whether etcd answered that the lease does not exist (any more).
fn is_lease_gone(error: &EtcdUnavailable) -> bool {
    error
        .to_string()
        .to_ascii_lowercase()
        .contains("lease not found")
}

/// How often a lease is renewed: a sixth of the TTL (at least every poll), so a renewal that
/// fails during an etcd leader election is retried several times before the lease runs out.
fn renew_interval(ttl: Duration) -> Duration {
    ttl.checked_div(6)
        .unwrap_or_default()
        .max(poll_interval(ttl))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_renewed_often_enough_to_survive_an_etcd_election() {
        // 3 s TTL: renewals every 500 ms, so the fence (TTL - 300 ms from the last renewal
        // sent) outlasts an etcd election of ~1.5 s by at least 700 ms.
        assert_eq!(
            renew_interval(Duration::from_secs(3)),
            Duration::from_millis(500)
        );
        assert_eq!(renew_interval(Duration::from_secs(1)).as_millis(), 166);
        assert_eq!(
            renew_interval(Duration::from_secs(60)),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn followers_poll_often_enough_for_failover_within_ttl_plus_a_second() {
        assert_eq!(
            poll_interval(Duration::from_secs(3)),
            Duration::from_millis(300)
        );
        assert_eq!(
            poll_interval(Duration::from_secs(60)),
            Duration::from_millis(500)
        );
        assert_eq!(
            poll_interval(Duration::from_secs(1)),
            Duration::from_millis(100)
        );
    }
}
