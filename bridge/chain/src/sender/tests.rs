//! When a transaction in flight is re-priced.

use super::*;

const GWEI: u128 = 1_000_000_000;
const STUCK: Duration = Duration::from_secs(15);

fn waiting(age_secs: u64, max_fee: u128, sent_block: u64, next_in_line: bool) -> Waiting {
    Waiting {
        age: Duration::from_secs(age_secs),
        max_fee,
        sent_block,
        next_in_line,
    }
}

fn head(number: u64, base_fee: u128, had_room: bool) -> Head {
    Head {
        number,
        base_fee,
        had_room,
    }
}

#[test]
fn a_fresh_well_priced_transaction_waits() {
    let w = waiting(3, 2 * GWEI, 10, true);
    assert!(!w.needs_replacement(&head(11, GWEI, false), STUCK));
    assert!(
        !w.needs_replacement(&head(11, GWEI, true), STUCK),
        "one block is normal"
    );
}

#[test]
fn anything_unmined_past_stuck_after_is_replaced() {
    let w = waiting(15, 2 * GWEI, 10, false);
    assert!(w.needs_replacement(&head(11, GWEI, false), STUCK));
}

#[test]
fn a_bid_below_the_base_fee_is_repriced_once_a_block_passed() {
    let h = head(12, 3 * GWEI, false);
    assert!(waiting(1, 2 * GWEI, 10, false).needs_replacement(&h, STUCK));
    assert!(
        !waiting(1, 2 * GWEI, 12, false).needs_replacement(&h, STUCK),
        "the base fee rose in the block it was sent at: wait for the next"
    );
    assert!(!waiting(2, 3 * GWEI, 10, false).needs_replacement(&h, STUCK));
}

#[test]
fn passed_over_only_counts_for_the_next_in_line_and_a_block_with_room() {
    let roomy_later = head(12, GWEI, true);
    assert!(waiting(3, 2 * GWEI, 10, true).needs_replacement(&roomy_later, STUCK));
    // Behind a lower nonce it just waits its turn.
    assert!(!waiting(3, 2 * GWEI, 10, false).needs_replacement(&roomy_later, STUCK));
    // Full blocks: no room was there to take it.
    assert!(!waiting(3, 2 * GWEI, 10, true).needs_replacement(&head(12, GWEI, false), STUCK));
    // The block right after sending may have been built before it arrived.
    assert!(!waiting(3, 2 * GWEI, 10, true).needs_replacement(&head(11, GWEI, true), STUCK));
}

#[test]
fn the_next_in_line_passed_over_by_more_than_three_full_blocks_is_replaced() {
    let full = |n| head(n, GWEI, false);
    let next = waiting(3, 2 * GWEI, 10, true);
    assert!(
        !next.needs_replacement(&full(13), STUCK),
        "three full blocks: a busy chain"
    );
    assert!(next.needs_replacement(&full(14), STUCK));
    assert!(
        !waiting(3, 2 * GWEI, 10, false).needs_replacement(&full(14), STUCK),
        "behind a lower nonce it waits its turn"
    );
    assert!(
        !waiting(1, 2 * GWEI, 10, true).needs_replacement(&full(14), STUCK),
        "within the grace"
    );
}

#[test]
fn a_resend_counts_from_the_newest_head_known_when_it_left() {
    // A poll read head 10, then crossed two blocks before it re-sent: the replacement left
    // after block 12 and has not been passed over by block 13 with room.
    let stamped = resent_block(10, Some(12));
    assert_eq!(stamped, 12);
    assert!(!waiting(3, 2 * GWEI, stamped, true).needs_replacement(&head(13, GWEI, true), STUCK));
    // Stamped at the poll's head it would have been bid up again there.
    assert!(waiting(3, 2 * GWEI, 10, true).needs_replacement(&head(13, GWEI, true), STUCK));
    // A shared head behind the poll's (another endpoint) or unreadable never moves it back.
    assert_eq!(resent_block(10, Some(8)), 10);
    assert_eq!(resent_block(10, None), 10);
}
