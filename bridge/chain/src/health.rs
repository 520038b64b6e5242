//! RPC endpoint health (issue 38): an endpoint that answers is not trusted for that alone. Every
//! probe round reads each endpoint's head; an endpoint is unhealthy when it does not answer,
//! when it lags the best endpoint by more than `max_lag_blocks`, or when its head has not moved
//! for `stall_secs` while another endpoint's has (a frozen node still answering). Calls go to a
//! healthy endpoint while one exists ([`crate::ChainClient`] skips demoted ones); with none
//! healthy, everything goes on as before (failover on errors) and the alert fires.

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
    /// Trails the best endpoint by this many blocks.
    Lagging(u64),
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
        let best = heads.iter().flatten().copied().max();
        let last_move = self.seen.iter().filter_map(|s| s.moved_at).max();
        self.seen
            .iter()
            .zip(heads)
            .map(|(seen, head)| {
                let (Some(head), Some(best)) = (*head, best) else {
                    return Health::Unreachable;
                };
                let behind = best.saturating_sub(head);
                if behind > rules.max_lag_blocks {
                    return Health::Lagging(behind);
                }
                let still = seen
                    .moved_at
                    .map_or(Duration::ZERO, |at| now.saturating_duration_since(at));
                let others_moved_since =
                    last_move.is_some_and(|last| seen.moved_at.is_some_and(|mine| last > mine));
                if still > rules.stall_after && others_moved_since {
                    return Health::Stalled(still);
                }
                Health::Healthy
            })
            .collect()
    }
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
