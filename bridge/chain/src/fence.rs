//! The fence a replica checks immediately before every broadcast: it may send on a lane only
//! while it leads the lane *and* its etcd lease is still valid by its own monotonic clock. The
//! clock is extended only from the instant a keep-alive was *sent* (never received), so the
//! replica's view of its lease always ends before the etcd server's does: a paused or
//! partitioned leader stops sending before a successor can be elected.
//!
//! A fence with heartbeats ([`Fence::leased_with_heartbeats`]) also needs a recent heartbeat:
//! the leader rewrites its leader key (same value, same lease) and may send only until the
//! last rewrite it saw succeed was *sent* plus the TTL less the margin. A standby that has seen
//! the key's revision unchanged for a TTL by its own clock may take the key over with a
//! compare-and-swap on that revision: every heartbeat that succeeded was sent before the
//! standby first saw the revision, so the old leader's fence closed before the takeover.

use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Why a send was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fenced {
    /// This replica does not lead the lane.
    #[error("this replica does not lead the lane")]
    NotLeader,
    /// The lease could not be proven valid by this replica's clock.
    #[error("leader lease not proven valid (expired {0:?} ago by this replica's clock)")]
    LeaseExpired(Duration),
    /// No heartbeat was proven recent enough: a standby may take the lane over.
    #[error("leader heartbeat not proven ({0:?} overdue by this replica's clock)")]
    HeartbeatOverdue(Duration),
}

#[derive(Debug)]
struct State {
    leader: bool,
    valid_until: Option<Instant>,
    /// `Some` for a fence with heartbeats: until when the last heartbeat allows sends.
    alive_until: Option<Option<Instant>>,
}

/// A lane's fence. Standalone replicas (no etcd) get one that always passes.
#[derive(Debug, Clone)]
pub struct Fence(Option<Arc<Mutex<State>>>);

/// Safety margin subtracted from the lease's validity (clock rate differences, scheduling).
pub const LEASE_MARGIN: Duration = Duration::from_millis(300);

/// Whether a lease of `ttl` whose last renewal the server answered was sent at `sent_at` is
/// still valid now, by this lease's own renewal alone (with [`LEASE_MARGIN`]).
pub fn lease_proven(sent_at: Instant, ttl: Duration) -> bool {
    sent_at
        .checked_add(ttl.saturating_sub(LEASE_MARGIN))
        .is_some_and(|until| Instant::now() < until)
}

impl Fence {
    /// Always passes: the replica runs alone.
    pub fn standalone() -> Self {
        Self(None)
    }

    /// Closed until [`lead`](Self::lead) and [`extend`](Self::extend).
    pub fn leased() -> Self {
        Self(Some(Arc::new(Mutex::new(State {
            leader: false,
            valid_until: None,
            alive_until: None,
        }))))
    }

    /// Closed until [`lead`](Self::lead), [`extend`](Self::extend) and [`beat`](Self::beat);
    /// closes again a TTL less the margin after the last heartbeat sent.
    pub fn leased_with_heartbeats() -> Self {
        Self(Some(Arc::new(Mutex::new(State {
            leader: false,
            valid_until: None,
            alive_until: Some(None),
        }))))
    }

    /// A heartbeat sent at `sent_at` succeeded; it allows sends for `ttl` less the margin.
    pub fn beat(&self, sent_at: Instant, ttl: Duration) {
        let Some(until) = sent_at.checked_add(ttl.saturating_sub(LEASE_MARGIN)) else {
            return;
        };
        self.with(|s| {
            if let Some(alive) = &mut s.alive_until {
                *alive = Some(alive.map_or(until, |v| v.max(until)));
            }
        });
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> Option<R> {
        self.0
            .as_ref()
            .map(|s| f(&mut s.lock().unwrap_or_else(|p| p.into_inner())))
    }

    /// The lease was renewed by a request sent at `sent_at` granting `ttl`.
    pub fn extend(&self, sent_at: Instant, ttl: Duration) {
        let Some(until) = sent_at.checked_add(ttl.saturating_sub(LEASE_MARGIN)) else {
            return;
        };
        self.with(|s| {
            s.valid_until = Some(s.valid_until.map_or(until, |v| v.max(until)));
        });
    }

    /// The lease is gone (expired on the server or revoked): nothing may be sent.
    pub fn expire(&self) {
        self.with(|s| {
            s.valid_until = None;
            if let Some(alive) = &mut s.alive_until {
                *alive = None;
            }
        });
    }

    /// This replica now leads (`true`) or follows (`false`).
    pub fn lead(&self, leader: bool) {
        self.with(|s| s.leader = leader);
    }

    /// Whether a send may go out now.
    pub fn check(&self) -> Result<(), Fenced> {
        self.check_at(Instant::now())
    }

    /// [`check`](Self::check) at `now`.
    pub fn check_at(&self, now: Instant) -> Result<(), Fenced> {
        self.with(|s| {
            if !s.leader {
                return Err(Fenced::NotLeader);
            }
            match s.valid_until {
                Some(until) if now < until => {}
                Some(until) => {
                    return Err(Fenced::LeaseExpired(now.saturating_duration_since(until)));
                }
                None => return Err(Fenced::LeaseExpired(Duration::ZERO)),
            }
            match s.alive_until {
                None => Ok(()),
                Some(Some(until)) if now < until => Ok(()),
                Some(Some(until)) => Err(Fenced::HeartbeatOverdue(
                    now.saturating_duration_since(until),
                )),
                Some(None) => Err(Fenced::HeartbeatOverdue(Duration::ZERO)),
            }
        })
        .unwrap_or(Ok(()))
    }

    /// How much longer the lease is valid by this replica's clock (zero when it is not;
    /// `Duration::MAX` for a standalone replica).
    pub fn remaining(&self) -> Duration {
        self.with(|s| {
            s.valid_until.map_or(Duration::ZERO, |u| {
                u.saturating_duration_since(Instant::now())
            })
        })
        .unwrap_or(Duration::MAX)
    }

    /// How much longer a send may go out with no further renewal or heartbeat: zero exactly
    /// when [`check`](Self::check) refuses now (`Duration::MAX` for a standalone replica).
    pub fn open_for(&self) -> Duration {
        let now = Instant::now();
        self.with(|s| {
            if !s.leader {
                return Duration::ZERO;
            }
            let lease = s
                .valid_until
                .map_or(Duration::ZERO, |u| u.saturating_duration_since(now));
            match s.alive_until {
                None => lease,
                Some(alive) => {
                    lease.min(alive.map_or(Duration::ZERO, |u| u.saturating_duration_since(now)))
                }
            }
        })
        .unwrap_or(Duration::MAX)
    }

    /// Whether the lease is valid now (leading or not).
    pub fn lease_valid(&self) -> bool {
        self.with(|s| s.valid_until.is_some_and(|u| Instant::now() < u))
            .unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_proven_by_its_own_renewal_only_within_its_ttl_less_the_margin() {
        let ttl = Duration::from_secs(1);
        let now = Instant::now();
        assert!(lease_proven(now, ttl));
        assert!(!lease_proven(now - ttl, ttl), "renewed a TTL ago");
        assert!(
            !lease_proven(now - (ttl - LEASE_MARGIN), ttl),
            "within the margin of its end"
        );
        assert!(lease_proven(now - ttl / 2, ttl));
    }

    #[test]
    fn a_fence_is_open_for_the_lesser_of_its_lease_and_its_heartbeat_and_only_while_leading() {
        assert_eq!(Fence::standalone().open_for(), Duration::MAX);
        let fence = Fence::leased_with_heartbeats();
        let now = Instant::now();
        fence.extend(now, Duration::from_secs(3));
        fence.beat(now, Duration::from_secs(2));
        assert_eq!(fence.open_for(), Duration::ZERO, "not leading");
        assert!(fence.check().is_err());
        fence.lead(true);
        assert!(fence.check().is_ok());
        let open = fence.open_for();
        assert!(open <= Duration::from_millis(1_700) && open > Duration::from_millis(1_500));
        fence.beat(now, Duration::from_secs(10));
        assert!(fence.open_for() <= Duration::from_millis(2_700));
        assert!(fence.open_for() > Duration::from_millis(2_500));
        fence.expire();
        assert_eq!(fence.open_for(), Duration::ZERO);
        assert!(fence.check().is_err());
    }

    #[test]
    fn the_remaining_validity_counts_down_from_the_renewal_and_is_zero_once_expired() {
        let fence = Fence::leased();
        assert_eq!(fence.remaining(), Duration::ZERO);
        fence.extend(Instant::now(), Duration::from_secs(3));
        let left = fence.remaining();
        assert!(left > Duration::from_millis(2_600) && left <= Duration::from_millis(2_700));
        fence.expire();
        assert_eq!(fence.remaining(), Duration::ZERO);
        assert_eq!(Fence::standalone().remaining(), Duration::MAX);
    }

    #[test]
    fn standalone_always_passes() {
        assert_eq!(Fence::standalone().check(), Ok(()));
    }

    #[test]
    fn a_leader_may_send_only_within_its_lease_by_its_own_clock() {
        let fence = Fence::leased();
        let t0 = Instant::now();
        assert_eq!(fence.check_at(t0), Err(Fenced::NotLeader));
        fence.lead(true);
        assert!(matches!(fence.check_at(t0), Err(Fenced::LeaseExpired(_))));
        fence.extend(t0, Duration::from_secs(3));
        assert_eq!(fence.check_at(t0 + Duration::from_millis(2_600)), Ok(()));
        // The margin is taken off the TTL counted from the send instant.
        assert!(fence.check_at(t0 + Duration::from_millis(2_800)).is_err());
        // An older renewal never shortens a newer one.
        fence.extend(t0 + Duration::from_secs(2), Duration::from_secs(3));
        fence.extend(t0, Duration::from_secs(3));
        assert_eq!(fence.check_at(t0 + Duration::from_millis(4_500)), Ok(()));
        fence.lead(false);
        assert_eq!(fence.check_at(t0), Err(Fenced::NotLeader));
        fence.lead(true);
        fence.expire();
        assert!(fence.check_at(t0).is_err());
    }

    #[test]
    fn with_heartbeats_a_leader_needs_both_a_valid_lease_and_a_recent_heartbeat() {
        let fence = Fence::leased_with_heartbeats();
        let t0 = Instant::now();
        fence.lead(true);
        fence.extend(t0, Duration::from_secs(1));
        // A lease alone is not enough.
        assert!(matches!(
            fence.check_at(t0),
            Err(Fenced::HeartbeatOverdue(_))
        ));
        fence.beat(t0, Duration::from_secs(1));
        assert_eq!(fence.check_at(t0 + Duration::from_millis(600)), Ok(()));
        // The heartbeat closes the fence a TTL less the margin after it was sent, even while
        // the lease is renewed.
        fence.extend(t0 + Duration::from_millis(500), Duration::from_secs(1));
        assert!(matches!(
            fence.check_at(t0 + Duration::from_millis(750)),
            Err(Fenced::HeartbeatOverdue(_))
        ));
        // A later heartbeat opens it again; an older one never shortens it.
        fence.beat(t0 + Duration::from_millis(400), Duration::from_secs(1));
        fence.beat(t0, Duration::from_secs(1));
        assert_eq!(fence.check_at(t0 + Duration::from_millis(1_050)), Ok(()));
        // The lease still bounds it: the heartbeat alone is not enough either.
        assert!(matches!(
            fence.check_at(t0 + Duration::from_millis(1_250)),
            Err(Fenced::LeaseExpired(_))
        ));
        // Expiry forgets both.
        fence.extend(t0 + Duration::from_secs(1), Duration::from_secs(1));
        fence.expire();
        fence.extend(t0 + Duration::from_secs(1), Duration::from_secs(1));
        assert!(matches!(
            fence.check_at(t0 + Duration::from_millis(1_100)),
            Err(Fenced::HeartbeatOverdue(_))
        ));
        // The lease's validity, which the campaign reasons with, ignores the heartbeat.
        assert!(fence.lease_valid() || Instant::now() >= t0 + Duration::from_millis(1_700));
    }
}
