//! EIP-1559 fees and their bounded escalation for stuck transactions (pure functions).
//!
//! A replacement must raise both the fee cap and the tip by at least the node's price bump
//! (10 % on geth; we use more) and never below the previous bid, and the total is capped at a
//! multiple of the first bid so a fee spike cannot drain the signer.

/// The two EIP-1559 fee fields of one transaction, in wei.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fees {
    /// `maxFeePerGas`.
    pub max_fee_per_gas: u128,
    /// `maxPriorityFeePerGas`.
    pub max_priority_fee_per_gas: u128,
}

/// How fees are chosen and escalated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeePolicy {
    /// Percent added on each replacement (at least 10 for geth; default 15).
    pub bump_percent: u128,
    /// No bid above this multiple of the first bid.
    pub cap_multiplier: u128,
    /// Tip used when the node suggests none.
    pub min_priority_fee: u128,
    /// No bid's fee cap above this, whatever the node says the base fee or the tip is (a lying
    /// or broken RPC cannot drain the signer; audit M-7). `u128::MAX`: none.
    pub max_fee_per_gas: u128,
}

impl Default for FeePolicy {
    fn default() -> Self {
        Self {
            bump_percent: 15,
            cap_multiplier: 4,
            min_priority_fee: 1_000_000, // 0.001 gwei
            max_fee_per_gas: u128::MAX,
        }
    }
}

/// First bid: tip as suggested (at least the minimum), cap = 2 × base fee + tip, so the
/// transaction stays valid through several blocks of rising base fee.
pub fn initial_fees(base_fee: u128, suggested_tip: u128, policy: &FeePolicy) -> Fees {
    let tip = suggested_tip
        .max(policy.min_priority_fee)
        .min(policy.max_fee_per_gas);
    Fees {
        max_fee_per_gas: base_fee
            .saturating_mul(2)
            .saturating_add(tip)
            .min(policy.max_fee_per_gas),
        max_priority_fee_per_gas: tip,
    }
}

/// Percent a leading bid ([`leading`]) adds to the tip.
pub const LEAD_TIP_PERCENT: u128 = 10;

/// `fees` with the tip raised by [`LEAD_TIP_PERCENT`] (at least 1 wei) and the cap by as much
/// (still within the policy's cap), so a block builder that orders by tip puts this transaction
/// before others bidding the market's tip: a recording vote goes before the deciding vote of
/// the same requests in one block. Costs the tip's tenth on the gas it uses.
pub fn leading(fees: Fees, policy: &FeePolicy) -> Fees {
    let raise = (fees
        .max_priority_fee_per_gas
        .saturating_mul(LEAD_TIP_PERCENT)
        / 100)
        .max(1);
    let max_fee_per_gas = fees
        .max_fee_per_gas
        .saturating_add(raise)
        .min(policy.max_fee_per_gas);
    Fees {
        max_priority_fee_per_gas: fees
            .max_priority_fee_per_gas
            .saturating_add(raise)
            .min(max_fee_per_gas),
        max_fee_per_gas,
    }
}

fn bumped(value: u128, percent: u128) -> u128 {
    // Round up so tiny values still move; +1 guarantees strict growth.
    value
        .saturating_mul(percent.saturating_add(100))
        .div_ceil(100)
        .max(value.saturating_add(1))
}

/// The replacement bid for a stuck transaction: the previous bid raised by the bump, or the fresh
/// market bid if that is higher, capped at `cap_multiplier × first`. `None` when the cap leaves no
/// room for a valid replacement (keep waiting, and alert).
pub fn escalate(previous: Fees, fresh: Fees, first: Fees, policy: &FeePolicy) -> Option<Fees> {
    let cap = Fees {
        max_fee_per_gas: first
            .max_fee_per_gas
            .saturating_mul(policy.cap_multiplier)
            .min(policy.max_fee_per_gas),
        max_priority_fee_per_gas: first
            .max_priority_fee_per_gas
            .saturating_mul(policy.cap_multiplier)
            .min(policy.max_fee_per_gas),
    };
    let min_tip = bumped(previous.max_priority_fee_per_gas, policy.bump_percent);
    let min_cap = bumped(previous.max_fee_per_gas, policy.bump_percent);
    let tip = min_tip.max(fresh.max_priority_fee_per_gas);
    let max_fee = min_cap.max(fresh.max_fee_per_gas).max(tip);
    let raises_both = tip > previous.max_priority_fee_per_gas && max_fee > previous.max_fee_per_gas;
    if !raises_both || tip > cap.max_priority_fee_per_gas || max_fee > cap.max_fee_per_gas {
        return None;
    }
    Some(Fees {
        max_fee_per_gas: max_fee,
        max_priority_fee_per_gas: tip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leading_bid_tips_more_within_the_cap() {
        let p = FeePolicy::default();
        let market = initial_fees(10 * GWEI, GWEI, &p);
        let lead = leading(market, &p);
        assert!(lead.max_priority_fee_per_gas > market.max_priority_fee_per_gas);
        assert_eq!(
            lead.max_priority_fee_per_gas - market.max_priority_fee_per_gas,
            lead.max_fee_per_gas - market.max_fee_per_gas,
            "the cap rises by the tip's raise: the base fee share is unchanged"
        );
        let tiny = Fees {
            max_fee_per_gas: 3,
            max_priority_fee_per_gas: 1,
        };
        assert_eq!(
            leading(tiny, &p).max_priority_fee_per_gas,
            2,
            "at least 1 wei more"
        );
        let capped = FeePolicy {
            max_fee_per_gas: market.max_fee_per_gas,
            ..p
        };
        let at_cap = leading(market, &capped);
        assert_eq!(
            at_cap.max_fee_per_gas, market.max_fee_per_gas,
            "never above the policy's cap"
        );
        assert!(at_cap.max_priority_fee_per_gas <= at_cap.max_fee_per_gas);
    }

    const GWEI: u128 = 1_000_000_000;

    #[test]
    fn first_bid_covers_a_doubling_base_fee() {
        let p = FeePolicy::default();
        let f = initial_fees(10 * GWEI, GWEI, &p);
        assert_eq!(f.max_priority_fee_per_gas, GWEI);
        assert_eq!(f.max_fee_per_gas, 21 * GWEI);
        assert_eq!(
            initial_fees(10 * GWEI, 0, &p).max_priority_fee_per_gas,
            p.min_priority_fee
        );
    }

    #[test]
    fn escalation_is_monotonic_valid_for_replacement_and_capped() {
        let p = FeePolicy::default();
        let first = initial_fees(10 * GWEI, GWEI, &p);
        let mut bid = first;
        let mut rounds = 0;
        while let Some(next) = escalate(bid, first, first, &p) {
            // Both fields rise by at least the bump: a node accepts it as a replacement.
            assert!(next.max_priority_fee_per_gas * 100 >= bid.max_priority_fee_per_gas * 115);
            assert!(next.max_fee_per_gas * 100 >= bid.max_fee_per_gas * 115);
            assert!(next.max_fee_per_gas >= next.max_priority_fee_per_gas);
            assert!(next.max_fee_per_gas <= first.max_fee_per_gas * 4);
            bid = next;
            rounds += 1;
            assert!(rounds < 100, "escalation must end at the cap");
        }
        assert!(
            rounds >= 5,
            "a few replacements fit under a 4x cap, got {rounds}"
        );
    }

    #[test]
    fn a_higher_market_price_is_followed_but_never_past_the_cap() {
        let p = FeePolicy::default();
        let first = initial_fees(10 * GWEI, GWEI, &p);
        let fresh = initial_fees(30 * GWEI, 2 * GWEI, &p);
        let next = escalate(first, fresh, first, &p).unwrap();
        assert_eq!(next.max_fee_per_gas, fresh.max_fee_per_gas);
        assert_eq!(
            next.max_priority_fee_per_gas,
            fresh.max_priority_fee_per_gas
        );
        let spike = initial_fees(1_000 * GWEI, 2 * GWEI, &p);
        assert_eq!(
            escalate(first, spike, first, &p),
            None,
            "no bid above the cap"
        );
    }

    #[test]
    fn tiny_and_huge_values_do_not_overflow_or_stall() {
        let p = FeePolicy::default();
        let one = Fees {
            max_fee_per_gas: 1,
            max_priority_fee_per_gas: 1,
        };
        let next = escalate(
            one,
            one,
            Fees {
                max_fee_per_gas: 100,
                max_priority_fee_per_gas: 100,
            },
            &p,
        )
        .unwrap();
        assert!(next.max_fee_per_gas > 1 && next.max_priority_fee_per_gas > 1);
        let max = Fees {
            max_fee_per_gas: u128::MAX,
            max_priority_fee_per_gas: u128::MAX,
        };
        assert_eq!(escalate(max, max, max, &p), None);
    }

    /// Audit M-7: an RPC that reports an absurd base fee or tip gets a bid no higher than the
    /// absolute cap, first or escalated.
    #[test]
    fn no_bid_exceeds_the_absolute_cap_whatever_the_node_says() {
        let gwei = 1_000_000_000u128;
        let policy = FeePolicy {
            max_fee_per_gas: 500 * gwei,
            ..FeePolicy::default()
        };
        let first = initial_fees(1_000_000 * gwei, 2_000_000 * gwei, &policy);
        assert_eq!(first.max_fee_per_gas, 500 * gwei);
        assert!(first.max_priority_fee_per_gas <= 500 * gwei);
        let honest = initial_fees(100 * gwei, 2 * gwei, &policy);
        assert_eq!(honest.max_fee_per_gas, 202 * gwei, "honest bids unchanged");
        let mut bid = honest;
        while let Some(next) = escalate(bid, bid, honest, &policy) {
            assert!(next.max_fee_per_gas <= 500 * gwei);
            bid = next;
        }
        assert!(bid.max_fee_per_gas <= 500 * gwei);
    }
}
