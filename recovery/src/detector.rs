//! Stall detection over ticks: a request pending for a whole tick while the lower handle nonce
//! did not move.

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
    /// Requests are pending, every one of them above the highest request nonce any earlier tick
    /// read: none has waited a whole interval yet, so nothing says the lane stalled. A lane at
    /// rest used to call its first request after the rest a stall, and every lane of a hub
    /// scanned its source at once when traffic came back (issue 54).
    Arrived {
        /// Requests between the lower handle nonce and the request nonce.
        pending: u64,
    },
    /// A request an earlier tick read was pending is still pending and the lower handle nonce is
    /// not above any earlier tick's (or this is the first tick after start or a reset, when
    /// nothing is known about progress): recover.
    Stalled {
        /// Requests between the lower handle nonce and the request nonce.
        pending: u64,
        /// The first unhandled nonce.
        lower: u64,
    },
}

/// Remembers the highest request nonce and lower handle nonce the ticks since the start (or the
/// last reset) read: a node lagging behind the ones read before cannot make a stuck request look
/// new or a stuck lane look moving.
#[derive(Debug, Clone, Default)]
pub struct StallDetector {
    seen: Option<Seen>,
}

/// The highest of each read so far.
#[derive(Debug, Clone, Copy)]
struct Seen {
    request_nonce: u64,
    lower_handle_nonce: u64,
}

impl Seen {
    /// Each of the two the higher of `self`'s and `other`'s.
    fn max(self, other: Self) -> Self {
        Self {
            request_nonce: self.request_nonce.max(other.request_nonce),
            lower_handle_nonce: self.lower_handle_nonce.max(other.lower_handle_nonce),
        }
    }
}

impl StallDetector {
    /// A detector that has seen no tick yet: its first tick with pending requests is a stall
    /// (recovery runs at once after start).
    pub fn new() -> Self {
        Self::default()
    }

    /// Observe one tick: the source's `requestNonce` and the destination's `lowerHandleNonce`.
    /// A stall is a request that an earlier tick read as requested still pending, with the lower
    /// handle nonce no higher than before: a whole interval without progress.
    pub fn observe(&mut self, request_nonce: u64, lower_handle_nonce: u64) -> Verdict {
        let read = Seen {
            request_nonce,
            lower_handle_nonce,
        };
        let before = self.seen;
        self.seen = Some(before.map_or(read, |seen| seen.max(read)));
        // A lower nonce above the request nonce means the source read is behind the destination
        // read (different RPC heights): nothing to recover from that tick.
        let pending = request_nonce.saturating_sub(lower_handle_nonce);
        if pending == 0 {
            return Verdict::Idle;
        }
        match before {
            Some(before) if lower_handle_nonce > before.lower_handle_nonce => {
                Verdict::Progressing { pending }
            }
            // Every nonce an earlier tick read as requested is below the lower handle nonce now:
            // what is pending came since.
            Some(before) if before.request_nonce <= lower_handle_nonce => {
                Verdict::Arrived { pending }
            }
            _ => Verdict::Stalled {
                pending,
                lower: lower_handle_nonce,
            },
        }
    }

    /// Forget the previous tick (e.g. after leadership changed hands): the next tick with
    /// pending requests recovers at once.
    pub fn reset(&mut self) {
        self.seen = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stalled(pending: u64, lower: u64) -> Verdict {
        Verdict::Stalled { pending, lower }
    }

    #[test]
    fn idle_when_nothing_is_pending() {
        let mut d = StallDetector::new();
        assert_eq!(d.observe(0, 0), Verdict::Idle);
        assert_eq!(d.observe(5, 5), Verdict::Idle);
    }

    #[test]
    fn the_first_tick_with_pending_requests_recovers_at_once() {
        let mut d = StallDetector::new();
        assert_eq!(d.observe(10, 4), stalled(6, 4));
    }

    #[test]
    fn a_moving_lower_nonce_is_progress_and_an_unmoved_one_a_stall() {
        let mut d = StallDetector::new();
        d.observe(10, 4);
        assert_eq!(d.observe(12, 7), Verdict::Progressing { pending: 5 });
        assert_eq!(d.observe(12, 7), stalled(5, 7));
        // New requests alone are not progress.
        assert_eq!(d.observe(20, 7), stalled(13, 7));
        assert_eq!(d.observe(20, 20), Verdict::Idle);
    }

    #[test]
    fn requests_that_came_since_the_previous_tick_are_not_a_stall_until_they_wait_a_tick() {
        let mut d = StallDetector::new();
        assert_eq!(d.observe(5, 5), Verdict::Idle);
        // A lane at rest gets a request: it arrived within the interval.
        assert_eq!(d.observe(6, 5), Verdict::Arrived { pending: 1 });
        // Still there a tick later, nothing handled: a stall.
        assert_eq!(d.observe(7, 5), stalled(2, 5));
        // Everything pending at the previous tick handled, new requests since: arrived.
        assert_eq!(d.observe(7, 7), Verdict::Idle);
        assert_eq!(d.observe(9, 7), Verdict::Arrived { pending: 2 });
        assert_eq!(d.observe(12, 9), Verdict::Progressing { pending: 3 });
        // The source read lagging the previous tick's cannot hide an unmoved pending request.
        assert_eq!(d.observe(10, 9), stalled(1, 9));
    }

    #[test]
    fn a_node_lagging_behind_the_reads_before_cannot_hide_a_stuck_request() {
        // Nonce 10 is stuck; every other source read comes from a node that has not seen the
        // requests above it yet.
        let mut d = StallDetector::new();
        assert_eq!(d.observe(15, 10), stalled(5, 10));
        assert_eq!(d.observe(10, 10), Verdict::Idle);
        assert_eq!(d.observe(15, 10), stalled(5, 10));
        // A destination read lagging a nonce behind is no progress when the next is not.
        assert_eq!(d.observe(15, 9), stalled(6, 9));
        assert_eq!(d.observe(15, 10), stalled(5, 10));
        // A reorg that takes requests back leaves the rest stuck as they were.
        assert_eq!(d.observe(13, 10), stalled(3, 10));
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
        // Not progress (the lower nonce moved since the tick before the reset)…
        assert_eq!(d.observe(10, 6), stalled(4, 6));
        assert_eq!(d.observe(7, 7), Verdict::Idle);
        // …nor an arrival: the tick before the reset read every requested nonce handled, so
        // without the reset the next pending tick is one (everything pending came since).
        let mut without_reset = StallDetector::new();
        assert_eq!(without_reset.observe(5, 5), Verdict::Idle);
        assert_eq!(without_reset.observe(6, 5), Verdict::Arrived { pending: 1 });
        let mut d = StallDetector::new();
        assert_eq!(d.observe(5, 5), Verdict::Idle);
        d.reset();
        assert_eq!(d.observe(6, 5), stalled(1, 5));
    }
}
