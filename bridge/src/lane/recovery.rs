//! The recovery worker of one lane wired to the real chains and the request store: the chain
//! reads behind [`LaneChains`], the store behind [`VoteQueue`], and the loop that ticks every
//! interval or at once when a claim arrives — on the replica that leads the lane only (DESIGN
//! §5); a new term starts with a fresh stall detector, so a lane pending when leadership arrives
//! is recovered at the first tick.

use std::future::Future;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use multibridge_contracts::{NonceState, Request};
use multibridge_recovery::{LaneChains, Recovery, RecoveryError, VoteQueue};
use tokio::sync::{mpsc, watch};

use crate::chain::logs::{LogSpan, blocks_in};
use crate::chain::{ChainClient, ChainError};
use crate::store::SharedStore;
use crate::task::{Next, Retryable, Stepper};

/// The recovery worker's tuning from the `[recovery]` section.
pub fn worker_config(
    settings: &crate::config::RecoverySettings,
) -> multibridge_recovery::RecoveryConfig {
    multibridge_recovery::RecoveryConfig {
        interval: Duration::from_millis(settings.interval_ms),
        stride_blocks: settings.stride_blocks,
        max_per_round: settings.max_per_round,
        ..Default::default()
    }
}

/// The chain reads of one lane, from one operator's point of view.
pub struct ChainLane {
    /// Source chain.
    pub source: Arc<ChainClient>,
    /// Destination chain.
    pub destination: Arc<ChainClient>,
    /// Confirmations the relay waits for on the source.
    pub confirmations: crate::config::Confirmations,
    /// This operator.
    pub operator: Address,
    /// Widths of recovery's log reads, kept between rounds.
    pub span: Mutex<LogSpan>,
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
            .counters()
            .await
            .map(|c| c.request_nonce)
            .map_err(chain_error("the source requestNonce"))
    }

    async fn lower_handle_nonce(&self) -> Result<u64, RecoveryError> {
        self.destination
            .counters()
            .await
            .map(|c| c.lower_handle_nonce)
            .map_err(chain_error("the destination lowerHandleNonce"))
    }

    async fn recovery_block(&self) -> Result<u64, RecoveryError> {
        self.destination
            .views()
            .recovery_block()
            .await
            .map_err(chain_error("the destination recoveryBlockNumber"))
    }

    async fn safe_head(&self) -> Result<u64, RecoveryError> {
        let head = self
            .source
            .head()
            .await
            .map_err(chain_error("the source head"))?;
        self.source
            .safe_head(head, self.confirmations)
            .await
            .map_err(chain_error("the source's safe head"))
    }

    async fn confirmed_request_nonce(&self) -> Result<u64, RecoveryError> {
        let safe = self.safe_head().await?;
        self.source
            .views()
            .request_nonce_at(safe)
            .await
            .map_err(chain_error("the source requestNonce at the safe head"))
    }

    async fn requests_in(
        &self,
        blocks: RangeInclusive<u64>,
        wanted: &(dyn Fn(u64) -> bool + Sync),
        limit: usize,
    ) -> Result<Vec<Request>, RecoveryError> {
        let mut out = Vec::new();
        let mut from = *blocks.start();
        loop {
            let mut span = *self.span.lock().unwrap_or_else(|p| p.into_inner());
            // Nothing known of the nonces before `from`: floor 0 (opens up on a young bridge).
            let next = self
                .source
                .views()
                .next_request_range(&mut span, from, *blocks.end(), 0)
                .await;
            *self.span.lock().unwrap_or_else(|p| p.into_inner()) = span;
            let Some(range) = next else {
                return Ok(out);
            };
            let range = self
                .source
                .views()
                .requests_within(range, crate::chain::logs::TARGET_LOGS as u64)
                .await;
            let width = blocks_in(&range);
            let found = self
                .source
                .views()
                .request_logs(range.clone())
                .await
                .map_err(|e| {
                    self.span
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .failed(width);
                    RecoveryError::Chain {
                        what: "source request events",
                        retryable: e.is_retryable(),
                        message: e.to_string(),
                    }
                })?;
            self.span
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .observe(width, found.len());
            out.extend(found.into_iter().filter(|r| wanted(r.nonce)));
            if out.len() >= limit {
                out.truncate(limit);
                return Ok(out);
            }
            match range.end().checked_add(1) {
                Some(next) => from = next,
                None => return Ok(out),
            }
        }
    }

    async fn voting_status(&self, nonces: &[u64]) -> Result<Vec<NonceState>, RecoveryError> {
        self.destination
            .views()
            .voting_status(self.operator, nonces)
            .await
            .map_err(chain_error("the destination votingStatus"))
    }
}

/// The request store as the voter's queue.
pub struct StoreQueue {
    /// The lane.
    pub lane: multibridge_contracts::Lane,
    /// The relay's store.
    pub store: SharedStore,
}

impl VoteQueue for StoreQueue {
    fn requeue(&self, requests: &[Request]) -> Result<usize, RecoveryError> {
        self.store
            .lock()
            .requeue(self.lane, requests)
            .map_err(|e| RecoveryError::Queue {
                retryable: e.is_retryable(),
                message: e.to_string(),
            })
    }
}

impl Retryable for RecoveryError {
    fn is_retryable(&self) -> bool {
        RecoveryError::is_retryable(self)
    }
}

/// How often open claims are followed between ticks (to requeue again if needed and to see
/// them resolved), without shortening what counts as a stall.
const CLAIM_FOLLOW: Duration = Duration::from_secs(1);

/// The recovery of one lane, as a step for the task loop.
pub struct LaneRecovery {
    /// The worker.
    pub recovery: Recovery,
    /// Its chain reads.
    pub chains: ChainLane,
    /// Its queue.
    pub queue: StoreQueue,
    /// Claimed nonces from the registry.
    pub claims: mpsc::Receiver<u64>,
    /// Whether this replica leads the lane.
    pub leading: watch::Receiver<bool>,
    next_tick: Instant,
    claims_open: bool,
}

impl LaneRecovery {
    /// Recovery of a lane, working while `leading` says this replica leads it.
    pub fn new(
        recovery: Recovery,
        chains: ChainLane,
        queue: StoreQueue,
        claims: mpsc::Receiver<u64>,
        leading: watch::Receiver<bool>,
    ) -> Self {
        Self {
            recovery,
            chains,
            queue,
            claims,
            leading,
            next_tick: Instant::now(),
            claims_open: true,
        }
    }

    /// Tick every interval, or at once when a claimed nonce arrives (and follow open claims
    /// every [`CLAIM_FOLLOW`]); while not leading, only wait for leadership (claims queue up).
    pub async fn round(&mut self) -> Result<Next, RecoveryError> {
        if !*self.leading.borrow_and_update() {
            // Not leading: claims are remembered for when this replica leads.
            tokio::select! {
                changed = self.leading.changed() => {
                    if changed.is_err() {
                        // No campaign any more (the relay stops): nothing left to do.
                        std::future::pending::<()>().await;
                    }
                    if *self.leading.borrow() {
                        // A new term: what the detector saw belongs to an earlier term.
                        self.recovery.reset();
                        self.next_tick = Instant::now();
                    }
                }
                claimed = self.claims.recv(), if self.claims_open => match claimed {
                    Some(nonce) => self.recovery.claim(nonce),
                    None => self.claims_open = false,
                },
            }
            return Ok(Next::Now);
        }
        let full = Instant::now() >= self.next_tick;
        let round = if full {
            self.next_tick = Instant::now()
                .checked_add(self.recovery.interval())
                .unwrap_or_else(Instant::now);
            self.recovery.tick(&self.chains, &self.queue).await
        } else {
            self.recovery.follow_claims(&self.chains, &self.queue).await
        };
        // A failed round is retried at the next tick, not at once.
        let round = round?;
        if round.requeued > 0 || round.claims_resolved > 0 {
            tracing::info!(
                verdict = ?round.verdict,
                scanned_blocks = round.scanned_blocks,
                found = round.found,
                requeued = round.requeued,
                claims_resolved = round.claims_resolved,
                "recovery round"
            );
        } else {
            tracing::debug!(verdict = ?round.verdict, full, "recovery round");
        }
        let mut wake = self.next_tick;
        if !self.recovery.open_claims().is_empty() {
            wake = wake.min(Instant::now().checked_add(CLAIM_FOLLOW).unwrap_or(wake));
        }
        let mut probe = self.leading.clone();
        tokio::select! {
            () = tokio::time::sleep_until(wake.into()) => {}
            _ = probe.changed() => {}
            claimed = self.claims.recv(), if self.claims_open => match claimed {
                Some(nonce) => {
                    tracing::info!(nonce, "claim received: recovering it now");
                    self.recovery.claim(nonce);
                    // Take every claim already queued before the round.
                    while let Ok(nonce) = self.claims.try_recv() {
                        self.recovery.claim(nonce);
                    }
                }
                None => self.claims_open = false,
            },
        }
        Ok(Next::Now)
    }
}

impl Stepper for LaneRecovery {
    type Error = RecoveryError;

    fn step(&mut self) -> impl Future<Output = Result<Next, RecoveryError>> + Send {
        self.round()
    }
}
