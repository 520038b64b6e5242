//! Block ranges for `eth_getLogs` sized by what they return, not only by blocks.
//!
//! A node answers `eth_getLogs` with every matching log of the range in one response, and the
//! relay holds the whole response in memory while it decodes it. A range of a thousand quiet
//! blocks is a few bytes; the same range after a burst can hold a hundred thousand requests
//! (hundreds of MiB of JSON). [`LogSpan`] starts small, doubles while answers stay well under
//! the target and halves when one goes over it, so one response stays near the target whatever
//! the history looks like — the relay's memory does not grow with the backlog.

use std::ops::RangeInclusive;

/// Logs one `eth_getLogs` answer should hold at most (about 1.3 KiB of JSON each).
pub const TARGET_LOGS: usize = 1_000;

/// How many blocks `range` spans (0 for an empty one).
pub fn blocks_in(range: &RangeInclusive<u64>) -> u64 {
    range
        .end()
        .checked_sub(*range.start())
        .map_or(0, |d| d.saturating_add(1))
}

/// The width of the next `eth_getLogs` range, adapted to the density of the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSpan {
    blocks: u64,
    max_blocks: u64,
    target: usize,
    /// How wide [`open_up`](Self::open_up) may make it: `max_blocks` until a read fails, then
    /// the width the failure left (opening must not undo the halving, or a read too wide for
    /// the node would be asked again every round).
    open_to: u64,
    /// Whether the reader asked already if the rest is sparse: once per span, whatever the width
    /// does after (the count only grows, and a span opened and then narrowed by a dense answer
    /// must not be opened again on one endpoint's word).
    asked_sparse: bool,
}

impl LogSpan {
    /// Start at one block, never wider than `max_blocks` (the node's own limit), aiming at
    /// `target` logs per answer.
    pub fn new(max_blocks: u64, target: usize) -> Self {
        Self {
            blocks: 1,
            max_blocks: max_blocks.max(1),
            target: target.max(1),
            open_to: max_blocks.max(1),
            asked_sparse: false,
        }
    }

    /// [`new`](Self::new) aiming at [`TARGET_LOGS`].
    pub fn with_max(max_blocks: u64) -> Self {
        Self::new(max_blocks, TARGET_LOGS)
    }

    /// Blocks the next range spans.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Whether the span could still be opened wider: narrower than it may open to, and the
    /// reader has not asked yet whether the rest is sparse.
    pub fn may_open(&self) -> bool {
        self.blocks < self.open_to && !self.asked_sparse
    }

    /// Whether the reader should ask now if the rest is sparse: the span may still open and its
    /// next range from `from` ends short of `to` (a caught-up reader never asks).
    pub fn may_open_before(&self, from: u64, to: u64) -> bool {
        self.may_open() && self.next(from, to).is_some_and(|r| *r.end() < to)
    }

    /// The reader asked whether the rest is sparse ([`may_open`](Self::may_open) is false from
    /// here on, whatever the answer; the span still doubles on sparse answers). Marked before
    /// the question is sent.
    pub fn asked(&mut self) {
        self.asked_sparse = true;
    }

    /// Logs an answer may hold and still count as sparse (a quarter of the target: the same
    /// answer widens the span).
    pub fn sparse_logs(&self) -> u64 {
        u64::try_from(self.target / 4).unwrap_or(u64::MAX)
    }

    /// The rest of the range is known to hold at most [`sparse_logs`](Self::sparse_logs) logs:
    /// read it as wide as the node allows (or as a failed read left it).
    pub fn open_up(&mut self) {
        self.blocks = self.blocks.max(self.open_to);
    }

    /// The range to read from `from` (never past `to`), or `None` when `from > to`.
    pub fn next(&self, from: u64, to: u64) -> Option<RangeInclusive<u64>> {
        if from > to {
            return None;
        }
        let end = from.saturating_add(self.blocks.saturating_sub(1)).min(to);
        Some(from..=end)
    }

    /// A read of `blocks` blocks failed: the next is at most half as wide. The answer may have
    /// been over the endpoint's bound (`max_answer_mib`) or too heavy for the node to answer in
    /// time — a quiet stretch widens the span, and the blocks after it may be a backlog's; a
    /// width kept after such a failure would fail the same way every round, and the reader would
    /// never move. Halved from the range read, not the span: a range cut short (by a count, the
    /// head) and halved from a wider span would be asked again unchanged for several rounds.
    /// An endpoint that is down narrows it too: sparse answers double it back.
    pub fn failed(&mut self, blocks: u64) {
        self.blocks = self.blocks.min(blocks).checked_div(2).unwrap_or(1).max(1);
        self.open_to = self.open_to.min(self.blocks);
    }

    /// A range of `blocks` blocks answered `found` logs: adapt the width.
    pub fn observe(&mut self, blocks: u64, found: usize) {
        if found > self.target {
            // Too dense: aim at the target from what this answer showed (at least halve).
            let per_block = found.div_ceil(usize::try_from(blocks.max(1)).unwrap_or(usize::MAX));
            let fit = u64::try_from(self.target.checked_div(per_block).unwrap_or(1)).unwrap_or(1);
            self.blocks = fit.min(self.blocks.checked_div(2).unwrap_or(1)).max(1);
        } else if found.saturating_mul(4) <= self.target && blocks >= self.blocks {
            // Sparse, and the whole width was used (not a range cut short by the head): widen.
            self.blocks = self.blocks.saturating_mul(2).min(self.max_blocks);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_range_spans_its_blocks() {
        assert_eq!(blocks_in(&(5..=5)), 1);
        assert_eq!(blocks_in(&(5..=9)), 5);
        assert_eq!(blocks_in(&(0..=u64::MAX)), u64::MAX);
        #[allow(clippy::reversed_empty_ranges)]
        let empty = 9..=5;
        assert_eq!(blocks_in(&empty), 0);
    }

    #[test]
    fn a_span_known_sparse_opens_up_to_the_node_limit() {
        let mut span = LogSpan::new(2_000, 1_000);
        assert!(span.may_open());
        assert_eq!(span.sparse_logs(), 250);
        span.asked();
        assert!(!span.may_open(), "asked once");
        span.open_up();
        assert_eq!(span.next(10, 1_000_000), Some(10..=2_009));
        // A dense answer still narrows it, and the span is not opened again: one endpoint's
        // word opens it once.
        span.observe(2_000, 4_000);
        assert_eq!(span.next(10, 1_000_000), Some(10..=509));
        assert!(!span.may_open(), "narrowed after opening, not asked again");
        assert!(!span.may_open_before(10, 1_000_000));

        // A read that failed is not opened up again past what the failure left: a range too
        // wide for the node would fail every round.
        let mut span = LogSpan::new(2_000, 1_000);
        span.open_up();
        span.failed(2_000);
        assert_eq!(span.next(0, 1_000_000), Some(0..=999));
        span.open_up();
        assert_eq!(span.next(0, 1_000_000), Some(0..=999));

        // Found not sparse: asked once, never opened after, still doubling on sparse answers,
        // and not asked again when a dense answer narrows it below where it was asked.
        let mut span = LogSpan::new(2_000, 1_000);
        span.observe(1, 0);
        span.observe(2, 0);
        assert_eq!(span.blocks(), 4);
        span.asked();
        assert!(!span.may_open());
        span.observe(4, 0);
        assert_eq!(span.next(0, 1_000_000), Some(0..=7));
        span.observe(8, 9_000);
        assert_eq!(span.blocks(), 1);
        assert!(
            !span.may_open(),
            "narrowed below where it was asked, not asked again"
        );
        assert!(!span.may_open_before(0, 1_000_000));
    }

    #[test]
    fn a_span_asks_only_when_its_next_range_ends_short_of_the_head() {
        let span = LogSpan::new(2_000, 1_000);
        // One block from 100 up to 100: caught up, nothing to ask.
        assert!(!span.may_open_before(100, 100));
        assert!(!span.may_open_before(101, 100), "nothing left to read");
        assert!(span.may_open_before(100, 101));
        let span = LogSpan::new(1, 1_000);
        assert!(
            !span.may_open_before(0, 1_000_000),
            "already as wide as the node allows"
        );
    }

    #[test]
    fn quiet_history_widens_to_the_node_limit() {
        let mut span = LogSpan::new(1_000, 1_000);
        let mut from = 0u64;
        let mut reads = 0;
        while let Some(range) = span.next(from, 1_000_000) {
            let blocks = range.end() - range.start() + 1;
            span.observe(blocks, 0);
            from = range.end() + 1;
            reads += 1;
            if span.blocks() == 1_000 {
                break;
            }
        }
        assert_eq!(span.blocks(), 1_000);
        assert!(reads <= 11, "doubling reaches the limit fast: {reads}");
    }

    /// A span of at most `max` blocks widened to it by quiet answers.
    fn widened(max: u64) -> LogSpan {
        let mut span = LogSpan::new(max, 1_000);
        for _ in 0..20 {
            span.observe(span.blocks(), 0);
        }
        assert_eq!(span.blocks(), max);
        span
    }

    #[test]
    fn a_failed_read_halves_the_span_down_to_one_block() {
        let mut span = widened(1_024);
        span.failed(1_024);
        assert_eq!(span.blocks(), 512);
        // A range cut short (a count, the head) halves from what was read.
        span.failed(40);
        assert_eq!(span.blocks(), 20);
        for _ in 0..20 {
            span.failed(span.blocks());
        }
        assert_eq!(span.blocks(), 1, "never narrower than a block");
    }

    #[test]
    fn a_dense_answer_shrinks_the_span_to_the_target() {
        let mut span = widened(1_000);
        // A burst: 500 logs per block.
        span.observe(1_000, 500_000);
        assert_eq!(span.blocks(), 2, "1000 logs at 500 per block");
        span.observe(2, 1_000);
        assert_eq!(span.blocks(), 2, "on target: unchanged");
        // Denser than the target in a single block: one block is the floor.
        span.observe(2, 5_000);
        assert_eq!(span.blocks(), 1);
        span.observe(1, 2_500);
        assert_eq!(span.blocks(), 1);
    }

    #[test]
    fn a_range_cut_short_by_the_head_does_not_widen() {
        let mut span = LogSpan::new(1_000, 1_000);
        span.observe(1, 0);
        assert_eq!(span.blocks(), 2);
        assert_eq!(span.next(10, 10), Some(10..=10));
        span.observe(1, 0);
        assert_eq!(span.blocks(), 2, "only one block was there to read");
        assert_eq!(span.next(11, 10), None);
    }
}
