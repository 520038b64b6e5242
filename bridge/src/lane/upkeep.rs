//! What the lane leader's upkeep transactions share ([`super::advance`], [`super::releases`]):
//! whose turn a nonce is, and sending one permissionless call through the submitter.

use alloy::primitives::{Address, Bytes};

use crate::chain::sender::Sent;
use crate::chain::submitter::{GasPlan, Job, Submit, SubmitClient};

/// Ticks after which any operator acts, not only the one whose turn it is.
pub const ANYONE_AFTER_TICKS: u32 = 3;

/// Whether `me` acts for `nonce` after it waited `ticks`: the operator at `nonce` modulo the
/// operator count acts at once (so the operators do not all pay for the same call), anyone
/// after [`ANYONE_AFTER_TICKS`].
pub fn my_turn(operators: &[Address], nonce: u64, me: Address, ticks: u32) -> bool {
    let turn = u64::try_from(operators.len())
        .ok()
        .and_then(|n| nonce.checked_rem(n))
        .and_then(|i| operators.get(usize::try_from(i).ok()?).copied());
    turn == Some(me) || ticks >= ANYONE_AFTER_TICKS
}

/// Estimate (plus 20 %) and send `input` to `bridge` through `submit`.
pub async fn send_call(
    submit: &SubmitClient,
    bridge: Address,
    input: Bytes,
) -> Result<Sent, String> {
    let gas_limit = submit
        .estimate(
            bridge,
            input.clone(),
            GasPlan::Estimate { margin_percent: 20 },
        )
        .await
        .map_err(|e| e.to_string())?;
    submit
        .submit(Job {
            to: bridge,
            input,
            gas_limit,
        })
        .await
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_operator_per_nonce_at_once_anyone_after_three_ticks() {
        let ops = [
            Address::repeat_byte(1),
            Address::repeat_byte(2),
            Address::repeat_byte(3),
        ];
        for nonce in 0..9u64 {
            let takers: Vec<_> = ops
                .iter()
                .filter(|op| my_turn(&ops, nonce, **op, 0))
                .collect();
            assert_eq!(takers.len(), 1, "nonce {nonce}");
        }
        assert!(my_turn(&ops, 0, ops[0], 0));
        assert!(!my_turn(&ops, 0, ops[1], 2));
        assert!(my_turn(&ops, 0, ops[1], 3));
        assert!(!my_turn(&[], 0, ops[0], 0), "no operators read: wait");
    }
}
