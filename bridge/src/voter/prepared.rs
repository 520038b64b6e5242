//! Votes planned before their requests are final (issue 54).
//!
//! At a block every lane of a chain reacts at once: on a hub's main chain, every pair's voter
//! pre-checks, estimates and sends in the same instant, and each of those calls waits behind
//! all the others. The estimate need not be made then. A caught-up indexer publishes the
//! requests of the block the next head confirms ([`Upcoming`]), read from the newest blocks'
//! events that every reader of the chain in the process shares. Between blocks, the voter plans
//! the vote transactions it would send for them — the same batches, the same calldata — and
//! keeps their gas estimates ([`PreparedPlans`]). Once the block is final and its requests are
//! stored and pre-checked, a vote whose calldata and entry point match a prepared one byte for
//! byte is sent with that estimate.
//!
//! Nothing else is taken from the early read. The requests voted are the stored ones, read at
//! the confirmation depth (by the log quorum where one is set), and the pre-check runs as
//! always. An early read that a reorg replaced, or that a lying endpoint made up, plans calldata
//! that nothing stored matches: a wasted estimate, never a vote.
//!
//! A gas limit a block old is as safe as a fresh one. It covers the simulation plus the margin
//! and the worst case of one item, whatever a recipient does. An item that does not fit is
//! skipped by the bridge, never run out of gas (`GasPlan`). A plan is used at most
//! [`PREPARED_FRESH_FOR`] after it was made.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::primitives::{B256, Bytes, keccak256};
use multibridge_contracts::Request;

use super::Entry;

/// How long after the requests are published the voter plans their votes: past the moment the
/// block came, when every lane of the chain reacts to it.
pub const PREPARE_AFTER: Duration = Duration::from_millis(250);

/// No plan is made this close to the block that confirms the requests (it would be made in the
/// same instant as the votes it is meant to spare).
pub const PREPARE_MARGIN: Duration = Duration::from_millis(100);

/// An indexer publishes requests only on a chain whose next block is due within this long:
/// a plan must still be fresh when the block comes.
pub const PUBLISH_WITHIN: Duration = Duration::from_millis(2_500);

/// Whether a block due in `due_in` leaves time to plan its votes ahead: not past
/// [`PUBLISH_WITHIN`], and beyond [`PREPARE_AFTER`] and [`PREPARE_MARGIN`] (on a faster chain no
/// plan could be made in between: nothing is read for one).
pub fn plannable_within(due_in: Duration) -> bool {
    due_in <= PUBLISH_WITHIN && due_in > PREPARE_AFTER.saturating_add(PREPARE_MARGIN)
}

/// The longest a prepared plan is used after it was made.
pub const PREPARED_FRESH_FOR: Duration = Duration::from_secs(3);

/// The most plans a voter keeps (past it, a new one replaces nothing: it is not kept).
pub const MAX_PREPARED: usize = 256;

/// The most requests of one block planned ahead: a block with more (a burst) is planned when it
/// is final, as the batches of a part of it would not be those sent.
pub const MAX_PREPARED_REQUESTS: usize = 64;

/// The requests of the block a lane's next head confirms, as its indexer last published them.
#[derive(Debug, Clone, Default)]
pub struct Upcoming(Arc<Mutex<UpcomingBlock>>);

#[derive(Debug, Default)]
struct UpcomingBlock {
    block: u64,
    requests: Vec<Request>,
    /// When they were published.
    at: Option<Instant>,
    /// When the block that confirms them is due, as far as the chain's clock tells.
    due: Option<Instant>,
    /// Counts publications.
    generation: u64,
}

impl Upcoming {
    /// Publish `requests`, those of `block`, confirmed by the block due at `due`. The same
    /// requests of the same block again publish nothing new.
    pub fn publish(&self, block: u64, requests: Vec<Request>, due: Instant) {
        let mut upcoming = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if upcoming.at.is_some() && upcoming.block == block && upcoming.requests == requests {
            return;
        }
        let now = Instant::now();
        upcoming.block = block;
        upcoming.requests = requests;
        upcoming.at = Some(now);
        upcoming.due = Some(due);
        upcoming.generation = upcoming.generation.saturating_add(1);
    }

    /// The requests published since `seen`, once [`PREPARE_AFTER`] has passed since they were
    /// and while the block that confirms them is more than [`PREPARE_MARGIN`] away, with the
    /// instant by which their plan must be made (that margin before the block); `seen` is moved
    /// past them either way once their time has come or gone (one plan per publication).
    pub fn due(&self, seen: &mut u64) -> Option<(Vec<Request>, Instant)> {
        let upcoming = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if upcoming.generation == *seen {
            return None;
        }
        let (at, now) = (upcoming.at?, Instant::now());
        if now.saturating_duration_since(at) < PREPARE_AFTER {
            return None;
        }
        *seen = upcoming.generation;
        let by = upcoming.due?.checked_sub(PREPARE_MARGIN)?;
        (now < by).then(|| (upcoming.requests.clone(), by))
    }
}

/// A voter's plans made ahead: gas estimates by calldata and entry point.
#[derive(Debug, Default)]
pub struct PreparedPlans {
    plans: HashMap<(B256, Entry), Prepared>,
}

#[derive(Debug)]
struct Prepared {
    gas: u64,
    at: Instant,
    requests: Vec<Request>,
}

impl PreparedPlans {
    /// Keep `gas` as the estimate of a vote of `requests` with calldata `input` through
    /// `entry`. Whether it was kept (not when [`MAX_PREPARED`] fresh plans are held).
    pub fn keep(&mut self, input: &Bytes, entry: Entry, gas: u64, requests: Vec<Request>) -> bool {
        self.plans
            .retain(|_, p| p.at.elapsed() < PREPARED_FRESH_FOR);
        if self.plans.len() >= MAX_PREPARED {
            return false;
        }
        let at = Instant::now();
        self.plans
            .insert((keccak256(input), entry), Prepared { gas, at, requests });
        true
    }

    /// The prepared estimate of a vote with calldata `input` through `entry`, if one was made
    /// within [`PREPARED_FRESH_FOR`] (taken: a plan serves one send).
    pub fn take(&mut self, input: &Bytes, entry: Entry) -> Option<u64> {
        self.plans
            .remove(&(keccak256(input), entry))
            .filter(|p| p.at.elapsed() < PREPARED_FRESH_FOR)
            .map(|p| p.gas)
    }

    /// Whether a fresh plan covers `request` (this very payload).
    pub fn covers(&self, request: &Request) -> bool {
        self.plans
            .values()
            .any(|p| p.at.elapsed() < PREPARED_FRESH_FOR && p.requests.contains(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use alloy::primitives::U256;

    use crate::voter::tests::request;

    #[test]
    fn published_requests_are_due_once_past_the_block_and_before_the_next() {
        let upcoming = Upcoming::default();
        let mut seen = 0;
        let in_a_second = || Instant::now() + Duration::from_secs(1);
        assert_eq!(upcoming.due(&mut seen), None, "nothing published");
        let due = in_a_second();
        upcoming.publish(7, vec![request(3)], due);
        assert_eq!(
            upcoming.due(&mut seen),
            None,
            "not yet: the block just came"
        );
        std::thread::sleep(PREPARE_AFTER);
        assert_eq!(
            upcoming.due(&mut seen),
            Some((vec![request(3)], due - PREPARE_MARGIN)),
            "planned by the margin before the block"
        );
        assert_eq!(upcoming.due(&mut seen), None, "one plan per publication");
        upcoming.publish(7, vec![request(3)], in_a_second());
        std::thread::sleep(PREPARE_AFTER);
        assert_eq!(
            upcoming.due(&mut seen),
            None,
            "the same block again is nothing new"
        );
        // Published too close to the block that confirms them: passed over, never planned.
        upcoming.publish(8, vec![request(4)], Instant::now() + PREPARE_AFTER);
        std::thread::sleep(PREPARE_AFTER);
        assert_eq!(upcoming.due(&mut seen), None);
        upcoming.publish(9, vec![request(5)], in_a_second());
        std::thread::sleep(PREPARE_AFTER);
        assert_eq!(
            upcoming.due(&mut seen).map(|(requests, _)| requests),
            Some(vec![request(5)])
        );
    }

    #[test]
    fn a_block_is_read_ahead_only_where_a_plan_can_be_made_and_used() {
        assert!(plannable_within(Duration::from_millis(900)));
        assert!(plannable_within(PUBLISH_WITHIN));
        assert!(!plannable_within(Duration::from_secs(12)), "a slow chain");
        assert!(
            !plannable_within(PREPARE_AFTER + PREPARE_MARGIN),
            "a fast chain: no time to plan between its blocks"
        );
    }

    #[test]
    fn a_plan_serves_the_same_calldata_and_entry_once() {
        let mut plans = PreparedPlans::default();
        let input = Bytes::from(vec![1, 2, 3]);
        assert!(plans.keep(&input, Entry::Batch, 90_000, vec![request(3)]));
        let mut other = request(3);
        other.amount = U256::from(2);
        assert!(plans.covers(&request(3)) && !plans.covers(&request(4)) && !plans.covers(&other));
        assert_eq!(plans.take(&Bytes::from(vec![1, 2, 4]), Entry::Batch), None);
        assert_eq!(
            plans.take(&input, Entry::Record),
            None,
            "another entry point"
        );
        assert_eq!(plans.take(&input, Entry::Batch), Some(90_000));
        assert_eq!(plans.take(&input, Entry::Batch), None, "taken");
        assert!(!plans.covers(&request(3)));
        for n in 0..MAX_PREPARED as u64 {
            let input = Bytes::from(n.to_be_bytes().to_vec());
            assert!(plans.keep(&input, Entry::Batch, 1, vec![request(n)]));
        }
        assert!(
            !plans.keep(&input, Entry::Batch, 1, vec![request(3)]),
            "bounded: a full map keeps no more"
        );
    }
}
