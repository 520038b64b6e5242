//! Bounded block strides over the source chain, and when a scan may stop.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;

/// `from..=to` cut into inclusive ranges of at most `stride` blocks, in order. Empty when
/// `from > to`; a zero stride is treated as one block.
pub fn strides(from: u64, to: u64, stride: u64) -> Vec<RangeInclusive<u64>> {
    let stride = stride.max(1);
    let mut out = Vec::new();
    let mut start = from;
    while start <= to {
        let end = start.saturating_add(stride.saturating_sub(1)).min(to);
        out.push(start..=end);
        if end == u64::MAX {
            break;
        }
        start = end.saturating_add(1);
    }
    out
}

/// Which nonces a round looks for and when it has found enough.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPlan {
    /// Every nonce from here on (up to `below`) is wanted: the stalled part of the lane.
    pub from_nonce: Option<u64>,
    /// Nonces at or above this are not wanted (the source's request nonce).
    pub below: u64,
    /// Individually wanted nonces (claims), whatever `from_nonce` says.
    pub claimed: BTreeSet<u64>,
    /// Stop once this many wanted requests are found.
    pub cap: usize,
}

impl ScanPlan {
    /// Whether a request with `nonce` is wanted.
    pub fn wants(&self, nonce: u64) -> bool {
        if nonce >= self.below {
            return false;
        }
        self.claimed.contains(&nonce) || self.from_nonce.is_some_and(|from| nonce >= from)
    }

    /// How many distinct requests the plan could find at most.
    pub fn wanted_count(&self) -> u64 {
        let range = self
            .from_nonce
            .map_or(0, |from| self.below.saturating_sub(from));
        let extra = self
            .claimed
            .iter()
            .filter(|n| **n < self.below && self.from_nonce.is_none_or(|from| **n < from))
            .count() as u64;
        range.saturating_add(extra)
    }

    /// Whether the scan can stop after finding `found` wanted requests.
    pub fn done(&self, found: usize) -> bool {
        found >= self.cap || found as u64 >= self.wanted_count()
    }

    /// Whether nothing at all is wanted.
    pub fn is_empty(&self) -> bool {
        self.wanted_count() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strides_cover_the_range_exactly_and_stay_bounded() {
        assert_eq!(strides(10, 9, 5), Vec::<RangeInclusive<u64>>::new());
        assert_eq!(strides(10, 10, 5), vec![10..=10]);
        assert_eq!(strides(0, 11, 5), vec![0..=4, 5..=9, 10..=11]);
        assert_eq!(strides(3, 7, 0), vec![3..=3, 4..=4, 5..=5, 6..=6, 7..=7]);
        assert_eq!(
            strides(u64::MAX - 1, u64::MAX, 10),
            vec![u64::MAX - 1..=u64::MAX]
        );
        for (from, to, stride) in [(1u64, 1000u64, 7u64), (5, 6, 100), (0, 99, 10)] {
            let s = strides(from, to, stride);
            assert_eq!(*s.first().unwrap().start(), from);
            assert_eq!(*s.last().unwrap().end(), to);
            for w in s.windows(2) {
                assert_eq!(*w[0].end() + 1, *w[1].start(), "no gap, no overlap");
            }
            assert!(s.iter().all(|r| r.end() - r.start() < stride));
        }
    }

    #[test]
    fn a_stalled_plan_wants_everything_from_the_lower_nonce_below_the_request_nonce() {
        let plan = ScanPlan {
            from_nonce: Some(4),
            below: 10,
            claimed: BTreeSet::new(),
            cap: 100,
        };
        assert!(!plan.wants(3));
        assert!(plan.wants(4) && plan.wants(9));
        assert!(!plan.wants(10));
        assert_eq!(plan.wanted_count(), 6);
        assert!(!plan.done(5));
        assert!(plan.done(6));
    }

    #[test]
    fn claims_add_single_nonces_and_the_cap_ends_a_round_early() {
        let plan = ScanPlan {
            from_nonce: None,
            below: 10,
            claimed: [2, 7, 12].into_iter().collect(),
            cap: 100,
        };
        assert!(plan.wants(2) && plan.wants(7));
        assert!(!plan.wants(3) && !plan.wants(12), "12 is not requested yet");
        assert_eq!(plan.wanted_count(), 2);
        let capped = ScanPlan {
            from_nonce: Some(0),
            below: 1000,
            claimed: [5].into_iter().collect(),
            cap: 64,
        };
        assert_eq!(
            capped.wanted_count(),
            1000,
            "a claim inside the range counts once"
        );
        assert!(capped.done(64));
        assert!(!capped.done(63));
        assert!(
            ScanPlan {
                from_nonce: None,
                below: 5,
                claimed: BTreeSet::new(),
                cap: 1
            }
            .is_empty()
        );
    }
}
