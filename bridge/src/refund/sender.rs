//! The source side of one lane's refund path: once a cancel is signed, gather a threshold of the
//! source's operators' signatures and call `refund`. See [`super`].

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, Bytes};
use alloy::sol_types::SolCall;
use multibridge_contracts::attestation::pack_signatures;
use multibridge_contracts::bindings::Bridge;
use multibridge_contracts::{Lane, Request, VoteDomain};
use multibridge_monitoring::LaneMetrics;
use tokio::sync::watch;

use super::peers::RefundPeers;
use crate::chain::ChainClient;
use crate::chain::submitter::{GasPlan, SubmitClient, send_planned};
use crate::store::SharedStore;
use crate::task::{Next, Stepper};
use crate::turns::my_turn;

/// Most refunds looked at per step (from a rotating position: refunds that keep failing never
/// hide the ones behind them).
const PER_STEP: usize = 16;
/// A refund this relay sent is not sent again before this long (it is on its way; the next
/// look sees it refunded).
const RESEND_AFTER: Duration = Duration::from_secs(60);
/// Peers' verified signatures kept at most.
const SIGNATURES_KEPT: usize = 4_096;

/// The peers, made on first use: their HTTP clients cost a start of the relay nothing while no
/// refund waits (a TLS client loads the system's certificates).
pub struct LazyPeers {
    make: Option<Box<dyn FnOnce() -> Arc<dyn RefundPeers> + Send>>,
    made: Option<Arc<dyn RefundPeers>>,
}

impl LazyPeers {
    /// Peers `make` makes when first needed.
    pub fn new(make: impl FnOnce() -> Arc<dyn RefundPeers> + Send + 'static) -> Self {
        Self {
            make: Some(Box::new(make)),
            made: None,
        }
    }

    fn get(&mut self) -> Arc<dyn RefundPeers> {
        if let Some(make) = self.make.take() {
            self.made = Some(make());
        }
        self.made
            .clone()
            .expect("made on the first call: `make` is taken exactly then")
    }
}

/// The refund sender of one lane (on its source chain).
pub struct RefundSender {
    lane: Lane,
    domain: VoteDomain,
    operator: Address,
    store: SharedStore,
    source: Arc<ChainClient>,
    submit: SubmitClient,
    leading: watch::Receiver<bool>,
    peers: LazyPeers,
    interval: Duration,
    metrics: LaneMetrics,
    /// Rounds each nonce waited for this operator's turn since it held a threshold.
    waited: HashMap<u64, u32>,
    /// Refunds this relay sent, and when.
    sent: HashMap<u64, std::time::Instant>,
    /// Peers' signatures already fetched and verified (a signature never changes).
    signatures: HashMap<(u64, Address), [u8; 65]>,
    /// Where the next step's look starts.
    from: u64,
    /// The pass through the refunds to send, page by page.
    pass: Pass,
}

/// One pass through the refunds to send, a page per step: the nonces it found waiting, so that
/// at its end what belongs to refunds no longer waiting is forgotten (a pass of several pages
/// as much as one of a single page).
#[derive(Debug, Default)]
struct Pass {
    waiting: HashSet<u64>,
}

impl Pass {
    /// A page of the pass was read: its waiting nonces, and whether it was the pass's last
    /// (shorter than a step). At the last, every nonce found waiting in the pass (the pass
    /// starts over).
    fn page(&mut self, nonces: impl IntoIterator<Item = u64>, last: bool) -> Option<HashSet<u64>> {
        self.waiting.extend(nonces);
        last.then(|| std::mem::take(&mut self.waiting))
    }
}

impl RefundSender {
    /// A sender that has sent nothing yet.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        lane: Lane,
        domain: VoteDomain,
        operator: Address,
        store: SharedStore,
        source: Arc<ChainClient>,
        submit: SubmitClient,
        leading: watch::Receiver<bool>,
        peers: LazyPeers,
        interval: Duration,
        metrics: LaneMetrics,
    ) -> Self {
        Self {
            lane,
            domain,
            operator,
            store,
            source,
            submit,
            leading,
            peers,
            interval,
            metrics,
            waited: HashMap::new(),
            sent: HashMap::new(),
            signatures: HashMap::new(),
            from: 0,
            pass: Pass::default(),
        }
    }

    async fn round(&mut self) -> Result<Next, Infallible> {
        let from = self.from;
        let rows = match self.store.lock().refunds_to_send(self.lane, from, PER_STEP) {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the refunds to send");
                return Ok(Next::After(self.interval));
            }
        };
        let last = rows.len() < PER_STEP;
        if let Some(waiting) = self.pass.page(rows.iter().map(|r| r.nonce), last) {
            // The pass is over: forget what belongs to refunds no longer waiting.
            self.waited.retain(|n, _| waiting.contains(n));
            self.sent.retain(|n, _| waiting.contains(n));
            self.signatures.retain(|(n, _), _| waiting.contains(n));
        }
        self.from = match last {
            true => 0,
            false => rows.last().map_or(0, |r| r.nonce.saturating_add(1)),
        };
        for row in rows {
            let Some(request) = row.request else {
                continue;
            };
            if let Err(e) = self.one(&request).await {
                tracing::warn!(nonce = request.nonce, error = %e, "refund not sent; retrying");
            }
        }
        Ok(Next::After(self.interval))
    }

    /// Look at one signed refund: sent when it is not refunded yet, this operator leads the
    /// source, a threshold signed and it is its turn.
    async fn one(&mut self, request: &Request) -> Result<(), String> {
        let nonce = request.nonce;
        let views = self.source.views();
        // Refunded already (by anyone): nothing to send; the desk records it.
        if views.is_refunded(nonce).await.map_err(|e| e.to_string())? {
            return Ok(());
        }
        if !*self.leading.borrow() {
            return Ok(());
        }
        if self
            .sent
            .get(&nonce)
            .is_some_and(|at| at.elapsed() < RESEND_AFTER)
        {
            return Ok(());
        }
        let operators = views.operators().await.map_err(|e| e.to_string())?;
        let threshold = views.threshold().await.map_err(|e| e.to_string())?;
        let threshold = usize::try_from(threshold).unwrap_or(usize::MAX);
        let digest = self.domain.refund_digest(self.domain.vote_key(request));
        let mut signatures: Vec<(Address, [u8; 65])> = Vec::new();
        for operator in operators.iter().copied() {
            if signatures.len() >= threshold {
                break;
            }
            let signature = if operator == self.operator {
                self.store
                    .lock()
                    .refund_of(self.lane, nonce)
                    .map_err(|e| e.to_string())?
                    .and_then(|row| row.signature)
            } else if let Some(known) = self.signatures.get(&(nonce, operator)) {
                Some(*known)
            } else {
                let peers = self.peers.get();
                match peers.signature(self.lane, operator, nonce, digest).await {
                    Ok(Some(signature)) => {
                        if self.signatures.len() < SIGNATURES_KEPT {
                            self.signatures.insert((nonce, operator), signature);
                        }
                        Some(signature)
                    }
                    Ok(None) => None,
                    Err(e) => {
                        tracing::debug!(nonce, %operator, error = %e, "no refund signature from a peer");
                        None
                    }
                }
            };
            if let Some(signature) = signature {
                signatures.push((operator, signature));
            }
        }
        if signatures.len() < threshold {
            tracing::info!(
                nonce,
                signed = signatures.len(),
                threshold,
                "refund waits for the operators' signatures"
            );
            return Ok(());
        }
        // Whose turn counts from when a threshold signed, so the operators do not all send
        // the moment the last signature arrives.
        let ticks = self.waited.entry(nonce).or_insert(0);
        let turn = my_turn(&operators, nonce, self.operator, *ticks);
        *ticks = ticks.saturating_add(1);
        if !turn {
            return Ok(());
        }
        let input: Bytes = Bridge::refundCall {
            r: request.clone(),
            signatures: pack_signatures(&signatures),
        }
        .abi_encode()
        .into();
        // A refund pays like a release: the estimate plus the worst case of one release.
        let sent = send_planned(&self.submit, self.source.bridge(), input, GasPlan::Release)
            .await
            .map_err(|e| e.to_string())?;
        self.sent.insert(nonce, std::time::Instant::now());
        self.metrics.refund_step("refund_sent", 1);
        tracing::info!(nonce, tx = %sent.hash, "sent the refund of a cancelled request");
        Ok(())
    }
}

impl Stepper for RefundSender {
    type Error = Infallible;

    fn step(&mut self) -> impl Future<Output = Result<Next, Infallible>> + Send {
        self.round()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_of_several_pages_forgets_only_what_no_page_found_waiting() {
        let mut pass = Pass::default();
        assert_eq!(pass.page(0..16, false), None, "not over after a full page");
        let waiting = pass
            .page([20, 21], true)
            .expect("a short page ends the pass");
        assert_eq!(waiting, (0..16).chain([20, 21]).collect::<HashSet<u64>>());
        // The next pass starts empty.
        assert_eq!(pass.page([5], true), Some(HashSet::from([5])));
    }
}
