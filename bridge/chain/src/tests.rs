//! The chain client against one-trick JSON-RPC endpoints: failover, classification, labels.

use std::sync::Arc;
use std::sync::atomic::AtomicU32;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use multibridge_monitoring::Metrics;

use super::*;

/// A one-trick JSON-RPC endpoint: answers every request with `result_or_error` (a JSON
/// fragment such as `"result":"0x7a69"`), counting requests.
async fn fake_endpoint(result_or_error: &'static str) -> (String, Arc<AtomicU32>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicU32::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut read = 0;
                // Read headers + body (small requests arrive in one or two segments).
                while read < buf.len() {
                    let Ok(n) = socket.read(&mut buf[read..]).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    read += n;
                    let text = String::from_utf8_lossy(&buf[..read]);
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            break;
                        }
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let text = String::from_utf8_lossy(&buf[..read]).to_string();
                let id = text
                    .split("\"id\":")
                    .nth(1)
                    .and_then(|s| s.split([',', '}']).next())
                    .unwrap_or("1")
                    .trim()
                    .to_owned();
                let body = format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},{result_or_error}}}");
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(resp.as_bytes()).await;
            });
        }
    });
    (url, hits)
}

/// A URL nobody listens on.
async fn dead_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

fn client(urls: Vec<String>, chain_id: u64) -> ChainClient {
    client_of(urls, chain_id, Address::repeat_byte(1))
}

/// [`client`] of the bridge at `bridge`.
fn client_of(urls: Vec<String>, chain_id: u64, bridge: Address) -> ChainClient {
    let config = ChainConfig {
        chain_id,
        rpc_urls: urls,
        ws_url: None,
        bridge,
        confirmations: crate::config::Confirmations::Depth(1),
        start_block: 0,
        poll_interval_ms: 100,
        max_block_range: 100,
        max_fee_gwei: 1_000,
        log_quorum: 1,
        max_lag_blocks: 8,
        stall_secs: 30,
        max_answer_mib: 32,
    };
    ChainClient::new(
        ChainRole::Main,
        &config,
        RetryPolicy {
            max_attempts: 4,
            attempt_timeout: Duration::from_secs(2),
            base_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(20),
        },
        Metrics::new(&[], 2).unwrap().chain(ChainRole::Main),
    )
    .unwrap()
}

#[tokio::test]
async fn a_dead_first_endpoint_fails_over_to_the_next_and_stays_there() {
    let (good, hits) = fake_endpoint("\"result\":\"0x7a69\"").await;
    let chain = client(vec![dead_endpoint().await, good], 31_337);
    let id = chain
        .call("eth_chainId", |p| async move { p.get_chain_id().await })
        .await
        .unwrap();
    assert_eq!(id, 31_337);
    assert!(
        chain.active_endpoint().starts_with("#1 "),
        "{}",
        chain.active_endpoint()
    );
    chain
        .call("eth_chainId", |p| async move { p.get_chain_id().await })
        .await
        .unwrap();
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "the healthy endpoint serves both calls"
    );
}

#[tokio::test]
async fn a_revert_is_final_and_does_not_fail_over() {
    let (reverting, hits) =
        fake_endpoint("\"error\":{\"code\":3,\"message\":\"execution reverted\"}").await;
    let (other, other_hits) = fake_endpoint("\"result\":\"0x1\"").await;
    let chain = client(vec![reverting, other], 1);
    let err = chain
        .call(
            "eth_blockNumber",
            |p| async move { p.get_block_number().await },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ChainError::Rejected { .. }), "{err}");
    assert!(!err.is_retryable());
    assert_eq!(
        (
            hits.load(Ordering::SeqCst),
            other_hits.load(Ordering::SeqCst)
        ),
        (1, 0)
    );
}

#[tokio::test]
async fn rate_limits_and_dead_endpoints_end_as_unavailable_after_the_attempt_budget() {
    let (limited, hits) =
        fake_endpoint("\"error\":{\"code\":-32005,\"message\":\"rate limit exceeded\"}").await;
    let chain = client(vec![limited, dead_endpoint().await], 1);
    let err = chain
        .call(
            "eth_blockNumber",
            |p| async move { p.get_block_number().await },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ChainError::Unavailable { attempts: 4, .. }),
        "{err}"
    );
    assert!(err.is_retryable());
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "alternates between the two endpoints"
    );
}

#[tokio::test]
async fn an_endpoint_of_another_chain_is_named() {
    let (other_chain, _) = fake_endpoint("\"result\":\"0x1\"").await;
    let chain = client(vec![dead_endpoint().await, other_chain], 31_337);
    let err = chain.verify_chain_id().await.unwrap_err();
    assert!(
        matches!(
            err,
            ChainError::WrongChainId {
                expected: 31_337,
                actual: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("#1 127.0.0.1:"), "{err}");
}

#[test]
fn endpoint_labels_hide_paths_and_queries() {
    assert_eq!(
        endpoint_label(2, "https://rpc.example.org/v3/SECRETKEY?x=1"),
        "#2 rpc.example.org"
    );
    assert_eq!(
        endpoint_label(0, "http://127.0.0.1:8545"),
        "#0 127.0.0.1:8545"
    );
}

#[tokio::test]
async fn a_one_endpoint_probe_is_the_head_read() {
    let (url, hits) = fake_endpoint(r#""result":"0x2a""#).await;
    let chain = client(vec![url], 31337);
    assert_eq!(chain.head().await.unwrap(), 42);
    // Within the head's freshness the probe of the one endpoint asks nothing more: its answer
    // is the head read's.
    let probed = chain.probe_health().await;
    assert_eq!(probed.len(), 1);
    assert_eq!(probed[0].2, Some(42));
    assert!(probed[0].1.is_healthy());
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "one request for the head and the probe"
    );
}

/// A node at block 10 whose `eth_getLogs` answers one release log at block 10 for each contract
/// the filter names, counting those reads.
async fn releases_endpoint() -> (String, Arc<AtomicU32>) {
    use alloy::sol_types::SolEvent;
    use serde_json::{Value, json};
    let reads = Arc::new(AtomicU32::new(0));
    let counted = reads.clone();
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |body: String| {
            let reads = counted.clone();
            async move {
                let request: Value = serde_json::from_str(&body).unwrap();
                let result = match request["method"].as_str() {
                    Some("eth_getLogs") => {
                        reads.fetch_add(1, Ordering::SeqCst);
                        let addresses = match &request["params"][0]["address"] {
                            Value::Array(all) => all.clone(),
                            one => vec![one.clone()],
                        };
                        Value::Array(
                            addresses
                                .iter()
                                .enumerate()
                                .map(|(i, address)| {
                                    json!({
                                        "address": address,
                                        "topics": [format!("{:#x}", Bridge::HandleValueTransfer::SIGNATURE_HASH)],
                                        "data": "0x",
                                        "blockNumber": "0xa",
                                        "blockHash": format!("{:#x}", alloy::primitives::B256::repeat_byte(0x0a)),
                                        "transactionHash": format!("{:#x}", alloy::primitives::B256::with_last_byte(i as u8)),
                                        "transactionIndex": "0x0",
                                        "logIndex": format!("{i:#x}"),
                                        "removed": false
                                    })
                                })
                                .collect(),
                        )
                    }
                    _ => json!("0xa"),
                };
                axum::Json(json!({"jsonrpc": "2.0", "id": request["id"], "result": result}))
            }
        }),
    );
    (serve(app).await, reads)
}

/// The URL of `app` served on a free loopback port for the rest of the test.
async fn serve(app: axum::Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

#[tokio::test]
async fn guardians_of_one_chain_at_one_head_share_one_read_and_each_gets_its_own_releases() {
    use alloy::sol_types::SolEvent;
    let (url, reads) = releases_endpoint().await;
    // Two pairs' clients of one chain in the process.
    let (first, second) = (client(vec![url.clone()], 31338), client(vec![url], 31338));
    let (a, b) = (Address::repeat_byte(0xa1), Address::repeat_byte(0xb2));
    let releases_of = |bridge: Address| {
        Filter::new()
            .address(bridge)
            .event_signature(Bridge::HandleValueTransfer::SIGNATURE_HASH)
            .from_block(10)
            .to_block(10)
    };
    let addresses = |logs: Vec<Log>| logs.iter().map(|l| l.address()).collect::<Vec<_>>();
    // First round: the second contract, not yet asked about when the first was read, reads the
    // window again for both. Second round, at the same head: both answered from that read.
    for (round, why) in [(1, "one read each"), (2, "no read of their own")] {
        for (chain, bridge) in [(&first, a), (&second, b)] {
            let logs = chain.logs_at_head(&releases_of(bridge)).await.unwrap();
            assert_eq!(addresses(logs), vec![bridge], "round {round}: its own only");
        }
        assert_eq!(reads.load(Ordering::SeqCst), 2, "round {round}: {why}");
    }
}

/// A node whose head is block 10 until the test moves it (the returned number) and whose
/// `eth_getStorageAt` answers the slot's index in its last byte, counting those reads.
async fn storage_endpoint() -> (String, Arc<std::sync::atomic::AtomicU64>, Arc<AtomicU32>) {
    use serde_json::{Value, json};
    let head = Arc::new(std::sync::atomic::AtomicU64::new(10));
    let reads = Arc::new(AtomicU32::new(0));
    let (at, counted) = (head.clone(), reads.clone());
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |body: String| {
            let (head, reads) = (at.clone(), counted.clone());
            async move {
                let request: Value = serde_json::from_str(&body).unwrap();
                let result = match request["method"].as_str() {
                    Some("eth_getStorageAt") => {
                        reads.fetch_add(1, Ordering::SeqCst);
                        let index = request["params"][1].as_str().unwrap().to_owned();
                        let index = u8::from_str_radix(index.trim_start_matches("0x"), 16).unwrap();
                        json!(format!(
                            "{:#x}",
                            alloy::primitives::B256::with_last_byte(index)
                        ))
                    }
                    _ => json!(format!("{:#x}", head.load(Ordering::SeqCst))),
                };
                axum::Json(json!({"jsonrpc": "2.0", "id": request["id"], "result": result}))
            }
        }),
    );
    (serve(app).await, head, reads)
}

#[tokio::test]
async fn a_bridges_threshold_slot_is_read_once_a_head_for_every_asker() {
    let (url, head, reads) = storage_endpoint().await;
    // The voter's warm-up and its gas plan: two clients of one chain in the process.
    let (warm, plan) = (client(vec![url.clone()], 31339), client(vec![url], 31339));
    let (a, b) = (Address::repeat_byte(0xa1), Address::repeat_byte(0xb2));
    let slot = alloy::primitives::B256::with_last_byte(multibridge_contracts::THRESHOLD_SLOT as u8);
    assert_eq!(warm.head().await.unwrap(), 10);
    warm.warm_vote_reads(a).await;
    assert_eq!(reads.load(Ordering::SeqCst), 1, "the warm-up read it");
    assert_eq!(
        plan.threshold_slot(a).await.unwrap(),
        slot,
        "the slot asked for"
    );
    assert_eq!(
        reads.load(Ordering::SeqCst),
        1,
        "the plan at that head: no read of its own"
    );
    plan.threshold_slot(b).await.unwrap();
    assert_eq!(
        reads.load(Ordering::SeqCst),
        2,
        "another bridge: its own read"
    );
    // A new head: read again.
    head.store(11, Ordering::SeqCst);
    tokio::time::sleep(shared_reads::HEAD_FRESH_FOR + Duration::from_millis(50)).await;
    assert_eq!(plan.head().await.unwrap(), 11);
    plan.threshold_slot(a).await.unwrap();
    assert_eq!(
        reads.load(Ordering::SeqCst),
        3,
        "read again at the new head"
    );
    // A block pushed past it (the head not read since): read again.
    plan.shared.pushed.send_replace(12);
    plan.threshold_slot(a).await.unwrap();
    assert_eq!(
        reads.load(Ordering::SeqCst),
        4,
        "read again past a pushed block"
    );
    plan.threshold_slot(a).await.unwrap();
    assert_eq!(reads.load(Ordering::SeqCst), 4, "served at that block");
    // Never older than its freshness, whatever the head.
    tokio::time::sleep(shared_reads::THRESHOLD_SLOT_FRESH_FOR + Duration::from_millis(50)).await;
    plan.threshold_slot(a).await.unwrap();
    assert_eq!(reads.load(Ordering::SeqCst), 5, "read again once stale");
    // A head read past that block, then no longer fresh itself (no clock holds it): the slot
    // read before it is from an older block, and is read again.
    head.store(13, Ordering::SeqCst);
    tokio::time::sleep(shared_reads::HEAD_FRESH_FOR + Duration::from_millis(50)).await;
    assert_eq!(warm.head().await.unwrap(), 13);
    tokio::time::sleep(shared_reads::HEAD_FRESH_FOR + Duration::from_millis(50)).await;
    assert_eq!(plan.known_head(), None, "the head read no longer serves");
    plan.threshold_slot(a).await.unwrap();
    assert_eq!(
        reads.load(Ordering::SeqCst),
        6,
        "read again past a head read earlier"
    );
}

/// A node whose head stays at block 10 and whose bridges' counters are all 7, counting the
/// `eth_call`s made on the bridge `counted` (four per read of its counters).
async fn counters_endpoint(counted: Address) -> (String, Arc<AtomicU32>) {
    use serde_json::{Value, json};
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let answer = move |call: &Value| {
        let result = match call["method"].as_str() {
            Some("eth_call") => {
                if call["params"][0]["to"].as_str() == Some(&format!("{counted:#x}")) {
                    seen.fetch_add(1, Ordering::SeqCst);
                }
                json!(format!("0x{:064x}", 7))
            }
            _ => json!("0xa"),
        };
        json!({"jsonrpc": "2.0", "id": call["id"], "result": result})
    };
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |body: String| {
            let answer = answer.clone();
            async move {
                let request: Value = serde_json::from_str(&body).unwrap();
                axum::Json(match request.as_array() {
                    Some(batch) => Value::Array(batch.iter().map(&answer).collect()),
                    None => answer(&request),
                })
            }
        }),
    );
    (serve(app).await, calls)
}

#[tokio::test]
async fn counters_read_alongside_at_the_same_block_serve_once_the_last_read_is_stale() {
    let (a, b) = (Address::repeat_byte(0xa1), Address::repeat_byte(0xb2));
    let (url, calls_on_b) = counters_endpoint(b).await;
    // Two pairs' clients of one chain whose blocks are slower than the counters' freshness.
    let (first, second) = (
        client_of(vec![url.clone()], 31340, a),
        client_of(vec![url], 31340, b),
    );
    first.counters().await.unwrap();
    assert_eq!(second.counters().await.unwrap().block, 10);
    assert_eq!(calls_on_b.load(Ordering::SeqCst), 4, "b read once");
    // Both stale at the same head: a's read takes b's counters along, and they serve b.
    tokio::time::sleep(bridge_counters::COUNTERS_FRESH_FOR + Duration::from_millis(100)).await;
    first.counters().await.unwrap();
    assert_eq!(calls_on_b.load(Ordering::SeqCst), 8, "b read alongside a");
    assert_eq!(second.counters().await.unwrap().block, 10);
    assert_eq!(
        calls_on_b.load(Ordering::SeqCst),
        8,
        "b served from the read alongside, not read again"
    );
}

#[tokio::test]
async fn the_first_nonce_is_read_from_the_logs_where_old_state_is_gone_whatever_the_wording() {
    use alloy::sol_types::SolEvent;
    use serde_json::{Value, json};
    // A full node in hash mode: old state is a "missing trie node"; one request, nonce 7, was
    // mined in block 50.
    let bridge = Address::repeat_byte(1);
    let event = Bridge::RequestValueTransfer {
        nonce: 7,
        kind: 0,
        from: Address::repeat_byte(2),
        to: Address::repeat_byte(3),
        token: Address::ZERO,
        amount: U256::from(5),
        fee: U256::ZERO,
        extraData: alloy::primitives::Bytes::new(),
    }
    .encode_log_data();
    let log = json!({
        "address": format!("{bridge:#x}"),
        "topics": event.topics().iter().map(|t| format!("{t:#x}")).collect::<Vec<_>>(),
        "data": format!("{}", event.data),
        "blockNumber": "0x32",
        "blockHash": format!("{:#x}", alloy::primitives::B256::repeat_byte(0x32)),
        "transactionHash": format!("{:#x}", alloy::primitives::B256::repeat_byte(0x77)),
        "transactionIndex": "0x0",
        "logIndex": "0x0",
        "removed": false
    });
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |body: String| {
            let log = log.clone();
            async move {
                let request: Value = serde_json::from_str(&body).unwrap();
                let answer = |result: Value| json!({"jsonrpc": "2.0", "id": request["id"], "result": result});
                axum::Json(match request["method"].as_str() {
                    Some("eth_getCode" | "eth_call") => json!({"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32000, "message": "missing trie node 3f2a (path )"}}),
                    Some("eth_getLogs") => {
                        let from = request["params"][0]["fromBlock"].as_str().unwrap_or("0x0");
                        let to = request["params"][0]["toBlock"].as_str().unwrap_or("0x0");
                        let (from, to) = (
                            u64::from_str_radix(from.trim_start_matches("0x"), 16).unwrap(),
                            u64::from_str_radix(to.trim_start_matches("0x"), 16).unwrap(),
                        );
                        answer(if (from..=to).contains(&50) { json!([log]) } else { json!([]) })
                    }
                    _ => answer(json!("0x64")),
                })
            }
        }),
    );
    let url = serve(app).await;
    let chain = client_of(vec![url], 31341, bridge);
    assert_eq!(chain.views().first_nonce_from(20, 10).await.unwrap(), 7);
}
