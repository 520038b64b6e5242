//! Keeping `lowerHandleNonce` up with the handles when a lane goes idle.
//!
//! The destination advances `lowerHandleNonce` past handled nonces by at most
//! `MAX_LOWER_ADVANCE` per transaction, so after a long-blocked nonce clears, a lane can end up
//! with every request handled but the lower nonce behind (`status` shows requests pending, the
//! stall alert would fire until new traffic arrives). At each upkeep tick the lane's leader
//! looks: when the lower nonce has not moved since the last tick, is below the upper one, and
//! the nonce at it is handled, it calls the permissionless `advanceLowerHandleNonce`. One
//! operator's turn per lower nonce (its index among the operators), anyone's after three ticks.

use std::sync::Arc;

use alloy::primitives::{Address, U256};
use alloy::sol_types::SolCall;
use multibridge_contracts::bindings::Bridge;
use multibridge_monitoring::LaneMetrics;

use crate::chain::ChainClient;
use crate::chain::submitter::send_planned;
use crate::chain::submitter::{GasPlan, SubmitClient};
use crate::turns::my_turn;

/// The advancer of one lane (on its destination).
pub struct LowerAdvance {
    /// Destination chain.
    pub destination: Arc<ChainClient>,
    /// Destination bridge.
    pub bridge: Address,
    /// This operator.
    pub operator: Address,
    /// The destination chain's submitter.
    pub submit: SubmitClient,
    /// The lane's metrics (`lower_advances_total`).
    pub metrics: LaneMetrics,
    /// The lower nonce at the last tick and for how many ticks it has not moved.
    last: Option<(u64, u32)>,
}

impl LowerAdvance {
    /// An advancer that has seen nothing yet.
    pub fn new(
        destination: Arc<ChainClient>,
        bridge: Address,
        operator: Address,
        submit: SubmitClient,
        metrics: LaneMetrics,
    ) -> Self {
        Self {
            destination,
            bridge,
            operator,
            submit,
            metrics,
            last: None,
        }
    }

    /// Forget what earlier ticks saw (a new term).
    pub fn reset(&mut self) {
        self.last = None;
    }

    /// One look; sends at most one transaction. Errors are the caller's to log: nothing here
    /// is lost if a tick is skipped.
    pub async fn tick(&mut self) -> Result<Option<u64>, String> {
        let views = self.destination.views();
        let counters = views.counters().await.map_err(|e| e.to_string())?;
        let (lower, upper) = (counters.lower_handle_nonce, counters.upper_handle_nonce);
        if lower >= upper {
            self.last = None;
            return Ok(None);
        }
        let unmoved = match self.last {
            Some((seen, ticks)) if seen == lower => ticks.saturating_add(1),
            _ => 0,
        };
        self.last = Some((lower, unmoved));
        // Moving (or first seen): handles advance it themselves.
        if unmoved == 0 {
            return Ok(None);
        }
        // A nonce that is not handled yet holds it, rightly: that is recovery's business.
        if !views.is_handled(lower).await.map_err(|e| e.to_string())? {
            return Ok(None);
        }
        let operators = views.operators().await.map_err(|e| e.to_string())?;
        if !my_turn(&operators, lower, self.operator, unmoved) {
            return Ok(None);
        }
        // The counters are the shared head's, which can be a block behind the latest: the
        // advance is sent only while lowerHandleNonce still stands there (moved since, by a
        // handle or another operator's advance, it would be a transaction that does nothing).
        if views
            .lower_handle_nonce()
            .await
            .map_err(|e| e.to_string())?
            != lower
        {
            return Ok(None);
        }
        let input = Bridge::advanceLowerHandleNonceCall {
            maxSteps: U256::from(multibridge_contracts::MAX_LOWER_ADVANCE),
        }
        .abi_encode();
        let sent = send_planned(
            &self.submit,
            self.bridge,
            input.into(),
            GasPlan::Estimate { margin_percent: 20 },
        )
        .await
        .map_err(|e| e.to_string())?;
        self.metrics.lower_advances.inc();
        tracing::info!(lower, upper, tx = %sent.hash, "every nonce at lowerHandleNonce is handled and the lane is idle: advancing it");
        Ok(Some(lower))
    }
}
