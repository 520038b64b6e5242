//! RPC endpoint health (issue 38, audit A3-M3): an endpoint that answers is not trusted for that
//! alone. Every probe round reads each endpoint's head; an endpoint is unhealthy when it does not
//! answer, when its head has not moved for `stall_secs` while another endpoint's has (a frozen
//! node still answering), or when it is more than `max_lag_blocks` away from the **reference
//! head** in either direction. Calls go to a healthy endpoint while one exists
//! ([`crate::ChainClient`] skips demoted ones); with none healthy, everything goes on as before
//! (failover on errors) and the alert fires.
//!
//! The reference is the lower median of the heads of the endpoints that answer and are not
//! stalled (of three the middle one), never the highest: one endpoint's word alone moves
//! nothing. Of three or more, an endpoint that claims a head far beyond the others
//! ([`Health::Ahead`]) is demoted — under the old rule (the highest head) one lying endpoint
//! demoted every honest one and took every call. Two endpoints that disagree by more than the
//! bound cannot be told apart by heads alone: the lower one is the reference, neither is
//! demoted for it, and [`crate::ChainClient`] goes back to the first healthy endpoint in
//! `rpc_urls` order at every probe, so a fallback is never promoted by what it claims.

use std::time::{Duration, Instant};

/// What makes an endpoint unhealthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthRules {
    /// Most blocks an endpoint may trail the best one.
    pub max_lag_blocks: u64,
    /// How long a head may stand still while another endpoint's moves.
    pub stall_after: Duration,
}

/// One endpoint's standing after a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Answers, keeps up.
    Healthy,
    /// Did not answer the probe.
    Unreachable,
    /// Trails the reference head by this many blocks.
    Lagging(u64),
    /// Claims a head this many blocks beyond the reference (of at least three endpoints): one
    /// endpoint's word against the others', so it is demoted, never promoted.
    Ahead(u64),
    /// Its head stood still this long while another endpoint's moved.
    Stalled(Duration),
}

impl Health {
    /// Whether calls may go to the endpoint.
    pub fn is_healthy(self) -> bool {
        self == Self::Healthy
    }

    /// Stable label for logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Unreachable => "unreachable",
            Self::Lagging(_) => "lagging",
            Self::Ahead(_) => "ahead",
            Self::Stalled(_) => "stalled",
        }
    }
}

/// What the book knows of one endpoint.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    /// Last head it answered.
    head: Option<u64>,
    /// When that head was first seen (its last move).
    moved_at: Option<Instant>,
}

/// The heads of a chain's endpoints over probe rounds.
#[derive(Debug)]
pub struct HealthBook {
    seen: Vec<Seen>,
}

impl HealthBook {
    /// A book of `endpoints` endpoints, nothing seen yet.
    pub fn new(endpoints: usize) -> Self {
        Self {
            seen: vec![Seen::default(); endpoints],
        }
    }

    /// Take one probe round at `now` (`heads[i]`: endpoint `i`'s answer) and judge every
    /// endpoint under `rules`.
    pub fn observe(
        &mut self,
        now: Instant,
        heads: &[Option<u64>],
        rules: HealthRules,
    ) -> Vec<Health> {
        for (seen, head) in self.seen.iter_mut().zip(heads) {
            if let Some(head) = *head
                && seen.head != Some(head)
            {
                seen.head = Some(head);
                seen.moved_at = Some(now);
            }
        }
        let last_move = self.seen.iter().filter_map(|s| s.moved_at).max();
        let stalled: Vec<Option<Duration>> = self
            .seen
            .iter()
            .map(|seen| {
                let still = seen
                    .moved_at
                    .map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
                let others_moved_since =
                    last_move.is_some_and(|last| seen.moved_at.is_some_and(|mine| last > mine));
                (still > rules.stall_after && others_moved_since).then_some(still)
            })
            .collect();
        let judged: Vec<u64> = heads
            .iter()
            .zip(&stalled)
            .filter(|(_, stalled)| stalled.is_none())
            .filter_map(|(head, _)| *head)
            .collect();
        let reference = reference_head(&judged);
        // Too far ahead needs others to be ahead of: a majority of at least three.
        let ahead_counts = judged.len() >= 3;
        heads
            .iter()
            .zip(stalled)
            .map(|(head, stalled)| {
                let (Some(head), Some(reference)) = (*head, reference) else {
                    return Health::Unreachable;
                };
                let behind = reference.saturating_sub(head);
                if behind > rules.max_lag_blocks {
                    return Health::Lagging(behind);
                }
                let ahead = head.saturating_sub(reference);
                if ahead_counts && ahead > rules.max_lag_blocks {
                    return Health::Ahead(ahead);
                }
                match stalled {
                    Some(still) => Health::Stalled(still),
                    None => Health::Healthy,
                }
            })
            .collect()
    }
}

/// The head endpoints are judged against: the lower median of `heads` (of three the middle
/// one, of two the lower, a lone head itself), so no single endpoint sets it.
fn reference_head(heads: &[u64]) -> Option<u64> {
    let mut heads = heads.to_vec();
    heads.sort_unstable();
    heads.get(heads.len().saturating_sub(1) / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: HealthRules = HealthRules {
        max_lag_blocks: 3,
        stall_after: Duration::from_secs(5),
    };

    fn at(start: Instant, secs: u64) -> Instant {
        start + Duration::from_secs(secs)
    }

    #[test]
    fn an_endpoint_that_answers_but_stands_still_is_stalled_once_another_moves() {
        let t0 = Instant::now();
        let mut book = HealthBook::new(2);
        // Both at 100; the second moves on, the first answers 100 forever.
        assert_eq!(
            book.observe(t0, &[Some(100), Some(100)], RULES),
            vec![Health::Healthy, Health::Healthy]
        );
        for s in 1..=5 {
            let out = book.observe(at(t0, s), &[Some(100), Some(100 + s / 2)], RULES);
            assert!(out.iter().all(|h| h.is_healthy()), "{s}: {out:?}");
        }
        let out = book.observe(at(t0, 6), &[Some(100), Some(103)], RULES);
        assert_eq!(out[0], Health::Stalled(Duration::from_secs(6)));
        assert!(out[1].is_healthy());
        // Then it falls behind by more than the bound: lagging.
        let out = book.observe(at(t0, 7), &[Some(100), Some(104)], RULES);
        assert_eq!(out[0], Health::Lagging(4));
        // It catches up: healthy again.
        let out = book.observe(at(t0, 8), &[Some(104), Some(104)], RULES);
        assert_eq!(out, vec![Health::Healthy, Health::Healthy]);
    }

    /// Audit A3-M3 (appendix B): an endpoint that claims the real head + 9 demoted both honest
    /// endpoints and took every call under the old rule (judged against the highest head).
    #[test]
    fn an_endpoint_claiming_a_head_beyond_all_others_is_never_promoted() {
        let rules = HealthRules {
            max_lag_blocks: 8,
            stall_after: Duration::from_secs(30),
        };
        let t0 = Instant::now();
        let mut book = HealthBook::new(3);
        for s in 0..5u64 {
            let real = 1_000 + s;
            let out = book.observe(at(t0, s), &[Some(real), Some(real), Some(real + 9)], rules);
            assert_eq!(
                out,
                vec![Health::Healthy, Health::Healthy, Health::Ahead(9)],
                "round {s}"
            );
            assert!(!out[2].is_healthy());
        }
        // Two endpoints that disagree: neither can be told to lie, neither is demoted for it
        // (the client keeps to the first in rpc_urls order).
        let mut book = HealthBook::new(2);
        let out = book.observe(t0, &[Some(1_000), Some(1_009)], rules);
        assert_eq!(out, vec![Health::Healthy, Health::Healthy]);
        // An honest endpoint behind two that agree is still lagging.
        let mut book = HealthBook::new(3);
        let out = book.observe(t0, &[Some(1_000), Some(991), Some(1_001)], rules);
        assert_eq!(
            out,
            vec![Health::Healthy, Health::Lagging(9), Health::Healthy]
        );
        // A frozen endpoint is no reference: once stalled, the live one alone is.
        let mut book = HealthBook::new(2);
        for s in 0..=31u64 {
            let out = book.observe(at(t0, s), &[Some(2_000 + s), Some(1_980)], rules);
            if s == 31 {
                assert_eq!(out[0], Health::Healthy);
                assert_eq!(out[1], Health::Lagging(51));
            }
        }
    }

    #[test]
    fn a_chain_without_new_blocks_demotes_nobody() {
        let t0 = Instant::now();
        let mut book = HealthBook::new(2);
        for s in 0..60 {
            let out = book.observe(at(t0, s), &[Some(7), Some(7)], RULES);
            assert!(out.iter().all(|h| h.is_healthy()), "{s}: {out:?}");
        }
    }

    #[test]
    fn silence_is_unreachable_and_a_lone_answer_is_the_best() {
        let t0 = Instant::now();
        let mut book = HealthBook::new(3);
        let out = book.observe(t0, &[None, Some(10), Some(9)], RULES);
        assert_eq!(
            out,
            vec![Health::Unreachable, Health::Healthy, Health::Healthy]
        );
        let out = book.observe(t0, &[None, None, None], RULES);
        assert!(out.iter().all(|h| *h == Health::Unreachable));
    }
}
