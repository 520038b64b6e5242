//! Invariant 4 with a real `anvil_reorg`: a request whose block is reorged out inside the
//! confirmation depth gets no vote; what is canonical afterwards is handled exactly once, and
//! every vote ever cast matches a canonical request.

use std::collections::HashMap;
use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use multibridge_contracts::bindings::Bridge;
use multibridge_contracts::{ChainRole, Lane, VoteDomain, request_from_log};
use multibridge_devnet::{Devnet, DevnetOptions, Driver};

use crate::eventually;

#[tokio::test(flavor = "multi_thread")]
async fn a_request_reorged_out_inside_the_depth_gets_no_vote() {
    let dir = tempfile::tempdir().unwrap();
    let devnet = Devnet::start(DevnetOptions {
        confirmations: 5,
        ..DevnetOptions::standalone_relays(dir.path())
    })
    .await
    .unwrap();
    let driver = Driver::new(devnet.manifest());
    let m = driver.manifest().clone();
    let main = driver.provider(ChainRole::Main).unwrap();
    let lane = Lane::MainToService;

    let eve = Address::repeat_byte(0xee);
    let orphan = driver
        .request_native(lane, 0, eve, U256::from(111))
        .await
        .unwrap();
    // Reorg the request's block (and anything after it) out before it is 5 blocks deep.
    let head = main.get_block_number().await.unwrap();
    assert!(
        head < orphan.srcBlockNumber + 5,
        "the request must still be inside the depth"
    );
    let depth = head - orphan.srcBlockNumber + 1;
    main.raw_request::<_, serde_json::Value>(
        "anvil_reorg".into(),
        (depth, Vec::<serde_json::Value>::new()),
    )
    .await
    .unwrap();
    let receipt = main
        .get_transaction_receipt(orphan.srcTxHash)
        .await
        .unwrap();
    assert!(
        receipt.is_none_or(|r| r.block_number != Some(orphan.srcBlockNumber) || r.block_hash.is_none()),
        "the request's block was replaced"
    );

    // A new request takes over; everything canonical must end up handled exactly once.
    let frank = Address::repeat_byte(0xf7);
    driver
        .request_native(lane, 1, frank, U256::from(222))
        .await
        .unwrap();
    let bridge = Bridge::new(m.main.contracts.bridge, main.clone());
    let request_count = eventually(
        "canonical requests not all handled",
        Duration::from_secs(60),
        async || {
            let count = bridge.requestNonce().call().await.unwrap();
            let mut unhandled = Vec::new();
            for nonce in 0..count {
                let n = driver.handle_count(lane, nonce).await.unwrap();
                assert!(n <= 1, "nonce {nonce} handled {n} times");
                if n != 1 {
                    unhandled.push(nonce);
                }
            }
            if unhandled.is_empty() && count > 0 {
                Ok(count)
            } else {
                Err(format!("{count} requests, unhandled: {unhandled:?}"))
            }
        },
    )
    .await;

    // Canonical requests and their vote keys.
    let domain = VoteDomain {
        src_chain_id: m.main.contracts.chain_id,
        src_bridge: m.main.contracts.bridge,
        dst_chain_id: m.service.contracts.chain_id,
        dst_bridge: m.service.contracts.bridge,
    };
    let logs = main
        .get_logs(
            &Filter::new()
                .address(m.main.contracts.bridge)
                .event_signature(Bridge::RequestValueTransfer::SIGNATURE_HASH)
                .from_block(m.main.contracts.bridge_block),
        )
        .await
        .unwrap();
    let canonical: HashMap<u64, B256> = logs
        .iter()
        .map(|l| {
            let r = request_from_log(l, m.main.contracts.chain_id).unwrap();
            (r.nonce, domain.vote_key(&r))
        })
        .collect();
    assert_eq!(canonical.len() as u64, request_count);

    // Every vote ever cast is for a canonical payload: none for the orphaned block.
    let service = driver.provider(ChainRole::Service).unwrap();
    let votes = service
        .get_logs(
            &Filter::new()
                .address(m.service.contracts.bridge)
                .event_signature(Bridge::VoteCast::SIGNATURE_HASH)
                .from_block(m.service.contracts.bridge_block),
        )
        .await
        .unwrap();
    assert!(!votes.is_empty());
    for log in votes {
        let v = log.log_decode::<Bridge::VoteCast>().unwrap().inner.data;
        assert_eq!(
            Some(&v.voteKey),
            canonical.get(&v.nonce),
            "operator {} voted a non-canonical payload for nonce {}",
            v.operator,
            v.nonce
        );
    }
    // The orphaned block's payload (its block number is gone from the canonical chain) was never voted.
    assert_ne!(
        canonical.get(&orphan.nonce),
        Some(&domain.vote_key(&orphan))
    );
    assert_eq!(
        driver
            .native_balance(ChainRole::Service, frank)
            .await
            .unwrap(),
        U256::from(222)
    );
}
