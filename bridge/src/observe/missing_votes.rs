//! Missing votes: per registered operator of a lane's destination, the open requests that have
//! waited longer than [`MISSING_AFTER_SECS`] without its vote, and how long the oldest has
//! waited — so an operator whose relays are down is named, with its nonces, while the lane
//! still moves on the others' votes or before a person wonders why it stopped. Read from the
//! destination (`votingStatus` per operator over the oldest open requests of this relay's
//! store) and bounded: at most [`MISSING_SCAN`] requests per round, [`MISSING_LISTED`] nonces
//! listed per operator.

use alloy::primitives::Address;
use multibridge_contracts::{Lane, NonceState};
use serde::Serialize;

use crate::chain::ChainError;
use crate::chain::bridge_views::BridgeViews;
use crate::store::{SharedStore, StoreError};

/// A request open this long without an operator's vote counts as missing it: above the
/// undisturbed latency and the standby timer (`voting.standby_after_secs`, 5 s by default), so
/// a standby that has not voted yet is not named while its primaries are on time.
pub const MISSING_AFTER_SECS: u64 = 15;

/// Open requests looked at per round (the oldest).
pub const MISSING_SCAN: usize = 256;

/// Nonces listed per operator.
pub const MISSING_LISTED: usize = 20;

/// One operator's missing votes on a lane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingVotes {
    /// The operator.
    pub operator: Address,
    /// Open requests older than [`MISSING_AFTER_SECS`] it has not voted on (of the
    /// [`MISSING_SCAN`] oldest).
    pub requests: u64,
    /// How long the oldest of them has been open, seconds (0: none).
    pub oldest_secs: u64,
    /// Their nonces, the oldest first ([`MISSING_LISTED`] at most).
    pub nonces: Vec<u64>,
}

/// Why the missing votes could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MissingVotesError {
    /// The destination could not be read.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Every registered operator's missing votes on `lane` at unix time `now` (operators missing
/// none are listed too, with 0, so their gauges fall back). While no open request is old enough
/// to miss a vote, nothing is read from the chain: `known` (the operators listed last time) are
/// listed with 0 — once some are known: the first round after a start reads the operators, so
/// every one has its series at 0 from then on, not "no data" until a request is late.
pub async fn missing_votes(
    views: BridgeViews<'_>,
    store: &SharedStore,
    lane: Lane,
    now: u64,
    known: &[Address],
) -> Result<Vec<MissingVotes>, MissingVotesError> {
    let open: Vec<(u64, u64)> = store
        .lock()
        .open_requests(lane, MISSING_SCAN)?
        .into_iter()
        .filter(|r| now.saturating_sub(r.observed_at) >= MISSING_AFTER_SECS)
        .map(|r| (r.request.nonce, r.observed_at))
        .collect();
    if !reads_operators(&open, known) {
        return Ok(known
            .iter()
            .map(|operator| tally(*operator, &[], &[], now))
            .collect());
    }
    let nonces: Vec<u64> = open.iter().map(|(n, _)| *n).collect();
    let operators = views.operators().await?;
    let mut out = Vec::with_capacity(operators.len());
    for operator in operators {
        let states = views.voting_status(operator, &nonces).await?;
        out.push(tally(operator, &open, &states, now));
    }
    Ok(out)
}

/// Whether a round reads the operator set: some request is old enough to miss a vote, or no
/// operator has been listed yet.
fn reads_operators(open: &[(u64, u64)], known: &[Address]) -> bool {
    !open.is_empty() || known.is_empty()
}

/// The requests of `open` (nonce, observed at) whose state for `operator` is still open.
fn tally(operator: Address, open: &[(u64, u64)], states: &[NonceState], now: u64) -> MissingVotes {
    let missing: Vec<(u64, u64)> = open
        .iter()
        .zip(states)
        .filter(|(_, state)| **state == NonceState::Open)
        .map(|(request, _)| *request)
        .collect();
    MissingVotes {
        operator,
        requests: missing.len() as u64,
        oldest_secs: missing
            .iter()
            .map(|(_, at)| now.saturating_sub(*at))
            .max()
            .unwrap_or(0),
        nonces: missing
            .iter()
            .take(MISSING_LISTED)
            .map(|(n, _)| *n)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operators_are_read_at_the_first_round_and_while_a_request_is_late() {
        let known = [Address::repeat_byte(3)];
        assert!(
            reads_operators(&[], &[]),
            "the first round lists every operator"
        );
        assert!(!reads_operators(&[], &known), "a quiet lane reads nothing");
        assert!(reads_operators(&[(10, 100)], &known));
    }

    #[test]
    fn only_open_states_count_and_the_oldest_age_is_reported() {
        let op = Address::repeat_byte(3);
        let open = [(10, 100), (11, 150), (12, 160)];
        let states = [NonceState::Open, NonceState::VotedByUs, NonceState::Open];
        let m = tally(op, &open, &states, 200);
        assert_eq!(m.requests, 2);
        assert_eq!(m.oldest_secs, 100);
        assert_eq!(m.nonces, vec![10, 12]);
        let none = tally(op, &open, &[NonceState::Handled; 3], 200);
        assert_eq!((none.requests, none.oldest_secs), (0, 0));
        assert!(none.nonces.is_empty());
    }

    #[test]
    fn at_most_the_listed_number_of_nonces() {
        let open: Vec<(u64, u64)> = (0..50).map(|n| (n, 0)).collect();
        let m = tally(Address::ZERO, &open, &[NonceState::Open; 50], 100);
        assert_eq!(m.requests, 50);
        assert_eq!(m.nonces.len(), MISSING_LISTED);
    }
}
