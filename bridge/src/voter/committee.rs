//! Who votes a request at once. Every operator ranks the registered operators for each nonce
//! the same way (by `keccak256(nonce ‖ operator)`); the first `threshold` vote as soon as the
//! request is final, the others stand by. A standby votes a request once it is `standby_after`
//! old *and* the lane's handles have moved past it (the primaries are at work, yet this one is
//! still open: one of them is missing) — or, whatever the lane does, once it is
//! [`STANDBY_LIMIT`] times that old. Votes that would arrive after the threshold — pure cost,
//! skipped by the bridge — are then not sent, even while a backlog drains; an operator that is
//! down delays the requests it was first for by about `standby_after` under traffic.

use std::time::Duration;

use alloy::primitives::{Address, keccak256};

/// The destination's registered operators and threshold, as the ranking needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committee {
    /// Registered operators.
    pub operators: Vec<Address>,
    /// Votes needed.
    pub threshold: usize,
}

impl Committee {
    /// `operator`'s place for `nonce` (0 = first), or `None` if it is not registered.
    pub fn rank(&self, nonce: u64, operator: Address) -> Option<usize> {
        let score = |op: &Address| {
            let mut bytes = [0u8; 28];
            bytes[..8].copy_from_slice(&nonce.to_be_bytes());
            bytes[8..].copy_from_slice(op.as_slice());
            keccak256(bytes)
        };
        let mine = score(&operator);
        if !self.operators.contains(&operator) {
            return None;
        }
        Some(
            self.operators
                .iter()
                .filter(|op| **op != operator && score(op) < mine)
                .count(),
        )
    }

    /// Whether `operator` votes `nonce` at once (else it stands by).
    pub fn is_primary(&self, nonce: u64, operator: Address) -> bool {
        self.rank(nonce, operator)
            .is_none_or(|rank| rank < self.threshold)
    }
}

/// A standby votes whatever the lane does once a request is this many `standby_after` old.
pub const STANDBY_LIMIT: u64 = 3;

/// What a standby does with a request (nonce `nonce`, first stored at `observed_at`, unix
/// seconds) at `now`, the destination's `upperHandleNonce` being `upper`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standby {
    /// Vote it now.
    Vote,
    /// Look again at this time (unix seconds).
    Until(u64),
}

/// See [`Standby`].
pub fn standby(nonce: u64, observed_at: u64, now: u64, upper: u64, after: Duration) -> Standby {
    let after = after.as_secs();
    let first_look = observed_at.saturating_add(after);
    let limit = observed_at.saturating_add(after.saturating_mul(STANDBY_LIMIT));
    if now >= limit || (now >= first_look && nonce < upper) {
        return Standby::Vote;
    }
    if now < first_look {
        return Standby::Until(first_look);
    }
    Standby::Until(now.saturating_add(1).min(limit))
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
        assert_eq!(standby(7, 100, 101, 50, after), Standby::Until(105));
        // Old enough and the handles moved past it: a primary is missing.
        assert_eq!(standby(7, 100, 105, 8, after), Standby::Vote);
        // Old enough but the primaries have not got there (a backlog drains): each second.
        assert_eq!(standby(7, 100, 105, 7, after), Standby::Until(106));
        assert_eq!(standby(7, 100, 114, 7, after), Standby::Until(115));
        // Whatever the lane does, at the limit.
        assert_eq!(standby(7, 100, 115, 0, after), Standby::Vote);
    }
}
