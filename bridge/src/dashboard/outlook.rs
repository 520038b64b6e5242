//! What a tracked transfer waits for, what happens next and when, and the one command its user
//! can run (issue 53): from the facts the tracker read off both chains (and the relay's store
//! when it has one). Pure, so every state is tested here.

use multibridge_contracts::Lane;
use serde::Serialize;

/// What the tracker read about one transfer.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// Unix seconds now.
    pub now: u64,
    /// Unix time of the request's source block.
    pub made_at: u64,
    /// Source blocks still to be mined before the relays act on it.
    pub confirmations_left: u64,
    /// The source chain's measured block time, seconds (at least 1).
    pub source_block_secs: u64,
    /// The destination chain's measured block time, seconds (at least 1).
    pub destination_block_secs: u64,
    /// Closed on the destination (executed or cancelled).
    pub handled: bool,
    /// Cancelled on the destination.
    pub cancelled: bool,
    /// Refunded on the source.
    pub refunded: bool,
    /// The destination holds its release back until this unix time.
    pub release_at: Option<u64>,
    /// Why it waits (a stable reason name) and whether a person must act.
    pub reason: Option<(String, bool)>,
    /// Votes or signatures so far, and how many execute it.
    pub votes: u64,
    /// Threshold.
    pub threshold: u64,
    /// The operators' `refund_after_secs` as this config says (0: no refund is driven).
    pub refund_after: u64,
    /// The depth a cancel must reach before the operators sign its refund, blocks.
    pub cancel_depth: u64,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outlook {
    /// `handled`, `release_queued`, `cancelled`, `refunded`, `confirming`, `waiting`,
    /// `rejected`, `pending` or `overdue`.
    pub state: &'static str,
    /// What it waits for and what happens next, in a sentence.
    pub next: String,
    /// When that is expected (unix seconds), where it can be told.
    pub eta: Option<u64>,
    /// From when its requester may have it refunded (unix seconds; `None`: refunds are off, or
    /// it is closed).
    pub refundable_from: Option<u64>,
    /// The one command the user can run now or later (none: nothing to do).
    pub command: Option<String>,
}

/// A pending transfer with no reason older than this is overdue (the tracker offers a claim).
pub const OVERDUE_AFTER_SECS: u64 = 60;

/// The waiting reasons that pass by themselves.
const PASSING: [&str; 5] = [
    "insufficient_liquidity",
    "rate_limited",
    "delayed",
    "vote_window",
    "paused",
];

/// The commands a user runs (placeholders for what only the user knows).
pub fn claim_command(lane: Lane, nonce: u64) -> String {
    format!(
        "multibridge claim --config <a config naming both chains, e.g. a relay config> --lane {lane} --nonce {nonce} --key-env <VARIABLE holding your key>"
    )
}

/// See [`claim_command`].
pub fn refund_command(lane: Lane, nonce: u64) -> String {
    format!(
        "multibridge refund --config <a config naming both chains and the registry, e.g. a relay config> --lane {lane} --nonce {nonce} --key-env <VARIABLE holding the requester's key>"
    )
}

/// What `facts` mean for transfer `nonce` of `lane`.
pub fn outlook(lane: Lane, nonce: u64, f: &Facts) -> Outlook {
    let src = f.source_block_secs.max(1);
    let dst = f.destination_block_secs.max(1);
    let refundable_from = (f.refund_after > 0 && !f.handled && !f.refunded)
        .then(|| f.made_at.saturating_add(f.refund_after));
    let refund = || Some(refund_command(lane, nonce));
    let after = |secs: u64| Some(f.now.saturating_add(secs));
    let refund_hint = || {
        match refundable_from {
        Some(at) if at <= f.now => {
            " You may take it back now: `multibridge refund` asks the operators to cancel and refund it.".to_owned()
        }
        Some(at) => format!(
            " You may take it back from unix {at} (in {} s): `multibridge refund` asks the operators to cancel and refund it.",
            at.saturating_sub(f.now)
        ),
        None => String::new(),
    }
    };
    let (state, next, eta, command) = if f.refunded {
        (
            "refunded",
            "Nothing: it was cancelled on the destination and refunded to its requester on the source.".to_owned(),
            None,
            None,
        )
    } else if f.cancelled {
        (
            "cancelled",
            format!(
                "Cancelled on the destination (nothing released there). The operators sign its refund once the cancel is {} blocks deep and one of them sends it; anyone may send it with their signatures.",
                f.cancel_depth
            ),
            after(
                f.cancel_depth
                    .saturating_add(3)
                    .saturating_mul(dst.max(src)),
            ),
            refund(),
        )
    } else if f.handled {
        match f.release_at {
            Some(at) if at > f.now => (
                "release_queued",
                format!(
                    "Executed; the destination holds the release back for its delay and pays it at unix {at} (in {} s; a pauser may freeze it until then). Anyone may send the release once due.",
                    at.saturating_sub(f.now)
                ),
                Some(at),
                None,
            ),
            _ => (
                "handled",
                "Nothing: the transfer executed on the destination.".to_owned(),
                None,
                None,
            ),
        }
    } else if f.confirmations_left > 0 {
        (
            "confirming",
            format!(
                "Its source block must be {} more block(s) deep before the operators act on it.",
                f.confirmations_left
            ),
            after(
                f.confirmations_left
                    .saturating_mul(src)
                    .saturating_add(dst.saturating_mul(2)),
            ),
            None,
        )
    } else if let Some((reason, needs_person)) = &f.reason {
        if *needs_person {
            (
                "rejected",
                format!(
                    "Set aside by the relay ({reason}): a person must look at it.{}",
                    refund_hint()
                ),
                refundable_from,
                refund(),
            )
        } else if PASSING.contains(&reason.as_str()) {
            let why = if reason == "paused" {
                "The destination is paused (its owner's decision): it proceeds once unpaused."
                    .to_owned()
            } else {
                format!(
                    "The destination cannot execute it yet ({reason}): it proceeds by itself once that clears."
                )
            };
            ("waiting", format!("{why}{}", refund_hint()), None, refund())
        } else {
            (
                "waiting",
                format!(
                    "The destination refuses it ({reason}). If it still does {} s after it first did, the operators cancel it and refund it on the source unasked.{}",
                    f.refund_after,
                    refund_hint()
                ),
                refundable_from,
                refund(),
            )
        }
    } else if f.now.saturating_sub(f.made_at) >= OVERDUE_AFTER_SECS {
        (
            "overdue",
            format!(
                "{} of {} operators voted or signed, and it is older than the relays normally need: a claim makes every operator that has not voted send it at once.{}",
                f.votes,
                f.threshold,
                refund_hint()
            ),
            None,
            Some(claim_command(lane, nonce)),
        )
    } else {
        (
            "pending",
            format!(
                "{} of {} operators voted or signed; it executes once {} did.",
                f.votes, f.threshold, f.threshold
            ),
            after(dst.saturating_mul(2)),
            None,
        )
    };
    Outlook {
        state,
        next,
        eta,
        refundable_from,
        command,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            now: 10_000,
            made_at: 9_990,
            source_block_secs: 1,
            destination_block_secs: 2,
            threshold: 2,
            refund_after: 86_400,
            cancel_depth: 3,
            ..Facts::default()
        }
    }

    const L: Lane = Lane::MainToService;

    #[test]
    fn every_open_state_has_a_reason_and_a_next_step() {
        let confirming = outlook(
            L,
            1,
            &Facts {
                confirmations_left: 2,
                ..facts()
            },
        );
        assert_eq!(confirming.state, "confirming");
        assert_eq!(confirming.eta, Some(10_000 + 2 + 4));
        let pending = outlook(
            L,
            1,
            &Facts {
                votes: 1,
                ..facts()
            },
        );
        assert_eq!(pending.state, "pending");
        assert!(pending.next.contains("1 of 2"), "{}", pending.next);
        assert_eq!(pending.eta, Some(10_004));
        let overdue = outlook(
            L,
            1,
            &Facts {
                made_at: 9_000,
                ..facts()
            },
        );
        assert_eq!(overdue.state, "overdue");
        assert_eq!(overdue.command, Some(claim_command(L, 1)));
        assert_eq!(overdue.refundable_from, Some(9_000 + 86_400));
        for o in [&confirming, &pending] {
            assert_eq!(o.refundable_from, Some(9_990 + 86_400));
        }
    }

    #[test]
    fn a_refused_transfer_says_when_it_is_refunded_and_how_to_ask() {
        let refused = Facts {
            reason: Some(("token_not_registered".into(), false)),
            ..facts()
        };
        let o = outlook(L, 4, &refused);
        assert_eq!(o.state, "waiting");
        assert_eq!(o.eta, Some(9_990 + 86_400));
        assert_eq!(o.command, Some(refund_command(L, 4)));
        assert!(
            o.next.contains("refund it on the source unasked"),
            "{}",
            o.next
        );
        assert!(o.next.contains("from unix 96390"), "{}", o.next);
        let old = outlook(
            L,
            4,
            &Facts {
                now: 200_000,
                ..refused.clone()
            },
        );
        assert!(old.next.contains("take it back now"), "{}", old.next);
        let paused = outlook(
            L,
            4,
            &Facts {
                reason: Some(("paused".into(), false)),
                ..facts()
            },
        );
        assert!(paused.next.contains("owner's decision"), "{}", paused.next);
        assert_eq!(paused.eta, None, "no one can tell when an owner unpauses");
        let off = outlook(
            L,
            4,
            &Facts {
                refund_after: 0,
                ..refused
            },
        );
        assert_eq!(off.refundable_from, None);
        assert!(!off.next.contains("take it back"), "{}", off.next);
    }

    #[test]
    fn closed_transfers_say_so() {
        let handled = outlook(
            L,
            1,
            &Facts {
                handled: true,
                ..facts()
            },
        );
        assert_eq!((handled.state, handled.command.clone()), ("handled", None));
        assert_eq!(handled.refundable_from, None);
        let queued = outlook(
            L,
            1,
            &Facts {
                handled: true,
                release_at: Some(10_600),
                ..facts()
            },
        );
        assert_eq!((queued.state, queued.eta), ("release_queued", Some(10_600)));
        let cancelled = outlook(
            L,
            1,
            &Facts {
                handled: true,
                cancelled: true,
                ..facts()
            },
        );
        assert_eq!(cancelled.state, "cancelled");
        assert_eq!(cancelled.command, Some(refund_command(L, 1)));
        assert!(cancelled.eta.is_some());
        let refunded = outlook(
            L,
            1,
            &Facts {
                handled: true,
                cancelled: true,
                refunded: true,
                ..facts()
            },
        );
        assert_eq!((refunded.state, refunded.command), ("refunded", None));
    }
}
