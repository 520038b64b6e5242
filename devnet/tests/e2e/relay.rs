//! The relay processes on a real devnet: three operators, threshold 2, transfers both ways are
//! handled exactly once with balances conserved and one vote per operator; a relay killed and
//! restarted neither votes twice nor leaves a nonce gap.

use std::time::Duration;

use alloy::primitives::{Address, U256, utils::parse_ether};
use multibridge_contracts::{ChainRole, Lane, Request};
use multibridge_devnet::harness::invariants::{votes_per_operator, wait_no_nonce_gap};
use multibridge_devnet::harness::scrape::metric;
use multibridge_devnet::{Devnet, DevnetOptions, Driver};

use crate::{Poll, eventually};

/// Wait (60 s at most) until `request` of `lane` is handled, failing at once if twice.
pub(crate) async fn wait_handled(
    driver: &Driver,
    devnet_dir: &std::path::Path,
    lane: Lane,
    request: &Request,
) {
    Poll::new(
        format!("{lane} nonce {} not handled in time", request.nonce),
        Duration::from_secs(60),
    )
    .logs(devnet_dir, 3, 15)
    .until(async || {
        let n = driver.handle_count(lane, request.nonce).await.unwrap();
        assert!(n <= 1, "{lane} nonce {} handled {n} times", request.nonce);
        if n == 1 {
            Ok(())
        } else {
            Err(format!("handled {n} times"))
        }
    })
    .await;
}

/// A devnet whose relays the test starts itself (after adjusting their configs).
async fn devnet_without_relays() -> (tempfile::TempDir, Devnet) {
    let dir = tempfile::tempdir().unwrap();
    let devnet = Devnet::start(DevnetOptions::chains_only(dir.path()))
        .await
        .unwrap();
    (dir, devnet)
}

#[tokio::test(flavor = "multi_thread")]
async fn relays_move_native_and_erc20_both_ways_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let devnet = Devnet::start(DevnetOptions::standalone_relays(dir.path()))
        .await
        .unwrap();
    let driver = Driver::new(devnet.manifest());
    let bob = driver.user(1).unwrap().address();
    let carol = Address::repeat_byte(0xca);
    let (native, tokens) = (parse_ether("3").unwrap(), parse_ether("40").unwrap());
    let bob_before = driver
        .native_balance(ChainRole::Service, bob)
        .await
        .unwrap();

    let a = driver
        .request_native(Lane::MainToService, 0, bob, native)
        .await
        .unwrap();
    let b = driver
        .request_erc20(Lane::MainToService, 0, bob, tokens)
        .await
        .unwrap();
    let c = driver
        .request_native(Lane::ServiceToMain, 2, carol, native)
        .await
        .unwrap();
    for (lane, r) in [
        (Lane::MainToService, &a),
        (Lane::MainToService, &b),
        (Lane::ServiceToMain, &c),
    ] {
        wait_handled(&driver, dir.path(), lane, r).await;
    }
    assert_eq!(
        driver
            .native_balance(ChainRole::Service, bob)
            .await
            .unwrap(),
        bob_before + native,
        "bob received the native amount exactly once"
    );
    // Bob sends wrapped tokens back (paying gas on the service chain); the relays burn-and-unlock.
    let d = driver
        .request_erc20(Lane::ServiceToMain, 1, carol, parse_ether("15").unwrap())
        .await
        .unwrap();
    wait_handled(&driver, dir.path(), Lane::ServiceToMain, &d).await;

    assert_eq!(
        driver.token_balance(ChainRole::Service, bob).await.unwrap(),
        tokens - parse_ether("15").unwrap()
    );
    assert_eq!(
        driver.native_balance(ChainRole::Main, carol).await.unwrap(),
        native
    );
    assert_eq!(
        driver.token_balance(ChainRole::Main, carol).await.unwrap(),
        parse_ether("15").unwrap()
    );
    let m = driver.manifest();
    assert_eq!(
        driver
            .token_balance(ChainRole::Main, m.main.contracts.bridge)
            .await
            .unwrap(),
        driver.token_supply(ChainRole::Service).await.unwrap(),
        "locked on main = minted on service"
    );
    for lane in Lane::ALL {
        for ((nonce, op), n) in votes_per_operator(&driver, lane).await.unwrap() {
            assert_eq!(n, 1, "{lane} nonce {nonce}: operator {op} voted {n} times");
        }
    }

    // Every relay's /metrics agrees with the chain: 2 requests per lane, all handled.
    for port in devnet.operator_http_ports.clone() {
        // One bound for both lanes of a relay.
        let poll = Poll::new(
            format!("relay on :{port}: requests handled"),
            Duration::from_secs(15),
        );
        for lane in ["main-to-service", "service-to-main"] {
            let handled = format!("multibridge_requests{{lane=\"{lane}\",status=\"handled\"}}");
            poll.until(async || {
                let got = metric(port, &handled).await;
                if got == Some(2.0) {
                    Ok(())
                } else {
                    Err(format!("{handled} is {got:?}"))
                }
            })
            .await;
            let sent = metric(
                port,
                &format!("multibridge_votes_sent_total{{lane=\"{lane}\"}}"),
            )
            .await
            .unwrap();
            let skipped_h = metric(
                port,
                &format!(
                    "multibridge_votes_skipped_total{{lane=\"{lane}\",reason=\"already_handled\"}}"
                ),
            )
            .await
            .unwrap();
            assert!(
                sent + skipped_h >= 2.0,
                "{lane} on :{port}: voted {sent}, skipped {skipped_h}"
            );
            assert_eq!(
                metric(
                    port,
                    &format!("multibridge_oldest_pending_age_seconds{{lane=\"{lane}\"}}")
                )
                .await,
                Some(0.0)
            );
        }
        assert!(
            metric(port, "multibridge_indexed_block{lane=\"main-to-service\"}")
                .await
                .unwrap()
                > 0.0
        );
    }
    drop(devnet);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_relay_is_not_needed_and_resumes_without_double_votes_or_nonce_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let mut devnet = Devnet::start(DevnetOptions::standalone_relays(dir.path()))
        .await
        .unwrap();
    let driver = Driver::new(devnet.manifest());
    let bob = driver.user(1).unwrap().address();
    let lane = Lane::MainToService;

    let first = driver
        .request_native(lane, 0, bob, U256::from(1_000))
        .await
        .unwrap();
    wait_handled(&driver, dir.path(), lane, &first).await;

    devnet.relay(0).unwrap().kill().unwrap();
    let while_down = driver
        .request_native(lane, 0, bob, U256::from(2_000))
        .await
        .unwrap();
    wait_handled(&driver, dir.path(), lane, &while_down).await;

    devnet.start_relay(0).unwrap();
    let after = driver
        .request_erc20(lane, 0, bob, U256::from(3_000))
        .await
        .unwrap();
    wait_handled(&driver, dir.path(), lane, &after).await;

    for ((nonce, op), n) in votes_per_operator(&driver, lane).await.unwrap() {
        assert_eq!(n, 1, "nonce {nonce}: operator {op} voted {n} times");
    }
    // No nonce gap: operator 0's pending and mined transaction counts agree once idle.
    wait_no_nonce_gap(&driver, ChainRole::Service, 0, Duration::from_secs(20))
        .await
        .unwrap();
}

/// Invariant 3 with real relays: an operator voting a tampered payload never adds to the honest
/// votes, so with one honest and one tampering relay nothing executes; the second honest relay
/// completes the honest payload, and the recipient gets the honest amount.
#[tokio::test(flavor = "multi_thread")]
async fn a_tampered_vote_executes_nothing_and_the_honest_payload_still_does() {
    let (dir, mut devnet) = devnet_without_relays().await;
    let mut tamperer = devnet.operator_config(2).unwrap();
    tamperer.fault_injection.tamper_votes = true;
    devnet.write_operator_config(2, &tamperer).unwrap();
    devnet.start_relay(0).unwrap();
    devnet.start_relay(2).unwrap();

    let driver = Driver::new(devnet.manifest());
    let lane = Lane::MainToService;
    let dave = Address::repeat_byte(0xda);
    let amount = U256::from(777_000u64);
    let request = driver.request_native(lane, 0, dave, amount).await.unwrap();

    // Both running relays vote (different payloads) ...
    eventually(
        "both relays should vote",
        Duration::from_secs(30),
        async || {
            let votes = votes_per_operator(&driver, lane).await.unwrap();
            if votes.keys().filter(|(n, _)| *n == request.nonce).count() == 2 {
                Ok(())
            } else {
                Err(format!("{votes:?}"))
            }
        },
    )
    .await;
    // ... and nothing executes on them.
    assert_eq!(driver.handle_count(lane, request.nonce).await.unwrap(), 0);
    assert_eq!(
        driver
            .native_balance(ChainRole::Service, dave)
            .await
            .unwrap(),
        U256::ZERO
    );

    devnet.start_relay(1).unwrap();
    wait_handled(&driver, dir.path(), lane, &request).await;
    assert_eq!(
        driver
            .native_balance(ChainRole::Service, dave)
            .await
            .unwrap(),
        amount,
        "the honest amount, not the tampered one"
    );
    // The honest relays saw the tampered vote on the destination and count it as divergence;
    // the tamperer itself stored the honest payload too, so it counts it as well.
    let series = "multibridge_vote_divergence_total{lane=\"main-to-service\"}";
    for op in [0, 1] {
        let port = devnet.operator_http_ports[op];
        eventually(
            format!("relay {op} did not count the divergent vote"),
            Duration::from_secs(20),
            async || {
                let counted = metric(port, series).await.unwrap_or(0.0);
                if counted < 1.0 {
                    Err(format!("{series} = {counted}"))
                } else {
                    Ok(())
                }
            },
        )
        .await;
    }
    assert_eq!(
        metric(
            devnet.operator_http_ports[0],
            "multibridge_vote_divergence_total{lane=\"service-to-main\"}"
        )
        .await,
        Some(0.0)
    );
}

/// SIGKILL two of three relays while they vote on a burst (so no threshold can be reached until
/// they are back), restart them: every request is handled exactly once, each operator voted at
/// most once per request, the recipient got exactly the sum, and no signer is left with a gap.
#[tokio::test(flavor = "multi_thread")]
async fn relays_killed_mid_batch_lose_nothing_and_release_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut devnet = Devnet::start(DevnetOptions::standalone_relays(dir.path()))
        .await
        .unwrap();
    let driver = Driver::new(devnet.manifest());
    let lane = Lane::MainToService;
    let to = Address::repeat_byte(0x5b);
    let amount = U256::from(1_000_000u64);
    let count = 40;
    let requests = driver
        .request_native_burst(lane, 0, to, amount, count)
        .await
        .unwrap();
    assert_eq!(requests.len(), count);

    // Kill as soon as the first vote of any operator is on chain: the relays are mid-batch
    // (their votes sent, mined, or about to be).
    Poll::new("no relay voted", Duration::from_secs(30))
        .every(Duration::from_millis(20))
        .logs(dir.path(), 3, 15)
        .until(async || {
            if votes_per_operator(&driver, lane).await.unwrap().is_empty() {
                Err("no vote on chain".to_owned())
            } else {
                Ok(())
            }
        })
        .await;
    devnet.relay(0).unwrap().kill().unwrap();
    devnet.relay(1).unwrap().kill().unwrap();
    devnet.start_relay(0).unwrap();
    devnet.start_relay(1).unwrap();

    for r in &requests {
        wait_handled(&driver, dir.path(), lane, r).await;
    }
    for ((nonce, op), n) in votes_per_operator(&driver, lane).await.unwrap() {
        assert_eq!(n, 1, "nonce {nonce}: operator {op} voted {n} times");
    }
    assert_eq!(
        driver.native_balance(ChainRole::Service, to).await.unwrap(),
        amount * U256::from(count),
        "released exactly once per request"
    );
    for op in [0, 1] {
        wait_no_nonce_gap(&driver, ChainRole::Service, op, Duration::from_secs(20))
            .await
            .unwrap();
    }
}

/// The first RPC URL of each chain is a blackhole (accepts, never answers): the relays time out
/// on it, fail over to the second URL and carry on; their metrics show the failed attempts.
#[tokio::test(flavor = "multi_thread")]
async fn relays_fail_over_from_a_blackholed_first_rpc_url() {
    use multibridge_devnet::harness::proxy::{ProxyMode, TcpProxy};
    let (dir, mut devnet) = devnet_without_relays().await;
    let target = |url: String| url.trim_start_matches("http://").parse().unwrap();
    let main_hole = TcpProxy::start(
        target(devnet.rpc_url(ChainRole::Main)),
        ProxyMode::Blackhole,
    )
    .await
    .unwrap();
    let service_hole = TcpProxy::start(
        target(devnet.rpc_url(ChainRole::Service)),
        ProxyMode::Blackhole,
    )
    .await
    .unwrap();
    for op in devnet.operators() {
        let mut config = devnet.operator_config(op).unwrap();
        config.chains.main.rpc_urls.insert(0, main_hole.url());
        config.chains.service.rpc_urls.insert(0, service_hole.url());
        devnet.write_operator_config(op, &config).unwrap();
        devnet.start_relay(op).unwrap();
    }
    let driver = Driver::new(devnet.manifest());
    let to = Address::repeat_byte(0x1f);
    let a = driver
        .request_native(Lane::MainToService, 0, to, U256::from(5))
        .await
        .unwrap();
    let b = driver
        .request_native(Lane::ServiceToMain, 0, to, U256::from(7))
        .await
        .unwrap();
    wait_handled(&driver, dir.path(), Lane::MainToService, &a).await;
    wait_handled(&driver, dir.path(), Lane::ServiceToMain, &b).await;
    assert_eq!(
        driver.native_balance(ChainRole::Service, to).await.unwrap(),
        U256::from(5)
    );
    assert_eq!(
        driver.native_balance(ChainRole::Main, to).await.unwrap(),
        U256::from(7)
    );

    let port = devnet.operator_http_ports[0];
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let failed_on_first: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with("multibridge_rpc_requests_total{")
                && l.contains("endpoint=\"0\"")
                && l.contains("outcome=\"retryable\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        failed_on_first > 0.0,
        "timeouts on the blackholed endpoint are counted:\n{text}"
    );
}

/// Regression (found by the benchmark): requests this relay voted but that wait for other
/// operators must not hold up the queue. One relay alone (below the threshold) votes for every
/// request of a burst larger than its working window.
#[tokio::test(flavor = "multi_thread")]
async fn voted_requests_waiting_for_others_do_not_block_new_votes() {
    let (dir, mut devnet) = devnet_without_relays().await;
    devnet.start_relay(0).unwrap();
    let driver = Driver::new(devnet.manifest());
    let lane = Lane::MainToService;
    let count = 300; // more than twice the voter's window of 128
    let requests = driver
        .request_native_burst(lane, 0, Address::repeat_byte(0x3c), U256::from(1), count)
        .await
        .unwrap();
    let op0 = driver.operator(0).unwrap().address();
    Poll::new(
        "operator 0 did not vote for every request",
        Duration::from_secs(60),
    )
    .logs(dir.path(), 3, 15)
    .until(async || {
        let voted = votes_per_operator(&driver, lane)
            .await
            .unwrap()
            .keys()
            .filter(|(_, op)| *op == op0)
            .count();
        if voted == requests.len() {
            Ok(())
        } else {
            Err(format!("voted {voted} of {} requests", requests.len()))
        }
    })
    .await;
    for r in &requests {
        assert_eq!(
            driver.handle_count(lane, r.nonce).await.unwrap(),
            0,
            "one vote of two executes nothing"
        );
    }
}

/// ERC-721 through the relays: an NFT locked on main arrives on service with the same id
/// (minted), goes back (burned there, unlocked on main); one sent with a bare
/// `safeTransferFrom` to the bridge (no approval) moves too; one whose recipient is a contract
/// that does not accept NFTs closes its nonce and is held for withdrawal instead of blocking the
/// lane. Each nonce is handled once, each operator votes once, conservation (counted in tokens)
/// holds on every relay.
#[tokio::test(flavor = "multi_thread")]
async fn relays_move_nfts_both_ways_with_the_same_id_exactly_once() {
    use multibridge_devnet::harness::deploy::user_nft_ids;

    let dir = tempfile::tempdir().unwrap();
    let devnet = Devnet::start(DevnetOptions::standalone_relays(dir.path()))
        .await
        .unwrap();
    let driver = Driver::new(devnet.manifest());
    let m = driver.manifest().clone();
    let alice = driver.user(0).unwrap().address();
    let bob = driver.user(1).unwrap().address();
    let carol = Address::repeat_byte(0xca);
    let ids = user_nft_ids(0);
    let (approved, safe, refused) = (ids[0], ids[1], ids[2]);
    for id in &ids {
        assert_eq!(
            driver.nft_owner(ChainRole::Main, *id).await.unwrap(),
            Some(alice)
        );
    }
    // A contract without the ERC-721 receiver hook: the safe mint to it fails.
    let no_hook = m.service.contracts.token;

    let a = driver
        .request_erc721(Lane::MainToService, 0, bob, approved)
        .await
        .unwrap();
    let b = driver
        .send_erc721_to_bridge(Lane::MainToService, 0, bob, safe)
        .await
        .unwrap();
    let c = driver
        .request_erc721(Lane::MainToService, 0, no_hook, refused)
        .await
        .unwrap();
    for (r, id) in [(&a, approved), (&b, safe), (&c, refused)] {
        assert_eq!(r.kind, 2, "an ERC-721 request");
        assert_eq!(r.amount, id, "the request carries the id");
        assert_eq!(
            r.from, alice,
            "the holder requested it, also through the hook"
        );
        assert_eq!(
            driver.nft_owner(ChainRole::Main, id).await.unwrap(),
            Some(m.main.contracts.bridge),
            "locked on main"
        );
    }
    for r in [&a, &b, &c] {
        wait_handled(&driver, dir.path(), Lane::MainToService, r).await;
    }
    for id in [approved, safe] {
        assert_eq!(
            driver.nft_owner(ChainRole::Service, id).await.unwrap(),
            Some(bob),
            "id {id} minted to bob on service"
        );
    }
    assert_eq!(
        driver.nft_owner(ChainRole::Service, refused).await.unwrap(),
        None,
        "nothing minted to a contract that refuses NFTs"
    );
    let service_bridge = multibridge_contracts::Bridge::new(
        m.service.contracts.bridge,
        driver.provider(ChainRole::Service).unwrap(),
    );
    assert_eq!(
        service_bridge
            .pendingERC721Withdrawal(m.service.contracts.nft, refused)
            .call()
            .await
            .unwrap(),
        no_hook,
        "held for the recipient to withdraw"
    );

    // Back: bob returns one id with a bare safeTransferFrom and the other through approve.
    let d = driver
        .send_erc721_to_bridge(Lane::ServiceToMain, 1, carol, approved)
        .await
        .unwrap();
    let e = driver
        .request_erc721(Lane::ServiceToMain, 1, carol, safe)
        .await
        .unwrap();
    for r in [&d, &e] {
        wait_handled(&driver, dir.path(), Lane::ServiceToMain, r).await;
    }
    for id in [approved, safe] {
        assert_eq!(
            driver.nft_owner(ChainRole::Service, id).await.unwrap(),
            None,
            "id {id} burned on service"
        );
        assert_eq!(
            driver.nft_owner(ChainRole::Main, id).await.unwrap(),
            Some(carol),
            "id {id} unlocked to carol on main, the same id"
        );
    }
    assert_eq!(
        driver.nft_owner(ChainRole::Main, refused).await.unwrap(),
        Some(m.main.contracts.bridge),
        "the held one's home copy stays locked"
    );

    for lane in Lane::ALL {
        for ((nonce, op), n) in votes_per_operator(&driver, lane).await.unwrap() {
            assert_eq!(n, 1, "{lane} nonce {nonce}: operator {op} voted {n} times");
        }
    }
    // Conservation per asset (the NFT counted in tokens) holds on every relay.
    let nft_label = |c: Address| format!("{c:#x}");
    for port in devnet.operator_http_ports.clone() {
        for (lane, asset) in [
            ("main-to-service", nft_label(m.main.contracts.nft)),
            ("service-to-main", nft_label(m.service.contracts.nft)),
        ] {
            let name = format!("multibridge_conservation_ok{{asset=\"{asset}\",lane=\"{lane}\"}}");
            Poll::new(format!("relay on :{port}: {name}"), Duration::from_secs(30))
                .until(async || match metric(port, &name).await {
                    Some(1.0) => Ok(()),
                    other => Err(format!("{name} is {other:?}")),
                })
                .await;
        }
    }
    drop(devnet);
}
