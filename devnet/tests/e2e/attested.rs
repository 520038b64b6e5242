//! Issue 36 on the devnet: lanes in attested mode (`voting.mode = "attestations"`). Operators
//! sign batches and serve their signatures; one transaction per batch executes it. Exactly once
//! both ways without a single vote, one operator down, and a user completing a transfer with
//! its own key while no relay can pay for gas.

use std::time::Duration;

use alloy::primitives::{Address, utils::parse_ether};
use multibridge_contracts::bindings::Bridge;
use multibridge_contracts::{ChainRole, Lane, Request};
use multibridge_devnet::harness::invariants::{assert_exactly_once, bridge_events};
use multibridge_devnet::harness::scrape::metric;
use multibridge_devnet::{Devnet, DevnetOptions, Driver};

use crate::Poll;
use crate::cli::multibridge;

fn attested(dir: &std::path::Path) -> DevnetOptions {
    DevnetOptions {
        voting_mode: multibridge_config::VotingMode::Attestations,
        ..DevnetOptions::standalone_relays(dir)
    }
}

/// Wait until every one of `requests` of `lane` is handled (once).
async fn wait_handled(driver: &Driver, dir: &std::path::Path, lane: Lane, requests: &[Request]) {
    for request in requests {
        crate::relay::wait_handled(driver, dir, lane, request).await;
    }
}

/// The devnet user whose key sends `multibridge execute` and `transfer --self-relay`.
const USER: usize = 3;

/// `multibridge execute` of main-to-service `nonce` with operator 1's config and the user's key
/// (`--json`): whether it succeeded, its stdout and stderr.
fn execute(devnet: &Devnet, driver: &Driver, nonce: u64) -> (bool, String, String) {
    let config = devnet.operator_config_path(0);
    multibridge(
        &[
            "execute",
            "--config",
            config.to_str().unwrap(),
            "--lane",
            "main-to-service",
            "--nonce",
            &nonce.to_string(),
            "--key-env",
            "USER_KEY",
            "--json",
        ],
        &driver.manifest().users[USER].private_key,
    )
}

/// Operators 1 and 2 can no longer pay for gas on the service chain; then one native transfer
/// to `to` is requested and the user executes it: the request and execute's answer.
async fn user_executes_while_no_relay_pays(
    devnet: &Devnet,
    driver: &Driver,
    to: Address,
    amount: alloy::primitives::U256,
) -> (Request, serde_json::Value) {
    for op in 0..2 {
        let address = driver.operator(op).unwrap().address();
        driver
            .set_balance(ChainRole::Service, address, alloy::primitives::U256::ZERO)
            .await
            .unwrap();
    }
    let late = driver
        .request_native(Lane::MainToService, 0, to, amount)
        .await
        .unwrap();
    let (ok, out, err) = execute(devnet, driver, late.nonce);
    assert!(ok, "execute failed: {out}{err}");
    let executed = serde_json::from_str(out.trim()).unwrap();
    (late, executed)
}

#[tokio::test(flavor = "multi_thread")]
async fn attested_batches_move_transfers_both_ways_exactly_once_without_a_vote() {
    let dir = tempfile::tempdir().unwrap();
    let mut devnet = Devnet::start(DevnetOptions {
        relays: true,
        replicas: 2,
        voting_mode: multibridge_config::VotingMode::Attestations,
        ..DevnetOptions::new(dir.path())
    })
    .await
    .unwrap();
    let driver = Driver::new(devnet.manifest());
    let bob = driver.user(1).unwrap().address();
    let carol = Address::repeat_byte(0xca);
    let native = parse_ether("1").unwrap();
    let bob_before = driver
        .native_balance(ChainRole::Service, bob)
        .await
        .unwrap();

    let mut down = driver
        .request_native_burst(Lane::MainToService, 0, bob, native, 5)
        .await
        .unwrap();
    down.push(
        driver
            .request_erc20(Lane::MainToService, 0, bob, parse_ether("7").unwrap())
            .await
            .unwrap(),
    );
    let up = driver
        .request_native_burst(Lane::ServiceToMain, 2, carol, native, 3)
        .await
        .unwrap();
    wait_handled(&driver, dir.path(), Lane::MainToService, &down[..1]).await;
    // A backlog, and the leader of operator 1 killed while it is being handled.
    let backlog = driver
        .request_native_burst(
            Lane::MainToService,
            3,
            carol,
            parse_ether("0.01").unwrap(),
            120,
        )
        .await
        .unwrap();
    let leader = crate::leader_of(&devnet, 0, Lane::MainToService).await;
    Poll::new("the backlog's first handle", Duration::from_secs(60))
        .until(async || {
            match driver
                .handle_count(Lane::MainToService, backlog[0].nonce)
                .await
                .unwrap()
            {
                0 => Err("not yet".to_owned()),
                _ => Ok(()),
            }
        })
        .await;
    devnet.replica(0, leader).unwrap().kill().unwrap();
    wait_handled(&driver, dir.path(), Lane::MainToService, &down).await;
    wait_handled(&driver, dir.path(), Lane::ServiceToMain, &up).await;
    wait_handled(&driver, dir.path(), Lane::MainToService, &backlog).await;

    let last = backlog.last().unwrap().nonce;
    assert_exactly_once(&driver, Lane::MainToService, 0..last + 1)
        .await
        .unwrap();
    assert_exactly_once(&driver, Lane::ServiceToMain, 0..up.len() as u64)
        .await
        .unwrap();
    assert_eq!(
        driver
            .native_balance(ChainRole::Service, bob)
            .await
            .unwrap(),
        bob_before + native * alloy::primitives::U256::from(5),
        "bob received each native transfer once"
    );
    assert_eq!(
        driver.native_balance(ChainRole::Main, carol).await.unwrap(),
        native * alloy::primitives::U256::from(3),
    );
    for role in [ChainRole::Main, ChainRole::Service] {
        let votes = bridge_events::<Bridge::VoteCast>(&driver, role)
            .await
            .unwrap();
        assert!(
            votes.is_empty(),
            "{role}: {} votes in attested mode",
            votes.len()
        );
        let batches = bridge_events::<Bridge::BatchAttested>(&driver, role)
            .await
            .unwrap();
        assert!(!batches.is_empty(), "{role}: no attested batch");
    }
    // The lane leaders signed and served what they signed; turns follow the digest, so when
    // the batches were more than one operator's turn, more than one operator sent them (a
    // late operator's turn passes to the next, never to nobody).
    let operators: Vec<Address> = (0..3)
        .map(|i| driver.operator(i).unwrap().address())
        .collect();
    let mut senders = std::collections::BTreeSet::new();
    let mut turns = std::collections::BTreeSet::new();
    let service = driver.provider(ChainRole::Service).unwrap();
    for log in bridge_events::<Bridge::BatchAttested>(&driver, ChainRole::Service)
        .await
        .unwrap()
    {
        let tx = alloy::providers::Provider::get_transaction_by_hash(
            &service,
            log.transaction_hash.unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
        senders.insert(tx.inner.signer());
        let digest = log
            .log_decode::<Bridge::BatchAttested>()
            .unwrap()
            .inner
            .digest;
        turns.insert(multibridge::harness::turn_of(&digest, &operators).unwrap());
    }
    assert!(
        turns.len() < 2 || senders.len() >= 2,
        "batches that were the turns of {turns:?} were sent by {senders:?} only"
    );
    let signed =
        futures::future::join_all(devnet.replica_http_ports.iter().flatten().map(|port| {
            metric(
                *port,
                "multibridge_attestations_signed_total{lane=\"main-to-service\"}",
            )
        }))
        .await;
    let total: f64 = signed.into_iter().flatten().sum();
    assert!(total >= 3.0, "the leaders signed {total} batches");
}

/// One operator's relay (and so its HTTP API) is down: the other two operators' signatures are
/// a threshold and their batches carry only theirs. Then no relay can pay for gas on the
/// destination: the relays still sign and serve, and a user's `multibridge execute` sends the
/// batch with the user's key.
#[tokio::test(flavor = "multi_thread")]
async fn one_operator_down_the_others_suffice_and_a_user_executes_when_no_relay_can_pay() {
    let dir = tempfile::tempdir().unwrap();
    let mut devnet = Devnet::start(attested(dir.path())).await.unwrap();
    let driver = Driver::new(devnet.manifest());
    let bob = driver.user(1).unwrap().address();
    let native = parse_ether("1").unwrap();
    let operator_3 = driver.operator(2).unwrap().address();

    devnet.relay(2).unwrap().kill().unwrap();
    let first = driver
        .request_native_burst(Lane::MainToService, 0, bob, native, 3)
        .await
        .unwrap();
    wait_handled(&driver, dir.path(), Lane::MainToService, &first).await;
    assert_exactly_once(&driver, Lane::MainToService, 0..3)
        .await
        .unwrap();
    let service = driver.provider(ChainRole::Service).unwrap();
    let bridge = Bridge::new(driver.manifest().service.contracts.bridge, service);
    let bit3 = bridge.operatorBit(operator_3).call().await.unwrap();
    let bit3 = 1u32 << (bit3.to::<u32>() - 1);
    for log in bridge_events::<Bridge::BatchAttested>(&driver, ChainRole::Service)
        .await
        .unwrap()
    {
        let e = log
            .log_decode::<Bridge::BatchAttested>()
            .unwrap()
            .inner
            .data;
        assert_eq!(
            e.attesters & bit3,
            0,
            "operator 3 was down: its signature cannot be in a batch"
        );
        assert_eq!(
            e.attesters.count_ones(),
            2,
            "the threshold of the other two"
        );
    }

    // No relay can pay for gas on the service chain any more: the user sends the batch.
    let (late, executed) = user_executes_while_no_relay_pays(&devnet, &driver, bob, native).await;
    let user = driver.user(USER).unwrap();
    assert_eq!(executed["already_handled"], false, "{executed}");
    assert_eq!(
        executed["signers"].as_array().unwrap().len(),
        2,
        "{executed}"
    );
    assert_eq!(
        driver
            .handle_count(Lane::MainToService, late.nonce)
            .await
            .unwrap(),
        1
    );
    // The user paid: the transaction is the user's.
    let tx: alloy::primitives::B256 = executed["tx"].as_str().unwrap().parse().unwrap();
    let sent = alloy::providers::Provider::get_transaction_by_hash(
        &driver.provider(ChainRole::Service).unwrap(),
        tx,
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        alloy::consensus::Transaction::to(&sent),
        Some(driver.manifest().service.contracts.bridge)
    );
    assert_eq!(
        sent.inner.signer(),
        user.address(),
        "sent with the user's key"
    );
    assert_exactly_once(&driver, Lane::MainToService, 0..late.nonce + 1)
        .await
        .unwrap();
    // `transfer --self-relay`: the user requests and sends the batch itself.
    let config = devnet.operator_config_path(0);
    let (ok, out, err) = multibridge(
        &[
            "transfer",
            "--config",
            config.to_str().unwrap(),
            "--lane",
            "main-to-service",
            "--to",
            &bob.to_string(),
            "--amount",
            "0.25",
            "--key-env",
            "USER_KEY",
            "--self-relay",
        ],
        &driver.manifest().users[USER].private_key,
    );
    assert!(ok, "transfer --self-relay failed: {out}{err}");
    assert!(out.contains("self-relayed: batch of"), "{out}{err}");
    assert!(out.contains("handled: nonce"), "{out}");
    // Executing again is harmless: it says so and sends nothing.
    let (ok, out, err) = execute(&devnet, &driver, late.nonce);
    assert!(ok, "{out}{err}");
    assert!(out.contains("\"already_handled\":true"), "{out}");
}

/// The location `operator` publishes in the registry for its service of `lane` (empty: none).
async fn service_location(driver: &Driver, lane: Lane, operator: Address) -> String {
    let (src, dst) = (
        driver.chain(lane.source()),
        driver.chain(lane.destination()),
    );
    let id = multibridge_contracts::LaneServiceMeta {
        src_chain_id: src.contracts.chain_id,
        src_bridge: src.contracts.bridge,
        dst_chain_id: dst.contracts.chain_id,
        dst_bridge: dst.contracts.bridge,
        operator,
    }
    .service_id();
    let registry = multibridge_contracts::bindings::ServiceRegistry::new(
        driver.manifest().registry,
        driver.provider(ChainRole::Main).unwrap(),
    );
    if !registry.exists(id).call().await.unwrap() {
        return String::new();
    }
    registry.getServiceLocation(id).call().await.unwrap()
}

/// An operator that does not expose HTTP publishes its signatures in an object store — an
/// S3-compatible bucket (moto) whose `attestations/` prefix anyone may read
/// (`voting.attestation_store`): the registry names the bucket as its lane services' location.
/// With the third operator down every batch needs that operator's signature, which the other
/// relay — and a user's `multibridge execute` — read from the bucket without credentials.
#[tokio::test(flavor = "multi_thread")]
async fn signatures_published_in_an_object_store_count_like_served_ones() {
    use multibridge_devnet::stand_in::s3::{S3Server, TEST_CREDENTIALS};
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    let bucket = "operator-signatures";
    let s3 = S3Server::start(dir.path(), bucket).await.unwrap();
    // Before the bucket is opened to anonymous reads a reader is refused (an outage, not
    // garbage); the devnet's operator 2 publishes after it is.
    let storage = multibridge_config::StorageSettings::S3 {
        bucket: bucket.into(),
        endpoint: Some(s3.endpoint.clone()),
        region: "us-east-1".into(),
        prefix: "operator-2".into(),
        access_key_id_env: "MB_TEST_S3_KEY_ID".into(),
        secret_access_key_env: "MB_TEST_S3_SECRET".into(),
        allow_http: true,
    };
    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::{bucket}/operator-2/attestations/*"}}]}}"#
    );
    let opened = reqwest::Client::new()
        .put(format!("{}/{bucket}?policy", s3.endpoint))
        .header("content-type", "application/json")
        .body(policy)
        .send()
        .await
        .unwrap();
    assert!(opened.status().is_success(), "{}", opened.status());
    let mut devnet = Devnet::start(DevnetOptions {
        attestation_stores: vec![(1, storage.clone())],
        relay_env: vec![
            ("MB_TEST_S3_KEY_ID".into(), TEST_CREDENTIALS.0.into()),
            ("MB_TEST_S3_SECRET".into(), TEST_CREDENTIALS.1.into()),
        ],
        ..attested(dir.path())
    })
    .await
    .unwrap();
    let driver = Driver::new(devnet.manifest());
    let bob = driver.user(1).unwrap().address();
    let native = parse_ether("1").unwrap();
    let operator_2 = driver.operator(1).unwrap().address();
    let expected = format!(
        "s3://{bucket}/operator-2?region=us-east-1&endpoint={}&allow_http=true",
        s3.endpoint
    );
    Poll::new(
        "operator 2's lane services located at its store",
        Duration::from_secs(60),
    )
    .until(async || {
        for lane in Lane::ALL {
            let location = service_location(&driver, lane, operator_2).await;
            if location != expected {
                return Err(format!("{lane}: {location:?}"));
            }
        }
        Ok(())
    })
    .await;

    devnet.relay(2).unwrap().kill().unwrap();
    let down = driver
        .request_native_burst(Lane::MainToService, 0, bob, native, 40)
        .await
        .unwrap();
    let up = driver
        .request_native_burst(Lane::ServiceToMain, 0, bob, native, 3)
        .await
        .unwrap();
    wait_handled(&driver, dir.path(), Lane::MainToService, &down).await;
    wait_handled(&driver, dir.path(), Lane::ServiceToMain, &up).await;
    assert_exactly_once(&driver, Lane::MainToService, 0..down.len() as u64)
        .await
        .unwrap();
    assert_exactly_once(&driver, Lane::ServiceToMain, 0..up.len() as u64)
        .await
        .unwrap();
    let service = driver.provider(ChainRole::Service).unwrap();
    let bridge = Bridge::new(driver.manifest().service.contracts.bridge, service.clone());
    let bit = |op: Address| {
        let bridge = bridge.clone();
        async move { 1u32 << (bridge.operatorBit(op).call().await.unwrap().to::<u32>() - 1) }
    };
    let (bit1, bit2) = (
        bit(driver.operator(0).unwrap().address()).await,
        bit(operator_2).await,
    );
    let batches = bridge_events::<Bridge::BatchAttested>(&driver, ChainRole::Service)
        .await
        .unwrap();
    assert!(!batches.is_empty());
    for log in batches {
        let e = log
            .log_decode::<Bridge::BatchAttested>()
            .unwrap()
            .inner
            .data;
        assert_eq!(
            e.attesters,
            bit1 | bit2,
            "operator 3 is down: each batch carries operators 1 and 2, 2's read from its store"
        );
    }
    // Whose turn a batch is follows from its digest: operator 2 may have sent every batch so far
    // (reading operator 1's signatures over HTTP). Small bursts until operator 1 sent one of its
    // own, which needed operator 2's signature from the bucket — operator 2 serves it nowhere
    // else (each burst a new batch; every operator's turn is about a third, operator 3's falls to
    // the next).
    use alloy::network::TransactionResponse as _;
    use alloy::providers::Provider as _;
    let operator_1 = driver.operator(0).unwrap().address();
    let sent_by_operator_1 = async || {
        let logs = bridge_events::<Bridge::BatchAttested>(&driver, ChainRole::Service)
            .await
            .unwrap();
        for log in logs {
            let Some(hash) = log.transaction_hash else {
                continue;
            };
            let tx = service.get_transaction_by_hash(hash).await.unwrap();
            if tx.is_some_and(|tx| tx.from() == operator_1) {
                return true;
            }
        }
        false
    };
    let mut rounds = 0;
    while !sent_by_operator_1().await {
        rounds += 1;
        assert!(rounds <= 20, "operator 1 sent no batch in 20 bursts");
        let more = driver
            .request_native_burst(Lane::MainToService, 0, bob, native, 2)
            .await
            .unwrap();
        wait_handled(&driver, dir.path(), Lane::MainToService, &more).await;
    }
    // Operator 1's relay read operator 2's pages, and none of them was garbage.
    let port = devnet.replica_http_ports[0][0];
    let taken = metric(
        port,
        &format!(
            "multibridge_attestation_peer_signatures_total{{lane=\"main-to-service\",operator=\"{operator_2}\"}}"
        ),
    )
    .await
    .unwrap_or(0.0);
    assert!(taken >= 1.0, "signatures taken from operator 2: {taken}");
    let garbage = metric(
        port,
        &format!(
            "multibridge_attestation_fetches_total{{lane=\"main-to-service\",operator=\"{operator_2}\",outcome=\"garbage\"}}"
        ),
    )
    .await
    .unwrap_or(0.0);
    assert_eq!(garbage, 0.0);
    let pages_written = metric(
        devnet.replica_http_ports[1][0],
        "multibridge_attestation_pages_written_total{lane=\"main-to-service\",outcome=\"ok\"}",
    )
    .await
    .unwrap_or(0.0);
    assert!(
        pages_written >= 1.0,
        "operator 2 wrote {pages_written} pages"
    );

    // No relay can pay for gas on the service chain: a user executes, reading operator 2's
    // signatures from its store.
    let (late, executed) = user_executes_while_no_relay_pays(&devnet, &driver, bob, native).await;
    let signers: Vec<String> = executed["signers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_lowercase())
        .collect();
    assert!(
        signers.contains(&operator_2.to_string().to_lowercase()),
        "{executed}"
    );
    assert_exactly_once(&driver, Lane::MainToService, 0..late.nonce + 1)
        .await
        .unwrap();

    // A refund across the bucket (issue 53). The main bridge is paused; bob asks for his
    // service-to-main transfer back. Operators 1 and 2 (3 is down) cancel it on main by votes
    // and sign its refund; operator 2 publishes its signature only in its bucket, and no relay
    // can pay gas on the service chain (one wei each), so bob's own command sends the refund
    // there with operator 1's signature from its API and operator 2's from the bucket.
    for op in 0..2 {
        devnet.relay(op).unwrap().kill().unwrap();
        // One wei: enough for the relay's start (a signer with no balance at all waits to be
        // funded), never for a transaction on the service chain.
        let address = driver.operator(op).unwrap().address();
        driver
            .set_balance(
                ChainRole::Service,
                address,
                alloy::primitives::U256::from(1),
            )
            .await
            .unwrap();
        let mut config = devnet.operator_config(op).unwrap();
        config.recovery.refund_after_secs = 3;
        config.recovery.interval_ms = 500;
        config.recovery.claims_poll_ms = 250;
        devnet.write_operator_config(op, &config).unwrap();
        devnet.start_relay(op).unwrap();
    }
    crate::guardian::owner_pauses(&driver, ChainRole::Main).await;
    let held = driver
        .request_native(Lane::ServiceToMain, 1, bob, native)
        .await
        .unwrap();
    let source_bridge = driver.manifest().service.contracts.bridge;
    let source_before = driver
        .native_balance(ChainRole::Service, source_bridge)
        .await
        .unwrap();
    let config = devnet.operator_config_path(0);
    let (ok, out, err) = multibridge(
        &[
            "refund",
            "--config",
            config.to_str().unwrap(),
            "--lane",
            "service-to-main",
            "--tx",
            &held.srcTxHash.to_string(),
            "--key-env",
            "USER_KEY",
            "--timeout",
            "120",
            "--json",
        ],
        &driver.manifest().users[1].private_key,
    );
    if !ok {
        multibridge_devnet::harness::invariants::dump_relay_logs(dir.path(), 3, 40);
    }
    assert!(ok, "refund failed: {out}{err}");
    let refunded: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(refunded["refunded"], true, "{refunded}");
    assert!(
        refunded["refund_tx"].is_string(),
        "no relay can pay on the service chain: bob sent it: {refunded}"
    );
    assert_eq!(
        driver
            .native_balance(ChainRole::Service, source_bridge)
            .await
            .unwrap(),
        source_before - held.amount,
        "refunded once, the fee kept"
    );
    // Operator 2's signature is in its bucket, where anyone reads it.
    let domain = driver.vote_domain(Lane::ServiceToMain);
    let service_id = multibridge_contracts::LaneServiceMeta::of(&domain, operator_2).service_id();
    let object = reqwest::get(format!(
        "{}/{bucket}/operator-2/attestations/{service_id:x}/refunds/{:020}.json",
        s3.endpoint, held.nonce
    ))
    .await
    .unwrap();
    assert!(object.status().is_success(), "{}", object.status());
}
