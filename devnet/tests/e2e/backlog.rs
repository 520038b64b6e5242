//! A backlog larger than the bridge's vote window (requested while every relay was down, as
//! after an outage) drains in batches: the requests that waited for the window are voted in
//! batches once it moves — before, they came back one single vote each after `retry_after`, and
//! a backlog of 20,000 turned into thousands of single votes, most reverting.

use std::time::Duration;

use alloy::consensus::Transaction as _;
use alloy::eips::BlockNumberOrTag;
use alloy::network::TransactionResponse as _;
use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use alloy::sol_types::SolCall;
use multibridge_contracts::bindings::Bridge;
use multibridge_contracts::{ChainRole, Lane, VOTE_WINDOW};
use multibridge_devnet::harness::invariants::{assert_exactly_once, wait_handled_below};
use multibridge_devnet::{Devnet, DevnetOptions, Driver};

/// Vote transactions to `bridge` in blocks `from..=to`: (all, single-entry ones, reverted).
async fn vote_transactions(
    driver: &Driver,
    bridge: Address,
    from: u64,
    to: u64,
) -> (u64, u64, u64) {
    let dest = driver.provider(ChainRole::Service).unwrap();
    let (mut all, mut singles, mut reverted) = (0u64, 0u64, 0u64);
    for number in from..=to {
        let block = dest
            .get_block_by_number(BlockNumberOrTag::Number(number))
            .full()
            .await
            .unwrap()
            .unwrap();
        let mut ours = Vec::new();
        for t in block.transactions.txns() {
            if t.to() == Some(bridge) {
                ours.push((t.tx_hash(), t.input().clone()));
            }
        }
        if ours.is_empty() {
            continue;
        }
        let receipts = dest
            .get_block_receipts(BlockNumberOrTag::Number(number).into())
            .await
            .unwrap()
            .unwrap_or_default();
        for (hash, input) in ours {
            all += 1;
            if input.starts_with(&Bridge::handleValueTransferCall::SELECTOR) {
                singles += 1;
            }
            if receipts
                .iter()
                .any(|r| r.transaction_hash == hash && !r.status())
            {
                reverted += 1;
            }
        }
    }
    (all, singles, reverted)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_beyond_the_vote_window_drains_in_batches_without_a_reverted_vote() {
    let dir = tempfile::tempdir().unwrap();
    let mut devnet = Devnet::start(DevnetOptions {
        users: 4,
        relays: true,
        block_time: Some(1.0),
        confirmations: 1,
        ..DevnetOptions::new(dir.path())
    })
    .await
    .unwrap();
    let driver = Driver::new(devnet.manifest());
    let lane = Lane::MainToService;
    let to = Address::repeat_byte(0xbe);
    let bridge = driver.chain(ChainRole::Service).contracts.bridge;

    for op in devnet.operators() {
        devnet.relay(op).unwrap().kill().unwrap();
    }
    let per_user = usize::try_from(VOTE_WINDOW).unwrap().div_ceil(4) + 150;
    let bursts = futures::future::join_all(
        (0..4).map(|u| driver.request_native_burst(lane, u, to, U256::from(1), per_user)),
    )
    .await;
    let mut nonces: Vec<u64> = bursts
        .into_iter()
        .flat_map(|b| b.unwrap())
        .map(|r| r.nonce)
        .collect();
    nonces.sort_unstable();
    let (first, last) = (nonces[0], *nonces.last().unwrap());
    assert!(
        last - first >= VOTE_WINDOW,
        "the backlog reaches past the vote window"
    );
    let dest = driver.provider(ChainRole::Service).unwrap();
    let from = dest.get_block_number().await.unwrap();
    for op in devnet.operators() {
        devnet.start_relay(op).unwrap();
    }
    wait_handled_below(&driver, lane, last + 1, Duration::from_secs(600))
        .await
        .unwrap();
    assert_exactly_once(&driver, lane, first..last + 1)
        .await
        .unwrap();
    let upto = dest.get_block_number().await.unwrap();
    let (all, singles, reverted) = vote_transactions(&driver, bridge, from, upto).await;
    let requests = u64::try_from(nonces.len()).unwrap();
    assert_eq!(reverted, 0, "no vote transaction reverted ({all} sent)");
    assert_eq!(
        singles, 0,
        "no request went alone through the single entry point ({all} vote transactions)"
    );
    // Threshold 2 of 3 in batches of up to 32: ~2 × requests / 32, and some third votes skipped.
    assert!(
        all <= requests * 3 / 16,
        "{all} vote transactions for {requests} requests: not batched"
    );
}
