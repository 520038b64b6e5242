//! Whether a chain answers the calls made to it, by every client of the chain in the process.
//!
//! What a step-down needs to know is "this replica asked the chain and got no answer for so
//! long", not "the watcher's last good probe is so old": a probe's age also counts the pause
//! between probes and the probe's own round trips, so an RPC a few hundred milliseconds away
//! crosses a 3 s bound every round with a 2 s probe interval, and one hung endpoint of several
//! holds a probe while the failover answers every other call. So the clock starts at the first
//! attempt made after the chain's last answer and stops at the next answer: a slow chain is
//! silent for its round trip, an idle one (nobody asks) for nothing, and a cut one from the
//! first attempt after the cut, whichever endpoint it goes to.
//!
//! An answer is any reply the node made: a value, or a refusal (a revert, "nonce too low");
//! a timeout, a refused connection or a retryable error is no answer.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// When the chain was last asked without answering since (shared per chain in a process).
#[derive(Debug, Default)]
pub struct Liveness(Mutex<Option<Instant>>);

impl Liveness {
    fn with<R>(&self, f: impl FnOnce(&mut Option<Instant>) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// An attempt is about to be made (starts the clock unless one already waits).
    pub fn asking(&self) {
        self.asking_at(Instant::now());
    }

    fn asking_at(&self, at: Instant) {
        self.with(|waiting| {
            waiting.get_or_insert(at);
        });
    }

    /// The chain answered an attempt: everything asked before now counts as answered (a hung
    /// attempt to one endpoint says nothing once another endpoint answered after it started).
    pub fn answered(&self) {
        self.with(|waiting| *waiting = None);
    }

    /// How long the oldest attempt made since the chain's last answer has waited; `None`: every
    /// attempt since is answered (or nothing was asked).
    pub fn silent_for(&self) -> Option<Duration> {
        self.silent_at(Instant::now())
    }

    fn silent_at(&self, now: Instant) -> Option<Duration> {
        self.with(|waiting| waiting.map(|since| now.saturating_duration_since(since)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_slow_chain_is_silent_only_for_its_round_trip() {
        let live = Liveness::default();
        let t0 = Instant::now();
        // An endpoint 400 ms away, asked every 2 s (a probe): never silent for more than 400 ms.
        for round in 0..5u64 {
            let asked = t0 + ms(2_000 * round);
            live.asking_at(asked);
            assert_eq!(live.silent_at(asked + ms(400)), Some(ms(400)));
            live.answered();
            assert_eq!(
                live.silent_at(asked + ms(1_900)),
                None,
                "idle is not silent"
            );
        }
    }

    #[test]
    fn a_cut_chain_is_silent_from_the_first_attempt_after_its_last_answer() {
        let live = Liveness::default();
        let t0 = Instant::now();
        live.asking_at(t0);
        live.answered();
        // Cut: every attempt from t0 + 1 s on waits or fails; retries do not restart the clock.
        live.asking_at(t0 + ms(1_000));
        live.asking_at(t0 + ms(1_500));
        live.asking_at(t0 + ms(2_500));
        assert_eq!(live.silent_at(t0 + ms(4_000)), Some(ms(3_000)));
        // The node answers again: not silent.
        live.answered();
        assert_eq!(live.silent_at(t0 + ms(4_100)), None);
    }

    #[test]
    fn a_hung_endpoint_does_not_silence_a_chain_another_endpoint_answers_for() {
        let live = Liveness::default();
        let t0 = Instant::now();
        // An attempt to the hung endpoint starts the clock and never returns…
        live.asking_at(t0);
        // …while the failover's next attempts, to the healthy endpoint, are answered.
        live.asking_at(t0 + ms(100));
        live.answered();
        assert_eq!(live.silent_at(t0 + ms(9_000)), None);
    }
}
