//! The voter's decisions, with the destination and the submitter faked and a real (in-memory)
//! store: the four paths an outcome arrives by (receipt, pre-check, refusal, tracking), the batch
//! fallback, the back-off of a waiting request, and a request another operator settles while
//! our vote is in flight.
//!
//! This file holds the fakes and the harness; `cases.rs` the decisions.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;

use alloy::primitives::{Address, B256, Bytes, LogData, U256};
use alloy::sol_types::{SolCall, SolError, SolEvent, SolInterface};
use alloy::transports::RpcError;
use multibridge_contracts::ChainRole;
use multibridge_monitoring::Metrics;

use super::*;
use crate::chain::sender::Sent;
use crate::store::Store;
use crate::store::unix_now;
use alloy::rpc::types::TransactionReceipt;
use multibridge_contracts::bindings::Bridge::BridgeErrors;
use multibridge_contracts::{NonceState, RequestStatus, WaitReason};

const LANE: multibridge_contracts::Lane = multibridge_contracts::Lane::MainToService;
const BRIDGE: Address = Address::repeat_byte(0xb1);
const ME: Address = Address::repeat_byte(0x0e);

pub(in crate::voter) fn request(nonce: u64) -> Request {
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
        // One request per odd block after an empty even one: each its own attested batch
        // (`batch_blocks`), whatever the indexer's cursor.
        srcBlockNumber: 101 + 2 * nonce,
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
    /// Gas the latest block used (unset: none, the blocks have room).
    block_used: Mutex<Option<u64>>,
    /// Nonces handled at the head but not yet at the confirmation depth.
    not_final: Mutex<Vec<u64>>,
    /// Nonces whose vote key holds the threshold without being executed.
    executable: Mutex<Vec<u64>>,
    /// The bridge's `NATIVE_ITEM_GAS` (unset: a bridge from before the getter, ITEM_GAS).
    native_item_gas: Mutex<Option<u64>>,
    /// How often `NATIVE_ITEM_GAS` was read.
    native_item_gas_reads: Mutex<usize>,
    /// (`lowerHandleNonce`, `upperHandleNonce`) as set by a test (unset: from the handled
    /// nonces).
    handles: Mutex<Option<(u64, u64)>>,
    /// How often a pre-check started the plan's reads beside it.
    warmed: Mutex<usize>,
    /// Of those, how often every request to vote had its plan made ahead.
    warmed_planned: Mutex<usize>,
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

    fn warm_vote_plan(&self, planned: bool) {
        *self.warmed.lock().unwrap() += 1;
        if planned {
            *self.warmed_planned.lock().unwrap() += 1;
        }
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

    async fn latest_block_gas(&self) -> Result<super::reads::BlockGas, ChainError> {
        Ok(super::reads::BlockGas {
            used: self.block_used.lock().unwrap().unwrap_or(0),
            limit: self.gas_limit.lock().unwrap().unwrap_or(30_000_000),
        })
    }

    async fn native_item_gas(&self) -> Result<u64, ChainError> {
        *self.native_item_gas_reads.lock().unwrap() += 1;
        Ok(self
            .native_item_gas
            .lock()
            .unwrap()
            .unwrap_or(multibridge_contracts::ITEM_GAS))
    }

    async fn executable(&self, requests: &[Request]) -> Result<u64, ChainError> {
        let executable = self.executable.lock().unwrap();
        Ok(requests
            .iter()
            .filter(|r| executable.contains(&r.nonce))
            .count() as u64)
    }

    async fn handle_nonces(&self) -> Result<(u64, u64), ChainError> {
        if let Some(set) = *self.handles.lock().unwrap() {
            return Ok(set);
        }
        let states = self.states.lock().unwrap();
        let handled = |n: &u64| states.get(n) == Some(&NonceState::Handled);
        let lower = (0..).find(|n| !handled(n)).unwrap_or(0);
        let upper = states
            .keys()
            .filter(|n| handled(n))
            .map(|n| n + 1)
            .max()
            .unwrap_or(0);
        Ok((lower, upper))
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
    /// Whether each job sent bid a leading tip, in order.
    leads: Mutex<Vec<bool>>,
    /// The requests of every estimate planned as a recording vote.
    record_plans: Mutex<Vec<Vec<u64>>>,
    /// The item gas of every estimate's plan, in order.
    item_gas_plans: Mutex<Vec<u64>>,
    /// How many estimates were made.
    estimates: Mutex<usize>,
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

/// A job's entry point and requests (`None`: an `executeHandles` or an `executeAttested`).
fn decode_job(input: &[u8]) -> (Option<bool>, Vec<u64>) {
    if let Ok(call) = Bridge::executeHandlesCall::abi_decode(input) {
        return (None, call.rs.iter().map(|r| r.nonce).collect());
    }
    if let Ok(call) = Bridge::executeAttestedCall::abi_decode(input) {
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
        assert!(matches!(
            plan,
            GasPlan::Vote { bridge: BRIDGE, .. } | GasPlan::Record { bridge: BRIDGE, .. }
        ));
        let (_, nonces) = decode_job(&input);
        *self.estimates.lock().unwrap() += 1;
        if let GasPlan::Vote { item_gas, .. } | GasPlan::Record { item_gas, .. } = plan {
            self.item_gas_plans.lock().unwrap().push(item_gas);
        }
        if matches!(plan, GasPlan::Record { .. }) {
            self.record_plans.lock().unwrap().push(nonces.clone());
        }
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
        self.leads.lock().unwrap().push(job.lead);
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

    /// Vote transaction `tx_nonce` of `nonces` landed after the threshold was reached: its first
    /// half executed, the rest skipped for gas (`GasBudgetTooLow`). Returns both halves.
    fn mined_half_short_of_gas<'a>(
        &self,
        tx_nonce: u64,
        nonces: &'a [u64],
    ) -> (&'a [u64], &'a [u64]) {
        let (executed, short) = nonces.split_at(nonces.len() / 2);
        let logs = executed
            .iter()
            .map(|n| handled(*n))
            .chain(
                short
                    .iter()
                    .map(|n| skipped(*n, Bridge::GasBudgetTooLow::SELECTOR)),
            )
            .collect();
        self.mined(tx_nonce, true, 900_000, logs);
        (executed, short)
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

mod cases;
