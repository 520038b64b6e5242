//! Executing the releases the destination held back (audit H-2).
//!
//! A release above the destination's outflow bucket, at or above its large-release bound, or of
//! an asset without an outflow limit is queued on chain for `releaseDelay`; the request is
//! handled (no more votes, recovery leaves it alone) and a pauser can cancel the release while it
//! waits. Once it is due, anyone may execute it: at each recovery tick the lane's leader looks at
//! the queue and sends `executeQueuedRelease` for the due ones — one operator's turn per nonce
//! (its index among the operators), anyone's after three ticks, so the operators do not all pay
//! for the same execution. The queue's size is a metric with an alert: a queued release is the
//! moment a person should look.

use std::collections::HashMap;
use std::sync::Arc;

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::Address;
use alloy::providers::Provider;
use alloy::sol_types::SolCall;
use multibridge_contracts::bindings::Bridge;
use multibridge_monitoring::LaneMetrics;

use super::upkeep::{my_turn, send_call};
use crate::chain::ChainClient;
use crate::chain::submitter::SubmitClient;
/// Most executions sent per tick.
const MAX_PER_TICK: usize = 16;

/// The executor of one lane's queued releases (on its destination).
pub struct QueuedReleases {
    destination: Arc<ChainClient>,
    bridge: Address,
    operator: Address,
    submit: SubmitClient,
    metrics: LaneMetrics,
    /// Due nonce → ticks it has been seen due and not executed.
    due_ticks: HashMap<u64, u32>,
}

impl QueuedReleases {
    /// An executor that has seen nothing yet.
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
            due_ticks: HashMap::new(),
        }
    }

    /// Forget what earlier ticks saw (a new term).
    pub fn reset(&mut self) {
        self.due_ticks.clear();
    }

    /// One look: updates the queue gauge and executes due releases. Returns how many
    /// executions were sent. Errors are the caller's to log: a skipped tick loses nothing.
    pub async fn tick(&mut self) -> Result<usize, String> {
        let views = self.destination.views();
        let queued = views.queued_releases().await.map_err(|e| e.to_string())?;
        self.metrics
            .queued_releases
            .set(i64::try_from(queued.len()).unwrap_or(i64::MAX));
        if queued.is_empty() {
            self.due_ticks.clear();
            return Ok(0);
        }
        let now = self
            .destination
            .call("eth_getBlockByNumber", |p| async move {
                p.get_block_by_number(BlockNumberOrTag::Latest).await
            })
            .await
            .map_err(|e| e.to_string())?
            .map(|b| b.header.timestamp)
            .ok_or("the destination returned no latest block")?;
        let paused = self
            .destination
            .bridge_call("paused", |b| async move { b.paused().call().await })
            .await
            .map_err(|e| e.to_string())?;
        let due: Vec<u64> = queued
            .iter()
            .filter(|q| q.release_at <= now)
            .map(|q| q.nonce)
            .collect();
        self.due_ticks.retain(|nonce, _| due.contains(nonce));
        if paused || due.is_empty() {
            return Ok(0);
        }
        let operators = views.operators().await.map_err(|e| e.to_string())?;
        let mut sent = 0;
        for nonce in due {
            let ticks = self.due_ticks.entry(nonce).or_insert(0);
            let seen = *ticks;
            *ticks = ticks.saturating_add(1);
            if !my_turn(&operators, nonce, self.operator, seen) {
                continue;
            }
            if sent >= MAX_PER_TICK {
                break;
            }
            let input = Bridge::executeQueuedReleaseCall { nonce }.abi_encode();
            // A failure (an estimate that reverts: executed or cancelled by someone else
            // meanwhile) is retried at a later tick.
            let tx = match send_call(&self.submit, self.bridge, input.into()).await {
                Ok(tx) => tx,
                Err(e) => {
                    tracing::warn!(nonce, error = %e, "queued release not executed now; next tick");
                    continue;
                }
            };
            self.metrics.queued_releases_executed.inc();
            sent = sent.saturating_add(1);
            tracing::info!(nonce, tx = %tx.hash, "queued release is due: executing it");
        }
        Ok(sent)
    }
}
