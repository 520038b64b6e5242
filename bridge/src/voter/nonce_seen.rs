//! What the voter has seen of one of the destination's handle nonces (`lowerHandleNonce`) over
//! time: whether it moved lately, for a standby to tell a primary
//! that is missing from one whose votes are queued behind others (issue 54).
//!
//! Only changes are kept (with the time they were first seen, which is at or after the time they
//! happened), pruned to the last `horizon`. A question reaching before the first read has an
//! answer only if a move was seen since.

use std::collections::VecDeque;
use std::time::Duration;

// The runtime's clock, so that tests can move it.
use tokio::time::Instant;

/// The reads of a handle nonce, as changes.
#[derive(Debug)]
pub struct NonceSeen {
    /// When the first read was made.
    first_read: Option<Instant>,
    /// (when first seen, value), oldest first; the first entry is the value at `first_read` or
    /// the last change before the pruned window.
    changes: VecDeque<(Instant, u64)>,
    /// How far back questions are asked.
    horizon: Duration,
}

impl NonceSeen {
    /// Nothing seen yet; questions reach back at most `horizon`.
    pub fn new(horizon: Duration) -> Self {
        Self {
            first_read: None,
            changes: VecDeque::new(),
            horizon,
        }
    }

    /// A read of `value` made at `at`.
    pub fn note(&mut self, value: u64, at: Instant) {
        if self.first_read.is_none() {
            self.first_read = Some(at);
        }
        // Only a rise is a move: the nonce only grows on chain. A lower answer (a reorg, a node
        // behind the others, a liar) moves nothing; a standby then goes by what it saw rise.
        if self.changes.back().is_none_or(|(_, last)| value > *last) {
            self.changes.push_back((at, value));
        }
        // Keep the newest change at or before `at - horizon` (the value then) and every later one.
        if let Some(edge) = at.checked_sub(self.horizon) {
            while self.changes.get(1).is_some_and(|(seen, _)| *seen <= edge) {
                self.changes.pop_front();
            }
        }
    }

    /// Whether the nonce was seen moving within `within` before `now`: `None` when it was not
    /// seen moving and the reads do not reach that far back (a standby then acts as if it had
    /// not moved).
    pub fn moved_within(&self, within: Duration, now: Instant) -> Option<bool> {
        let then = now.checked_sub(within);
        // Every entry but the first is a change (the first is the first read, or the value at
        // the horizon's edge).
        if self
            .changes
            .iter()
            .skip(1)
            .any(|(seen, _)| then.is_none_or(|then| *seen > then))
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
        let mut seen = NonceSeen::new(5 * S);
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
        let mut short = NonceSeen::new(5 * S);
        short.note(1, t0);
        short.note(2, t0 + S);
        assert_eq!(short.moved_within(3 * S, t0 + 2 * S), Some(true));
        assert_eq!(short.moved_within(3 * S, t0 + 5 * S), Some(false));
    }

    #[test]
    fn it_keeps_only_what_questions_within_the_horizon_need() {
        let t0 = Instant::now();
        let mut seen = NonceSeen::new(2 * S);
        for i in 0..100u32 {
            seen.note(u64::from(i), t0 + i * S / 10);
        }
        // 2 s of changes at 10 a second, plus the value at the horizon's edge.
        assert!(seen.changes.len() <= 22, "{}", seen.changes.len());
        let now = t0 + 99 * S / 10;
        assert_eq!(seen.moved_within(2 * S, now), Some(true));
        seen.note(99, now + 2 * S);
        assert_eq!(seen.moved_within(2 * S, now + 2 * S), Some(false));
    }
}
