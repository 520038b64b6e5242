//! The guardian never pauses on honest traffic (audit 2026-11-26: A3-M2, A3-M3, A3-L6, the
//! owner's resume overruled; DESIGN §9.10). Each test runs the guardians of every operator and
//! fails if any bridge is paused when nothing was forged:
//! - one operator's guardian reads the source deeper than the executors and through an endpoint
//!   5 blocks behind on a 2 s chain, while an NFT and an ERC-20 of an asset never moved before
//!   cross (its conservation reads each release long before the request it pays);
//! - one operator's destination endpoint claims head + 9 and serves a fabricated
//!   `HandleValueTransfer` (with a receipt of its own): the other endpoint contradicts it, the
//!   liar is named, nothing is paused;
//! - every relay restarts after the owner deregistered the ERC-20 pair: no alarm;
//! - a forged release amid honest traffic on both lanes is paused within two blocks, the
//!   owner's resume holds for the rest of the test, and every honest request is handled exactly
//!   once.

use std::time::Duration;

use alloy::primitives::{Address, B256, utils::parse_ether};
use alloy::providers::Provider;
use multibridge_config::Confirmations;
use multibridge_contracts::bindings::Bridge;
use multibridge_contracts::{ChainRole, Lane};
use multibridge_devnet::harness::deploy::user_nft_ids;
use multibridge_devnet::harness::ha::Traffic;
use multibridge_devnet::harness::invariants::{
    assert_exactly_once, wait_all_handled, wait_handled_below,
};
use multibridge_devnet::harness::scrape::metric;
use multibridge_devnet::stand_in::lying_rpc::{FabricatedHandle, Lies, LyingRpc};
use multibridge_devnet::{Devnet, DevnetOptions, Driver, VoteOutcome};

use crate::guardian::{paused, pauses};
use crate::{Poll, eventually, metric_at_least};

/// Every `guardian_alarms_total` series of every relay is 0, and no bridge was ever paused.
async fn never_paused(devnet: &Devnet, driver: &Driver) {
    for role in [ChainRole::Main, ChainRole::Service] {
        let seen = pauses(driver, role, 0).await;
        assert!(seen.is_empty(), "{role} was paused: {seen:?}");
    }
    for port in &devnet.operator_http_ports {
        for lane in Lane::ALL {
            for reason in ["forged_release", "handled_mismatch", "conservation"] {
                let series = format!(
                    "multibridge_guardian_alarms_total{{lane=\"{lane}\",reason=\"{reason}\"}}"
                );
                assert_eq!(
                    metric(*port, &series).await,
                    Some(0.0),
                    "relay {port}: {series}"
                );
            }
        }
    }
}

/// Wait until the conservation scan of the relay on `port` has matched every release of `lane`
/// with its request (nothing open or held: the scan reached everything sent).
async fn conservation_matched(devnet: &Devnet, port: u16, lane: Lane, timeout: Duration) {
    Poll::new(
        format!("relay {port}: conservation of {lane} matched everything"),
        timeout,
    )
    .logs(devnet.dir(), 3, 40)
    .until(async || {
        let mut states = Vec::new();
        for state in ["open", "held", "forged"] {
            let series =
                format!("multibridge_conservation_nonces{{lane=\"{lane}\",state=\"{state}\"}}");
            states.push(metric(port, &series).await);
        }
        if states == [Some(0.0), Some(0.0), Some(0.0)] {
            Ok(())
        } else {
            Err(format!("open, held, forged = {states:?}"))
        }
    })
    .await;
}

/// Audit A3-M2 and A3-M3(c): operator 2 counts source requests 12 blocks deep (the executors,
/// 1) and reads the main chain through a node 5 blocks behind; its guardian sees each release at
/// the destination's head 20-30 s before its own source view holds the request. Before, an NFT
/// (one token, no in-flight cushion) made its conservation read released 1 > requested 0 twice,
/// and its head watcher called the release "never requested" on a fresh-looking source node:
/// both bridges paused.
#[tokio::test(flavor = "multi_thread")]
async fn a_guardian_deeper_and_behind_the_executors_never_pauses_honest_transfers() {
    let dir = tempfile::tempdir().unwrap();
    let mut devnet = Devnet::start(DevnetOptions {
        block_time: Some(2.0),
        ..DevnetOptions::chains_only(dir.path())
    })
    .await
    .unwrap();
    let behind = LyingRpc::with_lies(
        devnet.rpc_url(ChainRole::Main),
        Lies {
            lag_blocks: 5,
            ..Lies::default()
        },
    )
    .await
    .unwrap();
    for op in devnet.operators() {
        let mut config = devnet.operator_config(op).unwrap();
        if op == 2 {
            config.chains.main.confirmations = Confirmations::Depth(12);
            config.chains.main.rpc_urls = vec![behind.url()];
        }
        devnet.write_operator_config(op, &config).unwrap();
        devnet.start_relay(op).unwrap();
    }
    let driver = Driver::new(devnet.manifest());
    let lane = Lane::MainToService;
    let user = Address::repeat_byte(0x5a);
    // Assets that never moved: requested = released = 0, no cushion for a count out of order.
    let nft = driver
        .request_erc721(lane, 0, user, user_nft_ids(0)[0])
        .await
        .unwrap();
    let token = driver
        .request_erc20(lane, 0, user, parse_ether("5").unwrap())
        .await
        .unwrap();
    let back = driver
        .request_native(Lane::ServiceToMain, 1, user, parse_ether("1").unwrap())
        .await
        .unwrap();
    let last = nft.nonce.max(token.nonce);
    wait_all_handled(&driver, lane, nft.nonce..last + 1, Duration::from_secs(90))
        .await
        .unwrap();
    wait_handled_below(
        &driver,
        Lane::ServiceToMain,
        back.nonce + 1,
        Duration::from_secs(90),
    )
    .await
    .unwrap();
    assert_exactly_once(&driver, lane, nft.nonce..last + 1)
        .await
        .unwrap();
    // Operator 2's own view catches up: its conservation matches both releases with their
    // requests, and none of it ever looked forged.
    let port = devnet.operator_http_ports[2];
    conservation_matched(&devnet, port, lane, Duration::from_secs(120)).await;
    let nft_series = format!(
        "multibridge_conservation_ok{{asset=\"{:#x}\",lane=\"{lane}\"}}",
        driver.chain(ChainRole::Main).contracts.nft
    );
    eventually(
        format!("relay {port}: {nft_series}"),
        Duration::from_secs(60),
        async || match metric(port, &nft_series).await {
            Some(1.0) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    for port in &devnet.operator_http_ports {
        let series = format!("multibridge_guardian_unconfirmed{{lane=\"{lane}\"}}");
        eventually(
            format!("relay {port}: no suspicion left"),
            Duration::from_secs(60),
            async || match metric(*port, &series).await {
                Some(0.0) => Ok(()),
                other => Err(format!("{series} = {other:?}")),
            },
        )
        .await;
    }
    never_paused(&devnet, &driver).await;
}

/// Audit A3-M3(a, b): operator 2's first service endpoint claims the head + 9 and serves a
/// forged-looking `HandleValueTransfer` of an executed nonce, with a receipt to match. Before,
/// its guardian judged the log against its store (another vote key) and paused both bridges.
/// Now the finding is read again on both endpoints: the real node has no such transaction, so
/// nothing is paused and the lying endpoint is named.
#[tokio::test(flavor = "multi_thread")]
async fn a_lying_endpoint_cannot_make_a_guardian_pause() {
    let dir = tempfile::tempdir().unwrap();
    let mut devnet = Devnet::start(DevnetOptions::chains_only(dir.path()))
        .await
        .unwrap();
    let service = devnet.rpc_url(ChainRole::Service);
    let head = devnet.manifest().service.contracts.bridge_block;
    let driver = Driver::new(devnet.manifest());
    let lane = Lane::MainToService;
    let bridge = driver.chain(ChainRole::Service).contracts.bridge;
    // The first transfer gets nonce `first`; the liar serves a forged execution of it a few
    // blocks after the relays start.
    let first = Bridge::new(
        driver.chain(ChainRole::Main).contracts.bridge,
        driver.provider(ChainRole::Main).unwrap(),
    )
    .requestNonce()
    .call()
    .await
    .unwrap();
    let now = driver
        .provider(ChainRole::Service)
        .unwrap()
        .get_block_number()
        .await
        .unwrap();
    let liar = LyingRpc::with_lies(
        service.clone(),
        Lies {
            claimed_head_ahead: 9,
            fabricated_handle: Some(FabricatedHandle {
                bridge,
                nonce: first,
                key: B256::repeat_byte(0x66),
                from_block: now.max(head) + 12,
            }),
            ..Lies::default()
        },
    )
    .await
    .unwrap();
    for op in devnet.operators() {
        let mut config = devnet.operator_config(op).unwrap();
        if op == 2 {
            config.chains.service.rpc_urls = vec![liar.url(), service.clone()];
        }
        devnet.write_operator_config(op, &config).unwrap();
        devnet.start_relay(op).unwrap();
    }
    let user = Address::repeat_byte(0x5b);
    let requests = driver
        .request_native_burst(lane, 0, user, parse_ether("1").unwrap(), 3)
        .await
        .unwrap();
    assert_eq!(requests[0].nonce, first);
    let port = devnet.operator_http_ports[2];
    metric_at_least(
        "operator 2's guardian never named the lying endpoint (#0 of the service chain)",
        port,
        &format!(
            "multibridge_guardian_disputes_total{{chain=\"service\",endpoint=\"0\",lane=\"{lane}\"}}"
        ),
        1.0,
        Duration::from_secs(90),
    )
    .await;
    // Transfers go on both ways, exactly once, and nobody paused anything.
    let more = driver
        .request_native_burst(lane, 1, user, parse_ether("1").unwrap(), 3)
        .await
        .unwrap();
    let back = driver
        .request_native_burst(Lane::ServiceToMain, 1, user, parse_ether("1").unwrap(), 3)
        .await
        .unwrap();
    let range = first..more[2].nonce + 1;
    wait_all_handled(&driver, lane, range.clone(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_exactly_once(&driver, lane, range).await.unwrap();
    let back_range = back[0].nonce..back[2].nonce + 1;
    wait_all_handled(
        &driver,
        Lane::ServiceToMain,
        back_range.clone(),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_exactly_once(&driver, Lane::ServiceToMain, back_range)
        .await
        .unwrap();
    assert_eq!(
        metric(
            port,
            &format!("multibridge_guardian_unconfirmed{{lane=\"{lane}\"}}")
        )
        .await,
        Some(1.0),
        "the fabricated finding waits, unconfirmed"
    );
    never_paused(&devnet, &driver).await;
}

/// Audit A3-L6: after the owner deregisters the ERC-20 pair on the destination, every relay
/// restarts; before, each guardian's conservation read the pair's counterpart as zero, counted
/// the token's whole release history as native coin and paused both bridges.
#[tokio::test(flavor = "multi_thread")]
async fn a_restart_after_a_token_pair_is_deregistered_raises_no_alarm() {
    let dir = tempfile::tempdir().unwrap();
    let mut devnet = Devnet::start(DevnetOptions::standalone_relays(dir.path()))
        .await
        .unwrap();
    let driver = Driver::new(devnet.manifest());
    let lane = Lane::MainToService;
    let user = Address::repeat_byte(0x5c);
    let token = driver
        .request_erc20(lane, 0, user, parse_ether("7").unwrap())
        .await
        .unwrap();
    let coin = driver
        .request_native(lane, 0, user, parse_ether("1").unwrap())
        .await
        .unwrap();
    wait_handled_below(&driver, lane, coin.nonce + 1, Duration::from_secs(60))
        .await
        .unwrap();
    for port in &devnet.operator_http_ports {
        conservation_matched(&devnet, *port, lane, Duration::from_secs(60)).await;
    }
    let owner = driver.owner().unwrap();
    let destination = Bridge::new(
        driver.chain(ChainRole::Service).contracts.bridge,
        driver.wallet_provider(ChainRole::Service, &owner).unwrap(),
    );
    destination
        .deregisterTokenPair(driver.chain(ChainRole::Service).contracts.token)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    for op in devnet.operators() {
        devnet.relay(op).unwrap().restart().unwrap();
    }
    // After the restart every relay compares again (the counts are fresh) and finds both
    // assets whole.
    let token_series = format!(
        "multibridge_conservation_ok{{asset=\"{:#x}\",lane=\"{lane}\"}}",
        driver.chain(ChainRole::Main).contracts.token
    );
    let native_series = format!("multibridge_conservation_ok{{asset=\"native\",lane=\"{lane}\"}}");
    let after = driver
        .request_native(lane, 1, user, parse_ether("1").unwrap())
        .await
        .unwrap();
    wait_handled_below(&driver, lane, after.nonce + 1, Duration::from_secs(60))
        .await
        .unwrap();
    for port in &devnet.operator_http_ports {
        conservation_matched(&devnet, *port, lane, Duration::from_secs(60)).await;
        for series in [&token_series, &native_series] {
            eventually(
                format!("relay {port}: {series} after the restart"),
                Duration::from_secs(30),
                async || match metric(*port, series).await {
                    Some(1.0) => Ok(()),
                    other => Err(format!("{other:?}")),
                },
            )
            .await;
        }
    }
    assert!(token.nonce < coin.nonce);
    never_paused(&devnet, &driver).await;
}

/// The owner's resume overruled (found on the devnet): two stolen operator keys forge a
/// 600-coin release at a far nonce while honest transfers flow on both lanes. The guardians pause both
/// bridges within two blocks; the owner unpauses; for the rest of the test nobody pauses again
/// (before, the excess conservation measured grew as honest transfers completed and each larger
/// excess paused again), and every honest request is handled exactly once. One relay is
/// SIGSTOPped across the breach and the resume: its guardian, learning of the breach only after
/// the resume, pauses nothing (before, it paused the main bridge again and the lane towards it
/// stopped), and leaves alone the freeze the owner lifted (before, it froze the release again).
#[tokio::test(flavor = "multi_thread")]
async fn a_forged_release_amid_honest_traffic_is_paused_once_and_the_owners_resume_holds() {
    // Five registered operators, threshold 2: three run relays, the keys of the other two are
    // the thieves' (a stolen key voting beside its own relay would race it for nonces). The
    // forged release is held an hour: the owner lifts its freeze, and it must not run in the
    // test.
    let dir = tempfile::tempdir().unwrap();
    let mut devnet = Devnet::start(DevnetOptions {
        operators: 5,
        release_limits: multibridge_devnet::harness::deploy::ReleaseLimits {
            release_delay: 3_600,
            ..multibridge_devnet::harness::deploy::ReleaseLimits::devnet()
        },
        ..DevnetOptions::chains_only(dir.path())
    })
    .await
    .unwrap();
    for op in 0..3 {
        devnet.start_relay(op).unwrap();
    }
    let driver = Driver::new(devnet.manifest());
    let lane = Lane::MainToService;
    let traffic: Vec<(Lane, Traffic)> = Lane::ALL
        .into_iter()
        .map(|l| {
            (
                l,
                Traffic::start_through_refusals(
                    Driver::new(devnet.manifest()),
                    l,
                    2,
                    Duration::from_millis(300),
                ),
            )
        })
        .collect();
    let service = driver.provider(ChainRole::Service).unwrap();
    let settle = service.get_block_number().await.unwrap() + 8;
    eventually(
        "honest traffic flows",
        Duration::from_secs(30),
        async || {
            let now = service.get_block_number().await.unwrap();
            if now >= settle {
                Ok(())
            } else {
                Err(format!("{now}"))
            }
        },
    )
    .await;

    let source = Bridge::new(
        driver.chain(ChainRole::Main).contracts.bridge,
        driver.provider(ChainRole::Main).unwrap(),
    );
    // The third relay sleeps through the breach and the owner's resume (found on a loaded
    // machine: one guardian confirmed the breach only after the resume and paused again).
    devnet.relay(2).unwrap().pause().unwrap();
    let far = source.requestNonce().call().await.unwrap() + 1_000;
    let forged = driver.forged_native_request(
        lane,
        far,
        Address::repeat_byte(0x7f),
        parse_ether("600").unwrap(),
    );
    assert!(matches!(
        driver.vote(lane, 3, &forged).await.unwrap(),
        VoteOutcome::Recorded { .. }
    ));
    let VoteOutcome::Executed { tx } = driver.vote(lane, 4, &forged).await.unwrap() else {
        panic!("the threshold's second vote executes the forged payload");
    };
    let forged_block = service
        .get_transaction_receipt(tx)
        .await
        .unwrap()
        .unwrap()
        .block_number
        .unwrap();
    eventually("both bridges paused", Duration::from_secs(30), async || {
        if paused(&driver, ChainRole::Service).await && paused(&driver, ChainRole::Main).await {
            Ok(())
        } else {
            Err("not yet".into())
        }
    })
    .await;
    let (pause_block, _) = pauses(&driver, ChainRole::Service, forged_block).await[0];
    crate::guardian::within_two_blocks(dir.path(), forged_block, pause_block);

    // Every guardian that is awake has its pauses mined before the owner decides (one still
    // in flight would land after the resume: a race of this test, not a late guardian).
    for op in 0..2 {
        let guardian = multibridge_devnet::harness::accounts::guardian_signer(op, 0)
            .unwrap()
            .address();
        for role in [ChainRole::Service, ChainRole::Main] {
            let chain = driver.provider(role).unwrap();
            eventually(
                format!("guardian {op}'s transactions on {role} mined"),
                Duration::from_secs(30),
                async || {
                    let pending = chain
                        .get_transaction_count(guardian)
                        .pending()
                        .await
                        .unwrap();
                    let mined = chain.get_transaction_count(guardian).await.unwrap();
                    if pending == mined {
                        Ok(())
                    } else {
                        Err(format!("{mined} mined, {pending} sent"))
                    }
                },
            )
            .await;
        }
    }
    // The owner resumes both bridges and lifts the freeze of the forged release (as for a
    // release that proves genuine: the owner's decision either way).
    let owner = driver.owner().unwrap();
    let service_bridge = Bridge::new(
        driver.chain(ChainRole::Service).contracts.bridge,
        driver.wallet_provider(ChainRole::Service, &owner).unwrap(),
    );
    let frozen_now = async || {
        let page = service_bridge
            .queuedReleasesFrom(
                alloy::primitives::U256::ZERO,
                alloy::primitives::U256::from(64),
            )
            .call()
            .await
            .unwrap();
        page.iter()
            .find(|q| q.nonce == far)
            .expect("the forged release is queued")
            .frozen
    };
    assert!(frozen_now().await, "the guardians froze the forged release");
    service_bridge
        .setQueuedReleaseFrozen(far, false)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let mut resumed = Vec::new();
    for role in [ChainRole::Service, ChainRole::Main] {
        let bridge = Bridge::new(
            driver.chain(role).contracts.bridge,
            driver.wallet_provider(role, &owner).unwrap(),
        );
        let receipt = bridge
            .unpause()
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        resumed.push((role, receipt.block_number.unwrap()));
    }
    // The sleeper wakes and learns of the breach only now: its guardian leaves the resume and
    // the lifted freeze alone.
    devnet.relay(2).unwrap().resume().unwrap();
    let late = devnet.operator_http_ports[2];
    metric_at_least(
        "the late guardian leaves the lifted freeze alone",
        late,
        "multibridge_guardian_unfreezes_respected_total{chain=\"service\"}",
        1.0,
        Duration::from_secs(60),
    )
    .await;
    for chain in ["service", "main"] {
        let series = format!("multibridge_guardian_resumes_respected_total{{chain=\"{chain}\"}}");
        eventually(
            format!("the late guardian respects the resume of {chain}"),
            Duration::from_secs(60),
            async || match metric(late, &series).await {
                Some(n) if n >= 1.0 => Ok(()),
                other => Err(format!("{series} = {other:?}")),
            },
        )
        .await;
    }
    // Honest traffic goes on for a while after the resume, through every guardian.
    let until = service.get_block_number().await.unwrap() + 20;
    eventually(
        "twenty blocks after the resume",
        Duration::from_secs(60),
        async || {
            let now = service.get_block_number().await.unwrap();
            if now >= until {
                Ok(())
            } else {
                Err(format!("{now}"))
            }
        },
    )
    .await;
    for (l, t) in traffic {
        let sent: Vec<u64> = t.stop().await.unwrap().iter().map(|s| s.nonce).collect();
        let range = sent[0]..sent[sent.len() - 1] + 1;
        assert_eq!(
            sent.len() as u64,
            range.end - range.start,
            "{l}: the traffic's requests are the lane's nonces in a row"
        );
        wait_all_handled(&driver, l, range.clone(), Duration::from_secs(90))
            .await
            .unwrap();
        assert_exactly_once(&driver, l, range).await.unwrap();
    }
    for (role, at) in resumed {
        let again = pauses(&driver, role, at + 1).await;
        assert!(
            again.is_empty(),
            "{role} paused again after the owner's resume: {again:?}"
        );
        assert!(!paused(&driver, role).await);
    }
    assert!(
        !frozen_now().await,
        "the freeze the owner lifted stays lifted"
    );
}
