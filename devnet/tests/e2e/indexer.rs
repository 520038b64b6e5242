//! The relay's indexer against a real anvil chain: it stores exactly the requests the chain
//! emitted, never reads above the confirmation depth, and fails over from a dead RPC URL.

use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::U256;
use alloy::primitives::utils::parse_ether;
use multibridge::harness::{Indexer, IndexerSettings, Step};
use multibridge::harness::{SharedStore, Store};
use multibridge_chain::{ChainClient, RetryPolicy};
use multibridge_config::ChainConfig;
use multibridge_contracts::{ChainRole, Lane, RequestStatus};
use multibridge_devnet::{Devnet, DevnetOptions, Driver};
use multibridge_monitoring::{Metrics, Readiness};

use crate::Poll;

/// A client of the main chain as `config` says, counting into `metrics`.
fn main_client(config: &ChainConfig, policy: RetryPolicy, metrics: &Metrics) -> Arc<ChainClient> {
    Arc::new(
        ChainClient::new(
            ChainRole::Main,
            config,
            policy,
            metrics.chain(ChainRole::Main),
        )
        .unwrap(),
    )
}

/// A new indexer of `lane` on `source` as `config` says (its span at one block), over `store`.
fn indexer_of(
    source: &Arc<ChainClient>,
    config: &ChainConfig,
    store: &SharedStore,
    metrics: &Metrics,
    lane: Lane,
) -> Indexer {
    Indexer::new(
        source.clone(),
        IndexerSettings {
            confirmations: config.confirmations,
            start_block: config.start_block,
            max_block_range: config.max_block_range,
            poll: Duration::from_millis(200),
        },
        store.clone(),
        metrics.lane(lane),
        Arc::new(Readiness::new(Duration::from_secs(10))),
    )
}

async fn index_until(indexer: &mut Indexer, store: &SharedStore, lane: Lane, want: usize) {
    Poll::new(
        "the indexer did not catch up in time",
        Duration::from_secs(30),
    )
    .every(Duration::from_millis(200))
    .until(async || {
        let step = indexer.step().await.unwrap();
        let have = store.lock().open_requests(lane, 1000).unwrap().len();
        if have >= want && matches!(step, Step::CaughtUp { .. }) {
            Ok(())
        } else {
            Err(format!(
                "indexed {have} of {want} requests, last step {step:?}"
            ))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn indexes_exactly_the_emitted_requests_below_the_confirmation_depth() {
    let dir = tempfile::tempdir().unwrap();
    let devnet = Devnet::start(DevnetOptions::chains_only(dir.path()))
        .await
        .unwrap();
    let driver = Driver::new(devnet.manifest());
    let lane = Lane::MainToService;
    let to = driver.user(1).unwrap().address();
    let emitted = vec![
        driver
            .request_native(lane, 0, to, parse_ether("1").unwrap())
            .await
            .unwrap(),
        driver
            .request_erc20(lane, 0, to, parse_ether("5").unwrap())
            .await
            .unwrap(),
        driver
            .request_native(lane, 2, to, parse_ether("0.25").unwrap())
            .await
            .unwrap(),
    ];

    // A first RPC URL nobody listens on: the client fails over to the real one.
    let dead = multibridge_devnet::harness::ports::closed_port_url().unwrap();
    let mut config = devnet.operator_config(0).unwrap().chains.main;
    config.rpc_urls.insert(0, dead);
    config.max_block_range = 3; // several ranges, to exercise the cursor
    let policy = RetryPolicy {
        attempt_timeout: Duration::from_secs(2),
        ..RetryPolicy::default()
    };
    let metrics = Metrics::new(&[lane], 2).unwrap();
    let main = main_client(&config, policy, &metrics);
    let indexer = |config: &ChainConfig, store: &SharedStore| {
        indexer_of(&main, config, store, &metrics, lane)
    };

    // With a confirmation depth beyond the head nothing is read at all.
    let deep_store = SharedStore::new(Store::open(&dir.path().join("deep.sqlite"), "t").unwrap());
    let mut deep = indexer(
        &ChainConfig {
            confirmations: multibridge_config::Confirmations::Depth(1_000_000),
            ..config.clone()
        },
        &deep_store,
    );
    assert!(matches!(deep.step().await.unwrap(), Step::CaughtUp { .. }));
    assert!(
        deep_store
            .lock()
            .open_requests(lane, 10)
            .unwrap()
            .is_empty()
    );
    assert_eq!(deep_store.lock().cursor(lane).unwrap(), None);

    let store = SharedStore::new(Store::open(&dir.path().join("store.sqlite"), "t").unwrap());
    let mut live = indexer(&config, &store);
    index_until(&mut live, &store, lane, emitted.len()).await;
    assert!(
        main.active_endpoint().starts_with("#1 "),
        "failed over to the live endpoint"
    );

    let stored: Vec<_> = store
        .lock()
        .open_requests(lane, 1000)
        .unwrap()
        .into_iter()
        .map(|s| {
            assert_eq!(s.status, RequestStatus::Observed);
            s.request
        })
        .collect();
    assert_eq!(
        stored, emitted,
        "stored requests equal the emitted ones, field by field"
    );

    // The cursor never passes the confirmed head: every block it covers is at least 1 deep.
    let head = driver.provider(ChainRole::Main).unwrap();
    let head = alloy::providers::Provider::get_block_number(&head)
        .await
        .unwrap();
    let cursor = store.lock().cursor(lane).unwrap().unwrap();
    assert!(
        cursor <= head,
        "cursor {cursor} past confirmed head (head {head})"
    );
}

/// Audit M-2: a relay started with a `start_block` after earlier, handled requests (a fresh
/// store) indexes the new requests itself — no rewind loop to its start block, no gap reported,
/// nothing left to recovery.
#[tokio::test(flavor = "multi_thread")]
async fn a_relay_started_after_handled_history_indexes_only_the_tail() {
    use alloy::providers::Provider;
    use multibridge_devnet::harness::invariants::{assert_exactly_once, wait_all_handled};
    use multibridge_devnet::harness::scrape::metric;

    let dir = tempfile::tempdir().unwrap();
    let mut devnet = Devnet::start(DevnetOptions::standalone_relays(dir.path()))
        .await
        .unwrap();
    let driver = Driver::new(devnet.manifest());
    let lane = Lane::MainToService;
    let to = alloy::primitives::Address::repeat_byte(0x44);
    let early = driver
        .request_native_burst(lane, 0, to, U256::from(3), 10)
        .await
        .unwrap();
    wait_all_handled(&driver, lane, 0..10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(early.last().unwrap().nonce, 9);

    // Operator 0 starts over: a new store, indexing from after the handled requests.
    devnet.relay(0).unwrap().kill().unwrap();
    let mut config = devnet.operator_config(0).unwrap();
    let head = driver
        .provider(ChainRole::Main)
        .unwrap()
        .get_block_number()
        .await
        .unwrap();
    config.chains.main.start_block = head + 1;
    config.store.path = dir.path().join("fresh-store.sqlite");
    devnet.write_operator_config(0, &config).unwrap();
    devnet.start_relay(0).unwrap();
    let port = devnet.operator_http_ports[0];
    crate::relay_ready(port, Duration::from_secs(60)).await;

    driver
        .request_native_burst(lane, 0, to, U256::from(3), 5)
        .await
        .unwrap();
    wait_all_handled(&driver, lane, 10..15, Duration::from_secs(60))
        .await
        .unwrap();
    assert_exactly_once(&driver, lane, 0..15).await.unwrap();
    let series = |name: &str| format!("multibridge_{name}{{lane=\"main-to-service\"}}");
    Poll::new(
        "operator 0 did not index the five new requests",
        Duration::from_secs(30),
    )
    .until(async || {
        let indexed = metric(port, &series("requests_indexed_total")).await;
        if indexed == Some(5.0) {
            Ok(())
        } else {
            Err(format!("requests_indexed_total = {indexed:?}"))
        }
    })
    .await;
    assert_eq!(
        metric(port, &series("nonce_gaps_total")).await,
        Some(0.0),
        "a gap was reported for nonces before the start block"
    );
    assert_eq!(
        metric(port, &series("recovery_requeued_total")).await,
        Some(0.0),
        "recovery had to find requests the indexer should have"
    );
}

/// Audit M-8: with `confirmations = "finalized"` on the source, a request is voted only once the
/// source's finalized block includes it (anvil finalizes 64 blocks below its head).
#[tokio::test(flavor = "multi_thread")]
async fn with_finalized_confirmations_a_request_waits_for_the_finalized_block() {
    use alloy::providers::Provider;
    use multibridge_config::Confirmations;
    use multibridge_devnet::harness::invariants::{
        assert_exactly_once, votes_per_operator, wait_all_handled,
    };
    use multibridge_devnet::harness::scrape::metric;

    let dir = tempfile::tempdir().unwrap();
    let mut devnet = Devnet::start(DevnetOptions::chains_only(dir.path()))
        .await
        .unwrap();
    for op in devnet.operators() {
        let mut config = devnet.operator_config(op).unwrap();
        config.chains.main.confirmations = Confirmations::Finalized;
        devnet.write_operator_config(op, &config).unwrap();
        devnet.start_relay(op).unwrap();
    }
    let driver = Driver::new(devnet.manifest());
    let lane = Lane::MainToService;
    let main = driver.provider(ChainRole::Main).unwrap();
    let request = driver
        .request_native(
            lane,
            0,
            alloy::primitives::Address::repeat_byte(0x46),
            U256::from(9),
        )
        .await
        .unwrap();
    // Every relay has seen the source head pass the request by a few blocks, and indexed up to
    // the finalized block: still no vote.
    let seen = request.srcBlockNumber + 3;
    for port in devnet.operator_http_ports.clone() {
        Poll::new(
            "a relay never saw the head pass the request",
            Duration::from_secs(30),
        )
        .until(async || {
            let head = metric(port, "multibridge_source_head{lane=\"main-to-service\"}").await;
            if head.is_some_and(|h| h >= seen as f64) {
                Ok(())
            } else {
                Err(format!("source_head {head:?}"))
            }
        })
        .await;
    }
    assert!(
        votes_per_operator(&driver, lane).await.unwrap().is_empty(),
        "voted before the source finalized the request"
    );
    assert_eq!(driver.handle_count(lane, request.nonce).await.unwrap(), 0);
    // Finality passes the request: it is voted and handled once.
    let _: serde_json::Value = main
        .raw_request("anvil_mine".into(), (U256::from(70),))
        .await
        .unwrap();
    wait_all_handled(
        &driver,
        lane,
        request.nonce..request.nonce + 1,
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_exactly_once(&driver, lane, request.nonce..request.nonce + 1)
        .await
        .unwrap();
}

/// Issue 34: a backlog mined while the relays were down, after a long quiet stretch that
/// widened the indexer's span, used to come back in one `eth_getLogs` answer (the whole backlog
/// held at once, raw and decoded: relay memory grew with the backlog). Every answer now holds
/// at most `TARGET_LOGS` requests, counted by `requestNonce` at the range's ends.
#[tokio::test(flavor = "multi_thread")]
async fn a_dense_backlog_after_a_quiet_stretch_is_read_in_bounded_answers() {
    use alloy::providers::Provider;
    use multibridge_chain::logs::TARGET_LOGS;
    let dir = tempfile::tempdir().unwrap();
    let devnet = Devnet::start(DevnetOptions {
        block_time: Some(1.0),
        users: 4,
        ..DevnetOptions::chains_only(dir.path())
    })
    .await
    .unwrap();
    let driver = Driver::new(devnet.manifest());
    let lane = Lane::MainToService;
    let provider = driver.provider(ChainRole::Main).unwrap();
    // The quiet stretch: 300 empty blocks.
    provider
        .raw_request::<_, serde_json::Value>("anvil_mine".into(), (U256::from(300),))
        .await
        .unwrap();
    let to = driver.user(1).unwrap().address();
    let per_user = TARGET_LOGS * 3 / 4;
    let bursts = futures::future::join_all(
        (0..4).map(|u| driver.request_native_burst(lane, u, to, U256::from(1), per_user)),
    )
    .await;
    let backlog: usize = bursts.into_iter().map(|b| b.unwrap().len()).sum();
    assert!(
        backlog > 2 * TARGET_LOGS,
        "the backlog is larger than two answers"
    );

    let mut config = devnet.operator_config(0).unwrap().chains.main;
    config.max_block_range = 10_000;
    // ~1 KiB a request's log: two of the backlog's blocks fit an answer, the backlog does not.
    config.max_answer_mib = 2;
    let metrics = Metrics::new(&[lane], 1).unwrap();
    let main = main_client(&config, RetryPolicy::default(), &metrics);
    let store = SharedStore::new(Store::open(&dir.path().join("store.sqlite"), "t").unwrap());
    let mut indexer = indexer_of(&main, &config, &store, &metrics, lane);
    let (mut indexed, mut largest, mut widest) = (0usize, 0usize, 0u64);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while indexed < backlog {
        assert!(
            std::time::Instant::now() < deadline,
            "indexed {indexed} of {backlog}"
        );
        if let Step::Indexed { range, found, new } = indexer.step().await.unwrap() {
            largest = largest.max(found);
            widest = widest.max(range.end() - range.start() + 1);
            indexed += new;
        }
    }
    assert!(
        widest > 64,
        "the quiet stretch widened the span ({widest} blocks)"
    );
    assert!(
        largest <= TARGET_LOGS,
        "an answer held {largest} requests (at most {TARGET_LOGS})"
    );
    // A scan from block 0, before the bridge existed (the recovery worker's, while nothing is
    // handled yet), is bounded the same way: that range used to be read whole.
    let deployed = driver.chain(ChainRole::Main).contracts.bridge_block;
    assert!(deployed > 0, "the bridge is deployed after block 0");
    let head = provider.get_block_number().await.unwrap();
    let range = main
        .views()
        .requests_within(0..=head, TARGET_LOGS as u64)
        .await;
    let found = main
        .views()
        .request_logs(range.clone())
        .await
        .unwrap()
        .len();
    assert!(
        *range.end() < head && found <= TARGET_LOGS,
        "from block 0 the range {range:?} of {head} blocks held {found} requests"
    );
    // Another reader of the chain near its head, of a sparse event (as the conservation scan's
    // refunds: its own span is wide) over the dense blocks. The process's log store must not
    // read every contract's logs of that range in one answer: here 3,000 requests, over this
    // client's 2 MiB bound. It did, and failed every round: at a 100,000 backlog the scan stood
    // still and each failed answer was a 50 MiB peak of the relay's memory.
    let depth = main
        .shared_log_depth()
        .expect("the devnet's chains count confirmations");
    let confirmed = provider.get_block_number().await.unwrap() - depth;
    let refunds = alloy::rpc::types::Filter::new()
        .address(driver.chain(ChainRole::Main).contracts.bridge)
        .event_signature(
            <multibridge_contracts::bindings::Bridge::Refunded as alloy::sol_types::SolEvent>::SIGNATURE_HASH,
        )
        .from_block(confirmed - 63)
        .to_block(confirmed);
    let logs = main.logs(&refunds).await;
    assert!(
        logs.as_ref().is_ok_and(Vec::is_empty),
        "a sparse event's range over the dense blocks: {logs:?}"
    );
    let failed = metrics
        .render()
        .lines()
        .filter(|l| l.contains("rpc_shared_reads_total") && l.contains("logs read failed"))
        .map(str::to_owned)
        .collect::<Vec<_>>();
    assert!(
        failed.is_empty(),
        "no read of every contract's logs was too large: {failed:?}"
    );
}

/// A quiet history behind the cursor — a first start from the deployment, a restart long after
/// the last request — is read in one answer as wide as the node allows, not in a dozen steps of
/// a span doubling from one block: `requestNonce` now, less the nonces the store holds from
/// before the cursor, bounds what the history can hold. A 64-pair hub's first start took ~10 s
/// of such steps (three readers a pair against one main-chain node) before a transfer made
/// meanwhile was indexed. A dense history is still read in bounded answers (the test above).
#[tokio::test(flavor = "multi_thread")]
async fn a_quiet_history_is_read_in_one_answer_not_in_doubling_steps() {
    use alloy::providers::Provider;
    let dir = tempfile::tempdir().unwrap();
    let devnet = Devnet::start(DevnetOptions::chains_only(dir.path()))
        .await
        .unwrap();
    let driver = Driver::new(devnet.manifest());
    let lane = Lane::MainToService;
    let to = driver.user(1).unwrap().address();
    let provider = driver.provider(ChainRole::Main).unwrap();
    let quiet = || async {
        provider
            .raw_request::<_, serde_json::Value>("anvil_mine".into(), (U256::from(2_000),))
            .await
            .unwrap();
    };
    quiet().await;
    driver
        .request_native(lane, 0, to, parse_ether("1").unwrap())
        .await
        .unwrap();

    let mut config = devnet.operator_config(0).unwrap().chains.main;
    config.max_block_range = 10_000;
    let metrics = Metrics::new(&[lane], 1).unwrap();
    let main = main_client(&config, RetryPolicy::default(), &metrics);
    let store = SharedStore::new(Store::open(&dir.path().join("store.sqlite"), "t").unwrap());
    // A process's start: a new indexer (its span at one block) over the store.
    let start = || indexer_of(&main, &config, &store, &metrics, lane);
    // Steps that read a range, until caught up with `want` requests stored: how many reads, and
    // the widest range one of them covered (blocks mined meanwhile may add a read of their own).
    let catch_up = async |indexer: &mut Indexer, want: usize| {
        let (mut reads, mut widest) = (0, 0);
        loop {
            match indexer.step().await.unwrap() {
                Step::Indexed { range, .. } => {
                    reads += 1;
                    widest = widest.max(range.end() - range.start() + 1);
                }
                Step::CaughtUp { .. }
                    if store.lock().open_requests(lane, 1_000).unwrap().len() >= want =>
                {
                    return (reads, widest);
                }
                _ => {}
            }
            assert!(reads < 50, "still catching up after {reads} reads");
        }
    };
    let (reads, widest) = catch_up(&mut start(), 1).await;
    assert!(
        widest >= 2_000,
        "a first start read 2,000 quiet blocks in {reads} reads, the widest {widest} blocks (a span doubling from one block: 11 reads, 1,024 at most)"
    );

    // More requests than a sparse answer holds (250), indexed; then quiet, one more request,
    // and a restart: the stored ones, mined before the cursor, are the floor — without it the
    // bridge's 302 requests would keep the span doubling.
    let burst = driver
        .request_native_burst(lane, 2, to, U256::from(1), 300)
        .await
        .unwrap();
    assert_eq!(burst.len(), 300);
    catch_up(&mut start(), 301).await;
    quiet().await;
    driver
        .request_native(lane, 0, to, parse_ether("1").unwrap())
        .await
        .unwrap();
    let (reads, widest) = catch_up(&mut start(), 302).await;
    assert!(
        widest >= 2_000,
        "a restart read 2,000 quiet blocks in {reads} reads, the widest {widest} blocks"
    );
    let opened = metrics
        .render()
        .lines()
        .find(|l| l.starts_with("multibridge_log_spans_opened_total{chain=\"main\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert!(
        opened.is_some_and(|n| n >= 2.0),
        "each catch-up opened the span (log_spans_opened_total): {opened:?}"
    );
}
