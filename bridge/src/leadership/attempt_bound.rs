//! How long one etcd attempt may take: a bound that follows the cluster's speed.
//!
//! An attempt is bounded so that a dead or paused member costs little before the next one is
//! tried. A fixed bound has a cliff: an etcd that is healthy but slow — a disk whose fsync takes
//! a few hundred milliseconds makes every write and every linearizable read that slow on every
//! member — answers *no* attempt within it, and a relay that gives up every attempt never gets
//! a lease granted, a renewal or a heartbeat through: it stops leading although etcd works (and
//! the timed-out writes are applied anyway, adding to its load). Here the bound doubles, up to
//! [`MAX_RAISE`] times its floor, each time as many attempts in a row as there are endpoints
//! timed out with no answer between them — every member slow, not one member dead, whose
//! timeouts the others' answers interrupt — and halves back towards the floor after
//! [`FAST_STREAK`] answers in a row came in under a quarter of it. A pool keeps one bound per
//! kind of call: on a slow disk reads stay fast while writes wait for the fsync, and a fast read
//! must not cut the writes' bound short.
//!
//! Safety does not depend on it: a lease's fence is counted from when a renewal or heartbeat
//! was *sent*, however long its answer took.

use std::sync::Mutex;
use std::time::Duration;

/// The most the bound is raised above its floor.
pub const MAX_RAISE: u32 = 4;
/// Fast answers in a row that lower a raised bound one step.
pub const FAST_STREAK: u32 = 3;

/// What a change of the bound was, to say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundChange {
    /// Raised to the new bound: every endpoint timed out in a row.
    Raised(Duration),
    /// Lowered to the new bound: answers come fast again.
    Lowered(Duration),
}

#[derive(Debug)]
struct State {
    current: Duration,
    timeouts_in_row: usize,
    fast_in_row: u32,
}

/// One pool's attempt bound.
#[derive(Debug)]
pub struct AttemptBound {
    floor: Duration,
    endpoints: usize,
    state: Mutex<State>,
}

impl AttemptBound {
    /// A bound of `floor` for a pool of `endpoints` endpoints.
    pub fn new(floor: Duration, endpoints: usize) -> Self {
        Self {
            floor,
            endpoints: endpoints.max(1),
            state: Mutex::new(State {
                current: floor,
                timeouts_in_row: 0,
                fast_in_row: 0,
            }),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The bound of an attempt that starts now.
    pub fn current(&self) -> Duration {
        self.with(|s| s.current)
    }

    /// The highest the bound goes.
    pub fn ceiling(&self) -> Duration {
        self.floor.saturating_mul(MAX_RAISE)
    }

    /// An attempt was answered after `took`.
    pub fn answered(&self, took: Duration) -> Option<BoundChange> {
        self.with(|s| {
            s.timeouts_in_row = 0;
            if s.current <= self.floor || took.saturating_mul(4) >= s.current {
                s.fast_in_row = 0;
                return None;
            }
            s.fast_in_row = s.fast_in_row.saturating_add(1);
            if s.fast_in_row < FAST_STREAK {
                return None;
            }
            s.fast_in_row = 0;
            s.current = s.current.checked_div(2).unwrap_or_default().max(self.floor);
            Some(BoundChange::Lowered(s.current))
        })
    }

    /// An attempt timed out.
    pub fn timed_out(&self) -> Option<BoundChange> {
        let ceiling = self.ceiling();
        self.with(|s| {
            s.fast_in_row = 0;
            s.timeouts_in_row = s.timeouts_in_row.saturating_add(1);
            if s.timeouts_in_row < self.endpoints {
                return None;
            }
            s.timeouts_in_row = 0;
            let raised = s.current.saturating_mul(2).min(ceiling);
            if raised == s.current {
                return None;
            }
            s.current = raised;
            Some(BoundChange::Raised(raised))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn every_endpoint_timing_out_in_a_row_doubles_the_bound_up_to_its_ceiling() {
        let bound = AttemptBound::new(MS(300), 3);
        assert_eq!(bound.timed_out(), None);
        assert_eq!(bound.timed_out(), None);
        assert_eq!(bound.timed_out(), Some(BoundChange::Raised(MS(600))));
        assert_eq!(bound.current(), MS(600));
        for _ in 0..3 {
            bound.timed_out();
        }
        assert_eq!(bound.current(), MS(1_200));
        for _ in 0..9 {
            bound.timed_out();
        }
        assert_eq!(bound.current(), MS(1_200), "at most four times the floor");
    }

    #[test]
    fn one_dead_member_among_answering_ones_does_not_raise_it() {
        let bound = AttemptBound::new(MS(300), 3);
        for _ in 0..20 {
            assert_eq!(bound.timed_out(), None);
            assert_eq!(bound.answered(MS(5)), None);
        }
        assert_eq!(bound.current(), MS(300));
    }

    #[test]
    fn fast_answers_bring_it_back_to_the_floor_and_slow_ones_keep_it() {
        let bound = AttemptBound::new(MS(300), 3);
        for _ in 0..6 {
            bound.timed_out();
        }
        assert_eq!(bound.current(), MS(1_200));
        // An answer after 500 ms: the cluster is slow, the bound stays.
        assert_eq!(bound.answered(MS(500)), None);
        assert_eq!(bound.current(), MS(1_200));
        // One fast answer between slow ones lowers nothing.
        assert_eq!(bound.answered(MS(10)), None);
        assert_eq!(bound.answered(MS(500)), None);
        assert_eq!(bound.answered(MS(10)), None);
        assert_eq!(bound.answered(MS(10)), None);
        assert_eq!(bound.answered(MS(10)), Some(BoundChange::Lowered(MS(600))));
        for _ in 1..FAST_STREAK {
            assert_eq!(bound.answered(MS(10)), None);
        }
        assert_eq!(bound.answered(MS(10)), Some(BoundChange::Lowered(MS(300))));
        assert_eq!(bound.answered(MS(10)), None);
        assert_eq!(bound.current(), MS(300));
    }
}
