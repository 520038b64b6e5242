//! Issue 53 on the devnet, the contracts' half: a request the destination can never execute
//! (its ERC-20 pair deregistered there) is cancelled on the destination and refunded on the
//! source with operators' signatures computed in Rust, while the relays run. No relay drives
//! these steps yet (the test signs as two operators); what this shows is that the digests the
//! relays will sign are the contracts' own, that the bridges' extension works on real chains, and
//! that the running relays carry on past a cancelled nonce.

use std::time::Duration;

use alloy::primitives::{Address, Bytes, U256, utils::parse_ether};
use alloy::providers::Provider as _;
use alloy::signers::SignerSync as _;
use alloy::signers::local::PrivateKeySigner;
use multibridge_contracts::attestation::{canonical_bytes, pack_signatures};
use multibridge_contracts::bindings::Bridge;
use multibridge_contracts::{ChainRole, Lane, VoteDomain};
use multibridge_devnet::harness::invariants::wait_handled_below;
use multibridge_devnet::{Devnet, DevnetOptions, Driver};

/// Signatures of `signers` over `digest` as the bridge takes them.
fn sign(digest: alloy::primitives::B256, signers: &[&PrivateKeySigner]) -> Bytes {
    let sigs: Vec<(Address, [u8; 65])> = signers
        .iter()
        .map(|s| {
            (
                s.address(),
                canonical_bytes(&s.sign_hash_sync(&digest).unwrap()),
            )
        })
        .collect();
    pack_signatures(&sigs)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_the_destination_cannot_execute_is_cancelled_there_and_refunded_once() {
    let dir = tempfile::tempdir().unwrap();
    let devnet = Devnet::start(DevnetOptions::standalone_relays(dir.path()))
        .await
        .unwrap();
    let driver = Driver::new(devnet.manifest());
    let lane = Lane::MainToService;
    let (main, service) = (
        driver.chain(ChainRole::Main),
        driver.chain(ChainRole::Service),
    );
    let owner = driver.owner().unwrap();
    // The destination will never release this token: its pair is deregistered there.
    Bridge::new(
        service.contracts.bridge,
        driver.wallet_provider(ChainRole::Service, &owner).unwrap(),
    )
    .deregisterTokenPair(service.contracts.token)
    .send()
    .await
    .unwrap()
    .get_receipt()
    .await
    .unwrap();

    let user = driver.user(0).unwrap().address();
    let before = driver.token_balance(ChainRole::Main, user).await.unwrap();
    let amount = parse_ether("7").unwrap();
    let stuck = driver
        .request_erc20(lane, 0, Address::repeat_byte(0x53), amount)
        .await
        .unwrap();
    let locked = driver.token_balance(ChainRole::Main, user).await.unwrap();
    assert_eq!(before - locked, amount, "locked on the source");
    // The relays are alive: a later request is handled, the ERC-20 one is not.
    let later = driver
        .request_native(
            lane,
            1,
            Address::repeat_byte(0x54),
            parse_ether("1").unwrap(),
        )
        .await
        .unwrap();
    let reader = |role: ChainRole| {
        Bridge::new(
            driver.chain(role).contracts.bridge,
            driver.provider(role).unwrap(),
        )
    };
    let (source, destination) = (reader(ChainRole::Main), reader(ChainRole::Service));
    crate::relay::wait_handled(&driver, dir.path(), lane, &later).await;
    assert!(!destination.isHandled(stuck.nonce).call().await.unwrap());

    // The digests the relays will sign are the contracts' own.
    let domain = VoteDomain {
        src_chain_id: main.contracts.chain_id,
        src_bridge: main.contracts.bridge,
        dst_chain_id: service.contracts.chain_id,
        dst_bridge: service.contracts.bridge,
    };
    let key = domain.vote_key(&stuck);
    assert_eq!(
        key,
        destination.voteKey(stuck.clone()).call().await.unwrap()
    );
    let cancel_digest = domain.cancel_digest(&[key]);
    assert_eq!(
        cancel_digest,
        destination
            .cancelDigest(vec![stuck.clone()])
            .call()
            .await
            .unwrap(),
        "cancel digest: Rust and the destination agree"
    );
    let refund_digest = domain.refund_digest(key);
    assert_eq!(
        refund_digest,
        source.refundDigest(stuck.clone()).call().await.unwrap(),
        "refund digest: Rust and the source agree"
    );

    // Cancel on the destination (anyone submits two operators' signatures).
    let (op1, op2, op3) = (
        driver.operator(0).unwrap(),
        driver.operator(1).unwrap(),
        driver.operator(2).unwrap(),
    );
    let submitter = driver.user(3).unwrap();
    let cancelled = Bridge::new(
        service.contracts.bridge,
        driver
            .wallet_provider(ChainRole::Service, &submitter)
            .unwrap(),
    )
    .cancelAttested(vec![stuck.clone()], sign(cancel_digest, &[&op1, &op2]))
    // As for executeAttested, an item runs only with ITEM_GAS left and is skipped otherwise (the
    // call still succeeds): an estimate finds the skip. A relay plans the worst case; so does this.
    .gas(1_000_000)
    .send()
    .await
    .unwrap()
    .get_receipt()
    .await
    .unwrap();
    assert!(cancelled.status());
    assert_eq!(
        destination.cancelledKey(stuck.nonce).call().await.unwrap(),
        key
    );
    assert!(destination.isHandled(stuck.nonce).call().await.unwrap());
    // The source's confirmation depth past the cancel (the relays' rule before they sign).
    let cancel_block = cancelled.block_number.unwrap();
    let service_provider = driver.provider(ChainRole::Service).unwrap();
    crate::Poll::new("the cancel 3 blocks deep", Duration::from_secs(30))
        .until(async || {
            let head = service_provider.get_block_number().await.unwrap();
            if head >= cancel_block + 3 {
                Ok(())
            } else {
                Err(format!("head {head}"))
            }
        })
        .await;

    // Refund on the source, once; another operator pair signs it.
    let payer = Bridge::new(
        main.contracts.bridge,
        driver.wallet_provider(ChainRole::Main, &submitter).unwrap(),
    );
    let sigs = sign(refund_digest, &[&op1, &op3]);
    let refunded = payer
        .refund(stuck.clone(), sigs.clone())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(refunded.status());
    assert_eq!(
        driver.token_balance(ChainRole::Main, user).await.unwrap(),
        before,
        "the requester has its tokens back"
    );
    assert!(source.isRefunded(stuck.nonce).call().await.unwrap());
    let again = payer.refund(stuck.clone(), sigs).call().await;
    assert!(again.is_err(), "a second refund is refused");

    // The lane goes on past the cancelled nonce, and nothing paused.
    let after = driver
        .request_native(
            lane,
            1,
            Address::repeat_byte(0x55),
            parse_ether("1").unwrap(),
        )
        .await
        .unwrap();
    wait_handled_below(&driver, lane, after.nonce + 1, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(destination.lowerHandleNonce().call().await.unwrap() > after.nonce);
    assert!(!source.paused().call().await.unwrap());
    assert!(!destination.paused().call().await.unwrap());
    assert_eq!(
        driver
            .token_balance(ChainRole::Service, Address::repeat_byte(0x53))
            .await
            .unwrap(),
        U256::ZERO
    );
}
