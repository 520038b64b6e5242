//! Stall detection over ticks: pending requests and a lower handle nonce that did not move.

/// What one tick concluded about a lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every request is handled (`lowerHandleNonce == requestNonce`).
    Idle,
    /// Requests are pending but the lower handle nonce moved since the previous tick.
    Progressing {
        /// Requests between the lower handle nonce and the request nonce.
        pending: u64,
    },
    /// Requests are pending and the lower handle nonce did not move (or this is the first tick
    /// after start, when nothing is known about progress): recover.
    Stalled {
        /// Requests between the lower handle nonce and the request nonce.
        pending: u64,
        /// The first unhandled nonce.
        lower: u64,
    },
}

/// Remembers the lower handle nonce of the previous tick.
#[derive(Debug, Clone, Default)]
pub struct StallDetector {
    previous_lower: Option<u64>,
}

impl StallDetector {
    /// A detector that has seen no tick yet: its first tick with pending requests is a stall
    /// (recovery runs at once after start).
    pub fn new() -> Self {
        Self::default()
    }

    /// Observe one tick: the source's `requestNonce` and the destination's `lowerHandleNonce`.
    pub fn observe(&mut self, request_nonce: u64, lower_handle_nonce: u64) -> Verdict {
        let previous = self.previous_lower.replace(lower_handle_nonce);
        // A lower nonce above the request nonce means the source read is behind the destination
        // read (different RPC heights): nothing to recover from that tick.
        let pending = request_nonce.saturating_sub(lower_handle_nonce);
        if pending == 0 {
            return Verdict::Idle;
        }
        match previous {
            Some(previous) if lower_handle_nonce > previous => Verdict::Progressing { pending },
            _ => Verdict::Stalled {
                pending,
                lower: lower_handle_nonce,
            },
        }
    }

    /// Forget the previous tick (e.g. after leadership changed hands): the next tick with
    /// pending requests recovers at once.
    pub fn reset(&mut self) {
        self.previous_lower = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_when_nothing_is_pending() {
        let mut d = StallDetector::new();
        assert_eq!(d.observe(0, 0), Verdict::Idle);
        assert_eq!(d.observe(5, 5), Verdict::Idle);
    }

    #[test]
    fn the_first_tick_with_pending_requests_recovers_at_once() {
        let mut d = StallDetector::new();
        assert_eq!(
            d.observe(10, 4),
            Verdict::Stalled {
                pending: 6,
                lower: 4
            }
        );
    }

    #[test]
    fn a_moving_lower_nonce_is_progress_and_an_unmoved_one_a_stall() {
        let mut d = StallDetector::new();
        d.observe(10, 4);
        assert_eq!(d.observe(12, 7), Verdict::Progressing { pending: 5 });
        assert_eq!(
            d.observe(12, 7),
            Verdict::Stalled {
                pending: 5,
                lower: 7
            }
        );
        // New requests alone are not progress.
        assert_eq!(
            d.observe(20, 7),
            Verdict::Stalled {
                pending: 13,
                lower: 7
            }
        );
        assert_eq!(d.observe(20, 20), Verdict::Idle);
    }

    #[test]
    fn a_source_read_behind_the_destination_is_not_a_stall() {
        let mut d = StallDetector::new();
        assert_eq!(d.observe(3, 5), Verdict::Idle);
    }

    #[test]
    fn reset_makes_the_next_pending_tick_a_stall() {
        let mut d = StallDetector::new();
        d.observe(10, 4);
        d.reset();
        assert!(matches!(d.observe(10, 6), Verdict::Stalled { .. }));
    }
}
