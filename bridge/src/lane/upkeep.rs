//! The lane leader's upkeep: moving an idle lane's `lowerHandleNonce` ([`super::advance`]) and
//! executing due queued releases ([`super::releases`]), every recovery interval in a task of its
//! own — a long queue never delays recovery or claims (audit NEW-M3). And what their
//! transactions share: whose turn a nonce is, and sending one permissionless call through the
//! submitter.

use std::time::Duration;

use alloy::primitives::{Address, Bytes};
use tokio::sync::watch;

use super::advance::LowerAdvance;
use super::releases::QueuedReleases;
use crate::chain::sender::Sent;
use crate::chain::submitter::{GasPlan, Job, Submit, SubmitClient};
use crate::task::{Next, Stepper};

/// The upkeep task of one lane.
pub struct Upkeep {
    /// The lower-nonce advancer.
    pub advance: LowerAdvance,
    /// The queued-release executor.
    pub releases: QueuedReleases,
    /// Whether this replica leads the lane.
    pub leading: watch::Receiver<bool>,
    /// Pause between ticks.
    pub interval: Duration,
}

impl Stepper for Upkeep {
    type Error = std::convert::Infallible;

    async fn step(&mut self) -> Result<Next, Self::Error> {
        if !*self.leading.borrow_and_update() {
            // Not leading: wait for a term, then start it with a clean slate.
            if self.leading.changed().await.is_err() {
                // No campaign any more (the relay stops): nothing left to do.
                std::future::pending::<()>().await;
            }
            self.advance.reset();
            self.releases.reset();
            return Ok(Next::Now);
        }
        // Each failure only skips this tick (nothing is lost): logged, retried at the next.
        if let Err(e) = self.advance.tick().await {
            tracing::warn!(error = %e, "cannot advance lowerHandleNonce; next tick");
        }
        if let Err(e) = self.releases.tick().await {
            tracing::warn!(error = %e, "cannot read or execute queued releases; next tick");
        }
        Ok(Next::After(self.interval))
    }
}

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

/// Plan the gas of `input` to `bridge` as `plan` says and send it through `submit`.
pub async fn send_call(
    submit: &SubmitClient,
    bridge: Address,
    input: Bytes,
    plan: GasPlan,
) -> Result<Sent, String> {
    let gas_limit = submit
        .estimate(bridge, input.clone(), plan)
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
