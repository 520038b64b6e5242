//! Hostile users on a real devnet (audit H-1): a request too large for the source is refused
//! with a named error, and the largest requests the source accepts, packed between honest ones
//! on a destination with a small block gas limit, do not halt the lane — the relays size their
//! vote batches by gas and bytes and every request is handled.

use std::time::Duration;

use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::Provider;
use multibridge_contracts::bindings::Bridge::{self, BridgeErrors};
use multibridge_contracts::{ChainRole, Lane};
use multibridge_devnet::harness::invariants::{
    assert_exactly_once, dump_relay_logs, wait_all_handled,
};
use multibridge_devnet::{Devnet, DevnetOptions, Driver};

const OPERATORS: usize = 3;
/// The service chain's block gas limit in this test: a 64-request batch of maximal requests
/// needs more than this, a few of them fit.
const SMALL_BLOCK_GAS: u64 = 3_000_000;

#[tokio::test(flavor = "multi_thread")]
async fn oversized_and_maximal_requests_never_halt_the_lane() {
    let dir = tempfile::tempdir().unwrap();
    let devnet = Devnet::start(DevnetOptions::standalone_relays(dir.path()))
        .await
        .unwrap();
    let driver = Driver::new(devnet.manifest());
    let lane = Lane::MainToService;
    let service = driver.provider(ChainRole::Service).unwrap();
    let _: bool = service
        .raw_request(
            "evm_setBlockGasLimit".into(),
            (U256::from(SMALL_BLOCK_GAS),),
        )
        .await
        .unwrap();

    // 100 KiB of extraData: refused by the source with a named error, no nonce taken.
    let user = driver
        .wallet_provider(lane.source(), &driver.user(1).unwrap())
        .unwrap();
    let source = Bridge::new(driver.chain(lane.source()).contracts.bridge, user);
    let refused = source
        .requestNativeTransfer(
            Address::repeat_byte(0x66),
            Bytes::from(vec![0xee; 100 * 1024]),
        )
        .value(U256::from(1_000))
        .call()
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused.as_decoded_interface_error::<BridgeErrors>(),
            Some(BridgeErrors::ExtraDataTooLarge(_))
        ),
        "not refused with ExtraDataTooLarge: {refused}"
    );
    assert_eq!(source.requestNonce().call().await.unwrap(), 0);

    // 64 requests at the bound (1 KiB), each followed by an honest one.
    let max = usize::try_from(source.MAX_EXTRA_DATA().call().await.unwrap()).unwrap();
    let extra: Vec<Bytes> = (0..128)
        .map(|i| {
            if i % 2 == 0 {
                Bytes::from(vec![0xab; max])
            } else {
                Bytes::new()
            }
        })
        .collect();
    let to = Address::repeat_byte(0x77);
    let requests = driver
        .request_native_burst_with(lane, 0, to, U256::from(1_000), &extra)
        .await
        .unwrap();
    let last = requests.last().unwrap().nonce;
    let took = wait_all_handled(&driver, lane, 0..last + 1, Duration::from_secs(90)).await;
    if took.is_err() {
        dump_relay_logs(devnet.dir(), OPERATORS, 60);
    }
    let took = took.unwrap();
    println!(
        "128 requests (64 with 1 KiB extraData) handled in {took:?} on a {SMALL_BLOCK_GAS}-gas destination"
    );
    assert_exactly_once(&driver, lane, 0..last + 1)
        .await
        .unwrap();
    assert_eq!(
        driver.native_balance(ChainRole::Service, to).await.unwrap(),
        U256::from(1_000u64 * 128)
    );
    // Every vote transaction fitted the destination's blocks.
    let head = service.get_block_number().await.unwrap();
    for n in 1..=head {
        let block = service
            .get_block_by_number(n.into())
            .await
            .unwrap()
            .unwrap();
        assert!(block.header.gas_used <= SMALL_BLOCK_GAS.max(block.header.gas_limit));
    }
}

/// Audit M-9: a relay whose signer runs dry (spam makes operators pay for gas) keeps indexing
/// and serving, pauses sending with a named reason, and resumes by itself once funded.
#[tokio::test(flavor = "multi_thread")]
async fn a_relay_out_of_gas_money_pauses_sending_and_resumes_when_funded() {
    let dir = tempfile::tempdir().unwrap();
    let devnet = Devnet::start(DevnetOptions::standalone_relays(dir.path()))
        .await
        .unwrap();
    let driver = Driver::new(devnet.manifest());
    let lane = Lane::MainToService;
    let service = driver.provider(ChainRole::Service).unwrap();
    let operator = driver.operator(0).unwrap().address();
    let port = devnet.operator_http_ports[0];
    let set_balance = async |wei: U256| {
        let _: () = service
            .raw_request("anvil_setBalance".into(), (operator, wei))
            .await
            .unwrap();
    };
    // Drained only once the relay runs (at start an unfunded signer is waited for instead).
    crate::relay_ready(port, Duration::from_secs(60)).await;
    set_balance(U256::ZERO).await;
    let paused =
        "multibridge_sending_paused{lane=\"main-to-service\",reason=\"insufficient_funds\"}";
    let to = Address::repeat_byte(0x78);
    // Enough requests that operator 0 is among the first voters of some of them.
    let first = driver
        .request_native_burst(lane, 0, to, U256::from(1_000), 8)
        .await
        .unwrap();
    let range = first[0].nonce..first.last().unwrap().nonce + 1;
    wait_all_handled(&driver, lane, range.clone(), Duration::from_secs(60))
        .await
        .unwrap();
    crate::Poll::new(
        "operator 0 never reported its paused sending",
        Duration::from_secs(30),
    )
    .logs(devnet.dir(), OPERATORS, 30)
    .until(
        async || match multibridge_devnet::harness::scrape::metric(port, paused).await {
            Some(v) if v >= 1.0 => Ok(()),
            other => Err(format!("{paused} = {other:?}")),
        },
    )
    .await;
    // Still serving, and the status names the reason.
    let status: serde_json::Value = reqwest::get(format!("http://127.0.0.1:{port}/status"))
        .await
        .expect("operator 0's relay stopped serving")
        .json()
        .await
        .unwrap();
    assert!(
        status.to_string().contains("insufficient_funds"),
        "status does not name the pause: {status}"
    );
    let sent_before = multibridge_devnet::harness::scrape::metric(
        port,
        "multibridge_votes_sent_total{lane=\"main-to-service\"}",
    )
    .await
    .unwrap();

    // Funded again: the pause ends by itself and the relay votes again.
    set_balance(alloy::primitives::utils::parse_ether("100").unwrap()).await;
    crate::Poll::new("operator 0 did not resume", Duration::from_secs(30))
        .logs(devnet.dir(), OPERATORS, 30)
        .until(
            async || match multibridge_devnet::harness::scrape::metric(port, paused).await {
                Some(0.0) => Ok(()),
                other => Err(format!("{paused} = {other:?}")),
            },
        )
        .await;
    let second = driver
        .request_native_burst(lane, 0, to, U256::from(1_000), 8)
        .await
        .unwrap();
    let all = range.start..second.last().unwrap().nonce + 1;
    wait_all_handled(&driver, lane, all.clone(), Duration::from_secs(60))
        .await
        .unwrap();
    crate::metric_at_least(
        "operator 0 sent no vote after funding",
        port,
        "multibridge_votes_sent_total{lane=\"main-to-service\"}",
        sent_before + 1.0,
        Duration::from_secs(30),
    )
    .await;
    assert_exactly_once(&driver, lane, all).await.unwrap();
}

/// Audit M-4: a stranger cannot take an operator's lane service id in the registry; what it can
/// register is its own id, which the CLI shows as not an operator's. The relays register their
/// services and voting goes on.
#[tokio::test(flavor = "multi_thread")]
async fn a_stranger_cannot_squat_an_operators_registry_service() {
    use multibridge_contracts::bindings::ServiceRegistry::{self, ServiceRegistryErrors};
    use multibridge_contracts::{LaneServiceMeta, bridge_service_id};

    let dir = tempfile::tempdir().unwrap();
    let mut devnet = Devnet::start(DevnetOptions::chains_only(dir.path()))
        .await
        .unwrap();
    let driver = Driver::new(devnet.manifest());
    let m = driver.manifest().clone();
    let (main, service) = (&m.main.contracts, &m.service.contracts);
    let operator = driver.operator(0).unwrap().address();
    let meta = LaneServiceMeta {
        src_chain_id: main.chain_id,
        src_bridge: main.bridge,
        dst_chain_id: service.chain_id,
        dst_bridge: service.bridge,
        operator,
    };
    let id = bridge_service_id(
        main.chain_id,
        main.bridge,
        service.chain_id,
        service.bridge,
        operator,
    );
    assert_eq!(meta.service_id(), id);
    let stranger = driver
        .wallet_provider(ChainRole::Main, &driver.user(2).unwrap())
        .unwrap();
    let registry = ServiceRegistry::new(m.registry, stranger);
    let refused = registry
        .register(
            id,
            "multibridge".into(),
            "http://evil.example".into(),
            meta.encode().into(),
        )
        .call()
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused.as_decoded_interface_error::<ServiceRegistryErrors>(),
            Some(ServiceRegistryErrors::ReservedId(_))
        ),
        "squatting not refused with ReservedId: {refused}"
    );
    registry
        .registerBridgeService(
            U256::from(main.chain_id),
            main.bridge,
            U256::from(service.chain_id),
            service.bridge,
            "multibridge".into(),
            "http://evil.example".into(),
        )
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();

    for op in devnet.operators() {
        devnet.start_relay(op).unwrap();
    }
    let relay_url = format!("http://127.0.0.1:{}", devnet.operator_http_ports[0]);
    let binary = multibridge_devnet::harness::tools::relay_binary().unwrap();
    let config = devnet.operator_config_path(0);
    let report = crate::Poll::new(
        "operator 0's service never showed its own location",
        Duration::from_secs(60),
    )
    .until(async || {
        let output = tokio::process::Command::new(&binary)
            .args(["registry", "--json", "--config"])
            .arg(&config)
            .output()
            .await
            .unwrap();
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())?;
        let ours = report["services"]
            .as_array()
            .and_then(|s| {
                s.iter().find(|r| {
                    r["lane"] == "main-to-service"
                        && r["operator"]
                            .as_str()
                            .and_then(|a| a.parse::<Address>().ok())
                            == Some(operator)
                })
            })
            .cloned()
            .unwrap_or_default();
        if ours["location"] == relay_url.as_str() {
            Ok(report)
        } else {
            Err(format!("operator 0's row: {ours}"))
        }
    })
    .await;
    // The stranger's own entry is listed as what it is: not a registered operator.
    let rows = report["services"].as_array().unwrap();
    let evil: Vec<_> = rows
        .iter()
        .filter(|r| r["location"] == "http://evil.example")
        .collect();
    assert_eq!(evil.len(), 1, "{report}");
    assert_eq!(evil[0]["operator_registered"], false, "{report}");
    assert!(
        rows.iter()
            .filter(|r| r["operator_registered"] == true)
            .all(|r| r["location"] != "http://evil.example"),
        "{report}"
    );

    let lane = Lane::MainToService;
    let r = driver
        .request_native(lane, 0, Address::repeat_byte(0x79), U256::from(5))
        .await
        .unwrap();
    wait_all_handled(&driver, lane, r.nonce..r.nonce + 1, Duration::from_secs(60))
        .await
        .unwrap();
}

/// Audit M-5 (second half): whoever can write to etcd cannot make an operator's key publish
/// another URL. An intruder holds operator 0's lane leadership in etcd with its own URL; the
/// relays refuse to publish it (`registry_updates_total{outcome="refused_url"}`), and the
/// registry never shows it.
#[tokio::test(flavor = "multi_thread")]
async fn a_leader_url_planted_in_etcd_is_never_published() {
    use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
    use multibridge::harness::{election_dir_of, leader_key};
    use multibridge_contracts::bindings::ServiceRegistry;
    use multibridge_contracts::bridge_service_id;

    let dir = tempfile::tempdir().unwrap();
    let mut devnet = Devnet::start(DevnetOptions::new(dir.path())).await.unwrap();
    let config = devnet.operator_config(0).unwrap();
    let operator = config.operator.address;
    let lane = Lane::MainToService;
    let key = leader_key(&election_dir_of(&config, lane, operator).unwrap());
    let endpoints = config.etcd.as_ref().unwrap().endpoints.clone();
    let mut etcd = Client::connect(endpoints, None).await.unwrap();
    let lease = etcd.lease_grant(30, None).await.unwrap().id();
    let evil = serde_json::json!({
        "replica": "intruder",
        "url": "http://evil.example",
        "operator": operator.to_string(),
    })
    .to_string();
    let planted = etcd
        .txn(
            Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(
                    key,
                    evil,
                    Some(PutOptions::new().with_lease(lease)),
                )]),
        )
        .await
        .unwrap();
    assert!(
        planted.succeeded(),
        "the leader key was taken before the relays started"
    );
    let (mut keeper, _stream) = etcd.lease_keep_alive(lease).await.unwrap();
    let keep = tokio::spawn(async move {
        loop {
            if keeper.keep_alive().await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    });

    for op in devnet.operators() {
        devnet.start_relay(op).unwrap();
    }
    let ports = devnet.operator_http_ports.clone();
    crate::metric_at_least(
        "no relay refused the planted URL",
        ports[0],
        "multibridge_registry_updates_total{outcome=\"refused_url\"}",
        1.0,
        Duration::from_secs(60),
    )
    .await;
    let m = Driver::new(devnet.manifest()).manifest().clone();
    let id = bridge_service_id(
        m.main.contracts.chain_id,
        m.main.contracts.bridge,
        m.service.contracts.chain_id,
        m.service.contracts.bridge,
        operator,
    );
    let main = Driver::new(devnet.manifest())
        .provider(ChainRole::Main)
        .unwrap();
    let registry = ServiceRegistry::new(m.registry, main);
    if registry.exists(id).call().await.unwrap() {
        let location = registry.getServiceLocation(id).call().await.unwrap();
        assert_ne!(
            location, "http://evil.example",
            "the planted URL was published"
        );
    }
    keep.abort();
}

/// Endpoints operator 0 reads the main chain through: a lying one first, then the real node.
/// `LOG_QUORUM` 1 is the relay before audit M-7's fix (the endpoint in use alone is believed).
const LOG_QUORUM: usize = 2;

/// Audit M-7: an RPC provider that rewrites request logs cannot make an operator vote a forged
/// payload when two endpoints must agree: operator 0 (a lying endpoint first, the real node
/// second) indexes nothing while they disagree and counts it; the other operators handle every
/// request and see no diverging vote.
#[tokio::test(flavor = "multi_thread")]
async fn a_lying_rpc_cannot_make_an_operator_vote_a_forged_payload() {
    use multibridge_devnet::harness::invariants::votes_per_operator;
    use multibridge_devnet::stand_in::lying_rpc::LyingRpc;

    let dir = tempfile::tempdir().unwrap();
    let mut devnet = Devnet::start(DevnetOptions::chains_only(dir.path()))
        .await
        .unwrap();
    let liar = LyingRpc::start(devnet.rpc_url(ChainRole::Main))
        .await
        .unwrap();
    for op in devnet.operators() {
        let mut config = devnet.operator_config(op).unwrap();
        if op == 0 {
            config.chains.main.rpc_urls.insert(0, liar.url());
            config.chains.main.log_quorum = LOG_QUORUM;
        }
        devnet.write_operator_config(op, &config).unwrap();
        devnet.start_relay(op).unwrap();
    }
    let driver = Driver::new(devnet.manifest());
    let lane = Lane::MainToService;
    let requests = driver
        .request_native_burst(lane, 0, Address::repeat_byte(0x4c), U256::from(1_000), 4)
        .await
        .unwrap();
    let range = requests[0].nonce..requests[3].nonce + 1;
    wait_all_handled(&driver, lane, range.clone(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_exactly_once(&driver, lane, range.clone())
        .await
        .unwrap();
    assert_eq!(
        driver
            .native_balance(ChainRole::Service, Address::repeat_byte(0x4c))
            .await
            .unwrap(),
        U256::from(4_000),
        "the real amounts were paid"
    );
    let operator0 = driver.operator(0).unwrap().address();
    let votes = votes_per_operator(&driver, lane).await.unwrap();
    assert!(
        !votes.keys().any(|(_, op)| *op == operator0),
        "operator 0 voted although its endpoints disagreed: {votes:?}"
    );
    let port = devnet.operator_http_ports[0];
    crate::metric_at_least(
        "operator 0 never noticed its endpoints disagree",
        port,
        "multibridge_rpc_log_disagreements_total{chain=\"main\"}",
        1.0,
        Duration::from_secs(30),
    )
    .await;
    // No operator voted a payload the chain does not hold: the honest relays compare every
    // VoteCast with what they indexed.
    for (op, port) in devnet.operator_http_ports.iter().enumerate().skip(1) {
        let divergence = multibridge_devnet::harness::scrape::metric(
            *port,
            "multibridge_vote_divergence_total{lane=\"main-to-service\"}",
        )
        .await
        .unwrap_or_default();
        assert_eq!(
            divergence, 0.0,
            "operator {op} saw a vote for a forged payload"
        );
    }
}

/// Audit NEW-H1 (2026-11-23) on a real devnet: recipients that are cheap when simulated (gas
/// price 0) and burn every unit of gas they are given on chain — an ERC-721 and three native
/// transfers to them among 60 honest ones, then eight of them in one block beside honest ones —
/// cannot make a vote run out of gas, halt the lane or drain the operators. Every request is
/// handled exactly once, no vote transaction reverts or runs out of gas, the hostile recipients
/// are credited (their code never runs in a vote), a release held for the delay is executed,
/// and the operators spend alike.
#[tokio::test(flavor = "multi_thread")]
async fn gas_price_aware_recipients_cannot_halt_a_lane_or_drain_the_operators() {
    use multibridge_contracts::GasPriceGriefer;
    use multibridge_devnet::harness::deploy::user_nft_ids;
    use multibridge_devnet::harness::scrape::metric;

    let dir = tempfile::tempdir().unwrap();
    let devnet = Devnet::start(DevnetOptions::standalone_relays(dir.path()))
        .await
        .unwrap();
    let driver = Driver::new(devnet.manifest());
    let lane = Lane::MainToService;
    let deployer = driver
        .wallet_provider(ChainRole::Service, &driver.user(3).unwrap())
        .unwrap();
    let mut griefers = Vec::new();
    for _ in 0..12 {
        let g = GasPriceGriefer::deploy(deployer.clone()).await.unwrap();
        griefers.push(*g.address());
    }
    let operators: Vec<Address> = (0..OPERATORS)
        .map(|i| driver.operator(i).unwrap().address())
        .collect();
    let mut spent_before = Vec::new();
    for op in &operators {
        spent_before.push(
            driver
                .native_balance(ChainRole::Service, *op)
                .await
                .unwrap(),
        );
    }

    // Round 1: 60 honest transfers (one of 600 coins, held for the devnet's 10 s delay) with
    // three to griefers among them, and an NFT to a griefer.
    let small = U256::from(10u64).pow(U256::from(15));
    let coin = U256::from(10u64).pow(U256::from(18));
    let mut transfers = Vec::new();
    let mut honest = Vec::new();
    for i in 0..63u64 {
        let (to, amount) = match i {
            10 => (griefers[0], small),
            30 => (griefers[1], small),
            50 => (griefers[2], small),
            40 => (Address::repeat_byte(0x60), coin * U256::from(600)),
            _ => (Address::from_word(U256::from(0x5000 + i).into()), small),
        };
        if !griefers.contains(&to) {
            honest.push((to, amount));
        }
        transfers.push((to, amount, Bytes::new()));
    }
    let first = driver
        .request_native_each(lane, 0, &transfers)
        .await
        .unwrap();
    let nft_id = user_nft_ids(0)[0];
    let nft = driver
        .request_erc721(lane, 0, griefers[3], nft_id)
        .await
        .unwrap();
    // Round 2: eight griefers and eight honest transfers in one block.
    let mut burst = Vec::new();
    for (i, g) in griefers[4..12].iter().enumerate() {
        burst.push((*g, small, Bytes::new()));
        let to = Address::from_word(U256::from(0x6000 + i).into());
        honest.push((to, small));
        burst.push((to, small, Bytes::new()));
    }
    let second = driver.request_native_each(lane, 1, &burst).await.unwrap();
    let last = second.last().unwrap().nonce.max(nft.nonce);
    assert_eq!(first[0].nonce, 0);

    let took = wait_all_handled(&driver, lane, 0..last + 1, Duration::from_secs(120)).await;
    if took.is_err() {
        dump_relay_logs(devnet.dir(), OPERATORS, 80);
    }
    println!(
        "{} requests, 12 of them to griefers, handled in {:?}",
        last + 1,
        took.unwrap()
    );
    assert_exactly_once(&driver, lane, 0..last + 1)
        .await
        .unwrap();

    let bridge = Bridge::new(
        driver.chain(ChainRole::Service).contracts.bridge,
        driver.provider(ChainRole::Service).unwrap(),
    );
    for g in griefers.iter().take(3).chain(griefers[4..].iter()) {
        assert_eq!(
            bridge.pendingWithdrawal(*g).call().await.unwrap(),
            small,
            "griefer {g} credited, its code never ran in a vote"
        );
    }
    assert_eq!(
        bridge
            .pendingERC721Withdrawal(driver.chain(ChainRole::Service).contracts.nft, nft_id)
            .call()
            .await
            .unwrap(),
        griefers[3],
        "the NFT is held for its griefer"
    );
    // The large release waits the delay, then a relay executes it.
    let big = Address::repeat_byte(0x60);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while driver
        .native_balance(ChainRole::Service, big)
        .await
        .unwrap()
        < coin * U256::from(600)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the queued release was not executed"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for (to, amount) in &honest {
        assert_eq!(
            driver
                .native_balance(ChainRole::Service, *to)
                .await
                .unwrap(),
            *amount,
            "honest recipient {to} paid exactly once"
        );
    }

    let mut out_of_gas = 0.0;
    let mut reverted = 0.0;
    let mut executed = 0.0;
    for port in &devnet.operator_http_ports {
        let series = |outcome: &str| {
            format!("multibridge_vote_transactions_total{{lane=\"{lane}\",outcome=\"{outcome}\"}}")
        };
        out_of_gas += metric(*port, &series("out_of_gas")).await.unwrap();
        reverted += metric(*port, &series("reverted")).await.unwrap();
        executed += metric(
            *port,
            &format!("multibridge_queued_releases_executed_total{{lane=\"{lane}\"}}"),
        )
        .await
        .unwrap();
    }
    assert_eq!(out_of_gas, 0.0, "no vote ran out of gas");
    assert_eq!(reverted, 0.0, "no vote reverted");
    assert!(executed >= 1.0, "the relays executed the queued release");

    // No operator paid for a griefer's loop: what each spent on the destination is alike (the
    // audit saw the deciding operators spend 7x what the third did).
    let mut spent = Vec::new();
    for (op, before) in operators.iter().zip(&spent_before) {
        let after = driver
            .native_balance(ChainRole::Service, *op)
            .await
            .unwrap();
        spent.push(before.saturating_sub(after));
    }
    let (min, max) = (
        spent.iter().min().copied().unwrap(),
        spent.iter().max().copied().unwrap(),
    );
    println!("gas money spent per operator (wei): {spent:?}");
    assert!(
        max <= min * U256::from(2),
        "operators spent unevenly: {spent:?}"
    );
}

/// Audit A3-L8 on the devnet: in attested mode a batch is one source block's requests within a
/// 32-nonce window and cannot be split; 32 requests with 1 KiB of extraData need ~2.5M gas in
/// one transaction. On a destination with a 2M-gas block limit such a batch could never execute
/// (its honest requests stranded with it); now the relays vote it instead, sized by gas.
#[tokio::test(flavor = "multi_thread")]
async fn an_attested_window_of_maximal_requests_is_voted_on_a_small_block_destination() {
    const BLOCK_GAS: u64 = 2_000_000;
    let dir = tempfile::tempdir().unwrap();
    let devnet = Devnet::start(DevnetOptions {
        voting_mode: multibridge_config::VotingMode::Attestations,
        ..DevnetOptions::standalone_relays(dir.path())
    })
    .await
    .unwrap();
    let driver = Driver::new(devnet.manifest());
    let lane = Lane::MainToService;
    let service = driver.provider(ChainRole::Service).unwrap();
    let _: bool = service
        .raw_request("evm_setBlockGasLimit".into(), (U256::from(BLOCK_GAS),))
        .await
        .unwrap();
    let to = Address::repeat_byte(0x78);
    // One window of 32 maximal requests in one source block, then an honest window.
    let extra: Vec<Bytes> = (0..64)
        .map(|i| {
            if i < 32 {
                Bytes::from(vec![0xab; 1024])
            } else {
                Bytes::new()
            }
        })
        .collect();
    let requests = driver
        .request_native_burst_with(lane, 0, to, U256::from(1_000), &extra)
        .await
        .unwrap();
    let last = requests.last().unwrap().nonce;
    let took = wait_all_handled(&driver, lane, 0..last + 1, Duration::from_secs(120)).await;
    if took.is_err() {
        dump_relay_logs(devnet.dir(), OPERATORS, 60);
    }
    println!(
        "64 requests (32 maximal) handled in {:?} on a {BLOCK_GAS}-gas destination",
        took.unwrap()
    );
    assert_exactly_once(&driver, lane, 0..last + 1)
        .await
        .unwrap();
    assert_eq!(
        driver.native_balance(ChainRole::Service, to).await.unwrap(),
        U256::from(1_000u64 * 64)
    );
    // The maximal window went by votes (a vote may take half of a 2M block: the honest
    // window's worst case is over it too, and it is voted alike).
    let votes = multibridge_devnet::harness::invariants::votes_per_operator(&driver, lane)
        .await
        .unwrap();
    // (a request the burst put in a block of its own is a batch of one, which fits.)
    assert!(
        votes.keys().filter(|(n, _)| *n < 32).count() >= 16,
        "the maximal window was voted: {:?}",
        votes.keys().collect::<Vec<_>>()
    );
}
