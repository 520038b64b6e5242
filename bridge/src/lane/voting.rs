//! A lane's voting terms: wait until this replica leads the lane, start a term (what the last
//! term had in flight is re-checked; the lane's submitter rebuilds the nonce sequence from the
//! chain before its first send), then vote until leadership ends or the fence refuses a send.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use multibridge_monitoring::{LaneMetrics, SendingPause};
use tokio::sync::{Notify, watch};

use crate::chain::submitter::Submit;
use crate::task::{Next, Retryable, Stepper};
use crate::voter::{DestinationReads, Voter, VoterError};

impl Retryable for VoterError {
    fn is_retryable(&self) -> bool {
        VoterError::is_retryable(self)
    }
}

/// After the fence refused a send, wait this long (or for the campaign to step down) before
/// trying again, instead of spinning while the campaign notices.
const FENCED_PAUSE: Duration = Duration::from_millis(200);

/// How often an attested lane's standby signs what became ready (a leader's step is about as
/// frequent; peers fetch every 250 ms).
const STANDBY_SIGN_EVERY: Duration = Duration::from_millis(250);

/// While the signer cannot pay for gas, look again this often (indexing, recovery reads and
/// the HTTP API go on meanwhile).
const UNFUNDED_PAUSE: Duration = Duration::from_secs(5);

/// While the signer fails, probe it this often (a probe is one signature of a fixed hash).
const SIGNER_PAUSE: Duration = Duration::from_secs(2);

/// The voting of one lane, as a step for the task loop.
pub struct LaneVoting<D, S> {
    voter: Voter<D, S>,
    leading: watch::Receiver<bool>,
    in_term: bool,
    /// Sending is paused because the signer cannot pay for gas (with its balance then).
    unfunded: Option<alloy::primitives::U256>,
    /// The signer, probed while it fails.
    signer: Option<crate::chain::signer::OperatorSigner>,
    /// Sending is paused because the signer fails.
    signer_down: bool,
    /// Where the replica's campaigns learn that the signer fails.
    signer_health: crate::leadership::health::SignerHealth,
    metrics: LaneMetrics,
    /// Rung by the lane's indexer when it stores new requests: an idle voter steps at once
    /// instead of at the end of its pause.
    stored: Arc<Notify>,
}

impl<D: DestinationReads, S: Submit> LaneVoting<D, S> {
    /// Vote with `voter` while `leading` says this replica leads the lane.
    pub fn new(voter: Voter<D, S>, leading: watch::Receiver<bool>, metrics: LaneMetrics) -> Self {
        Self {
            voter,
            leading,
            in_term: false,
            unfunded: None,
            signer: None,
            signer_down: false,
            signer_health: Default::default(),
            metrics,
            stored: Arc::default(),
        }
    }

    /// Step as soon as `stored` rings (the lane's indexer stored new requests), not only after
    /// an idle pause.
    pub fn woken_by(mut self, stored: Arc<Notify>) -> Self {
        self.stored = stored;
        self
    }

    /// Probe `signer` while it fails, and resume sending when it answers; say in `health`
    /// whether it fails.
    pub fn with_signer(
        mut self,
        signer: crate::chain::signer::OperatorSigner,
        health: crate::leadership::health::SignerHealth,
    ) -> Self {
        self.signer = Some(signer);
        self.signer_health = health;
        self
    }

    /// While the signer is down: probe it; `true` once it answers (sending resumes).
    async fn signer_back(&mut self) -> bool {
        let Some(signer) = &self.signer else {
            return true;
        };
        match signer.probe().await {
            Ok(took) => {
                self.signer_down = false;
                self.signer_health.answered();
                self.metrics
                    .set_sending_paused(SendingPause::SignerUnavailable, false);
                tracing::info!(
                    backend = signer.backend(),
                    took_ms = took.as_millis() as u64,
                    "the signer answers again: sending resumed"
                );
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "the signer still fails");
                false
            }
        }
    }

    /// Wait `pause`, or less if leadership changes (the change is left for the next step to
    /// see: a clone of the receiver waits).
    async fn pause(&self, pause: Duration) {
        let mut probe = self.leading.clone();
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = probe.changed() => {}
        }
    }

    /// Wait `pause` with nothing to send, or less if leadership changes or the indexer stores
    /// new requests (a request is voted the moment it is stored, not up to `pause` later).
    async fn idle(&self, pause: Duration) {
        idle(pause, &self.leading, &self.stored).await;
    }

    /// One round: start a term when leadership (re)arrives, then vote.
    pub async fn round(&mut self) -> Result<Next, VoterError> {
        // Any change of leadership since the last step ends the term, even a quick flap: the
        // submitter starts a new nonce sequence at the same change.
        if self.leading.has_changed().unwrap_or(true) {
            if self.in_term {
                tracing::info!("not leading any more: voting stopped");
            }
            self.in_term = false;
        }
        if !*self.leading.borrow_and_update() {
            // An attested lane's standby signs (and serves) what the leader signs.
            match self.voter.sign_as_standby().await {
                Ok(true) => {
                    self.pause(STANDBY_SIGN_EVERY).await;
                    return Ok(Next::Now);
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "standby signing failed; trying again");
                    self.pause(STANDBY_SIGN_EVERY).await;
                    return Ok(Next::Now);
                }
            }
            if self.leading.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            return Ok(Next::Now);
        }
        if self.signer_down && !self.signer_back().await {
            self.pause(SIGNER_PAUSE).await;
            return Ok(Next::Now);
        }
        if !self.in_term {
            let reopened = self.voter.start_term()?;
            tracing::info!(
                reopened,
                "voting: term started, in-flight requests re-checked"
            );
            self.in_term = true;
        }
        match self.voter.step().await {
            Ok(step) => {
                if step.sent > 0 {
                    self.signer_health.answered();
                }
                if let Some(at_pause) = self.unfunded {
                    // Resumed once a vote went out, or once someone funded the signer (an idle
                    // lane sends nothing that would tell).
                    let funded = step.sent > 0
                        || self
                            .voter
                            .signer_balance()
                            .await
                            .is_ok_and(|balance| balance > at_pause);
                    if funded {
                        self.unfunded = None;
                        self.metrics
                            .set_sending_paused(SendingPause::InsufficientFunds, false);
                        tracing::info!("the signer pays for gas again: sending resumed");
                    }
                }
                if step.sent > 0 || step.handled > 0 || step.waiting > 0 {
                    tracing::info!(
                        sent = step.sent,
                        skipped = step.skipped,
                        handled = step.handled,
                        waiting = step.waiting,
                        "voted"
                    );
                }
                if step.sent == 0 {
                    self.idle(self.voter.batch_wait()).await;
                }
                Ok(Next::Now)
            }
            Err(e) if e.is_unfunded() => {
                if self.unfunded.is_none() {
                    tracing::error!(error = %e, "the signer cannot pay for gas: sending paused until it is funded (indexing and serving go on)");
                    let balance = self.voter.signer_balance().await.unwrap_or_default();
                    self.unfunded = Some(balance);
                }
                self.metrics
                    .set_sending_paused(SendingPause::InsufficientFunds, true);
                self.pause(UNFUNDED_PAUSE).await;
                Ok(Next::Now)
            }
            Err(e) if e.signer_unavailable().is_some() => {
                if !self.signer_down {
                    tracing::error!(error = %e, "the signer does not sign: sending paused until it answers (indexing and serving go on)");
                }
                self.signer_down = true;
                self.signer_health.failed();
                self.metrics
                    .set_sending_paused(SendingPause::SignerUnavailable, true);
                self.pause(SIGNER_PAUSE).await;
                Ok(Next::Now)
            }
            Err(e) if e.is_fenced() => {
                self.metrics.fenced_sends.inc();
                tracing::warn!(error = %e, "fenced: a send was refused");
                self.in_term = false;
                self.pause(FENCED_PAUSE).await;
                Ok(Next::Now)
            }
            Err(e) => Err(e),
        }
    }
}

/// [`LaneVoting::idle`]: `pause`, or until `leading` changes (left for the next step to see: a
/// clone waits) or `stored` rings (a ring while the voter was busy is kept for this wait).
async fn idle(pause: Duration, leading: &watch::Receiver<bool>, stored: &Notify) {
    let mut probe = leading.clone();
    tokio::select! {
        () = tokio::time::sleep(pause) => {}
        _ = probe.changed() => {}
        () = stored.notified() => {}
    }
}

impl<D: DestinationReads + 'static, S: Submit + 'static> Stepper for LaneVoting<D, S> {
    type Error = VoterError;

    fn step(&mut self) -> impl Future<Output = Result<Next, VoterError>> + Send {
        self.round()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAUSE: Duration = Duration::from_millis(200);

    #[tokio::test(start_paused = true)]
    async fn an_idle_voter_steps_once_new_requests_are_stored_not_after_its_pause() {
        let (_leading_tx, leading) = watch::channel(true);
        let stored = Arc::new(Notify::new());
        // Nothing stored: the whole pause.
        let t0 = tokio::time::Instant::now();
        idle(PAUSE, &leading, &stored).await;
        assert_eq!(t0.elapsed(), PAUSE);
        // Stored while it waits: at once.
        let t0 = tokio::time::Instant::now();
        let ring = stored.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            ring.notify_one();
        });
        idle(PAUSE, &leading, &stored).await;
        assert_eq!(t0.elapsed(), Duration::from_millis(30));
        // Stored while it was busy stepping: the next wait ends at once.
        stored.notify_one();
        let t0 = tokio::time::Instant::now();
        idle(PAUSE, &leading, &stored).await;
        assert_eq!(t0.elapsed(), Duration::ZERO);
    }
}
