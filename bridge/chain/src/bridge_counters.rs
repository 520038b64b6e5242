//! A bridge's counters, read once per block for every task of the process that watches them
//! (issue 54).
//!
//! Four numbers say where a bridge stands: `requestNonce` (as a source), `lowerHandleNonce` and
//! `upperHandleNonce` (as a destination) and `queuedReleaseCount`. Measured on an idle hub, each
//! pair's tasks asked them about five times a second on each chain, each a request of its own:
//! the watcher's lane rounds, the leader's upkeep (the idle lane's advance, the queued
//! releases), recovery's rounds and the status page — tasks that only need them as new as the
//! head they read. Now, once the shared head ([`ChainClient::head`](crate::ChainClient::head))
//! names a block newer than the last read, they are read as one batch of four `eth_call`s at
//! the node's latest block ([`read`]), and served to every asker of the process whose head has
//! not moved past that block: the watcher, the upkeep, recovery, and the status page and
//! command.
//!
//! The read is for every bridge of the chain the process asked about lately, not only the
//! asker's ([`read_with`], `SharedReads::counters_batch`):
//! on a hub's main chain each pair's bridge was a request of its own every block (64 a second
//! of a 64-pair relay's main-chain requests at rest); now the first asker at a head reads up to
//! [`BRIDGES_PER_BATCH`] bridges in one batch and the others' slots are filled from it.
//!
//! What still reads the bridge itself: the voter's pre-check and attested planning (their
//! decisions read the latest state), the guardian (a protection judges on its own reads), and
//! the upkeep once more before it sends an advance.
//!
//! A reorg that replaces the head block at the same height is not seen by the number: counters
//! serve at most [`COUNTERS_FRESH_FOR`], then are read again. A failed read is shared for
//! [`FAILURE_SHARED_FOR`], so askers behind a dead endpoint do not queue up one failover each
//! (served as a retryable `Unavailable`, whatever the reader's own error was).

use std::time::Duration;

use alloy::eips::BlockId;
use alloy::primitives::{Address, Bytes};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::{TransactionInput, TransactionRequest};
use alloy::sol_types::SolCall;
use alloy::transports::{TransportError, TransportErrorKind};
use multibridge_contracts::bindings::Bridge;

/// Longest that counters read at a block serve the askers whose head is still that block (a
/// reorg at the same height is seen within it; on a chain of 1 s blocks a new block comes
/// first).
pub const COUNTERS_FRESH_FOR: Duration = Duration::from_secs(2);

/// How long a failed read of the counters is the answer of every asker.
pub const FAILURE_SHARED_FOR: Duration = Duration::from_millis(100);

/// Where a bridge stands at one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct BridgeCounters {
    /// The block they were read at.
    pub block: u64,
    /// `requestNonce`: the next nonce this bridge assigns as a source.
    pub request_nonce: u64,
    /// `lowerHandleNonce`: every nonce below it is handled (as a destination).
    pub lower_handle_nonce: u64,
    /// `upperHandleNonce`: no nonce at or above it is handled.
    pub upper_handle_nonce: u64,
    /// `queuedReleaseCount`: releases held back by the destination.
    pub queued_release_count: u64,
}

/// The most bridges whose counters go in one batch (four calls each): providers cap a batch's
/// calls (commonly at 100 or more), and its answer stays small.
pub const BRIDGES_PER_BATCH: usize = 25;

/// The four counters of `bridge` as `provider` answers them at its latest block, tagged with
/// `head`: the shared head the asker read first, which that block is at or past. Asked as one
/// batch; where the endpoint refuses batches (a proxy or a provider that answers one error, a
/// non-2xx status or nothing for each call), as four calls at once.
///
/// Not pinned to `head`'s number: an endpoint a block behind the one that answered the head (a
/// load-balanced provider's other backend, the next endpoint after a failover) would refuse a
/// read at a block it does not have yet, where `latest` is as fresh as the separate reads
/// were. So the four need not come from one block, as before.
pub async fn read(
    provider: DynProvider,
    bridge: Address,
    head: u64,
) -> Result<BridgeCounters, TransportError> {
    let own = match batched(&provider, bridge, &[]).await {
        Ok(answers) => first(answers).0,
        Err(e) => Err(e),
    };
    let own = match own {
        Ok(answers) => answers,
        // One call's own error (a revert, say) is that call's, as it would be alone.
        Err(e @ alloy::transports::RpcError::ErrorResp(_)) => return Err(e),
        Err(e) => {
            tracing::debug!(error = %e, "the batch of the bridge's counters failed: asking them one by one");
            one_by_one(&provider, bridge, &INPUTS.map(|input| input())).await?
        }
    };
    counters_of(own, head)
}

/// What [`read_with`] read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadWith {
    /// The asker's bridge's counters.
    pub own: BridgeCounters,
    /// The other bridges' counters read in the same batch (those whose calls all answered).
    pub others: Vec<(Address, BridgeCounters)>,
    /// The batch with other bridges failed on the asker's own calls and the asker's bridge
    /// alone was read: the endpoint may cap a batch's calls, so read alone for a while.
    pub alone: bool,
}

/// [`read`] for `bridge`, and in the same batch for `alongside` (other bridges of the chain whose
/// counters the process will want at this head: on a hub's main chain every pair's bridge, one
/// batch a block instead of one request per pair; at most [`BRIDGES_PER_BATCH`] in all). Only
/// `bridge`'s answer decides the read: another bridge whose calls fail is left out of
/// [`ReadWith::others`] (its askers read it themselves). Where the batch fails on `bridge`'s own
/// calls (a node that caps a batch's calls answers the whole batch with one error under the
/// first call's id, which is `bridge`'s), `bridge` is read alone, as [`read`] does.
pub async fn read_with(
    provider: DynProvider,
    bridge: Address,
    alongside: &[Address],
    head: u64,
) -> Result<ReadWith, TransportError> {
    let alongside = &alongside[..alongside.len().min(BRIDGES_PER_BATCH.saturating_sub(1))];
    if alongside.is_empty() {
        return Ok(ReadWith {
            own: read(provider, bridge, head).await?,
            others: Vec::new(),
            alone: false,
        });
    }
    let (own, others) = match batched(&provider, bridge, alongside).await {
        Ok(answers) => first(answers),
        Err(e) => (Err(e), Vec::new()),
    };
    let own = match own {
        Ok(own) => own,
        Err(e) => {
            tracing::debug!(error = %e, others = alongside.len(), "the batch of several bridges' counters failed on the asker's own calls: reading its bridge alone");
            return Ok(ReadWith {
                own: read(provider, bridge, head).await?,
                others: Vec::new(),
                alone: true,
            });
        }
    };
    let others = alongside
        .iter()
        .zip(others)
        .filter_map(|(other, answer)| Some((*other, counters_of(answer.ok()?, head).ok()?)))
        .collect();
    Ok(ReadWith {
        own: counters_of(own, head)?,
        others,
        alone: false,
    })
}

/// A batch's answers split into the first bridge's and the others'.
fn first(answers: Vec<Answers>) -> (Answers, Vec<Answers>) {
    let mut answers = answers.into_iter();
    let own = answers
        .next()
        .unwrap_or_else(|| Err(TransportErrorKind::custom_str("the batch answered nothing")));
    (own, answers.collect())
}

/// One bridge's four answers, or the first of its calls' errors.
type Answers = Result<[Bytes; 4], TransportError>;

/// The four calls' inputs, in [`counters_of`]'s order.
const INPUTS: [fn() -> Vec<u8>; 4] = [
    || Bridge::requestNonceCall {}.abi_encode(),
    || Bridge::lowerHandleNonceCall {}.abi_encode(),
    || Bridge::upperHandleNonceCall {}.abi_encode(),
    || Bridge::queuedReleaseCountCall {}.abi_encode(),
];

/// The counters the four answers say, tagged with `head`.
fn counters_of(answers: [Bytes; 4], head: u64) -> Result<BridgeCounters, TransportError> {
    let [request, lower, upper, queued] = answers;
    Ok(BridgeCounters {
        block: head,
        request_nonce: decode::<Bridge::requestNonceCall>(&request)?,
        lower_handle_nonce: decode::<Bridge::lowerHandleNonceCall>(&lower)?,
        upper_handle_nonce: decode::<Bridge::upperHandleNonceCall>(&upper)?,
        queued_release_count: u64::try_from(decode::<Bridge::queuedReleaseCountCall>(&queued)?)
            .unwrap_or(u64::MAX),
    })
}

/// A view call on `bridge` with `input`.
fn view(bridge: Address, input: &[u8]) -> TransactionRequest {
    TransactionRequest::default()
        .to(bridge)
        .input(TransactionInput::new(input.to_vec().into()))
}

/// The four calls of `bridge`, then of each of `alongside`, in one JSON-RPC batch at the latest
/// block: per bridge (in that order) its four answers, or the first of its calls' errors; an
/// error of the batch itself (made or sent).
async fn batched(
    provider: &DynProvider,
    bridge: Address,
    alongside: &[Address],
) -> Result<Vec<Answers>, TransportError> {
    let mut batch = alloy::rpc::client::BatchRequest::new(provider.client());
    let mut waiters = Vec::with_capacity(alongside.len().saturating_add(1));
    for each in std::iter::once(&bridge).chain(alongside) {
        let mut calls = Vec::with_capacity(INPUTS.len());
        for input in INPUTS {
            calls.push(
                batch.add_call::<_, Bytes>(
                    "eth_call",
                    &(view(*each, &input()), BlockId::latest()),
                )?,
            );
        }
        waiters.push(calls);
    }
    batch.send().await?;
    let mut answers = Vec::with_capacity(waiters.len());
    for calls in waiters {
        let mut four: [Bytes; 4] = Default::default();
        let mut failed = None;
        for (answer, waiter) in four.iter_mut().zip(calls) {
            match waiter.await {
                Ok(bytes) => *answer = bytes,
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        answers.push(failed.map_or(Ok(four), Err));
    }
    Ok(answers)
}

/// The calls of `inputs` one by one, all at once, at the latest block.
async fn one_by_one(
    provider: &DynProvider,
    bridge: Address,
    inputs: &[Vec<u8>; 4],
) -> Result<[Bytes; 4], TransportError> {
    let [a, b, c, d] = inputs;
    let call = |input: &Vec<u8>| {
        let request = view(bridge, input);
        async move { provider.call(request).await }
    };
    let (a, b, c, d) = futures::future::try_join4(call(a), call(b), call(c), call(d)).await?;
    Ok([a, b, c, d])
}

/// A call's answer decoded; empty or garbled data (no bridge at the address on this node) is an
/// error of the endpoint, as a contract call's would be.
fn decode<C: SolCall>(data: &Bytes) -> Result<C::Return, TransportError> {
    C::abi_decode_returns(data).map_err(|e| {
        TransportErrorKind::custom_str(&format!(
            "{}: undecodable answer ({} bytes): {e}",
            C::SIGNATURE,
            data.len()
        ))
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use alloy::primitives::Address;
    use alloy::providers::{Provider, ProviderBuilder};
    use axum::response::IntoResponse;
    use serde_json::{Value, json};

    use super::*;

    /// What the endpoint saw: batches and single calls.
    #[derive(Default)]
    struct Seen {
        batches: AtomicUsize,
        singles: AtomicUsize,
    }

    /// A bridge whose calls the endpoint answers with a revert.
    const BROKEN: Address = Address::repeat_byte(0xee);

    /// One `eth_call` answered with its counter's number: requestNonce 7, lowerHandleNonce 3,
    /// upperHandleNonce 5, queuedReleaseCount 2.
    fn answer(call: &Value) -> Value {
        if call["params"][0]["to"].as_str() == Some(&format!("{BROKEN:#x}")) {
            return json!({"jsonrpc": "2.0", "id": call["id"], "error": {"code": 3, "message": "execution reverted"}});
        }
        let input = call["params"][0]["input"].as_str().unwrap_or_default();
        let selector = alloy::primitives::hex::decode(input).unwrap()[..4].to_vec();
        let n: u64 = if selector == Bridge::requestNonceCall::SELECTOR {
            7
        } else if selector == Bridge::lowerHandleNonceCall::SELECTOR {
            3
        } else if selector == Bridge::upperHandleNonceCall::SELECTOR {
            5
        } else if selector == Bridge::queuedReleaseCountCall::SELECTOR {
            2
        } else {
            panic!("unexpected call {call}")
        };
        json!({"jsonrpc": "2.0", "id": call["id"], "result": format!("0x{n:064x}")})
    }

    /// How an endpoint answers batches.
    #[derive(Clone, Copy)]
    enum Batches {
        Answered,
        /// Refused as some proxies and providers do (HTTP 400).
        Refused,
        /// Over this many calls, answered as geth does: one error, under the first call's id.
        CappedAt(usize),
    }

    /// An endpoint of the four counters; with `batches` false it refuses a batch.
    async fn endpoint(batches: bool) -> (reqwest::Url, Arc<Seen>) {
        endpoint_with(if batches {
            Batches::Answered
        } else {
            Batches::Refused
        })
        .await
    }

    /// An endpoint of the four counters, answering batches as `batches` says.
    async fn endpoint_with(batches: Batches) -> (reqwest::Url, Arc<Seen>) {
        let seen = Arc::new(Seen::default());
        let counted = seen.clone();
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(move |body: String| {
                let seen = counted.clone();
                async move {
                    let request: Value = serde_json::from_str(&body).unwrap();
                    match request.as_array() {
                        Some(calls) => {
                            seen.batches.fetch_add(1, Ordering::SeqCst);
                            match batches {
                                Batches::Refused => (
                                    axum::http::StatusCode::BAD_REQUEST,
                                    "batch requests are not supported",
                                )
                                    .into_response(),
                                Batches::CappedAt(cap) if calls.len() > cap => {
                                    axum::Json(json!([{"jsonrpc": "2.0", "id": calls[0]["id"], "error": {"code": -32600, "message": "batch too large"}}]))
                                        .into_response()
                                }
                                _ => axum::Json(Value::Array(calls.iter().map(answer).collect()))
                                    .into_response(),
                            }
                        }
                        None => {
                            seen.singles.fetch_add(1, Ordering::SeqCst);
                            axum::Json(answer(&request)).into_response()
                        }
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (format!("http://{addr}/").parse().unwrap(), seen)
    }

    fn provider_of(url: reqwest::Url) -> DynProvider {
        let transport = crate::bounded_http::BoundedHttp::new(reqwest::Client::new(), url, 1 << 20);
        ProviderBuilder::new()
            .connect_client(alloy::rpc::client::ClientBuilder::default().transport(transport, true))
            .erased()
    }

    const COUNTERS: BridgeCounters = BridgeCounters {
        block: 10,
        request_nonce: 7,
        lower_handle_nonce: 3,
        upper_handle_nonce: 5,
        queued_release_count: 2,
    };

    #[tokio::test]
    async fn the_counters_are_one_batch_or_four_calls_where_batches_are_refused() {
        for batches in [true, false] {
            let (url, seen) = endpoint(batches).await;
            let counters = read(provider_of(url), Address::repeat_byte(1), 10)
                .await
                .unwrap();
            assert_eq!(counters, COUNTERS, "batches {batches}");
            assert_eq!(seen.batches.load(Ordering::SeqCst), 1, "one batch tried");
            let singles = if batches { 0 } else { 4 };
            assert_eq!(
                seen.singles.load(Ordering::SeqCst),
                singles,
                "batches {batches}"
            );
        }
    }

    #[tokio::test]
    async fn other_bridges_ride_in_the_same_batch_and_only_the_askers_failure_is_the_reads() {
        let (url, seen) = endpoint(true).await;
        let (one, two) = (Address::repeat_byte(1), Address::repeat_byte(2));
        let read = read_with(provider_of(url.clone()), one, &[two, BROKEN], 10)
            .await
            .unwrap();
        assert_eq!(read.own, COUNTERS);
        assert!(!read.alone);
        assert_eq!(
            read.others,
            vec![(two, COUNTERS)],
            "a bridge whose calls fail is left out"
        );
        assert_eq!(seen.batches.load(Ordering::SeqCst), 1, "one batch for all");
        assert_eq!(seen.singles.load(Ordering::SeqCst), 0);
        // The asker's own revert is the read's, as it was alone (read alone again to tell).
        let own_revert = read_with(provider_of(url), BROKEN, &[one], 10).await;
        assert!(
            matches!(own_revert, Err(alloy::transports::RpcError::ErrorResp(_))),
            "{own_revert:?}"
        );
        assert_eq!(seen.batches.load(Ordering::SeqCst), 3);
        // Where batches are refused, only the asker's four calls are made.
        let (url, seen) = endpoint(false).await;
        let read = read_with(provider_of(url), one, &[two], 10).await.unwrap();
        assert_eq!((read.own, read.others), (COUNTERS, Vec::new()));
        assert_eq!(seen.singles.load(Ordering::SeqCst), 4);
        // At most a batch's worth of bridges.
        let (url, seen) = endpoint(true).await;
        let many: Vec<Address> = (0..BRIDGES_PER_BATCH * 2)
            .map(|i| Address::with_last_byte(i as u8 + 2))
            .collect();
        let read = read_with(provider_of(url), one, &many, 10).await.unwrap();
        assert_eq!(read.others.len(), BRIDGES_PER_BATCH - 1);
        assert_eq!(seen.batches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_node_that_caps_a_batchs_calls_gets_the_askers_bridge_alone() {
        let (url, seen) = endpoint_with(Batches::CappedAt(4)).await;
        let read = read_with(
            provider_of(url),
            Address::repeat_byte(1),
            &[Address::repeat_byte(2)],
            10,
        )
        .await
        .unwrap();
        assert_eq!(read.own, COUNTERS);
        assert!(read.alone && read.others.is_empty());
        assert_eq!(
            seen.batches.load(Ordering::SeqCst),
            2,
            "the batch, then alone"
        );
    }
}
