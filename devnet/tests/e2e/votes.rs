//! Issue 2's end-to-end check on real anvil chains and a real etcd cluster: requests on one
//! chain, operator votes cast through the Rust bindings on the other, each transfer executed
//! exactly once with balances conserved, and a vote past the threshold refused.

use alloy::primitives::{Address, U256, utils::parse_ether};
use multibridge_contracts::bindings::Bridge::{self, BridgeErrors};
use multibridge_contracts::{ChainRole, Lane, Request, ServiceRegistry, bridge_service_id};
use multibridge_devnet::harness::driver::RefusedVote;
use multibridge_devnet::{Devnet, DevnetOptions, Driver, VoteOutcome};

/// Threshold 2 of 3: the first vote records, the second executes, the third is refused.
async fn vote_to_execution(driver: &Driver, lane: Lane, request: &Request) {
    match driver.vote(lane, 0, request).await.unwrap() {
        VoteOutcome::Recorded { votes, .. } => assert_eq!(votes, U256::from(1)),
        other => panic!("first vote: {other:?}"),
    }
    assert_eq!(
        driver.handle_count(lane, request.nonce).await.unwrap(),
        0,
        "one vote executes nothing"
    );
    assert!(
        matches!(
            driver.vote(lane, 1, request).await.unwrap(),
            VoteOutcome::Executed { .. }
        ),
        "second vote reaches the threshold"
    );
    match driver.vote(lane, 2, request).await.unwrap() {
        VoteOutcome::Refused(RefusedVote {
            error: Some(BridgeErrors::AlreadyHandled(e)),
            ..
        }) => assert_eq!(e.nonce, request.nonce),
        other => panic!("third vote should be refused with AlreadyHandled, got {other:?}"),
    }
    assert_eq!(
        driver.handle_count(lane, request.nonce).await.unwrap(),
        1,
        "executed exactly once"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn transfers_both_ways_execute_exactly_once_and_conserve() {
    let dir = tempfile::tempdir().unwrap();
    let devnet = Devnet::start(DevnetOptions::new(dir.path())).await.unwrap();
    let driver = Driver::new(devnet.manifest());
    let m = driver.manifest().clone();
    let (main_bridge, service_bridge) = (m.main.contracts.bridge, m.service.contracts.bridge);

    // The Rust vote key and service id are the contracts' own.
    let domain = driver.vote_domain(Lane::MainToService);

    let native = parse_ether("2").unwrap();
    let tokens = parse_ether("300").unwrap();
    let alice = driver.user(0).unwrap().address();
    let bob = driver.user(1).unwrap().address();
    let carol = Address::repeat_byte(0xca);

    let main_bridge_native = driver
        .native_balance(ChainRole::Main, main_bridge)
        .await
        .unwrap();
    let service_bridge_native = driver
        .native_balance(ChainRole::Service, service_bridge)
        .await
        .unwrap();
    let bob_service_native = driver
        .native_balance(ChainRole::Service, bob)
        .await
        .unwrap();

    // main -> service: alice sends native coin and test tokens to bob.
    let lane = Lane::MainToService;
    let native_req = driver.request_native(lane, 0, bob, native).await.unwrap();
    let token_req = driver.request_erc20(lane, 0, bob, tokens).await.unwrap();
    assert_eq!(native_req.from, alice);
    assert_eq!(
        token_req.nonce,
        native_req.nonce + 1,
        "request nonces are dense"
    );

    let service = driver.provider(ChainRole::Service).unwrap();
    let on_chain_key = Bridge::new(service_bridge, service)
        .voteKey(native_req.clone())
        .call()
        .await
        .unwrap();
    assert_eq!(on_chain_key, domain.vote_key(&native_req));

    vote_to_execution(&driver, lane, &native_req).await;
    vote_to_execution(&driver, lane, &token_req).await;

    assert_eq!(
        driver
            .native_balance(ChainRole::Service, bob)
            .await
            .unwrap(),
        bob_service_native + native,
        "bob received the native amount exactly once"
    );
    assert_eq!(
        driver.token_balance(ChainRole::Service, bob).await.unwrap(),
        tokens
    );
    assert_eq!(
        driver
            .native_balance(ChainRole::Main, main_bridge)
            .await
            .unwrap(),
        main_bridge_native + native,
        "main bridge locked the native amount"
    );
    assert_eq!(
        driver
            .native_balance(ChainRole::Service, service_bridge)
            .await
            .unwrap(),
        service_bridge_native - native,
        "service bridge released it from liquidity"
    );
    assert_eq!(
        driver
            .token_balance(ChainRole::Main, main_bridge)
            .await
            .unwrap(),
        tokens
    );
    assert_eq!(
        driver.token_supply(ChainRole::Service).await.unwrap(),
        tokens,
        "minted = locked"
    );

    // service -> main: bob sends part of the wrapped tokens back to carol (burn, then unlock).
    let back = parse_ether("120").unwrap();
    let lane = Lane::ServiceToMain;
    let back_req = driver.request_erc20(lane, 1, carol, back).await.unwrap();
    assert_eq!(
        back_req.nonce, 0,
        "the service bridge numbers its own requests from 0"
    );
    vote_to_execution(&driver, lane, &back_req).await;
    assert_eq!(
        driver.token_balance(ChainRole::Main, carol).await.unwrap(),
        back
    );
    assert_eq!(
        driver.token_supply(ChainRole::Service).await.unwrap(),
        tokens - back,
        "burned"
    );
    assert_eq!(
        driver
            .token_balance(ChainRole::Main, main_bridge)
            .await
            .unwrap(),
        tokens - back,
        "still locked on main = wrapped supply on service"
    );

    // The registry derives lane service ids the same way as the Rust helper.
    let operator = driver.operator(0).unwrap().address();
    let main = driver.provider(ChainRole::Main).unwrap();
    let on_chain_id = ServiceRegistry::new(m.registry, main)
        .bridgeServiceId(
            U256::from(domain.src_chain_id),
            main_bridge,
            U256::from(domain.dst_chain_id),
            service_bridge,
            operator,
        )
        .call()
        .await
        .unwrap();
    assert_eq!(
        on_chain_id,
        bridge_service_id(
            domain.src_chain_id,
            main_bridge,
            domain.dst_chain_id,
            service_bridge,
            operator
        )
    );
}
