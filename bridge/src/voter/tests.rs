//! The voter's decisions, with the destination and the submitter faked and a real (in-memory)
//! store: the four paths an outcome arrives by (receipt, pre-check, refusal, tracking), the batch
//! fallback, the back-off of a waiting request, and a request another operator settles while
//! our vote is in flight.

use std::collections::HashMap;
use std::sync::Mutex;

use alloy::primitives::{Address, B256, Bytes, LogData, U256};
use alloy::sol_types::{SolCall, SolError, SolEvent, SolInterface};
use alloy::transports::RpcError;
use multibridge_contracts::ChainRole;
use multibridge_monitoring::Metrics;

use super::*;
use crate::chain::sender::Sent;
use crate::store::Store;

const LANE: multibridge_contracts::Lane = multibridge_contracts::Lane::MainToService;
const BRIDGE: Address = Address::repeat_byte(0xb1);
const ME: Address = Address::repeat_byte(0x0e);

fn request(nonce: u64) -> Request {
    Request {
        nonce,
        kind: 0,
        from: Address::repeat_byte(1),
        to: Address::repeat_byte(2),
        token: Address::ZERO,
        amount: U256::from(1),
        fee: U256::ZERO,
        extraData: Bytes::new(),
        srcChainId: U256::from(1),
        srcBridge: Address::repeat_byte(9),
        srcTxHash: B256::repeat_byte(u8::try_from(nonce % 250).unwrap_or(0)),
        srcBlockNumber: 100 + nonce,
        srcLogIndex: 0,
    }
}

/// The destination: a state per nonce (open unless set), and its operators (only us unless
/// set).
#[derive(Default)]
struct FakeDestination {
    states: Mutex<HashMap<u64, NonceState>>,
    reads: Mutex<Vec<Vec<u64>>>,
    committee: Mutex<Option<Committee>>,
    gas_limit: Mutex<Option<u64>>,
    /// Nonces handled at the head but not yet at the confirmation depth.
    not_final: Mutex<Vec<u64>>,
    /// Nonces whose vote key holds the threshold without being executed.
    executable: Mutex<Vec<u64>>,
}

impl FakeDestination {
    fn set(&self, nonce: u64, state: NonceState) {
        self.states.lock().unwrap().insert(nonce, state);
    }
}

impl DestinationReads for Arc<FakeDestination> {
    async fn voting_status(&self, nonces: &[u64]) -> Result<Vec<NonceState>, ChainError> {
        self.reads.lock().unwrap().push(nonces.to_vec());
        let states = self.states.lock().unwrap();
        Ok(nonces
            .iter()
            .map(|n| states.get(n).copied().unwrap_or(NonceState::Open))
            .collect())
    }

    async fn committee(&self) -> Result<Committee, ChainError> {
        Ok(self.committee.lock().unwrap().clone().unwrap_or(Committee {
            operators: vec![ME],
            threshold: 1,
        }))
    }

    async fn handled_final(&self, nonces: &[u64]) -> Result<Vec<bool>, ChainError> {
        let deep = self.not_final.lock().unwrap();
        Ok(nonces.iter().map(|n| !deep.contains(n)).collect())
    }

    async fn signer_balance(&self) -> Result<U256, ChainError> {
        Ok(U256::from(10u64).pow(U256::from(18)))
    }

    async fn block_gas_limit(&self) -> Result<u64, ChainError> {
        Ok(self.gas_limit.lock().unwrap().unwrap_or(30_000_000))
    }

    async fn executable(&self, requests: &[Request]) -> Result<u64, ChainError> {
        let executable = self.executable.lock().unwrap();
        Ok(requests
            .iter()
            .filter(|r| executable.contains(&r.nonce))
            .count() as u64)
    }

    async fn upper_handle_nonce(&self) -> Result<u64, ChainError> {
        let states = self.states.lock().unwrap();
        Ok(states
            .iter()
            .filter(|(_, s)| **s == NonceState::Handled)
            .map(|(n, _)| n + 1)
            .max()
            .unwrap_or(0))
    }
}

/// What the fake node says to a vote.
#[derive(Clone)]
enum Answer {
    Take,
    Revert(BridgeErrors),
}

/// The submitter: records every job's requests; answers by the first request's nonce (a batch
/// reverts when any of its requests reverts alone).
#[derive(Default)]
struct FakeSubmit {
    answers: Mutex<HashMap<u64, Answer>>,
    jobs: Mutex<Vec<(bool, Vec<u64>)>>,
    next_nonce: Mutex<u64>,
    /// Gas per request of a vote (unset: every vote estimates 1,000,000).
    per_request_gas: Mutex<Option<u64>>,
    /// Requests whose vote the node refuses as too large (in any batch).
    too_large: Mutex<Vec<u64>>,
    /// The requests of every `executeHandles` sent.
    executions: Mutex<Vec<Vec<u64>>>,
    /// The gas limit of every job sent, in order.
    gas_limits: Mutex<Vec<u64>>,
}

fn too_large() -> SubmitError {
    SubmitError::Send(SendError::WouldRevert(ChainError::Rejected {
        chain: ChainRole::Service,
        method: "eth_estimateGas",
        source: RpcError::ErrorResp(alloy::rpc::json_rpc::ErrorPayload {
            code: -32000,
            message: "gas required exceeds allowance (3000000)".into(),
            data: None,
        }),
    }))
}

/// A job's entry point and requests (`None`: an `executeHandles`).
fn decode_job(input: &[u8]) -> (Option<bool>, Vec<u64>) {
    if let Ok(call) = Bridge::executeHandlesCall::abi_decode(input) {
        return (None, call.rs.iter().map(|r| r.nonce).collect());
    }
    if let Ok(call) = Bridge::handleValueTransferCall::abi_decode(input) {
        return (Some(true), vec![call.r.nonce]);
    }
    let call = Bridge::handleValueTransfersCall::abi_decode(input).unwrap();
    (Some(false), call.rs.iter().map(|r| r.nonce).collect())
}

fn revert(error: BridgeErrors) -> SubmitError {
    let data = format!("\"0x{}\"", alloy::hex::encode(error.abi_encode()));
    let payload = alloy::rpc::json_rpc::ErrorPayload {
        code: 3,
        message: "execution reverted".into(),
        data: Some(serde_json::value::RawValue::from_string(data).unwrap()),
    };
    SubmitError::Send(SendError::WouldRevert(ChainError::Rejected {
        chain: ChainRole::Service,
        method: "eth_estimateGas",
        source: RpcError::ErrorResp(payload),
    }))
}

/// The fake submitter as the voter holds it (the test keeps another handle).
#[derive(Clone)]
struct SharedSubmit(Arc<FakeSubmit>);

impl std::ops::Deref for SharedSubmit {
    type Target = FakeSubmit;
    fn deref(&self) -> &FakeSubmit {
        &self.0
    }
}

impl Submit for SharedSubmit {
    async fn estimate(&self, to: Address, input: Bytes, plan: GasPlan) -> Result<u64, SubmitError> {
        assert_eq!(to, BRIDGE);
        assert!(matches!(plan, GasPlan::Vote { bridge: BRIDGE, .. }));
        let (_, nonces) = decode_job(&input);
        if nonces
            .iter()
            .any(|n| self.too_large.lock().unwrap().contains(n))
        {
            return Err(too_large());
        }
        if let Some(per) = *self.per_request_gas.lock().unwrap() {
            return Ok(per * nonces.len() as u64);
        }
        let answers = self.answers.lock().unwrap();
        for n in &nonces {
            if let Some(Answer::Revert(e)) = answers.get(n) {
                return Err(revert(e.clone()));
            }
        }
        Ok(1_000_000)
    }

    async fn submit(&self, job: Job) -> Result<Sent, SubmitError> {
        let (single, nonces) = decode_job(&job.input);
        if self.per_request_gas.lock().unwrap().is_none() {
            assert!(
                [1_000_000, 1_000_000 + multibridge_contracts::ITEM_GAS].contains(&job.gas_limit),
                "sent with its estimate (plus the worst case again after an out-of-gas): {}",
                job.gas_limit
            );
        }
        self.gas_limits.lock().unwrap().push(job.gas_limit);
        match single {
            Some(single) => self.jobs.lock().unwrap().push((single, nonces)),
            None => self.executions.lock().unwrap().push(nonces),
        }
        let mut next = self.next_nonce.lock().unwrap();
        let nonce = *next;
        *next += 1;
        Ok(Sent {
            nonce,
            hash: B256::from(U256::from(1000 + nonce)),
            gas_limit: 1_000_000,
        })
    }
}

struct Harness {
    voter: Voter<Arc<FakeDestination>, SharedSubmit>,
    destination: Arc<FakeDestination>,
    submit: Arc<FakeSubmit>,
    events: mpsc::UnboundedSender<JobEvent>,
    store: SharedStore,
    metrics: Metrics,
}

impl Harness {
    fn new(requests: u64, batch_size: usize) -> Self {
        let mut store = Store::open_in_memory("test").unwrap();
        let rs: Vec<Request> = (0..requests).map(request).collect();
        store.record_range(LANE, &rs, 1_000).unwrap();
        let store = SharedStore::new(store);
        let destination = Arc::new(FakeDestination::default());
        let submit = Arc::new(FakeSubmit::default());
        let (events, receiver) = mpsc::unbounded_channel();
        let metrics = Metrics::new(&[LANE], 1).unwrap();
        let voter = Voter::new(
            BRIDGE,
            ME,
            store.clone(),
            destination.clone(),
            SharedSubmit(submit.clone()),
            receiver,
            VoterConfig {
                batch_size,
                retry_after: Duration::from_secs(5),
                ..VoterConfig::default()
            },
            metrics.lane(LANE),
        );
        Self {
            voter,
            destination,
            submit,
            events,
            store,
            metrics,
        }
    }

    async fn step(&mut self) -> VoteStep {
        self.voter.step().await.unwrap()
    }

    fn row(&self, nonce: u64) -> StoredRequest {
        self.store.lock().get(LANE, nonce).unwrap().unwrap()
    }

    fn status(&self, nonce: u64) -> RequestStatus {
        self.row(nonce).status
    }

    fn jobs(&self) -> Vec<(bool, Vec<u64>)> {
        std::mem::take(&mut *self.submit.jobs.lock().unwrap())
    }

    fn metric(&self, needle: &str) -> f64 {
        let text = self.metrics.render();
        text.lines()
            .find(|l| l.starts_with(needle))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {needle} in\n{text}"))
    }

    /// The receipt of vote transaction `tx_nonce`, mined with `logs`.
    fn mined(&self, tx_nonce: u64, success: bool, gas_used: u64, logs: Vec<LogData>) {
        let logs: Vec<serde_json::Value> = logs
            .into_iter()
            .enumerate()
            .map(|(i, data)| {
                serde_json::json!({
                    "address": BRIDGE,
                    "topics": data.topics(),
                    "data": data.data,
                    "blockNumber": "0x1",
                    "blockHash": B256::repeat_byte(7),
                    "transactionHash": B256::from(U256::from(1000 + tx_nonce)),
                    "transactionIndex": "0x0",
                    "logIndex": format!("0x{i:x}"),
                    "removed": false,
                })
            })
            .collect();
        let receipt: TransactionReceipt = serde_json::from_value(serde_json::json!({
            "type": "0x2",
            "status": if success { "0x1" } else { "0x0" },
            "cumulativeGasUsed": format!("0x{gas_used:x}"),
            "logs": logs,
            "logsBloom": format!("0x{}", "00".repeat(256)),
            "transactionHash": B256::from(U256::from(1000 + tx_nonce)),
            "transactionIndex": "0x0",
            "blockHash": B256::repeat_byte(7),
            "blockNumber": "0x1",
            "gasUsed": format!("0x{gas_used:x}"),
            "effectiveGasPrice": "0x1",
            "from": ME,
            "to": BRIDGE,
            "contractAddress": null,
        }))
        .unwrap();
        self.events
            .send(JobEvent::Mined {
                nonce: tx_nonce,
                receipt: Box::new(receipt),
                gas_limit: 1_000_000,
            })
            .unwrap();
    }
}

fn vote_cast(nonce: u64, operator: Address) -> LogData {
    Bridge::VoteCast {
        nonce,
        operator,
        voteKey: B256::repeat_byte(3),
        votes: U256::from(1),
    }
    .encode_log_data()
}

fn handled(nonce: u64) -> LogData {
    let r = request(nonce);
    Bridge::HandleValueTransfer {
        nonce,
        srcTxHash: r.srcTxHash,
        to: r.to,
        kind: 0,
        token: Address::ZERO,
        amount: r.amount,
        voteKey: B256::repeat_byte(3),
        lowerHandleNonce: nonce + 1,
    }
    .encode_log_data()
}

fn skipped(nonce: u64, reason: [u8; 4]) -> LogData {
    Bridge::HandleSkipped {
        nonce,
        operator: ME,
        reason: reason.into(),
    }
    .encode_log_data()
}

fn liquidity() -> BridgeErrors {
    BridgeErrors::InsufficientLiquidity(Bridge::InsufficientLiquidity {
        token: Address::ZERO,
        available: U256::ZERO,
        required: U256::from(1),
    })
}

#[tokio::test]
async fn the_receipt_path_settles_each_carried_request_by_its_log() {
    let mut h = Harness::new(4, 64);
    let step = h.step().await;
    assert_eq!(step.sent, 4);
    assert_eq!(h.jobs(), vec![(false, vec![0, 1, 2, 3])]);
    for n in 0..4 {
        assert_eq!(h.status(n), RequestStatus::Voting);
    }
    assert_eq!(h.voter.in_flight(), 1);
    // Nonce 0 recorded our vote, 1 executed with it, 2 skipped for liquidity, 3 not mentioned.
    h.mined(
        0,
        true,
        300_000,
        vec![
            vote_cast(0, ME),
            vote_cast(1, ME),
            handled(1),
            skipped(2, Bridge::InsufficientLiquidity::SELECTOR),
        ],
    );
    let step = h.step().await;
    assert_eq!((step.handled, step.waiting), (1, 1));
    assert_eq!(h.status(0), RequestStatus::Voted);
    assert_eq!(h.status(1), RequestStatus::Handled);
    assert_eq!(h.row(2).waiting, Some(WaitReason::InsufficientLiquidity));
    // Nonce 3 went back to be pre-checked, found open, and voted again.
    assert_eq!(h.jobs(), vec![(false, vec![3])]);
    assert_eq!(h.status(3), RequestStatus::Voting);
    assert_eq!(
        h.metric("multibridge_vote_transactions_total{lane=\"main-to-service\",outcome=\"mined\"}"),
        1.0
    );
    assert_eq!(
        h.metric("multibridge_handled_total{lane=\"main-to-service\"}"),
        1.0
    );
    assert_eq!(
        h.metric("multibridge_handle_latency_seconds_count{lane=\"main-to-service\"}"),
        1.0
    );
}

#[tokio::test]
async fn a_reverted_vote_reopens_what_it_carried() {
    let mut h = Harness::new(2, 64);
    h.step().await;
    h.jobs();
    h.mined(0, false, 90_000, vec![]);
    h.step().await;
    assert_eq!(
        h.metric(
            "multibridge_vote_transactions_total{lane=\"main-to-service\",outcome=\"reverted\"}"
        ),
        1.0
    );
    assert_eq!(
        h.jobs(),
        vec![(false, vec![0, 1])],
        "re-checked and re-sent"
    );
    h.mined(1, false, 90_000, vec![]);
    h.destination.set(0, NonceState::Handled);
    h.destination.set(1, NonceState::VotedByUs);
    h.step().await;
    assert_eq!(h.status(0), RequestStatus::Handled);
    assert_eq!(h.status(1), RequestStatus::Voted);
    assert!(h.jobs().is_empty());
}

/// Audit NEW-H1: a vote mined out of gas (its whole gas limit used) is not re-sent as it was:
/// what it carried goes alone, each with the worst case added once more; a request whose single
/// vote runs out of gas again is set aside with its reason and nonce (alert), while the others
/// are voted and the lane goes on.
#[tokio::test]
async fn a_mined_out_of_gas_goes_to_singles_at_worst_case_gas_and_a_repeat_is_set_aside() {
    let mut h = Harness::new(3, 64);
    h.step().await;
    assert_eq!(h.jobs(), vec![(false, vec![0, 1, 2])]);
    h.mined(0, false, 1_000_000, vec![]);
    h.step().await;
    assert_eq!(
        h.metric(
            "multibridge_vote_transactions_total{lane=\"main-to-service\",outcome=\"out_of_gas\"}"
        ),
        1.0
    );
    assert_eq!(
        h.jobs(),
        vec![(false, vec![0]), (false, vec![1]), (false, vec![2])],
        "one by one"
    );
    let limits: Vec<u64> = std::mem::take(&mut *h.submit.gas_limits.lock().unwrap());
    assert_eq!(
        &limits[1..],
        &[1_000_000 + multibridge_contracts::ITEM_GAS; 3],
        "each with the worst case added once more"
    );
    // Nonce 1's single runs out of gas again; 0 and 2 execute.
    h.mined(1, true, 90_000, vec![vote_cast(0, ME), handled(0)]);
    h.mined(
        2,
        false,
        1_000_000 + multibridge_contracts::ITEM_GAS,
        vec![],
    );
    h.mined(3, true, 90_000, vec![vote_cast(2, ME), handled(2)]);
    h.step().await;
    assert_eq!(h.status(0), RequestStatus::Handled);
    assert_eq!(h.status(2), RequestStatus::Handled);
    let row = h.row(1);
    assert_eq!(row.status, RequestStatus::Rejected, "set aside, not resent");
    assert_eq!(row.rejected, Some(RejectReason::OutOfGas));
    assert!(h.jobs().is_empty(), "no vote for it any more");
    crate::observe::status::publish_store_stats(&h.store.lock(), &h.metrics.lane(LANE)).unwrap();
    assert_eq!(
        h.metric("multibridge_rejected_requests{lane=\"main-to-service\",reason=\"out_of_gas\"}"),
        1.0
    );
    assert_eq!(
        h.metric(
            "multibridge_rejected_first_nonce{lane=\"main-to-service\",reason=\"out_of_gas\"}"
        ),
        1.0,
        "the metric names the nonce"
    );
}

/// An item the bridge did not take for want of gas is voted again; one beyond the vote window
/// waits with its reason.
#[tokio::test]
async fn an_item_skipped_for_gas_is_revoted_and_one_beyond_the_window_waits() {
    let mut h = Harness::new(2, 64);
    h.step().await;
    h.jobs();
    h.mined(
        0,
        true,
        900_000,
        vec![
            skipped(0, Bridge::GasBudgetTooLow::SELECTOR),
            skipped(1, Bridge::NonceOutsideWindow::SELECTOR),
        ],
    );
    h.step().await;
    assert_eq!(h.jobs(), vec![(false, vec![0])], "voted again at once");
    assert_eq!(h.row(1).waiting, Some(WaitReason::VoteWindow));
}

/// Audit L-2: a request this operator voted long ago whose key holds the threshold (the threshold
/// was lowered) is executed with `executeHandles`; an execution that skips it as below the
/// threshold leaves it voted.
#[tokio::test]
async fn a_voted_request_holding_the_threshold_is_executed() {
    let mut h = Harness::new(2, 64);
    h.destination.set(0, NonceState::VotedByUs);
    h.destination.set(1, NonceState::VotedByUs);
    h.step().await;
    assert_eq!(h.status(0), RequestStatus::Voted);
    h.destination.executable.lock().unwrap().push(0);
    // Time passes: both are stale for the re-check and were indexed long ago.
    h.store.lock().age_rows(LANE, 3_600).unwrap();
    h.step().await;
    assert_eq!(
        std::mem::take(&mut *h.submit.executions.lock().unwrap()),
        vec![vec![0, 1]],
        "one executeHandles for the long-voted requests"
    );
    assert!(h.jobs().is_empty(), "no vote");
    assert_eq!(h.status(0), RequestStatus::Voting);
    h.mined(
        0,
        true,
        200_000,
        vec![handled(0), skipped(1, Bridge::BelowThreshold::SELECTOR)],
    );
    h.step().await;
    assert_eq!(h.status(0), RequestStatus::Handled);
    assert_eq!(
        h.status(1),
        RequestStatus::Voted,
        "still below the threshold"
    );
}

#[tokio::test]
async fn the_pre_check_settles_what_needs_no_vote_and_sends_the_rest() {
    let mut h = Harness::new(4, 64);
    h.destination.set(0, NonceState::Handled);
    h.destination.set(1, NonceState::VotedByUs);
    let step = h.step().await;
    assert_eq!((step.skipped, step.handled, step.sent), (2, 1, 2));
    assert_eq!(h.status(0), RequestStatus::Handled);
    assert_eq!(h.status(1), RequestStatus::Voted);
    assert_eq!(h.jobs(), vec![(false, vec![2, 3])]);
    assert_eq!(
        h.metric(
            "multibridge_votes_skipped_total{lane=\"main-to-service\",reason=\"already_handled\"}"
        ),
        1.0
    );
    assert_eq!(
        h.metric(
            "multibridge_votes_skipped_total{lane=\"main-to-service\",reason=\"already_voted\"}"
        ),
        1.0
    );
    // A voted request is re-checked once it is stale: handled now.
    h.store.lock().age_rows(LANE, 60).unwrap();
    h.destination.set(1, NonceState::Handled);
    h.step().await;
    assert_eq!(h.status(1), RequestStatus::Handled);
    // A voted request whose vote disappeared (destination reorg) is voted again.
    let mut h = Harness::new(1, 64);
    h.store.lock().apply(LANE, 0, &Transition::Voted).unwrap();
    h.store.lock().age_rows(LANE, 60).unwrap();
    h.step().await;
    assert_eq!(h.status(0), RequestStatus::Observed, "vote gone: reopened");
    h.step().await;
    assert_eq!(h.jobs(), vec![(false, vec![0])]);
}

#[tokio::test]
async fn a_refused_single_is_settled_by_the_destination_error() {
    let mut h = Harness::new(4, 1);
    h.submit.answers.lock().unwrap().extend([
        (
            0,
            Answer::Revert(BridgeErrors::AlreadyHandled(Bridge::AlreadyHandled {
                nonce: 0,
            })),
        ),
        (1, Answer::Revert(liquidity())),
        (
            2,
            Answer::Revert(BridgeErrors::WrongSource(Bridge::WrongSource {
                srcChainId: U256::from(5),
                srcBridge: Address::ZERO,
            })),
        ),
        (3, Answer::Take),
    ]);
    let step = h.step().await;
    assert_eq!(step.sent, 1);
    assert_eq!(h.status(0), RequestStatus::Handled);
    let waiting = h.row(1);
    assert_eq!(waiting.status, RequestStatus::Observed);
    assert_eq!(waiting.waiting, Some(WaitReason::InsufficientLiquidity));
    assert!(waiting.detail.unwrap().contains("InsufficientLiquidity"));
    let rejected = h.row(2);
    assert_eq!(rejected.status, RequestStatus::Rejected);
    assert_eq!(rejected.rejected, Some(RejectReason::WrongSource));
    assert_eq!(h.jobs(), vec![(false, vec![3])]);
    // A key that is not an operator stops the lane with a named error.
    h.submit.answers.lock().unwrap().insert(
        3,
        Answer::Revert(BridgeErrors::NotOperator(Bridge::NotOperator {
            caller: ME,
        })),
    );
    h.events.send(JobEvent::Abandoned { nonce: 0 }).unwrap();
    let err = h.voter.step().await.unwrap_err();
    assert!(
        matches!(err, VoterError::NotOperator(a) if a == ME),
        "{err}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_batch_that_would_revert_falls_back_to_singles_that_find_the_culprit() {
    let mut h = Harness::new(4, 64);
    h.submit
        .answers
        .lock()
        .unwrap()
        .insert(2, Answer::Revert(liquidity()));
    let step = h.step().await;
    assert_eq!(step.sent, 0, "the batch would revert: nothing sent");
    let step = h.step().await;
    assert_eq!(step.sent, 3);
    assert_eq!(
        h.jobs(),
        vec![(false, vec![0]), (false, vec![1]), (false, vec![3])]
    );
    assert_eq!(h.row(2).waiting, Some(WaitReason::InsufficientLiquidity));
}

#[tokio::test]
async fn a_waiting_request_is_retried_alone_after_the_pause_and_proceeds_once_it_clears() {
    let mut h = Harness::new(1, 64);
    h.submit
        .answers
        .lock()
        .unwrap()
        .insert(0, Answer::Revert(liquidity()));
    h.step().await;
    assert_eq!(h.row(0).waiting, Some(WaitReason::InsufficientLiquidity));
    // Within the pause nothing is tried, not even simulated.
    let reads = h.destination.reads.lock().unwrap().len();
    for _ in 0..3 {
        assert_eq!(h.step().await.sent, 0);
    }
    assert_eq!(h.destination.reads.lock().unwrap().len(), reads);
    assert_eq!(
        h.metric("multibridge_waiting_total{lane=\"main-to-service\"}"),
        1.0
    );
    // After the pause it is simulated alone through the single entry point: still short.
    h.store.lock().age_rows(LANE, 6).unwrap();
    h.step().await;
    assert_eq!(
        h.metric("multibridge_waiting_total{lane=\"main-to-service\"}"),
        2.0
    );
    assert!(h.jobs().is_empty());
    // Funds arrive: the next attempt is sent, alone.
    h.submit.answers.lock().unwrap().clear();
    h.store.lock().age_rows(LANE, 6).unwrap();
    assert_eq!(h.step().await.sent, 1);
    assert_eq!(h.jobs(), vec![(true, vec![0])]);
    h.mined(0, true, 90_000, vec![vote_cast(0, ME), handled(0)]);
    h.step().await;
    let row = h.row(0);
    assert_eq!((row.status, row.waiting), (RequestStatus::Handled, None));
}

#[tokio::test]
async fn a_request_settled_by_other_operators_while_our_vote_flies_counts_as_handled() {
    let mut h = Harness::new(3, 64);
    h.step().await;
    h.jobs();
    // The others executed nonces 0 and 1 first; our batch skipped them and recorded 2.
    h.mined(
        0,
        true,
        120_000,
        vec![
            skipped(0, Bridge::AlreadyHandled::SELECTOR),
            skipped(1, Bridge::AlreadyHandled::SELECTOR),
            vote_cast(2, ME),
        ],
    );
    let step = h.step().await;
    assert_eq!(step.handled, 2);
    assert_eq!(h.status(0), RequestStatus::Handled);
    assert_eq!(h.status(1), RequestStatus::Handled);
    assert_eq!(h.status(2), RequestStatus::Voted);
    // A transaction superseded (its nonce used by something we do not know): the pre-check
    // finds the request handled by the others, and nothing is sent again.
    let mut h = Harness::new(1, 64);
    h.step().await;
    h.jobs();
    h.destination.set(0, NonceState::Handled);
    h.events.send(JobEvent::Superseded { nonce: 0 }).unwrap();
    let step = h.step().await;
    assert_eq!((step.handled, step.sent), (1, 0));
    assert!(h.jobs().is_empty());
    assert_eq!(
        h.metric(
            "multibridge_vote_transactions_total{lane=\"main-to-service\",outcome=\"superseded\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn replacements_keep_every_hash_and_a_new_term_rechecks_what_was_in_flight() {
    let mut h = Harness::new(2, 64);
    h.step().await;
    let replacement = B256::repeat_byte(0xee);
    h.events
        .send(JobEvent::Replaced {
            nonce: 0,
            hash: replacement,
        })
        .unwrap();
    h.step().await;
    let hashes = h.store.lock().tx_hashes(LANE, 1).unwrap();
    assert_eq!(hashes, vec![B256::from(U256::from(1000)), replacement]);
    assert_eq!(h.voter.in_flight(), 1);
    // Leadership moves away and back: the old term's votes are re-checked, not forgotten.
    assert_eq!(h.voter.start_term().unwrap(), 2);
    assert_eq!(h.voter.in_flight(), 0);
    assert_eq!(h.status(0), RequestStatus::Observed);
    h.destination.set(0, NonceState::VotedByUs);
    h.step().await;
    assert_eq!(h.status(0), RequestStatus::Voted);
    assert_eq!(h.jobs().last(), Some(&(false, vec![1])));
}

#[tokio::test]
async fn a_standby_operator_votes_only_what_the_lane_passed_by_and_nothing_others_handled() {
    let mut h = Harness::new(30, 64);
    let committee = Committee {
        operators: vec![ME, Address::repeat_byte(0x0a), Address::repeat_byte(0x0b)],
        threshold: 2,
    };
    let primary: Vec<u64> = (0..30).filter(|n| committee.is_primary(*n, ME)).collect();
    let standby: Vec<u64> = (0..30).filter(|n| !committee.is_primary(*n, ME)).collect();
    assert!(
        !primary.is_empty() && standby.len() >= 4,
        "both kinds among 30"
    );
    *h.destination.committee.lock().unwrap() = Some(committee);
    h.step().await;
    assert_eq!(h.jobs(), vec![(false, primary.clone())], "primaries only");
    for n in &standby {
        assert_eq!(h.status(*n), RequestStatus::Observed);
    }
    // 5 s later nothing was handled (a backlog the primaries have not reached): still waiting.
    h.store.lock().age_rows(LANE, 5).unwrap();
    h.step().await;
    assert!(h.jobs().is_empty(), "the lane has not passed them: no vote");
    // The others handled some standby requests and moved the lane past all of them; the rest
    // is voted (a primary is missing for them), the handled ones are not.
    let (handled, still_open) = standby.split_at(standby.len() / 2);
    for n in handled {
        h.destination.set(*n, NonceState::Handled);
    }
    h.destination.set(29, NonceState::Handled);
    h.store.lock().age_rows(LANE, 1).unwrap();
    h.step().await;
    let open: Vec<u64> = still_open.iter().copied().filter(|n| *n != 29).collect();
    assert_eq!(h.jobs(), vec![(false, open)]);
    for n in handled {
        assert_eq!(h.status(*n), RequestStatus::Handled, "no vote sent for {n}");
    }
}

#[tokio::test]
async fn a_standby_operator_votes_anyway_once_a_request_is_three_pauses_old() {
    let mut h = Harness::new(30, 64);
    let committee = Committee {
        operators: vec![ME, Address::repeat_byte(0x0a), Address::repeat_byte(0x0b)],
        threshold: 2,
    };
    let standby: Vec<u64> = (0..30).filter(|n| !committee.is_primary(*n, ME)).collect();
    *h.destination.committee.lock().unwrap() = Some(committee);
    h.step().await;
    h.jobs();
    // 13 s, not 14: the clock may pass a second boundary during the test (the ages are whole
    // seconds of the wall clock), and 14 + 1 would already be the limit.
    h.store.lock().age_rows(LANE, 13).unwrap();
    h.step().await;
    assert!(
        h.jobs().is_empty(),
        "13 s, nothing handled: still standing by"
    );
    h.store.lock().age_rows(LANE, 2).unwrap();
    h.step().await;
    assert_eq!(
        h.jobs(),
        vec![(false, standby)],
        "at 15 s every standby request is voted"
    );
}

#[test]
fn nonce_ranges_name_every_nonce_compactly() {
    assert_eq!(nonce_ranges(&[]), "");
    assert_eq!(nonce_ranges(&[4]), "4");
    assert_eq!(nonce_ranges(&[7, 3, 4, 5, 9, 9]), "3-5,7,9");
    assert_eq!(
        nonce_ranges(&[u64::MAX - 1, u64::MAX]),
        format!("{}-{}", u64::MAX - 1, u64::MAX)
    );
}

/// Audit H-1: a batch needing more gas than a vote may use of the destination's block is split
/// until it fits, instead of failing the step forever.
#[tokio::test]
async fn a_batch_over_the_gas_budget_is_split_and_every_request_is_voted() {
    let mut h = Harness::new(12, 64);
    *h.destination.gas_limit.lock().unwrap() = Some(10_000_000);
    *h.submit.per_request_gas.lock().unwrap() = Some(1_000_000);
    let step = h.step().await;
    assert_eq!(step.sent, 12, "every request voted");
    let jobs = h.jobs();
    assert!(
        jobs.iter().all(|(_, n)| n.len() <= 5),
        "each within 5M gas: {jobs:?}"
    );
    let mut voted: Vec<u64> = jobs.into_iter().flat_map(|(_, n)| n).collect();
    voted.sort_unstable();
    assert_eq!(voted, (0..12).collect::<Vec<_>>(), "each once");
}

/// Audit H-1: one request whose vote no node accepts is set aside with a named reason; the
/// requests around it are voted in the same step.
#[tokio::test]
async fn a_request_whose_vote_alone_is_too_large_is_set_aside_and_the_rest_go() {
    let mut h = Harness::new(8, 64);
    h.submit.too_large.lock().unwrap().push(3);
    let step = h.step().await;
    assert_eq!(step.sent, 7, "the others voted");
    assert_eq!(h.status(3), RequestStatus::Rejected);
    assert_eq!(h.row(3).rejected, Some(RejectReason::Oversized));
    let voted: Vec<u64> = h.jobs().into_iter().flat_map(|(_, n)| n).collect();
    assert!(!voted.contains(&3));
    // Set aside for good: later steps do not try it again.
    let step = h.step().await;
    assert_eq!(step.sent, 0);
    assert!(h.jobs().is_empty());
}

#[test]
fn batches_are_cut_by_count_and_by_calldata_bytes() {
    let mut rs: Vec<Request> = (0..10).map(request).collect();
    for r in rs.iter_mut() {
        r.extraData = Bytes::from(vec![0u8; 1024]);
    }
    // (15 + 32 words) * 32 = 1504 bytes each.
    let cut = batches(&rs, 64, 4 * 1504);
    assert_eq!(cut.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4, 2]);
    let cut = batches(&rs, 3, MAX_VOTE_BYTES);
    assert_eq!(
        cut.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![3, 3, 3, 1]
    );
    // One request above the byte budget still gets a batch of its own.
    let cut = batches(&rs, 64, 100);
    assert_eq!(cut.len(), 10);
}

/// Audit M-3: a handle seen by the pre-check counts only once it is at the destination's
/// confirmation depth; until then the request is neither voted nor settled.
#[tokio::test]
async fn a_handle_above_the_confirmation_depth_is_not_final_yet() {
    let mut h = Harness::new(2, 64);
    h.destination.set(0, NonceState::Handled);
    h.destination.set(1, NonceState::Handled);
    h.destination.not_final.lock().unwrap().push(1);
    let step = h.step().await;
    assert_eq!(step.sent, 0, "nothing voted: both are handled at the head");
    assert_eq!(h.status(0), RequestStatus::Handled);
    assert_eq!(h.status(1), RequestStatus::Observed, "not final yet");
    assert!(
        h.row(1).not_before.is_some_and(|t| t > unix_now()),
        "deferred, so it does not crowd newer requests out of the window"
    );
    h.destination.not_final.lock().unwrap().clear();
    // Time passes: the deferral is over.
    h.store
        .lock()
        .apply(LANE, 1, &Transition::Deferred { until: 0 })
        .unwrap();
    h.step().await;
    assert_eq!(h.status(1), RequestStatus::Handled, "final at depth");
    assert!(h.jobs().is_empty());
}
