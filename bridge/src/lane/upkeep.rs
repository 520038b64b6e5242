//! The lane leader's upkeep: moving an idle lane's `lowerHandleNonce` ([`super::advance`]) and
//! executing due queued releases ([`super::releases`]), every recovery interval in a task of its
//! own — a long queue never delays recovery or claims (audit NEW-M3). And what their
//! transactions share: whose turn a nonce is, and sending one permissionless call through the
//! submitter.

use std::time::Duration;

use tokio::sync::watch;

use super::advance::LowerAdvance;
use super::releases::QueuedReleases;
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
