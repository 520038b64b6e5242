//! The `[recovery]` section: the recovery worker's cadence and bounds (per lane).

use serde::{Deserialize, Serialize};

use crate::Problem;

/// The recovery worker (per lane).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecoverySettings {
    /// Time between recovery ticks, ms (a lane is stalled when a request pending at one tick is
    /// still pending at the next and its lower handle nonce did not move; the first tick after a
    /// start or a change of leader recovers whatever is pending).
    pub interval_ms: u64,
    /// Most source blocks per `eth_getLogs` of a recovery scan.
    pub stride_blocks: u64,
    /// Most requests handed to the voter per round.
    pub max_per_round: usize,
    /// How often the registry is polled for claims, ms.
    pub claims_poll_ms: u64,
    /// How old an unhandled request must be before its requester may have it refunded (a
    /// refund claim, `multibridge refund`), and how long the destination must refuse it for a
    /// reason the relay holds permanent before the operators cancel and refund it unasked,
    /// seconds. Zero: no refund is driven by the relays (neither asked nor unasked).
    pub refund_after_secs: u64,
}

impl Default for RecoverySettings {
    fn default() -> Self {
        Self {
            interval_ms: 5_000,
            stride_blocks: 1_000,
            max_per_round: 1_024,
            claims_poll_ms: 1_000,
            refund_after_secs: 86_400,
        }
    }
}

impl RecoverySettings {
    /// The first problem with the section.
    pub fn problem(&self) -> Option<Problem> {
        (self.interval_ms < 100
            || self.stride_blocks == 0
            || self.max_per_round == 0
            || self.claims_poll_ms < 100)
            .then(|| {
                (
                    "recovery",
                    "interval_ms and claims_poll_ms must be at least 100, stride_blocks and max_per_round at least 1".into(),
                )
            })
    }
}
