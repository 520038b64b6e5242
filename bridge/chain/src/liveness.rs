//! Whether a chain answers the calls made to it, by every client of the chain in the process.
//!
//! What a step-down needs to know is "this replica asked the chain and got no answer for so
//! long", not "the watcher's last good probe is so old": a probe's age also counts the pause
//! between probes and the probe's own round trips, so an RPC a few hundred milliseconds away
//! crosses a 3 s bound every round with a 2 s probe interval, and one hung endpoint of several
//! holds a probe while the failover answers every other call.
//!
//! So the chain is silent while it owes an answer, since its last one (or since it was first
//! asked after that, if nothing was waiting in between):
//! - an attempt in flight owes one from when it started, until any answer comes; and an attempt
//!   to one endpoint owes nothing at all once another endpoint answered after it started (one
//!   hung endpoint of several is no silence, however quiet the chain is otherwise: on a chain
//!   of 12 s blocks nothing else may ask for longer than the step-down bound);
//! - a failed attempt (a timeout, a refused connection, a retryable error) owes one until the
//!   next answer, so retries do not restart the clock;
//! - an attempt its caller dropped (a timeout of its own, a closed dashboard request) owes
//!   nothing once dropped.
//!
//! A slow chain is then silent for about its round trip, an idle one (nobody asks) not at all,
//! and a cut one from its last answer, or from the first attempt after the cut.
//!
//! An answer is any reply the node made: a value, or a refusal (a revert, "nonce too low").

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::shared_reads::ProcessBook;

/// The liveness of chain `chain_id` for the whole process, alive while somebody holds it: every
/// pair of a hub that reaches the chain feeds the one its election reads (a chain's election
/// rules every pair's lanes into it), and a pair restarted after a failure feeds the liveness
/// the election still holds instead of a new one nobody reads.
pub fn of(chain_id: u64) -> Arc<Liveness> {
    static BOOK: ProcessBook<u64, Liveness> = ProcessBook::new();
    BOOK.get_or_make(chain_id, Liveness::default)
}

/// Whether a chain owes the process an answer, and since when (shared per chain in a process).
#[derive(Debug, Default)]
pub struct Liveness(Mutex<State>);

#[derive(Debug, Default)]
struct State {
    /// The next attempt's id.
    next_id: u64,
    /// Attempts started and not yet ended: id → (started, endpoint).
    in_flight: BTreeMap<u64, (Instant, EndpointKey)>,
    /// Each endpoint's last answer (as many entries as the chain has endpoints).
    answered_by: HashMap<EndpointKey, Instant>,
    /// The chain's last answer.
    last_answer: Option<Instant>,
    /// The start of the first attempt that failed since the last answer.
    failed_since: Option<Instant>,
}

/// An endpoint, by its label (clients of one chain in a process may list its endpoints in
/// another order).
type EndpointKey = u64;

fn endpoint_key(label: &str) -> EndpointKey {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    label.hash(&mut hasher);
    hasher.finish()
}

impl State {
    /// When the silence began at the latest: `since`, or the last answer if after it.
    fn after_answer(&self, since: Instant) -> Instant {
        self.last_answer.map_or(since, |answer| answer.max(since))
    }

    /// Whether an attempt to `endpoint` started at `started` is answered for by another
    /// endpoint that answered after it started.
    fn excused(&self, started: Instant, endpoint: EndpointKey) -> bool {
        self.answered_by
            .iter()
            .any(|(other, at)| *other != endpoint && *at > started)
    }
}

/// One attempt: end it with [`Attempt::answered`] or [`Attempt::failed`]; dropped without
/// either (its caller gave up), it owes nothing.
#[derive(Debug)]
pub struct Attempt<'a> {
    liveness: &'a Liveness,
    id: u64,
    started: Instant,
    endpoint: EndpointKey,
}

impl Attempt<'_> {
    /// The chain answered it (a value or a refusal).
    pub fn answered(self) {
        let endpoint = self.endpoint;
        self.liveness.with(|s| {
            let now = Instant::now();
            s.last_answer = Some(now);
            s.answered_by.insert(endpoint, now);
            s.failed_since = None;
        });
    }

    /// It got no answer (timed out, refused, a retryable error).
    pub fn failed(self) {
        let started = self.started;
        self.liveness.with(|s| {
            if s.last_answer.is_none_or(|answer| answer < started) {
                s.failed_since.get_or_insert(started);
            }
        });
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let id = self.id;
        self.liveness.with(|s| {
            s.in_flight.remove(&id);
        });
    }
}

impl Liveness {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// An attempt to the endpoint labelled `endpoint` starts now.
    pub fn asking(&self, endpoint: &str) -> Attempt<'_> {
        self.asking_at(endpoint, Instant::now())
    }

    fn asking_at(&self, endpoint: &str, at: Instant) -> Attempt<'_> {
        let endpoint = endpoint_key(endpoint);
        let id = self.with(|s| {
            let id = s.next_id;
            s.next_id = s.next_id.wrapping_add(1);
            s.in_flight.insert(id, (at, endpoint));
            id
        });
        Attempt {
            liveness: self,
            id,
            started: at,
            endpoint,
        }
    }

    /// How long the chain has owed an answer; `None`: it owes none.
    pub fn silent_for(&self) -> Option<Duration> {
        self.silent_at(Instant::now())
    }

    fn silent_at(&self, now: Instant) -> Option<Duration> {
        self.with(|s| {
            // Owed since the earlier of the call out longest that no other endpoint answered
            // for, and the first failure.
            let owed = s
                .in_flight
                .values()
                .filter(|(started, endpoint)| !s.excused(*started, *endpoint))
                .map(|(started, _)| *started)
                .min();
            owed.into_iter()
                .chain(s.failed_since)
                .map(|since| s.after_answer(since))
                .min()
                .map(|since| now.saturating_duration_since(since))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// An attempt that started at `at`, answered now (its answer time is the real clock, so
    /// the tests read silence at instants after it).
    fn answered_at(live: &Liveness, at: Instant) {
        live.asking_at(A, at).answered();
    }

    /// Two endpoints of one chain.
    const A: &str = "#0 a";
    const B: &str = "#1 b";

    #[test]
    fn a_slow_chain_is_silent_only_for_its_round_trip_and_an_idle_one_not_at_all() {
        let live = Liveness::default();
        let t0 = Instant::now();
        let attempt = live.asking_at(A, t0);
        assert_eq!(live.silent_at(t0 + ms(400)), Some(ms(400)));
        attempt.answered();
        let later = Instant::now() + ms(5_000);
        assert_eq!(live.silent_at(later), None, "idle is not silent");
        // Asked again long after: silent from the ask, not from the last answer.
        let attempt = live.asking_at(A, later);
        assert_eq!(live.silent_at(later + ms(300)), Some(ms(300)));
        attempt.answered();
        assert_eq!(live.silent_at(later + ms(400)), None);
    }

    #[test]
    fn a_refused_chain_stays_silent_across_retries_until_it_answers() {
        let live = Liveness::default();
        let t0 = Instant::now() + ms(1_000);
        for k in 0..5u64 {
            live.asking_at(A, t0 + ms(500 * k)).failed();
        }
        assert_eq!(live.silent_at(t0 + ms(3_000)), Some(ms(3_000)));
        answered_at(&live, t0 + ms(3_100));
        assert_eq!(live.silent_at(Instant::now()), None);
    }

    #[test]
    fn a_cut_with_calls_in_flight_counts_from_the_last_answer() {
        let live = Liveness::default();
        let t0 = Instant::now();
        // Two calls out; one is answered, the other hangs when the chain is cut after it.
        let hung = live.asking_at(A, t0);
        answered_at(&live, t0);
        let answer = Instant::now();
        let silent = live.silent_at(answer + ms(3_000)).expect("a call is out");
        assert!(
            silent >= ms(3_000) && silent < ms(3_100),
            "the hung call owes an answer since the chain's last one: {silent:?}"
        );
        drop(hung);
        assert_eq!(live.silent_at(answer + ms(3_000)), None);
    }

    #[test]
    fn a_call_its_caller_dropped_owes_nothing() {
        let live = Liveness::default();
        let t0 = Instant::now();
        drop(live.asking_at(A, t0));
        assert_eq!(live.silent_at(t0 + ms(10_000)), None);
    }

    #[test]
    fn a_hung_endpoint_does_not_silence_a_chain_another_endpoint_answers_for() {
        let live = Liveness::default();
        let t0 = Instant::now();
        // An attempt to the hung endpoint stays out…
        let _hung = live.asking_at(B, t0);
        // …while the failover's next attempt, to the healthy endpoint, is answered; then
        // nobody asks (a quiet chain) for longer than any step-down bound.
        answered_at(&live, t0 + ms(100));
        let answer = Instant::now();
        assert_eq!(live.silent_at(answer + ms(200)), None);
        assert_eq!(live.silent_at(answer + ms(10_000)), None);
        // The healthy endpoint is cut too: its next attempt owes from its start.
        let cut = answer + ms(500);
        let _out = live.asking_at(A, cut);
        assert_eq!(live.silent_at(cut + ms(3_000)), Some(ms(3_000)));
    }

    #[test]
    fn one_liveness_per_chain_while_somebody_holds_it() {
        let held = of(7_000_001);
        assert!(Arc::ptr_eq(&held, &of(7_000_001)));
        assert!(!Arc::ptr_eq(&held, &of(7_000_002)));
        // An election that still holds it sees what a restarted pair's new client feeds.
        drop(of(7_000_001).asking(A));
        let fed = of(7_000_001);
        fed.asking(A).failed();
        assert!(held.silent_for().is_some());
    }

    #[test]
    fn a_failure_before_the_last_answer_is_forgotten() {
        let live = Liveness::default();
        let t0 = Instant::now();
        let early = live.asking_at(A, t0);
        answered_at(&live, t0);
        // The early attempt fails after the answer: it started before it, so says nothing.
        early.failed();
        assert_eq!(live.silent_at(Instant::now() + ms(5_000)), None);
    }
}
