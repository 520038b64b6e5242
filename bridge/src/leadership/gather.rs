//! What the tasks of a process ask of etcd within a moment of each other, gathered for one
//! transaction (issue 54): the heartbeats of its lane leaders
//! ([`heartbeats`](super::heartbeats)), the backup state of its lanes
//! ([`state_reads`](crate::backup::state_reads)).
//!
//! The first asker of a gathering starts its collector; the collector waits a short window for
//! the others, takes what was asked, and sends it. Asks that come after the take start the next
//! gathering. The flag that a collector runs is cleared exactly once: when the collector takes
//! the gathering, or when it is dropped before it did (a runtime stopping), so the next asker
//! starts one.

use std::sync::Mutex;
use std::time::Duration;

/// The asks of one gathering.
#[derive(Debug)]
pub struct Gathering<T> {
    state: Mutex<State<T>>,
}

#[derive(Debug)]
struct State<T> {
    asked: Vec<T>,
    /// A collector waits out its window and will take `asked`.
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
    /// Add `one`; whether the caller is to start the collector (none runs).
    pub fn ask(&self, one: T) -> bool {
        let mut state = self.lock();
        state.asked.push(one);
        !std::mem::replace(&mut state.collecting, true)
    }

    /// The collector's part: wait `window`, then take everything asked.
    pub async fn collect(&self, window: Duration) -> Vec<T> {
        // Dropped unsent (the runtime stops): the next asker starts a collector, which takes
        // what is queued.
        let guard = Collecting {
            gathering: self,
            armed: true,
        };
        tokio::time::sleep(window).await;
        guard.take()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Clears `collecting` when the collector is dropped before it took the gathering.
struct Collecting<'a, T> {
    gathering: &'a Gathering<T>,
    /// Not taken yet: the flag is this collector's to clear.
    armed: bool,
}

impl<T> Collecting<'_, T> {
    fn take(mut self) -> Vec<T> {
        let mut state = self.gathering.lock();
        state.collecting = false;
        // Cleared here, under the lock: not again on drop (a new collector may run by then).
        self.armed = false;
        std::mem::take(&mut state.asked)
    }
}

impl<T> Drop for Collecting<'_, T> {
    fn drop(&mut self) {
        if self.armed {
            self.gathering.lock().collecting = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_first_asker_collects_and_the_flag_clears_once() {
        let gathering = Gathering::default();
        assert!(gathering.ask(1), "the first asker starts the collector");
        assert!(!gathering.ask(2), "a collector runs");
        let taken = gathering.collect(Duration::from_millis(2)).await;
        assert_eq!(taken, vec![1, 2]);
        assert!(gathering.ask(3), "taken: the next asker starts one");
        // A collector dropped before it took anything clears the flag.
        {
            let collect = gathering.collect(Duration::from_secs(1));
            futures::pin_mut!(collect);
            assert!(futures::poll!(collect.as_mut()).is_pending());
        }
        assert!(gathering.ask(4), "the dropped collector cleared the flag");
        assert_eq!(gathering.collect(Duration::ZERO).await, vec![3, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_taken_collector_does_not_clear_a_newer_ones_flag() {
        let gathering = Gathering::default();
        assert!(gathering.ask(1));
        let guard = Collecting {
            gathering: &gathering,
            armed: true,
        };
        let taken = guard.take();
        assert_eq!(taken, vec![1]);
        assert!(gathering.ask(2), "the next gathering's collector");
        assert!(
            !gathering.ask(3),
            "still running: the taken guard did not clear it"
        );
    }
}
