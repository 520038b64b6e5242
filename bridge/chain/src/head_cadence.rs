//! When the next block can come (issue 54, a hub of 64 service chains): the head is not read
//! again while it cannot have moved.
//!
//! Every client of a chain shares one head read, fresh for
//! [`HEAD_FRESH_FOR`](crate::shared_reads::HEAD_FRESH_FOR) (100 ms): ten `eth_blockNumber` a second
//! per chain and process, whatever the block time. On a hub of 64 service chains that is 650 a
//! second per relay process, most of them answered "the same block". A chain that makes blocks
//! on a clock (interval mining, a PoA chain, Ethereum's slots) says when the next one is due:
//! once the last few blocks each came one at a time and about equally far apart, the head is
//! held from the moment a block was seen until [`MARGIN`] before the next one is due, then read
//! every 100 ms as before until it moves. A chain without a clock (a block per transaction, a
//! catch-up, a reorg, intervals that differ by more than half) is read as before.
//!
//! What it cannot cost: a block that comes earlier than its cadence is seen up to the hold late.
//! A cadence is learned only from intervals within [`REGULAR`] of each other, and the hold ends
//! [`MARGIN`] before the shortest of them, so on a chain whose clock changes the first early
//! block ends the cadence (its interval is not regular with the others).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long before the next block is due the head is read again.
pub const MARGIN: Duration = Duration::from_millis(250);

/// Intervals between blocks a cadence is learned from.
pub const SAMPLES: usize = 4;

/// A cadence holds while the longest of the [`SAMPLES`] intervals is at most this many times the
/// shortest.
pub const REGULAR: f64 = 1.5;

/// The longest hold: a slower chain is read at least this often.
pub const LONGEST_HOLD: Duration = Duration::from_secs(10);

/// The head's last movements on one chain.
#[derive(Debug, Default)]
pub struct Cadence {
    last_head: Option<u64>,
    /// When the last head change was first seen.
    changed_at: Option<Instant>,
    /// The intervals between the last block changes that were one block each, newest last.
    intervals: VecDeque<Duration>,
}

impl Cadence {
    /// A head read at `at`.
    pub fn observe(&mut self, head: u64, at: Instant) {
        let Some(last) = self.last_head else {
            self.last_head = Some(head);
            self.changed_at = Some(at);
            return;
        };
        if head == last {
            return;
        }
        if head == last.saturating_add(1)
            && let Some(changed_at) = self.changed_at
        {
            if self.intervals.len() == SAMPLES {
                self.intervals.pop_front();
            }
            self.intervals
                .push_back(at.saturating_duration_since(changed_at));
        } else {
            // Several blocks at once (a catch-up) or back (a reorg): no clock to trust.
            self.intervals.clear();
        }
        self.last_head = Some(head);
        self.changed_at = Some(at);
    }

    /// The learned interval between blocks, if the chain has one.
    pub fn interval(&self) -> Option<Duration> {
        if self.intervals.len() < SAMPLES {
            return None;
        }
        let shortest = *self.intervals.iter().min()?;
        let longest = *self.intervals.iter().max()?;
        (longest.as_secs_f64() <= shortest.as_secs_f64() * REGULAR).then_some(shortest)
    }

    /// Until when the head last read still holds (`None`: read it as before).
    pub fn hold_until(&self) -> Option<Instant> {
        let hold = self
            .interval()?
            .checked_sub(MARGIN)
            .filter(|h| !h.is_zero())?
            .min(LONGEST_HOLD);
        self.changed_at?.checked_add(hold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(cadence: &mut Cadence, start: Instant, blocks: &[(u64, u64)]) {
        for (head, ms) in blocks {
            cadence.observe(*head, start + Duration::from_millis(*ms));
        }
    }

    #[test]
    fn blocks_on_a_clock_hold_the_head_until_shortly_before_the_next() {
        let start = Instant::now();
        let mut c = Cadence::default();
        // 1 s blocks, each seen 0-90 ms after it came; the same head read in between.
        seen(
            &mut c,
            start,
            &[
                (10, 0),
                (10, 500),
                (11, 1_050),
                (12, 2_000),
                (12, 2_400),
                (13, 3_090),
            ],
        );
        assert_eq!(
            c.hold_until(),
            None,
            "three intervals are not a cadence yet"
        );
        seen(&mut c, start, &[(14, 4_010), (15, 5_020)]);
        assert_eq!(c.interval(), Some(Duration::from_millis(920)));
        assert_eq!(
            c.hold_until(),
            Some(start + Duration::from_millis(5_020 + 920) - MARGIN)
        );
    }

    #[test]
    fn a_catch_up_a_reorg_or_an_irregular_chain_has_no_cadence() {
        let start = Instant::now();
        let regular = [(1, 0), (2, 1_000), (3, 2_000), (4, 3_000), (5, 4_000)];
        let mut c = Cadence::default();
        seen(&mut c, start, &regular);
        assert!(c.hold_until().is_some());
        // Several blocks at once.
        seen(&mut c, start, &[(8, 5_000)]);
        assert_eq!(c.hold_until(), None);

        let mut c = Cadence::default();
        seen(&mut c, start, &regular);
        // Back by one (a reorg to a shorter chain).
        seen(&mut c, start, &[(4, 4_500)]);
        assert_eq!(c.hold_until(), None);

        // A block per transaction: intervals of 0.1 to 3 s.
        let mut c = Cadence::default();
        seen(
            &mut c,
            start,
            &[(1, 0), (2, 100), (3, 3_100), (4, 3_300), (5, 5_000)],
        );
        assert_eq!(c.hold_until(), None);
    }

    #[test]
    fn an_early_block_ends_the_cadence_and_a_slow_chain_is_held_at_most_the_longest_hold() {
        let start = Instant::now();
        let mut c = Cadence::default();
        seen(
            &mut c,
            start,
            &[(1, 0), (2, 2_000), (3, 4_000), (4, 6_000), (5, 8_000)],
        );
        assert!(c.hold_until().is_some());
        // The chain now makes blocks every 500 ms: the first early one ends the hold.
        seen(&mut c, start, &[(6, 8_500)]);
        assert_eq!(c.hold_until(), None);

        let mut c = Cadence::default();
        seen(
            &mut c,
            start,
            &[(1, 0), (2, 30_000), (3, 60_000), (4, 90_000), (5, 120_000)],
        );
        assert_eq!(
            c.hold_until(),
            Some(start + Duration::from_millis(120_000) + LONGEST_HOLD)
        );
    }

    #[test]
    fn intervals_too_short_for_the_margin_hold_nothing() {
        let start = Instant::now();
        let mut c = Cadence::default();
        seen(
            &mut c,
            start,
            &[(1, 0), (2, 200), (3, 400), (4, 600), (5, 800)],
        );
        assert_eq!(c.interval(), Some(Duration::from_millis(200)));
        assert_eq!(c.hold_until(), None);
    }
}
