//! The recovery worker of one lane wired to the real chains and the request store: the chain
//! reads behind [`LaneChains`], the store behind [`VoteQueue`], and the loop that ticks every
//! interval or at once when a claim arrives.

use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use multibridge_contracts::{Lane, Request};
use multibridge_monitoring::Metrics;
use multibridge_monitoring::metrics::STUCK_REASONS;
use multibridge_recovery::{LaneChains, NonceState, Recovery, RecoveryError, VoteQueue};
use tokio::sync::mpsc;

use crate::chain::{ChainClient, ChainError};
use crate::indexer::fetch_requests;
use crate::relay::RelayError;
use crate::store::Store;
use crate::voter::voting_status;

/// The chain reads of one lane, from one operator's point of view.
pub struct ChainLane {
    /// The lane.
    pub lane: Lane,
    /// Source chain.
    pub source: Arc<ChainClient>,
    /// Destination chain.
    pub destination: Arc<ChainClient>,
    /// Confirmations the relay waits for on the source.
    pub confirmations: u64,
    /// This operator.
    pub operator: Address,
}

fn chain_error(what: &'static str) -> impl Fn(ChainError) -> RecoveryError {
    move |e| RecoveryError::Chain {
        what,
        retryable: e.is_retryable(),
        message: e.to_string(),
    }
}

impl LaneChains for ChainLane {
    async fn request_nonce(&self) -> Result<u64, RecoveryError> {
        self.source
            .bridge_call(
                "requestNonce",
                |b| async move { b.requestNonce().call().await },
            )
            .await
            .map_err(chain_error("the source requestNonce"))
    }

    async fn lower_handle_nonce(&self) -> Result<u64, RecoveryError> {
        self.destination
            .bridge_call("lowerHandleNonce", |b| async move {
                b.lowerHandleNonce().call().await
            })
            .await
            .map_err(chain_error("the destination lowerHandleNonce"))
    }

    async fn recovery_block(&self) -> Result<u64, RecoveryError> {
        self.destination
            .bridge_call("recoveryBlockNumber", |b| async move {
                b.recoveryBlockNumber().call().await
            })
            .await
            .map_err(chain_error("the destination recoveryBlockNumber"))
    }

    async fn safe_head(&self) -> Result<u64, RecoveryError> {
        let head = self
            .source
            .head()
            .await
            .map_err(chain_error("the source head"))?;
        Ok(head.saturating_sub(self.confirmations))
    }

    async fn requests_in(
        &self,
        blocks: RangeInclusive<u64>,
    ) -> Result<Vec<Request>, RecoveryError> {
        fetch_requests(&self.source, self.source.bridge(), self.lane, blocks)
            .await
            .map_err(|e| RecoveryError::Chain {
                what: "source request events",
                retryable: e.is_retryable(),
                message: e.to_string(),
            })
    }

    async fn voting_status(&self, nonces: &[u64]) -> Result<Vec<NonceState>, RecoveryError> {
        voting_status(&self.destination, self.operator, nonces)
            .await
            .map_err(chain_error("the destination votingStatus"))
    }
}

/// The request store as the voter's queue.
pub struct StoreQueue {
    /// The lane.
    pub lane: Lane,
    /// The relay's store.
    pub store: Arc<Mutex<Store>>,
}

impl VoteQueue for StoreQueue {
    fn requeue(&self, requests: &[Request]) -> Result<usize, RecoveryError> {
        self.store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .requeue(self.lane, requests)
            .map_err(|e| RecoveryError::Queue {
                retryable: e.is_retryable(),
                message: e.to_string(),
            })
    }
}

/// The stable metric label of a noted waiting reason (see `STUCK_REASONS`).
pub fn stuck_label(reason: &str) -> &'static str {
    const BY_NAME: [(&str, &str); 5] = [
        ("InsufficientLiquidity", "insufficient_liquidity"),
        ("TokenIsLocked", "token_locked"),
        ("TokenNotRegistered", "token_not_registered"),
        ("BridgePaused", "paused"),
        ("RateLimited", "rate_limited"),
    ];
    BY_NAME
        .iter()
        .find(|(name, _)| reason.contains(name))
        .map_or("other", |(_, label)| label)
}

/// Publish the open requests waiting on a destination condition, by reason.
pub fn publish_stuck(lane: Lane, store: &Store, metrics: &Metrics) {
    match store.waiting_reasons(lane) {
        Ok(reasons) => {
            let mut by_label = std::collections::BTreeMap::<&str, u64>::new();
            for (reason, n) in reasons {
                let entry = by_label.entry(stuck_label(&reason)).or_default();
                *entry = entry.saturating_add(n);
            }
            for label in STUCK_REASONS {
                let n = by_label.get(label).copied().unwrap_or(0);
                metrics
                    .stuck_requests
                    .with_label_values(&[lane.as_str(), label])
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        Err(e) => tracing::warn!(%lane, error = %e, "cannot read waiting reasons"),
    }
}

/// How often open claims are followed between ticks (to requeue again if needed and to see
/// them resolved), without shortening what counts as a stall.
const CLAIM_FOLLOW: Duration = Duration::from_secs(1);

/// Tick every interval, or at once when a claimed nonce arrives (and follow open claims every
/// [`CLAIM_FOLLOW`]); failures are retried at the next tick unless they cannot heal by themselves.
pub async fn recovery_loop(
    mut recovery: Recovery,
    chains: ChainLane,
    queue: StoreQueue,
    mut claims: mpsc::Receiver<u64>,
) -> Result<(), RelayError> {
    let interval = recovery.interval();
    let lane = chains.lane;
    let mut claims_open = true;
    let mut next_tick = Instant::now();
    loop {
        let full = Instant::now() >= next_tick;
        let result = if full {
            next_tick = Instant::now()
                .checked_add(interval)
                .unwrap_or_else(Instant::now);
            recovery.tick(&chains, &queue).await
        } else {
            recovery.follow_claims(&chains, &queue).await
        };
        match result {
            Ok(round) if round.requeued > 0 || round.claims_resolved > 0 => {
                tracing::info!(
                    verdict = ?round.verdict,
                    scanned_blocks = round.scanned_blocks,
                    found = round.found,
                    requeued = round.requeued,
                    claims_resolved = round.claims_resolved,
                    "recovery round"
                );
            }
            Ok(round) => tracing::debug!(verdict = ?round.verdict, full, "recovery round"),
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, "recovery round failed; retrying at the next tick");
            }
            Err(e) => {
                tracing::error!(error = %e, "recovery stopped");
                return Err(RelayError::TaskFailed {
                    lane,
                    task: "recovery",
                    message: e.to_string(),
                });
            }
        }
        let mut wake = next_tick;
        if !recovery.open_claims().is_empty() {
            wake = wake.min(Instant::now().checked_add(CLAIM_FOLLOW).unwrap_or(wake));
        }
        tokio::select! {
            () = tokio::time::sleep_until(wake.into()) => {}
            claimed = claims.recv(), if claims_open => match claimed {
                Some(nonce) => {
                    tracing::info!(nonce, "claim received: recovering it now");
                    recovery.claim(nonce);
                    // Take every claim already queued before the round.
                    while let Ok(nonce) = claims.try_recv() {
                        recovery.claim(nonce);
                    }
                }
                None => claims_open = false,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noted_reasons_map_to_stable_labels() {
        assert_eq!(
            stuck_label("destination skipped the vote: InsufficientLiquidity"),
            "insufficient_liquidity"
        );
        assert_eq!(
            stuck_label("destination refuses: BridgePaused(BridgePaused)"),
            "paused"
        );
        assert_eq!(
            stuck_label("destination skipped the vote: 0xdeadbeef"),
            "other"
        );
        for reason in [
            "TokenIsLocked",
            "TokenNotRegistered",
            "RateLimited(..)",
            "x",
        ] {
            assert!(STUCK_REASONS.contains(&stuck_label(reason)));
        }
    }
}
