//! What the tasks of a process ask of etcd within a moment of each other, gathered for one
//! transaction (issue 54): the heartbeats of its lane leaders
//! ([`heartbeats`](super::heartbeats)), the backup state of its lanes
//! ([`state_reads`](crate::backup::state_reads)).
//!
//! The first asker of a gathering gets its [`Collector`] and spawns it; the collector waits a
//! short window for the others, takes what was asked, and sends it. Asks that come after the
//! take start the next gathering. The flag that a collector runs is cleared exactly once: when
//! the collector takes the gathering, or when it is dropped before it did — also before it
//! first ran (a runtime stopping drops spawned tasks unpolled) — and then what was asked is
//! dropped with it, so its askers are answered (their answer channels close) instead of waiting
//! for a collector that never comes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The asks of one gathering.
#[derive(Debug)]
pub struct Gathering<T> {
    state: Mutex<State<T>>,
}

#[derive(Debug)]
struct State<T> {
    asked: Vec<T>,
    /// A collector exists and will take `asked`.
    collecting: bool,
}

impl<T> Default for Gathering<T> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                asked: Vec::new(),
                collecting: false,
            }),
        }
    }
}

impl<T> Gathering<T> {
    /// Add `one`; the collector to spawn when none exists.
    pub fn ask(self: &Arc<Self>, one: T) -> Option<Collector<T>> {
        let mut state = self.lock();
        state.asked.push(one);
        (!std::mem::replace(&mut state.collecting, true)).then(|| Collector {
            gathering: Arc::clone(self),
            armed: true,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The one collector of a gathering: built under the lock that set the flag, so even one
/// dropped before it first ran clears it.
#[derive(Debug)]
pub struct Collector<T> {
    gathering: Arc<Gathering<T>>,
    /// Not taken yet: the flag is this collector's to clear.
    armed: bool,
}

impl<T> Collector<T> {
    /// Wait `window`, then take everything asked.
    pub async fn collect(mut self, window: Duration) -> Vec<T> {
        tokio::time::sleep(window).await;
        let mut state = self.gathering.lock();
        state.collecting = false;
        // Cleared here, under the lock: not again on drop (a new collector may exist by then).
        self.armed = false;
        std::mem::take(&mut state.asked)
    }
}

impl<T> Drop for Collector<T> {
    fn drop(&mut self) {
        if self.armed {
            let dropped = {
                let mut state = self.gathering.lock();
                state.collecting = false;
                std::mem::take(&mut state.asked)
            };
            // Outside the lock: dropping an ask may run its answer channel's wake-up.
            drop(dropped);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_first_asker_collects_and_the_flag_clears_once() {
        let gathering = Arc::new(Gathering::default());
        let collector = gathering
            .ask(1)
            .expect("the first asker gets the collector");
        assert!(gathering.ask(2).is_none(), "a collector exists");
        assert_eq!(
            collector.collect(Duration::from_millis(2)).await,
            vec![1, 2]
        );
        let next = gathering.ask(3).expect("taken: the next asker gets one");
        assert!(gathering.ask(4).is_none());
        assert_eq!(next.collect(Duration::ZERO).await, vec![3, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_collector_dropped_before_it_ran_answers_its_askers_and_clears_the_flag() {
        let gathering = Arc::new(Gathering::default());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let collector = gathering.ask(tx).expect("first");
        // Spawned and dropped unpolled (its runtime stopping), or dropped mid-wait.
        drop(collector);
        assert!(
            rx.await.is_err(),
            "the asker is answered: its channel closed"
        );
        let (tx, _rx) = tokio::sync::oneshot::channel::<()>();
        assert!(gathering.ask(tx).is_some(), "the flag was cleared");

        let gathering = Arc::new(Gathering::default());
        let collector = gathering.ask(1).expect("first");
        {
            let collect = collector.collect(Duration::from_secs(1));
            futures::pin_mut!(collect);
            assert!(futures::poll!(collect.as_mut()).is_pending());
        }
        assert!(
            gathering.ask(2).is_some(),
            "a collector dropped mid-wait cleared it"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_taken_collector_does_not_clear_a_newer_ones_flag() {
        let gathering = Arc::new(Gathering::default());
        let first = gathering.ask(1).expect("first");
        assert_eq!(first.collect(Duration::ZERO).await, vec![1]);
        let _second = gathering.ask(2).expect("the next gathering's collector");
        assert!(
            gathering.ask(3).is_none(),
            "still there: the taken collector did not clear it"
        );
    }
}
