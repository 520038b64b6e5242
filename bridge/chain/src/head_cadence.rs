//! When the next block can come (issue 54, a hub of 64 service chains): the head is not read
//! again while it cannot have moved.
//!
//! Every client of a chain shares one head read, fresh for
//! [`HEAD_FRESH_FOR`](crate::shared_reads::HEAD_FRESH_FOR) (100 ms): ten `eth_blockNumber` a second
//! per chain and process, whatever the block time. On a hub of 64 service chains that is 650 a
//! second per relay process, most of them answered "the same block". A chain that makes blocks
//! on a clock (interval mining, a PoA chain, Ethereum's slots) says when the next one is due:
//! once the last few blocks each came one at a time and about equally far apart, the head is
//! held from the moment a block was seen until [`MARGIN`] before the next one is due at the
//! earliest (projected from the last few blocks), then read every 100 ms as before until it
//! moves. A chain without a clock (a block per transaction, a catch-up, a reorg, intervals that
//! differ by more than half) is read as before.
//!
//! The hold is timed from the latest moment the block can have come (when the last read that
//! still returned the previous head was asked), so a read every 500 ms or 1 s sees a block no
//! later than without the hold. What it can cost: a block that comes earlier than its cadence is
//! seen up to the hold late. A cadence is learned only from intervals within [`REGULAR`] of each
//! other, the hold ends [`MARGIN`] before the earliest projection of the next block by an
//! interval at most [`SAMPLE_SLACK`] above the shortest of them, and a block that the first read
//! after a hold already shows ends the cadence (it may have come during the hold): on a chain
//! whose clock speeds up, the blocks made during one hold are seen up to that hold late.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long before the next block is due the head is read again. Every projection of the next
/// block is at most a quarter poll late on a chain that keeps its clock, and up to a poll early:
/// the hold ends at least 125 ms before the block at a 100 ms poll — about 3 reads a block,
/// where the shortest sample and 250 ms (before) made it about 5.
pub const MARGIN: Duration = Duration::from_millis(150);

/// Intervals between blocks a cadence is learned from.
pub const SAMPLES: usize = 4;

/// A cadence holds while the longest of the [`SAMPLES`] intervals is at most this many times the
/// shortest.
pub const REGULAR: f64 = 1.5;

/// How far above the shortest sample the interval may be taken: a sample's error at the shared
/// head's freshness (100 ms), so the hold still ends [`MARGIN`] less this before a block that
/// comes at the shortest interval seen.
pub const SAMPLE_SLACK: Duration = Duration::from_millis(100);

/// The longest hold: a slower chain is read at least this often.
pub const LONGEST_HOLD: Duration = Duration::from_secs(10);

/// The head's last movements on one chain.
#[derive(Debug, Default)]
pub struct Cadence {
    last_head: Option<u64>,
    /// The latest the last head change can have happened: when the last read that still
    /// returned the head before it was asked (the block came after that read started). Timing
    /// the hold from when the change was *seen* instead let the delay grow by up to a poll
    /// period each block where no task asks every 100 ms (a review's model: up to a whole
    /// block late).
    changed_after: Option<Instant>,
    /// When the last read that returned `last_head` was asked.
    last_asked: Option<Instant>,
    /// The intervals between the last block changes that were one block each, newest last.
    intervals: VecDeque<Duration>,
}

impl Cadence {
    /// A head read asked at `asked` returned `head`.
    pub fn observe(&mut self, head: u64, asked: Instant) {
        let (Some(last), Some(last_asked)) = (self.last_head, self.last_asked) else {
            self.last_head = Some(head);
            self.changed_after = Some(asked);
            self.last_asked = Some(asked);
            return;
        };
        if head == last {
            self.last_asked = Some(last_asked.max(asked));
            return;
        }
        // The first read after a hold already shows the new block: it may have come while the
        // head was held, earlier than the cadence said. No clock to trust until it is learned
        // again.
        let hidden = self.hold_until().is_some_and(|until| last_asked < until);
        if head == last.saturating_add(1)
            && !hidden
            && let Some(changed_after) = self.changed_after
        {
            if self.intervals.len() == SAMPLES {
                self.intervals.pop_front();
            }
            self.intervals
                .push_back(last_asked.saturating_duration_since(changed_after));
        } else {
            // Several blocks at once (a catch-up), back (a reorg) or possibly early: no clock
            // to trust.
            self.intervals.clear();
        }
        self.last_head = Some(head);
        self.changed_after = Some(last_asked);
        self.last_asked = Some(asked);
    }

    /// The node pushed block `head` at `at` (a head subscription, [`crate::head_feed`]): the
    /// head was the block before until then, so the change is timed to the push, where a read
    /// times it only between two reads.
    pub fn pushed(&mut self, head: u64, at: Instant) {
        if let Some(last) = self.last_head
            && head == last.saturating_add(1)
        {
            self.observe(last, at);
        }
        self.observe(head, at);
    }

    /// The learned interval between blocks, if the chain has one: the mean of the samples, or
    /// their median, or the shortest and [`SAMPLE_SLACK`], whichever is shortest.
    ///
    /// Each sample runs between two anchors (reads that still returned the block before a
    /// change), so each is off by up to the askers' poll; their mean is the span of [`SAMPLES`]
    /// blocks over their count, off by a quarter poll. A block that came late lengthens its
    /// sample, and the mean with it, but not the median; a chain back to its faster clock after
    /// a few slow blocks comes at the shortest sample again, which the slack bounds.
    pub fn interval(&self) -> Option<Duration> {
        if self.intervals.len() < SAMPLES {
            return None;
        }
        let mut sorted: Vec<Duration> = self.intervals.iter().copied().collect();
        sorted.sort_unstable();
        let (shortest, longest) = (*sorted.first()?, *sorted.last()?);
        if longest.as_secs_f64() > shortest.as_secs_f64() * REGULAR {
            return None;
        }
        let mean = sorted
            .iter()
            .sum::<Duration>()
            .checked_div(u32::try_from(sorted.len()).ok()?)?;
        let half = sorted.len().checked_div(2)?;
        let upper = *sorted.get(half)?;
        let median = if sorted.len().is_multiple_of(2) {
            let lower = *sorted.get(half.checked_sub(1)?)?;
            lower.checked_add(upper)?.checked_div(2)?
        } else {
            upper
        };
        Some(mean.min(median).min(shortest.saturating_add(SAMPLE_SLACK)))
    }

    /// When the next block is due at the earliest: the interval on from the newest anchor, and
    /// from each earlier anchor the samples lead back to, as many intervals on as blocks came
    /// since. A block that came late moves the newest anchor, not the ones before it: the next
    /// block of a chain that keeps its clock (interval mining, a PoA schedule) comes on time
    /// after a late one, and the earlier anchors say when.
    pub fn next_due(&self) -> Option<Instant> {
        let step = self.interval()?;
        let newest = self.changed_after?;
        let mut back = Duration::ZERO;
        let mut earliest: Option<Instant> = None;
        let samples = std::iter::once(Duration::ZERO).chain(self.intervals.iter().rev().copied());
        for (blocks, sample) in (1u32..).zip(samples) {
            back = back.checked_add(sample)?;
            let projected = step
                .checked_mul(blocks)
                .and_then(|ahead| newest.checked_add(ahead))
                .and_then(|at| at.checked_sub(back));
            if let Some(at) = projected {
                earliest = Some(earliest.map_or(at, |e| e.min(at)));
            }
        }
        earliest
    }

    /// Until when the head last read still holds (`None`: read it as before): [`MARGIN`] before
    /// the next block is due at the earliest, at most [`LONGEST_HOLD`].
    pub fn hold_until(&self) -> Option<Instant> {
        let changed_after = self.changed_after?;
        let hold = self
            .next_due()?
            .checked_sub(MARGIN)?
            .checked_duration_since(changed_after)
            .filter(|h| !h.is_zero())?
            .min(LONGEST_HOLD);
        changed_after.checked_add(hold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What one asker polling every `poll_ms` saw of blocks made at `blocks_ms` (block `i + 1`
    /// at `blocks_ms[i]`), until `end_ms`: per block the delay until it was seen (ms), and the
    /// reads sent (an ask while the head is held is answered without one).
    fn run(blocks_ms: &[u64], poll_ms: u64, end_ms: u64) -> (Vec<u64>, u64) {
        let start = Instant::now();
        let mut cadence = Cadence::default();
        let mut seen = vec![None; blocks_ms.len()];
        let mut reads = 0;
        let mut t = 0;
        while t <= end_ms {
            let now = start + Duration::from_millis(t);
            if cadence.hold_until().is_none_or(|until| now >= until) {
                reads += 1;
                let head = blocks_ms.iter().filter(|b| **b <= t).count();
                cadence.observe(head as u64, now);
                for s in seen.iter_mut().take(head).filter(|s| s.is_none()) {
                    *s = Some(t);
                }
            }
            t += poll_ms;
        }
        let delays = seen
            .iter()
            .zip(blocks_ms)
            .map(|(s, b)| s.expect("every block seen") - b)
            .collect();
        (delays, reads)
    }

    fn every(ms: u64, from: u64, count: u64) -> Vec<u64> {
        (1..=count).map(|i| from + i * ms).collect()
    }

    #[test]
    fn blocks_on_a_clock_are_seen_as_soon_as_before_with_fewer_reads() {
        // 1 s blocks at an odd phase, an asker every 100 ms: each block seen within a poll, and
        // after the cadence is learned 3-4 reads a block instead of 10.
        let blocks = every(1_000, 37, 60);
        let (delays, reads) = run(&blocks, 100, 60_100);
        assert!(delays.iter().all(|d| *d < 100), "{delays:?}");
        assert!(reads < 60 * 4, "{reads} reads for 60 blocks");
        // A loaded node's clock: each block up to 60 ms early or late (a fixed pattern). Still
        // each seen within a poll, and still fewer reads.
        let jitter = [0i64, 40, -60, 25, -30, 60, -45, 10];
        let blocks: Vec<u64> = (1..=60u64)
            .map(|i| (1_000 * i + 37).saturating_add_signed(jitter[(i % 8) as usize]))
            .collect();
        let (delays, reads) = run(&blocks, 100, 61_100);
        assert!(delays.iter().all(|d| *d < 100), "{delays:?}");
        assert!(reads < 60 * 5, "{reads} reads for 60 jittered blocks");
        // Sparse askers (500 ms, 1 s, 2 s blocks): never later than a poll, as without the hold.
        for (block, poll) in [(1_000, 500), (2_000, 500), (5_000, 1_000)] {
            let blocks = every(block, 137, 40);
            let (delays, _) = run(&blocks, poll, 40 * block + 1_000);
            assert!(
                delays.iter().all(|d| *d < poll),
                "{block}/{poll}: {delays:?}"
            );
        }
    }

    #[test]
    fn a_late_block_an_uneven_clock_or_a_slow_spell_is_still_seen_within_a_poll() {
        // A node that mines one block late and the next on its clock (a heavy block on an
        // interval miner): the block after the late one is not held past.
        for late in [80, 150, 300, 450] {
            let mut blocks = every(1_000, 37, 30);
            blocks[9] += late;
            let (delays, _) = run(&blocks, 100, 31_100);
            assert!(
                delays.iter().all(|d| *d < 100),
                "{late} ms late: {delays:?}"
            );
        }
        // Intervals that alternate within the regular bound.
        let mut blocks = Vec::new();
        let mut at = 37;
        for i in 0..30 {
            at += if i % 2 == 0 { 1_650 } else { 2_350 };
            blocks.push(at);
        }
        let end = at + 1_000;
        let (delays, _) = run(&blocks, 100, end);
        assert!(delays.iter().all(|d| *d < 100), "alternating: {delays:?}");
        // Slower for fewer blocks than the samples, then back (a longer change of clock is a
        // clock that speeds up, below: the blocks of one hold come late).
        let mut blocks = every(1_000, 37, 10);
        blocks.extend(every(1_400, 10_037, 3));
        blocks.extend(every(1_000, 14_237, 10));
        let (delays, _) = run(&blocks, 100, 25_000);
        assert!(delays.iter().all(|d| *d < 100), "a slow spell: {delays:?}");
    }

    #[test]
    fn a_catch_up_a_reorg_or_an_irregular_chain_has_no_cadence() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let regular = |c: &mut Cadence| {
            for i in 0..=5u64 {
                c.observe(i, at(i * 1_000 + 10));
                c.observe(i, at(i * 1_000 + 900));
            }
        };
        let mut c = Cadence::default();
        regular(&mut c);
        assert!(c.hold_until().is_some());
        // Several blocks at once.
        c.observe(8, at(6_050));
        assert_eq!(c.hold_until(), None);

        let mut c = Cadence::default();
        regular(&mut c);
        // Back by one (a reorg to a shorter chain, or an endpoint behind).
        c.observe(4, at(5_950));
        assert_eq!(c.hold_until(), None);

        // A block per transaction: intervals of 0.1 to 3 s (polled every 100 ms).
        let (_, reads) = run(&[100, 3_100, 3_300, 5_000, 5_200, 8_000], 100, 9_000);
        assert_eq!(reads, 91, "read at every poll");
    }

    #[test]
    fn a_clock_that_speeds_up_costs_the_blocks_of_one_hold_and_a_slow_chain_is_held_at_most_10_s() {
        // 2 s blocks, then 500 ms blocks; an asker every 100 ms.
        let mut blocks = every(2_000, 0, 10);
        blocks.extend(every(500, 20_000, 20));
        let (delays, _) = run(&blocks, 100, 31_000);
        // Late: only the blocks made during the one hold the change fell in, each by less than
        // that hold; from then on the chain is read at every poll until it is learned again.
        let late: Vec<usize> = (0..delays.len()).filter(|i| delays[*i] >= 100).collect();
        assert!(late.iter().all(|i| (10..13).contains(i)), "{delays:?}");
        assert!(
            late.iter()
                .all(|i| u128::from(delays[*i]) < 2_000 - MARGIN.as_millis()),
            "{delays:?}"
        );

        // 30 s blocks: read at least every 10 s.
        let start = Instant::now();
        let mut c = Cadence::default();
        for i in 0..=5u64 {
            c.observe(i, start + Duration::from_secs(i * 30));
            c.observe(i, start + Duration::from_secs(i * 30 + 29));
        }
        assert_eq!(
            c.hold_until(),
            Some(start + Duration::from_secs(5 * 30 - 1) + LONGEST_HOLD)
        );
    }

    #[test]
    fn intervals_too_short_for_the_margin_hold_nothing() {
        let (_, reads) = run(&every(150, 0, 26), 50, 4_000);
        assert_eq!(reads, 81, "read at every poll");
    }

    #[test]
    fn pushed_blocks_are_timed_to_the_push() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut c = Cadence::default();
        // Blocks pushed every 1000 ms (3 ms of jitter), no read between them.
        for (i, ms) in [0u64, 1_000, 2_003, 3_000, 4_001, 5_000]
            .into_iter()
            .enumerate()
        {
            c.pushed(i as u64 + 10, at(ms));
        }
        let interval = c.interval().expect("a clock learned from pushes alone");
        assert!(
            interval >= Duration::from_millis(997) && interval <= Duration::from_millis(1_003),
            "{interval:?}"
        );
        let due = c.next_due().expect("due");
        assert!(
            due >= at(5_997) && due <= at(6_003),
            "the next block due a block after the last push: {:?}",
            due.duration_since(start)
        );
        // Two blocks at once: no clock to trust.
        c.pushed(17, at(6_000));
        assert_eq!(c.interval(), None);
    }
}
