//! Executing the releases the destination held back (audit H-2, NEW-M3).
//!
//! A release above the destination's outflow bucket, at or above its large-release bound, of an
//! asset without an outflow limit, or settled by the owner is queued on chain for
//! `releaseDelay`; the request is handled (no more votes, recovery leaves it alone), a pauser can
//! freeze the release while it waits and the owner cancel it. Once it is due, anyone may execute
//! it: at each upkeep tick the lane's leader reads a bounded part of the queue — at most
//! [`PAGES_PER_TICK`] pages of [`QUEUE_PAGE`] entries from a cursor that wraps around — and
//! sends `executeQueuedRelease` for the due ones that are not frozen, one operator's turn per
//! nonce (its index among the operators), anyone's after three ticks, so the operators do not all
//! pay for the same execution. However long the queue grows, a tick costs a handful of calls.
//! The queue's size is a metric with an alert: a queued release is the moment a person should
//! look.

use std::collections::HashMap;
use std::sync::Arc;

use alloy::primitives::{Address, B256};
use alloy::sol_types::SolCall;
use multibridge_contracts::bindings::Bridge;
use multibridge_monitoring::LaneMetrics;

use crate::chain::ChainClient;
use crate::chain::bridge_views::{QUEUE_PAGE, QueuedRelease};
use crate::chain::sender::SendError;
use crate::chain::submitter::{GasPlan, Submit, SubmitClient, SubmitError, send_planned};
use crate::turns::my_turn;

/// Most executions sent per tick.
const MAX_PER_TICK: usize = 16;

/// Most pages of the queue read per tick.
pub const PAGES_PER_TICK: u64 = 4;

/// Most due nonces remembered between ticks (for whose turn it is); past it the memory starts
/// over, which only lets another operator act a little sooner.
const MAX_REMEMBERED: usize = 4096;

/// The executor of one lane's queued releases (on its destination).
pub struct QueuedReleases {
    destination: Arc<ChainClient>,
    bridge: Address,
    operator: Address,
    submit: SubmitClient,
    metrics: LaneMetrics,
    /// Due nonce → ticks it has been seen due and not executed.
    due_ticks: HashMap<u64, u32>,
    /// Queue position the next tick reads from.
    cursor: u64,
    /// Frozen entries seen since the cursor last wrapped.
    frozen_this_scan: u64,
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
            cursor: 0,
            frozen_this_scan: 0,
        }
    }

    /// Forget what earlier ticks saw (a new term).
    pub fn reset(&mut self) {
        self.due_ticks.clear();
        self.cursor = 0;
        self.frozen_this_scan = 0;
    }

    /// One look: updates the queue gauges and executes due releases found in this tick's pages.
    /// Returns how many executions were sent. Errors are the caller's to log: a skipped tick
    /// loses nothing.
    pub async fn tick(&mut self) -> Result<usize, String> {
        let count = self
            .destination
            .counters()
            .await
            .map_err(|e| e.to_string())?
            .queued_release_count;
        LaneMetrics::set(&self.metrics.queued_releases, count);
        if count == 0 {
            self.reset();
            self.metrics.queued_releases_frozen.set(0);
            return Ok(0);
        }
        let page = self.read_pages(count).await?;
        let now = self
            .destination
            .latest_block()
            .await
            .map_err(|e| e.to_string())?
            .timestamp;
        let due = due_nonces(&page, now);
        if due.is_empty() {
            return Ok(0);
        }
        let paused = self
            .destination
            .views()
            .paused()
            .await
            .map_err(|e| e.to_string())?;
        if paused {
            return Ok(0);
        }
        let operators = self
            .destination
            .views()
            .operators()
            .await
            .map_err(|e| e.to_string())?;
        if self.due_ticks.len() > MAX_REMEMBERED {
            self.due_ticks.clear();
        }
        let executed = execute_due(
            &self.submit,
            self.bridge,
            (self.operator, &operators),
            due,
            &mut self.due_ticks,
        )
        .await;
        for (nonce, tx) in &executed.sent {
            self.metrics.queued_releases_executed.inc();
            tracing::info!(nonce, %tx, "queued release is due: executing it");
        }
        match executed.stopped {
            Some(e) => Err(format!(
                "queued releases: {} executed, then the send failed: {e}",
                executed.sent.len()
            )),
            None => Ok(executed.sent.len()),
        }
    }

    /// Up to [`PAGES_PER_TICK`] pages from the cursor; the cursor wraps at the queue's end
    /// (publishing the frozen count of the scan it completes).
    async fn read_pages(&mut self, count: u64) -> Result<Vec<QueuedRelease>, String> {
        let views = self.destination.views();
        let mut out = Vec::new();
        for _ in 0..PAGES_PER_TICK {
            if self.cursor >= count {
                LaneMetrics::set(&self.metrics.queued_releases_frozen, self.frozen_this_scan);
                self.cursor = 0;
                self.frozen_this_scan = 0;
            }
            let page = views
                .queued_releases_page(self.cursor, QUEUE_PAGE)
                .await
                .map_err(|e| e.to_string())?;
            let read = page.len() as u64;
            self.cursor = self.cursor.saturating_add(read.max(1));
            self.frozen_this_scan = self
                .frozen_this_scan
                .saturating_add(page.iter().filter(|q| q.frozen).count() as u64);
            out.extend(page);
            if self.cursor >= count && count <= QUEUE_PAGE.saturating_mul(PAGES_PER_TICK) {
                // The whole queue fits this tick: no need to read it twice.
                break;
            }
        }
        Ok(out)
    }
}

/// What one tick's sends did.
#[derive(Debug, Default)]
struct Executed {
    /// Nonces executed, with their transactions.
    sent: Vec<(u64, B256)>,
    /// The failure that ended the tick early.
    stopped: Option<SubmitError>,
}

/// Send `executeQueuedRelease` for the `due` nonces whose turn is `me`'s among `operators`
/// (anyone's after a few ticks seen due), at most [`MAX_PER_TICK`]. The gas is the estimate
/// plus the bridge's RELEASE_GAS: a recipient cannot make the execution run out of gas.
///
/// Every due nonce counts the tick, sent or not (whose turn it is goes by them). An estimate that
/// reverts (executed, frozen or cancelled by someone else meanwhile) leaves its nonce to a later
/// tick and goes on. Any other failure — the node, the funds (an estimate the node refuses for
/// them too), the lease, the signer, the relay stopping — would fail every nonce alike, so it
/// ends the tick: a fenced or unfunded leader does not sign, estimate and log once per due nonce
/// every tick.
async fn execute_due(
    submit: &impl Submit,
    bridge: Address,
    (me, operators): (Address, &[Address]),
    due: Vec<u64>,
    due_ticks: &mut HashMap<u64, u32>,
) -> Executed {
    let mut executed = Executed::default();
    let mine: Vec<u64> = due
        .into_iter()
        .filter(|nonce| {
            let ticks = due_ticks.entry(*nonce).or_insert(0);
            let seen = *ticks;
            *ticks = ticks.saturating_add(1);
            my_turn(operators, *nonce, me, seen)
        })
        .collect();
    for nonce in mine {
        if executed.sent.len() >= MAX_PER_TICK {
            break;
        }
        let input = Bridge::executeQueuedReleaseCall { nonce }.abi_encode();
        match send_planned(submit, bridge, input.into(), GasPlan::Release).await {
            Ok(tx) => {
                due_ticks.remove(&nonce);
                executed.sent.push((nonce, tx.hash));
            }
            Err(SubmitError::Send(SendError::WouldRevert(e))) if e.is_unfunded_refusal() => {
                executed.stopped = Some(SubmitError::Send(SendError::InsufficientFunds(me)));
                break;
            }
            Err(SubmitError::Send(SendError::WouldRevert(e))) => {
                tracing::debug!(nonce, error = %e, "queued release would revert now; next tick");
            }
            Err(e) => {
                executed.stopped = Some(e);
                break;
            }
        }
    }
    executed
}

/// The nonces in `page` that anyone may execute at `now`: due and not frozen, in nonce order.
fn due_nonces(page: &[QueuedRelease], now: u64) -> Vec<u64> {
    let mut due: Vec<u64> = page
        .iter()
        .filter(|q| q.release_at <= now && !q.frozen)
        .map(|q| q.nonce)
        .collect();
    due.sort_unstable();
    due.dedup();
    due
}

#[cfg(test)]
mod tests {
    use alloy::primitives::U256;

    use super::*;

    fn queued(nonce: u64, release_at: u64, frozen: bool) -> QueuedRelease {
        QueuedRelease {
            nonce,
            token: Address::ZERO,
            kind: 0,
            to: Address::repeat_byte(7),
            amount: U256::from(1),
            release_at,
            frozen,
        }
    }

    /// A destination whose estimates revert for the nonces in `reverting` (or, with `unfunded`,
    /// are refused for the signer's funds) and whose sends all fail with `send_fails` (none:
    /// they are taken); it counts both.
    struct FakeDestination {
        reverting: Vec<u64>,
        unfunded: bool,
        send_fails: Option<fn() -> SubmitError>,
        estimates: std::sync::atomic::AtomicU32,
        sends: std::sync::atomic::AtomicU32,
    }

    impl FakeDestination {
        fn new(reverting: Vec<u64>, send_fails: Option<fn() -> SubmitError>) -> Self {
            Self {
                reverting,
                unfunded: false,
                send_fails,
                estimates: 0.into(),
                sends: 0.into(),
            }
        }

        fn counts(&self) -> (u32, u32) {
            use std::sync::atomic::Ordering::SeqCst;
            (self.estimates.load(SeqCst), self.sends.load(SeqCst))
        }
    }

    impl Submit for FakeDestination {
        async fn estimate(
            &self,
            _: Address,
            input: alloy::primitives::Bytes,
            _: GasPlan,
        ) -> Result<u64, SubmitError> {
            self.estimates
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let nonce = Bridge::executeQueuedReleaseCall::abi_decode(&input)
                .expect("an executeQueuedRelease call")
                .nonce;
            if self.unfunded {
                return Err(SubmitError::Send(SendError::WouldRevert(
                    crate::chain::ChainError::Rejected {
                        chain: multibridge_contracts::ChainRole::Service,
                        method: "eth_estimateGas",
                        source: alloy::transports::RpcError::ErrorResp(
                            alloy::rpc::json_rpc::ErrorPayload {
                                code: -32000,
                                message: "insufficient funds for gas * price + value".into(),
                                data: None,
                            },
                        ),
                    },
                )));
            }
            if self.reverting.contains(&nonce) {
                return Err(SubmitError::Send(SendError::WouldRevert(
                    crate::chain::ChainError::Unavailable {
                        chain: multibridge_contracts::ChainRole::Service,
                        method: "eth_estimateGas",
                        attempts: 1,
                        last: "execution reverted".into(),
                    },
                )));
            }
            Ok(100_000)
        }

        async fn submit(
            &self,
            job: crate::chain::submitter::Job,
        ) -> Result<crate::chain::sender::Sent, SubmitError> {
            self.sends.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if let Some(fail) = self.send_fails {
                return Err(fail());
            }
            let nonce = Bridge::executeQueuedReleaseCall::abi_decode(&job.input)
                .expect("an executeQueuedRelease call")
                .nonce;
            Ok(crate::chain::sender::Sent {
                hash: B256::with_last_byte(u8::try_from(nonce).unwrap_or(u8::MAX)),
                nonce,
                gas_limit: job.gas_limit,
            })
        }
    }

    /// Five due nonces that have each been seen due for long enough to be anyone's turn.
    fn long_due() -> (Vec<u64>, HashMap<u64, u32>) {
        let due = vec![1, 2, 3, 4, 5];
        let ticks = due.iter().map(|n| (*n, 10)).collect();
        (due, ticks)
    }

    const ME: Address = Address::repeat_byte(1);

    #[tokio::test]
    async fn a_release_that_would_revert_is_left_and_the_next_is_sent() {
        let destination = FakeDestination::new(vec![2], None);
        let (due, mut ticks) = long_due();
        let executed = execute_due(&destination, Address::ZERO, (ME, &[ME]), due, &mut ticks).await;
        assert!(executed.stopped.is_none());
        let nonces: Vec<u64> = executed.sent.iter().map(|(n, _)| *n).collect();
        assert_eq!(nonces, vec![1, 3, 4, 5]);
        assert_eq!(destination.counts(), (5, 4));
        // The reverting one is remembered for a later tick, the executed ones forgotten.
        assert_eq!(ticks.keys().copied().collect::<Vec<_>>(), vec![2]);
    }

    #[tokio::test]
    async fn a_send_that_fails_for_every_release_ends_the_tick() {
        let unfunded: fn() -> SubmitError = || SubmitError::Send(SendError::InsufficientFunds(ME));
        let stopped: fn() -> SubmitError =
            || SubmitError::Stopped(multibridge_contracts::ChainRole::Service);
        for fail in [unfunded, stopped] {
            let destination = FakeDestination::new(Vec::new(), Some(fail));
            let (due, mut ticks) = long_due();
            let executed =
                execute_due(&destination, Address::ZERO, (ME, &[ME]), due, &mut ticks).await;
            assert!(executed.sent.is_empty());
            assert!(executed.stopped.is_some());
            // One signed attempt, not one per due nonce.
            assert_eq!(destination.counts(), (1, 1));
            assert_eq!(ticks.len(), 5, "every nonce stays due");
            assert!(
                ticks.values().all(|t| *t == 11),
                "every due nonce counted the tick"
            );
        }
    }

    #[tokio::test]
    async fn an_estimate_refused_for_the_signers_funds_ends_the_tick() {
        let mut destination = FakeDestination::new(Vec::new(), None);
        destination.unfunded = true;
        let (due, mut ticks) = long_due();
        let executed = execute_due(&destination, Address::ZERO, (ME, &[ME]), due, &mut ticks).await;
        assert!(matches!(
            executed.stopped,
            Some(SubmitError::Send(SendError::InsufficientFunds(_)))
        ));
        assert_eq!(destination.counts(), (1, 0), "one estimate, nothing signed");
    }

    #[test]
    fn only_due_and_unfrozen_releases_are_executed() {
        let page = [
            queued(5, 100, false),
            queued(2, 50, false),
            queued(3, 101, false),
            queued(4, 10, true),
            queued(2, 50, false),
        ];
        assert_eq!(due_nonces(&page, 100), vec![2, 5]);
        assert_eq!(due_nonces(&page, 9), Vec::<u64>::new());
    }
}
