//! A JSON-RPC endpoint that lies or lags (test doubles of a compromised or slow provider): it
//! forwards every call to a real node and returns the node's answer, except for the lies it was
//! started with ([`Lies`]):
//! - `raise_request_amounts` (audit M-7): the amount of every `RequestValueTransfer` log in an
//!   `eth_getLogs` answer is raised by one;
//! - `claimed_head_ahead`: `eth_blockNumber` answers the node's head plus this many blocks
//!   (audit A3-M3: an endpoint that claims to be ahead of every other), and logs of the claimed
//!   blocks beyond the node's head are empty;
//! - `lag_blocks`: a consistent view this many blocks behind the node (a node that is merely
//!   behind): its head, "latest", every block-tagged call, logs, blocks and receipts stop there;
//! - `fabricated_handle`: a `HandleValueTransfer` of the given bridge, nonce and vote key that
//!   never happened, served in `eth_getLogs` answers from the first range read at or after the
//!   block it was armed at, with a receipt of its own (audit A3-M3: a fabricated log).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use alloy::primitives::{Address, B256, U256};
use alloy::sol_types::{SolEvent, SolValue};
use axum::extract::State;
use axum::routing::post;
use multibridge_contracts::bindings::Bridge;
use serde_json::{Value, json};

use crate::error::DevnetError;

/// What the endpoint lies about.
#[derive(Debug, Clone, Default)]
pub struct Lies {
    /// Raise every request log's amount by one.
    pub raise_request_amounts: bool,
    /// Claim a head this many blocks beyond the node's.
    pub claimed_head_ahead: u64,
    /// Serve a view this many blocks behind the node's head.
    pub lag_blocks: u64,
    /// Serve a `HandleValueTransfer` that never happened.
    pub fabricated_handle: Option<FabricatedHandle>,
}

/// A `HandleValueTransfer` the endpoint makes up.
#[derive(Debug, Clone, Copy)]
pub struct FabricatedHandle {
    /// The bridge it claims emitted it.
    pub bridge: Address,
    /// The nonce it claims executed.
    pub nonce: u64,
    /// The vote key it claims executed.
    pub key: B256,
    /// Not served in logs of blocks before this one.
    pub from_block: u64,
}

/// The transaction hash of every fabricated handle.
pub const FABRICATED_TX: B256 = B256::repeat_byte(0xfa);

#[derive(Debug)]
struct Shared {
    client: reqwest::Client,
    upstream: String,
    lies: Lies,
    /// The block the fabricated handle was placed in, once placed.
    placed: Mutex<Option<u64>>,
}

/// A running lying endpoint; stops when dropped.
#[derive(Debug)]
pub struct LyingRpc {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl LyingRpc {
    /// Serve on a free loopback port, forwarding to `upstream`, raising request amounts (the
    /// endpoint of audit M-7's test).
    pub async fn start(upstream: String) -> Result<Self, DevnetError> {
        Self::with_lies(
            upstream,
            Lies {
                raise_request_amounts: true,
                ..Lies::default()
            },
        )
        .await
    }

    /// Serve on a free loopback port, forwarding to `upstream`, with `lies`.
    pub async fn with_lies(upstream: String, lies: Lies) -> Result<Self, DevnetError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(DevnetError::Ports)?;
        let addr = listener.local_addr().map_err(DevnetError::Ports)?;
        let shared = Arc::new(Shared {
            client: reqwest::Client::new(),
            upstream,
            lies,
            placed: Mutex::new(None),
        });
        let app = axum::Router::new()
            .route("/", post(serve))
            .with_state(shared);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, task })
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for LyingRpc {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    State(shared): State<Arc<Shared>>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let answer = match request {
        Value::Array(calls) => {
            let mut out = Vec::with_capacity(calls.len());
            for call in calls {
                out.push(one(&shared, call).await);
            }
            Value::Array(out)
        }
        call => one(&shared, call).await,
    };
    axum::Json(answer).into_response()
}

async fn upstream(shared: &Shared, call: &Value) -> Value {
    match shared
        .client
        .post(&shared.upstream)
        .header("content-type", "application/json")
        .body(call.to_string())
        .send()
        .await
    {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(e) => {
            json!({"jsonrpc": "2.0", "id": call["id"], "error": {"code": -32000, "message": e.to_string()}})
        }
    }
}

fn hex(n: u64) -> Value {
    Value::String(format!("{n:#x}"))
}

fn number(v: &Value) -> Option<u64> {
    v.as_str()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
}

fn result(call: &Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": call["id"], "result": result})
}

/// The node's head.
async fn node_head(shared: &Shared) -> Option<u64> {
    let answer = upstream(
        shared,
        &json!({"jsonrpc": "2.0", "id": 0, "method": "eth_blockNumber", "params": []}),
    )
    .await;
    number(&answer["result"])
}

/// Answer one call, lying as told.
async fn one(shared: &Shared, mut call: Value) -> Value {
    let lies = &shared.lies;
    let method = call["method"].as_str().unwrap_or_default().to_owned();
    let view = if lies.lag_blocks > 0 {
        node_head(shared)
            .await
            .map(|h| h.saturating_sub(lies.lag_blocks))
    } else {
        None
    };
    if method == "eth_blockNumber" {
        let head = match view {
            Some(v) => Some(v),
            None => node_head(shared).await,
        };
        if let Some(head) = head {
            return result(&call, hex(head.saturating_add(lies.claimed_head_ahead)));
        }
    }
    if method == "eth_getTransactionReceipt"
        && lies.fabricated_handle.is_some()
        && call["params"][0].as_str() == Some(format!("{FABRICATED_TX:#x}").as_str())
    {
        return result(&call, fabricated_receipt(shared));
    }
    if let Some(view) = view {
        // Everything at "latest" (or beyond the view) is read at the view.
        let tag_at = match method.as_str() {
            "eth_getBlockByNumber" => Some(0),
            "eth_call"
            | "eth_getBalance"
            | "eth_getCode"
            | "eth_getTransactionCount"
            | "eth_estimateGas" => Some(1),
            "eth_getStorageAt" => Some(2),
            "eth_feeHistory" => Some(1),
            _ => None,
        };
        if let Some(i) = tag_at
            && let Some(param) = call["params"].get_mut(i)
        {
            match param.as_str().map(str::to_owned) {
                Some(tag) if ["latest", "pending", "safe", "finalized"].contains(&tag.as_str()) => {
                    *param = hex(view);
                }
                Some(_) if number(param).is_some_and(|n| n > view) => {
                    if method == "eth_getBlockByNumber" {
                        return result(&call, Value::Null);
                    }
                    return json!({"jsonrpc": "2.0", "id": call["id"], "error": {"code": -32000, "message": "header not found"}});
                }
                None if i == 1 && call["params"].as_array().is_some_and(|p| p.len() == 1) => {
                    // eth_call / eth_estimateGas without a block: latest.
                    if let Some(params) = call["params"].as_array_mut() {
                        params.push(hex(view));
                    }
                }
                _ => {}
            }
        }
        if method == "eth_getLogs" {
            let filter = &mut call["params"][0];
            let from = number(&filter["fromBlock"]).unwrap_or(0);
            if from > view {
                return result(&call, Value::Array(Vec::new()));
            }
            let to = number(&filter["toBlock"]);
            if to.is_none_or(|t| t > view) && filter.get("blockHash").is_none() {
                filter["toBlock"] = hex(view);
            }
        }
    }
    if method == "eth_getLogs" && lies.claimed_head_ahead > 0 {
        // A liar that wants to stay in use answers for the blocks it claims: what lies beyond
        // the node's head is simply empty.
        if let Some(head) = node_head(shared).await {
            let filter = &mut call["params"][0];
            if number(&filter["fromBlock"]).is_some_and(|f| f > head) {
                let mut answer = result(&call, Value::Array(Vec::new()));
                fabricate(shared, &call, &mut answer);
                return answer;
            }
            if number(&filter["toBlock"]).is_some_and(|t| t > head) {
                filter["toBlock"] = hex(head);
            }
        }
    }
    let mut answer = upstream(shared, &call).await;
    if let Some(view) = view
        && matches!(
            method.as_str(),
            "eth_getTransactionReceipt" | "eth_getTransactionByHash" | "eth_getBlockByHash"
        )
        && number(&answer["result"]["blockNumber"])
            .or_else(|| number(&answer["result"]["number"]))
            .is_some_and(|b| b > view)
    {
        answer["result"] = Value::Null;
    }
    if method == "eth_getLogs" {
        if lies.raise_request_amounts {
            raise_amounts(&mut answer);
        }
        if lies.fabricated_handle.is_some() {
            fabricate(shared, &call, &mut answer);
        }
    }
    answer
}

/// Raise the amount of every request log in an `eth_getLogs` answer by one.
fn raise_amounts(answer: &mut Value) {
    let topic = format!("{:#x}", Bridge::RequestValueTransfer::SIGNATURE_HASH);
    let Some(logs) = answer["result"].as_array_mut() else {
        return;
    };
    for log in logs {
        if log["topics"][0].as_str() != Some(topic.as_str()) {
            continue;
        }
        let Some(data) = log["data"].as_str() else {
            continue;
        };
        let Ok(mut bytes) = alloy::hex::decode(data) else {
            continue;
        };
        // Data words: kind, token, amount, fee, extraData offset, ...: the amount's last byte.
        if let Some(byte) = bytes.get_mut(95) {
            *byte = byte.wrapping_add(1);
        }
        log["data"] = Value::String(format!("0x{}", alloy::hex::encode(bytes)));
    }
}

/// The fabricated handle as a log of block `block`.
fn fabricated_log(handle: &FabricatedHandle, block: u64) -> Value {
    let topics = vec![
        format!("{:#x}", Bridge::HandleValueTransfer::SIGNATURE_HASH),
        format!("{:#x}", B256::from(U256::from(handle.nonce))),
        format!("{:#x}", B256::repeat_byte(0xf0)),
        format!(
            "{:#x}",
            B256::left_padding_from(Address::repeat_byte(0x7f).as_slice())
        ),
    ];
    let data = (
        U256::ZERO,
        Address::ZERO,
        U256::from(600u64) * U256::from(10u64).pow(U256::from(18u64)),
        handle.key,
        U256::ZERO,
    )
        .abi_encode_params();
    json!({
        "address": format!("{:#x}", handle.bridge),
        "topics": topics,
        "data": format!("0x{}", alloy::hex::encode(data)),
        "blockNumber": hex(block),
        "blockHash": format!("{:#x}", B256::repeat_byte(0xfb)),
        "transactionHash": format!("{FABRICATED_TX:#x}"),
        "transactionIndex": "0x0",
        "logIndex": "0x0",
        "removed": false,
    })
}

/// Put the fabricated handle into an `eth_getLogs` answer that asks for its bridge and event,
/// in the first range read at or after the block it is armed at, and in every range holding
/// that block afterwards.
fn fabricate(shared: &Shared, call: &Value, answer: &mut Value) {
    let Some(handle) = shared.lies.fabricated_handle else {
        return;
    };
    let filter = &call["params"][0];
    let wants_bridge = match &filter["address"] {
        Value::String(a) => a.eq_ignore_ascii_case(&format!("{:#x}", handle.bridge)),
        Value::Array(list) => list.iter().any(|a| {
            a.as_str()
                .is_some_and(|a| a.eq_ignore_ascii_case(&format!("{:#x}", handle.bridge)))
        }),
        _ => false,
    };
    let topic = format!("{:#x}", Bridge::HandleValueTransfer::SIGNATURE_HASH);
    let wants_event = match &filter["topics"][0] {
        Value::String(t) => *t == topic,
        Value::Array(list) => list.iter().any(|t| t.as_str() == Some(topic.as_str())),
        Value::Null => true,
        _ => false,
    };
    let (Some(from), Some(to)) = (number(&filter["fromBlock"]), number(&filter["toBlock"])) else {
        return;
    };
    if !wants_bridge || !wants_event {
        return;
    }
    let block = {
        let mut placed = shared.placed.lock().unwrap_or_else(|p| p.into_inner());
        match *placed {
            Some(b) => b,
            None if to >= handle.from_block => {
                let b = to.max(handle.from_block).max(from);
                *placed = Some(b);
                b
            }
            None => return,
        }
    };
    if !(from..=to).contains(&block) {
        return;
    }
    if let Some(logs) = answer["result"].as_array_mut() {
        logs.push(fabricated_log(&handle, block));
    }
}

/// The receipt of the fabricated handle's transaction.
fn fabricated_receipt(shared: &Shared) -> Value {
    let (Some(handle), Some(block)) = (
        shared.lies.fabricated_handle,
        *shared.placed.lock().unwrap_or_else(|p| p.into_inner()),
    ) else {
        return Value::Null;
    };
    json!({
        "transactionHash": format!("{FABRICATED_TX:#x}"),
        "transactionIndex": "0x0",
        "blockHash": format!("{:#x}", B256::repeat_byte(0xfb)),
        "blockNumber": hex(block),
        "from": format!("{:#x}", Address::repeat_byte(0x7f)),
        "to": format!("{:#x}", handle.bridge),
        "cumulativeGasUsed": "0x5208",
        "gasUsed": "0x5208",
        "effectiveGasPrice": "0x1",
        "contractAddress": Value::Null,
        "logs": [fabricated_log(&handle, block)],
        "logsBloom": format!("0x{}", "00".repeat(256)),
        "type": "0x2",
        "status": "0x1",
    })
}
