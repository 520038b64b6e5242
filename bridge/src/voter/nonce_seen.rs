//! What the voter has seen of one of the destination's handle nonces (`lowerHandleNonce`) over
//! time: whether it moved lately, for a standby to tell a primary
//! that is missing from one whose votes are queued behind others (issue 54).
//!
//! The nonce only grows on chain, so only a rise counts as a move, and only the last rise
//! matters: whether the nonce moved within a while is whether it last rose within it. A lower
//! answer (a reorg, a node behind the others, a liar) moves nothing.

use std::time::Duration;

// The runtime's clock, so that tests can move it.
use tokio::time::Instant;

/// The reads of a handle nonce: when the first was made, the highest value seen and when it was.
#[derive(Debug, Default)]
pub struct NonceSeen {
    /// When the first read was made.
    first_read: Option<Instant>,
    /// The highest value read.
    highest: u64,
    /// When a read last found it above every earlier read.
    rose_at: Option<Instant>,
}

impl NonceSeen {
    /// A read of `value` made at `at`.
    pub fn note(&mut self, value: u64, at: Instant) {
        if self.first_read.is_none() {
            self.first_read = Some(at);
            self.highest = value;
        } else if value > self.highest {
            self.highest = value;
            self.rose_at = Some(at);
        }
    }

    /// Whether the nonce was seen moving within `within` before `now`: `None` when it was not
    /// seen moving and the reads do not reach that far back (a standby then acts as if it had
    /// not moved).
    pub fn moved_within(&self, within: Duration, now: Instant) -> Option<bool> {
        let then = now.checked_sub(within);
        if self
            .rose_at
            .is_some_and(|rose| then.is_none_or(|then| rose > then))
        {
            return Some(true);
        }
        match (self.first_read, then) {
            (Some(first), Some(then)) if first <= then => Some(false),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn it_answers_whether_the_nonce_moved() {
        let t0 = Instant::now();
        let mut seen = NonceSeen::default();
        // Nothing read yet, or not that long ago: no answer.
        assert_eq!(seen.moved_within(S, t0), None);
        seen.note(10, t0);
        assert_eq!(seen.moved_within(S, t0 + S / 2), None);
        // Read a second ago and the same since: it stood still.
        seen.note(10, t0 + S);
        assert_eq!(seen.moved_within(S, t0 + S), Some(false));
        // Moved at t0 + 2 s (seen then).
        seen.note(40, t0 + 2 * S);
        assert_eq!(seen.moved_within(S, t0 + 2 * S + S / 2), Some(true));
        assert_eq!(seen.moved_within(S, t0 + 4 * S), Some(false));
        // A lower answer is no move, nor is the same value seen again after it.
        seen.note(5, t0 + 4 * S + S / 2);
        seen.note(40, t0 + 5 * S);
        assert_eq!(seen.moved_within(S, t0 + 5 * S), Some(false));
        // A change seen is a move, however short the reads' history.
        let mut short = NonceSeen::default();
        short.note(1, t0);
        short.note(2, t0 + S);
        assert_eq!(short.moved_within(3 * S, t0 + 2 * S), Some(true));
        assert_eq!(short.moved_within(3 * S, t0 + 5 * S), Some(false));
    }

    #[test]
    fn a_nonce_that_rises_steadily_moves_until_it_stops() {
        let t0 = Instant::now();
        let mut seen = NonceSeen::default();
        for i in 0..100u32 {
            seen.note(u64::from(i), t0 + i * S / 10);
        }
        let now = t0 + 99 * S / 10;
        assert_eq!(seen.moved_within(2 * S, now), Some(true));
        seen.note(99, now + 2 * S);
        assert_eq!(seen.moved_within(2 * S, now + 2 * S), Some(false));
    }
}
