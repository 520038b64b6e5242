//! Who acts for what, when: one rule for votes, attested batches and upkeep.
//!
//! Every operator orders the registered operators for a **subject** — a request's nonce, an
//! attested batch's digest, the nonce an upkeep call is about — the same way: by
//! `keccak256(subject ‖ operator)`, lowest first. An operator's place in that order
//! ([`Committee::place`]) says when it acts:
//!
//! | work | who acts at once | the others |
//! |---|---|---|
//! | a vote | the first `threshold` ([`Committee::is_primary`]) | stand by ([`standby`]) |
//! | an attested batch | the first ([`turn_of`]) | after `standby_after` × their place ([`distance`]) |
//! | upkeep (advance `lowerHandleNonce`, execute a due release) | the first ([`my_turn`]) | anyone after [`ANYONE_AFTER_TICKS`] |
//!
//! The order is fair over subjects (every operator is first for about one subject in `n`), so
//! the gas is shared, and no operator is first for every subject, so a down operator delays only
//! its own share by the standby time.

use std::time::Duration;

use alloy::primitives::{Address, B256, keccak256};
pub use multibridge_monitoring::metrics::StandbyRule;

/// The destination's registered operators and threshold, as the turns need them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committee {
    /// Registered operators.
    pub operators: Vec<Address>,
    /// Votes (or signatures) needed.
    pub threshold: usize,
}

/// `operator`'s score for `subject`: lower comes first.
fn score(subject: &[u8], operator: &Address) -> B256 {
    let mut bytes = Vec::with_capacity(subject.len().saturating_add(20));
    bytes.extend_from_slice(subject);
    bytes.extend_from_slice(operator.as_slice());
    keccak256(bytes)
}

/// `operator`'s place among `operators` for `subject` (0 = first), or `None` if it is not one
/// of them.
pub fn place(subject: &[u8], operators: &[Address], operator: Address) -> Option<usize> {
    if !operators.contains(&operator) {
        return None;
    }
    let mine = score(subject, &operator);
    Some(
        operators
            .iter()
            .filter(|op| **op != operator && score(subject, op) < mine)
            .count(),
    )
}

/// The operator first for `subject` (`None`: no operators).
fn first(subject: &[u8], operators: &[Address]) -> Option<Address> {
    operators
        .iter()
        .copied()
        .min_by_key(|op| score(subject, op))
}

impl Committee {
    /// `operator`'s place for the request `nonce` (0 = first), or `None` if it is not
    /// registered.
    pub fn rank(&self, nonce: u64, operator: Address) -> Option<usize> {
        place(&nonce.to_be_bytes(), &self.operators, operator)
    }

    /// Whether `operator` votes `nonce` at once (else it stands by).
    pub fn is_primary(&self, nonce: u64, operator: Address) -> bool {
        self.rank(nonce, operator)
            .is_none_or(|rank| rank < self.threshold)
    }
}

/// A standby votes whatever the lane does once a request is this many `standby_after` old.
pub const STANDBY_LIMIT: u64 = 3;

/// While the lane's handles keep moving, the limit waits for them to stall, up to this many
/// times the wait (`after`: `standby_after`, twice that in full blocks), counted from when the
/// relay stored the request: a bound on what a slow lane, or a node that invents its moves, can
/// hold a standby back.
pub const STANDBY_CAP: u64 = 2 * STANDBY_LIMIT;

/// What a standby does with a request (nonce `nonce`, first stored at `observed_at`, unix
/// seconds) at `now`, the destination's `upperHandleNonce` being `upper`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standby {
    /// Vote it now, by this rule.
    Vote(StandbyRule),
    /// Look again at this time (unix seconds).
    Until(u64),
}

/// What a standby goes by of the lane's handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneHandles {
    /// A request below this is passed by: the destination's `upperHandleNonce` — or, while its
    /// blocks are full, that only while `lowerHandleNonce` stands still (else 0): the votes of
    /// a request the lane just passed by are then most often queued for room behind the ones
    /// that passed it, and a missing primary shows as a `lowerHandleNonce` that stopped.
    pub passed: u64,
    /// Whether the handles stand still (or nothing says they move): the limit applies. `false`
    /// only while the blocks are full and `lowerHandleNonce` was seen moving within
    /// `standby_after`: the primaries are at work through a backlog and will reach the
    /// request; the limit then waits, up to [`STANDBY_CAP`].
    pub stalled: bool,
}

impl LaneHandles {
    /// The rule whatever the blocks: passed by `upper` now, the limit whatever the lane does.
    pub fn now(upper: u64) -> Self {
        Self {
            passed: upper,
            stalled: true,
        }
    }
}

/// A standby votes a request once it is `after` old *and* the lane's handles have moved past it
/// (the primaries are at work, yet this one is still open: one of them is missing) — or once it
/// is [`STANDBY_LIMIT`] times that old and the handles stand still, or whatever the lane does
/// at [`STANDBY_CAP`] times. Votes that would arrive after the threshold — pure cost, skipped by
/// the bridge — are then not sent, even while a backlog drains.
pub fn standby(
    nonce: u64,
    observed_at: u64,
    now: u64,
    lane: LaneHandles,
    after: Duration,
) -> Standby {
    let after = after.as_secs();
    let first_look = observed_at.saturating_add(after);
    let limit = observed_at.saturating_add(after.saturating_mul(STANDBY_LIMIT));
    let cap = observed_at.saturating_add(after.saturating_mul(STANDBY_CAP));
    if now >= first_look && nonce < lane.passed {
        return Standby::Vote(StandbyRule::Passed);
    }
    if now >= limit && lane.stalled {
        return Standby::Vote(StandbyRule::Stalled);
    }
    if now >= cap {
        return Standby::Vote(StandbyRule::Cap);
    }
    if now < first_look {
        return Standby::Until(first_look);
    }
    // While the lane moves, a look every second would bring the request back into the voter's
    // window each second ahead of the requests this operator is first for (the window is taken
    // in nonce order, and a backlog's standby requests are the oldest): half a wait instead.
    let next = if lane.stalled {
        now.saturating_add(1)
    } else {
        now.saturating_add((after / 2).max(1))
    };
    Standby::Until(next.min(if lane.stalled { limit } else { cap }))
}

/// The operator whose turn it is to send an attested batch with `digest` among `operators`.
pub fn turn_of(digest: &B256, operators: &[Address]) -> Option<Address> {
    first(digest.as_slice(), operators)
}

/// How many places after the operator whose turn it is `me` comes for the batch with `digest`
/// (0: its turn; `None`: not an operator).
pub fn distance(digest: &B256, operators: &[Address], me: Address) -> Option<usize> {
    place(digest.as_slice(), operators, me)
}

/// Ticks after which any operator acts on an upkeep call, not only the one whose turn it is.
pub const ANYONE_AFTER_TICKS: u32 = 3;

/// Whether `me` makes the upkeep call about `nonce` after it waited `ticks`: the operator first
/// for `nonce` at once (so the operators do not all pay for the same call), anyone after
/// [`ANYONE_AFTER_TICKS`].
pub fn my_turn(operators: &[Address], nonce: u64, me: Address, ticks: u32) -> bool {
    first(&nonce.to_be_bytes(), operators) == Some(me) || ticks >= ANYONE_AFTER_TICKS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committee(n: u8, threshold: usize) -> Committee {
        Committee {
            operators: (1..=n).map(Address::repeat_byte).collect(),
            threshold,
        }
    }

    #[test]
    fn exactly_threshold_operators_are_primary_for_every_nonce() {
        let c = committee(5, 3);
        for nonce in 0..500u64 {
            let primaries = c
                .operators
                .iter()
                .filter(|op| c.is_primary(nonce, **op))
                .count();
            assert_eq!(primaries, 3, "nonce {nonce}");
        }
    }

    #[test]
    fn the_load_spreads_over_every_operator() {
        let c = committee(3, 2);
        for op in &c.operators {
            let share = (0..3000u64).filter(|n| c.is_primary(*n, *op)).count();
            assert!((1800..2200).contains(&share), "{op}: {share} of 3000");
        }
    }

    #[test]
    fn an_unregistered_key_or_a_full_threshold_votes_at_once() {
        let c = committee(3, 3);
        assert!((0..100).all(|n| c.operators.iter().all(|op| c.is_primary(n, *op))));
        assert!(committee(3, 2).is_primary(7, Address::repeat_byte(0xee)));
    }

    #[test]
    fn a_standby_waits_for_the_lane_to_pass_the_request_or_for_the_limit() {
        let after = Duration::from_secs(5);
        // Too young: look again when it is `after` old.
        assert_eq!(
            standby(7, 100, 101, LaneHandles::now(50), after),
            Standby::Until(105)
        );
        // Old enough and the handles moved past it: a primary is missing.
        assert_eq!(
            standby(7, 100, 105, LaneHandles::now(8), after),
            Standby::Vote(StandbyRule::Passed)
        );
        // Old enough but the primaries have not got there (a backlog drains): each second.
        assert_eq!(
            standby(7, 100, 105, LaneHandles::now(7), after),
            Standby::Until(106)
        );
        assert_eq!(
            standby(7, 100, 114, LaneHandles::now(7), after),
            Standby::Until(115)
        );
        // Whatever the lane does, at the limit.
        assert_eq!(
            standby(7, 100, 115, LaneHandles::now(0), after),
            Standby::Vote(StandbyRule::Stalled)
        );
    }

    #[test]
    fn in_full_blocks_a_standby_waits_for_a_lane_that_moves_to_reach_the_request() {
        // `after` as the voter passes it in full blocks (twice `standby_after`).
        let after = Duration::from_secs(10);
        let moving = LaneHandles {
            passed: 0,
            stalled: false,
        };
        let stopped = |upper| LaneHandles {
            passed: upper,
            stalled: true,
        };
        // The lane's lower end stopped with the request passed by: a primary is missing.
        assert_eq!(
            standby(7, 100, 110, stopped(8), after),
            Standby::Vote(StandbyRule::Passed)
        );
        // The lane moves: the request's votes are on their way; look again in half a wait, not
        // each second (it would take a place in the voter's window each second).
        assert_eq!(standby(7, 100, 110, moving, after), Standby::Until(115));
        // Past the limit (30 s) while the lane moves: the primaries will reach it.
        assert_eq!(standby(7, 100, 130, moving, after), Standby::Until(135));
        assert_eq!(standby(7, 100, 157, moving, after), Standby::Until(160));
        // ... and vote once it stalls, or at the cap (60 s) whatever it does.
        assert_eq!(
            standby(7, 100, 130, stopped(0), after),
            Standby::Vote(StandbyRule::Stalled)
        );
        assert_eq!(
            standby(7, 100, 160, moving, after),
            Standby::Vote(StandbyRule::Cap)
        );
        // A stalled lane is looked at each second, as outside full blocks.
        assert_eq!(standby(7, 100, 112, stopped(7), after), Standby::Until(113));
    }

    #[test]
    fn turns_rotate_over_digests_and_every_operator_has_a_distance() {
        let ops: Vec<Address> = (1..=3u8).map(Address::repeat_byte).collect();
        let mut firsts = std::collections::BTreeSet::new();
        for i in 0..64u8 {
            let digest = keccak256([i]);
            let first = turn_of(&digest, &ops).unwrap();
            firsts.insert(first);
            assert_eq!(distance(&digest, &ops, first), Some(0));
            let mut distances: Vec<usize> = ops
                .iter()
                .map(|o| distance(&digest, &ops, *o).unwrap())
                .collect();
            distances.sort();
            assert_eq!(distances, vec![0, 1, 2], "one place each");
        }
        assert_eq!(firsts.len(), 3, "every operator gets turns");
        assert_eq!(distance(&B256::ZERO, &ops, Address::repeat_byte(9)), None);
    }

    #[test]
    fn one_operator_per_upkeep_call_at_once_anyone_after_three_ticks() {
        let ops: Vec<Address> = (1..=3u8).map(Address::repeat_byte).collect();
        let mut firsts = std::collections::BTreeSet::new();
        for nonce in 0..30u64 {
            let takers: Vec<_> = ops
                .iter()
                .filter(|op| my_turn(&ops, nonce, **op, 0))
                .collect();
            assert_eq!(takers.len(), 1, "nonce {nonce}");
            firsts.insert(*takers[0]);
            // The upkeep turn is the vote ranking's first place: one rule.
            assert_eq!(committee(3, 1).rank(nonce, *takers[0]), Some(0));
            let other = ops.iter().find(|op| *op != takers[0]).unwrap();
            assert!(!my_turn(&ops, nonce, *other, ANYONE_AFTER_TICKS - 1));
            assert!(my_turn(&ops, nonce, *other, ANYONE_AFTER_TICKS));
        }
        assert_eq!(firsts.len(), 3, "every operator gets turns");
        assert!(!my_turn(&[], 0, ops[0], 0), "no operators read: wait");
    }
}
