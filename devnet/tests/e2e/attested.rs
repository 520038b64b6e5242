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

fn attested(dir: &std::path::Path) -> DevnetOptions {
    DevnetOptions {
        voting_mode: multibridge_config::VotingMode::Attestations,
        ..DevnetOptions::standalone_relays(dir)
    }
}

async fn wait_handled(driver: &Driver, dir: &std::path::Path, lane: Lane, requests: &[Request]) {
    for request in requests {
        Poll::new(
            format!("{lane} nonce {} not handled in time", request.nonce),
            Duration::from_secs(60),
        )
        .logs(dir, 3, 20)
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
}

#[tokio::test(flavor = "multi_thread")]
async fn attested_batches_move_transfers_both_ways_exactly_once_without_a_vote() {
    let dir = tempfile::tempdir().unwrap();
    let devnet = Devnet::start(attested(dir.path())).await.unwrap();
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
    wait_handled(&driver, dir.path(), Lane::MainToService, &down).await;
    wait_handled(&driver, dir.path(), Lane::ServiceToMain, &up).await;

    assert_exactly_once(&driver, Lane::MainToService, 0..down.len() as u64)
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
    // Every relay signed (each leads its lanes) and served what it signed.
    for port in devnet.operator_http_ports.clone() {
        let signed = metric(
            port,
            "multibridge_attestations_signed_total{lane=\"main-to-service\"}",
        )
        .await
        .unwrap_or(0.0);
        assert!(signed >= 1.0, "relay on {port} signed {signed} batches");
    }
}
