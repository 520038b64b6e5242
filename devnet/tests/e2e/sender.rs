//! The relay's transaction sender against a real anvil chain: gap-free nonces under a burst,
//! escalation of a stuck transaction, refusal of a call that would revert (no nonce used), and
//! recovery from a nonce taken by another process with the same key.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::Provider;
use alloy::sol_types::SolCall;
use multibridge_chain::sender::{SendError, Sender, SenderPolicy, Tracked};
use multibridge_chain::{ChainClient, RetryPolicy};
use multibridge_contracts::bindings::Bridge::BridgeErrors;
use multibridge_contracts::{ChainRole, TestToken};
use multibridge_devnet::{Devnet, DevnetOptions, Driver};

use crate::Poll;

fn approve(spender: u8) -> Bytes {
    TestToken::approveCall {
        spender: Address::repeat_byte(spender.saturating_add(1)),
        amount: U256::from(1),
    }
    .abi_encode()
    .into()
}

async fn poll_until_mined(sender: &mut Sender, want: usize) -> Vec<Tracked> {
    let mut seen = Vec::new();
    Poll::new("not mined in time", Duration::from_secs(30))
        .every(Duration::from_millis(100))
        .until(async || {
            seen.extend(sender.poll().await.unwrap());
            let mined = seen
                .iter()
                .filter(|t| matches!(t, Tracked::Mined { .. }))
                .count();
            if mined >= want {
                Ok(())
            } else {
                Err(format!("{seen:?}"))
            }
        })
        .await;
    seen
}

/// Chains only, and a client of the service chain as the relay builds it.
struct ServiceChain {
    _dir: tempfile::TempDir,
    _devnet: Devnet,
    driver: Driver,
    chain: Arc<ChainClient>,
    metrics: multibridge_monitoring::Metrics,
}

impl ServiceChain {
    /// Operator 0's sender on the service chain under `policy`.
    async fn sender(&self, policy: SenderPolicy) -> Sender {
        Sender::new(self.chain.clone(), self.driver.operator(0).unwrap(), policy)
            .await
            .unwrap()
    }

    /// Operator 0's sender that never re-prices (`stuck_after` 600 s), on a chain that makes a
    /// block only when the test mines one.
    async fn sender_mining_by_hand(&self) -> Sender {
        let sender = self
            .sender(SenderPolicy {
                stuck_after: Duration::from_secs(600),
                ..SenderPolicy::default()
            })
            .await;
        self.mine_by_hand().await;
        sender
    }

    /// A raw JSON-RPC call to the service chain's anvil.
    async fn rpc(&self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.driver
            .provider(ChainRole::Service)
            .unwrap()
            .raw_request::<_, serde_json::Value>(method.to_owned().into(), params)
            .await
            .unwrap()
    }

    /// No block unless the test mines one (`evm_mine`) or turns interval mining back on.
    async fn mine_by_hand(&self) {
        self.rpc("evm_setIntervalMining", serde_json::json!([0]))
            .await;
        self.rpc("evm_setAutomine", serde_json::json!([false]))
            .await;
    }
}

impl ServiceChain {
    /// Requests of `method` this client sent to the node so far.
    fn requests(&self, method: &str) -> f64 {
        let prefix = "multibridge_rpc_requests_total{";
        let method = format!("method=\"{method}\"");
        self.metrics
            .render()
            .lines()
            .filter(|l| l.starts_with(prefix) && l.contains(&method))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

async fn service_chain() -> ServiceChain {
    let dir = tempfile::tempdir().unwrap();
    let devnet = Devnet::start(DevnetOptions::chains_only(dir.path()))
        .await
        .unwrap();
    let driver = Driver::new(devnet.manifest());
    let config = devnet.operator_config(0).unwrap().chains.service;
    let metrics = multibridge_monitoring::Metrics::new(&[], 1).unwrap();
    let chain = Arc::new(
        ChainClient::new(
            ChainRole::Service,
            &config,
            RetryPolicy::default(),
            metrics.chain(ChainRole::Service),
        )
        .unwrap(),
    );
    ServiceChain {
        _dir: dir,
        _devnet: devnet,
        driver,
        chain,
        metrics,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nonces_stay_gap_free_stuck_transactions_escalate_and_reverts_use_no_nonce() {
    let net = service_chain().await;
    let (driver, chain) = (&net.driver, net.chain.clone());
    let signer = driver.operator(0).unwrap();
    let token = driver.chain(ChainRole::Service).contracts.token;
    let policy = SenderPolicy {
        stuck_after: Duration::from_secs(2),
        ..SenderPolicy::default()
    };
    let mut sender = Sender::new(chain.clone(), signer.clone(), policy)
        .await
        .unwrap();
    let start = sender.next_nonce();

    // A burst: every nonce used once, none skipped.
    let mut nonces = BTreeSet::new();
    for i in 0..12u8 {
        nonces.insert(sender.send(token, approve(i)).await.unwrap().nonce);
    }
    assert_eq!(nonces, (start..start + 12).collect::<BTreeSet<_>>());
    for t in poll_until_mined(&mut sender, 12).await {
        if let Tracked::Mined { receipt, .. } = t {
            assert!(receipt.status());
        }
    }
    let provider = driver.provider(ChainRole::Service).unwrap();
    assert_eq!(
        provider
            .get_transaction_count(signer.address())
            .await
            .unwrap(),
        start + 12
    );

    // A call that would revert is refused before a nonce is used.
    let not_an_operator = driver.user(0).unwrap();
    let mut user_sender = Sender::new(chain.clone(), not_an_operator, policy)
        .await
        .unwrap();
    let before = user_sender.next_nonce();
    let request = driver
        .request_native(
            multibridge_contracts::Lane::MainToService,
            0,
            Address::repeat_byte(5),
            U256::from(1),
        )
        .await
        .unwrap();
    let call = multibridge_contracts::bindings::Bridge::handleValueTransferCall { r: request }
        .abi_encode();
    let err = user_sender
        .send(
            driver.chain(ChainRole::Service).contracts.bridge,
            call.into(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, SendError::WouldRevert(_)), "{err}");
    let decoded = match err.revert() {
        Some(alloy::transports::RpcError::ErrorResp(payload)) => {
            payload.as_decoded_interface_error::<BridgeErrors>()
        }
        _ => None,
    };
    assert!(
        matches!(decoded, Some(BridgeErrors::NotOperator(_))),
        "{decoded:?}"
    );
    assert_eq!(user_sender.next_nonce(), before, "no nonce used");

    // Another process with the same key takes the next nonce: ours is rebuilt, not skipped.
    let mut twin = Sender::new(chain.clone(), signer.clone(), policy)
        .await
        .unwrap();
    let taken = twin.send(token, approve(200)).await.unwrap();
    poll_until_mined(&mut twin, 1).await;
    let ours = sender.send(token, approve(201)).await.unwrap();
    assert_eq!(
        ours.nonce,
        taken.nonce + 1,
        "rebuilt from the chain after nonce too low"
    );
    poll_until_mined(&mut sender, 1).await;

    // Stop mining: the next transaction gets stuck, is re-sent with higher fees, and once mining
    // resumes exactly one version is mined.
    net.mine_by_hand().await;
    let stuck = sender.send(token, approve(202)).await.unwrap();
    let replaced = Poll::new("stuck transaction never replaced", Duration::from_secs(20))
        .every(Duration::from_millis(200))
        .until(
            async || match sender.poll().await.unwrap().into_iter().next() {
                Some(Tracked::Replaced { nonce, hash }) => Ok((nonce, hash)),
                other => Err(format!("last poll: {other:?}")),
            },
        )
        .await;
    assert_eq!(replaced.0, stuck.nonce);
    assert_ne!(replaced.1, stuck.hash);
    net.rpc("evm_setIntervalMining", serde_json::json!([1]))
        .await;
    let mined = poll_until_mined(&mut sender, 1).await;
    let receipt = mined
        .into_iter()
        .find_map(|t| match t {
            Tracked::Mined { receipt, .. } => Some(receipt),
            _ => None,
        })
        .unwrap();
    assert!(receipt.status());
    assert_eq!(
        receipt.transaction_hash, replaced.1,
        "the higher bid is the one mined"
    );
    assert_eq!(
        provider
            .get_transaction_count(signer.address())
            .await
            .unwrap(),
        stuck.nonce + 1,
        "the nonce was used exactly once"
    );
    assert_eq!(sender.in_flight(), 0);
}

/// A node may keep the next transaction and drop those after it (anvil does when the next does
/// not fit a block: the ones after it are "nonce too high" there and leave its pool). The
/// sender asks for the last one in flight too and sends them again at its next poll, instead of
/// once the next is mined.
#[tokio::test(flavor = "multi_thread")]
async fn transactions_dropped_behind_one_the_node_keeps_are_sent_again_once_a_poll_sees_the_block()
{
    let net = service_chain().await;
    let driver = &net.driver;
    let signer = driver.operator(0).unwrap();
    let token = driver.chain(ChainRole::Service).contracts.token;
    // No replacement in this test: only the drop check acts.
    let mut sender = net.sender_mining_by_hand().await;
    let provider = driver.provider(ChainRole::Service).unwrap();
    let start = sender.next_nonce();
    let mut sent = Vec::new();
    for i in 0..3u8 {
        sent.push(sender.send(token, approve(i)).await.unwrap());
    }
    // A block none of them fits (its gas limit is below theirs), and the last one gone from
    // the pool whatever the node made of the block.
    let limit = net
        .rpc("eth_getBlockByNumber", serde_json::json!(["latest", false]))
        .await["gasLimit"]
        .clone();
    net.rpc("evm_setBlockGasLimit", serde_json::json!(["0x5208"]))
        .await;
    net.rpc("evm_mine", serde_json::json!([])).await;
    net.rpc("evm_setBlockGasLimit", serde_json::json!([limit]))
        .await;
    let last = sent.last().unwrap().hash;
    net.rpc("anvil_dropTransaction", serde_json::json!([last]))
        .await;
    let known = async |hash| {
        provider
            .get_transaction_by_hash(hash)
            .await
            .unwrap()
            .is_some()
    };
    assert!(known(sent[0].hash).await, "the node keeps the next one");
    assert!(!known(last).await, "the last one is gone");
    // The polls see the new block once the process's shared head does (at most
    // `HEAD_FRESH_FOR` after the one the sends read): the first of them that does sends the
    // dropped ones again, although the next one is still known.
    Poll::new(
        "the dropped one was not sent again within a second of the block",
        Duration::from_secs(1),
    )
    .every(Duration::from_millis(20))
    .until(async || {
        let tracked = sender.poll().await.unwrap();
        assert!(
            tracked.is_empty(),
            "nothing mined, replaced or superseded: {tracked:?}"
        );
        if known(last).await {
            Ok(())
        } else {
            Err("still gone".to_owned())
        }
    })
    .await;
    net.rpc("evm_setIntervalMining", serde_json::json!([1]))
        .await;
    poll_until_mined(&mut sender, 3).await;
    assert_eq!(
        provider
            .get_transaction_count(signer.address())
            .await
            .unwrap(),
        start + 3,
        "every nonce used once"
    );
}

/// A stuck transaction whose bid can rise no further is re-broadcast as it was and reported
/// `AtFeeCap` (the relay counts it, `vote_transactions_total{outcome="at_fee_cap"}`), stays
/// tracked, and is mined once — at the capped bid — when the base fee comes back under it.
#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_at_its_fee_cap_is_reported_and_mined_once_the_base_fee_falls_below_it() {
    const GWEI: u128 = 1_000_000_000;
    const CAP: u128 = 5 * GWEI;
    let net = service_chain().await;
    let driver = &net.driver;
    let signer = driver.operator(0).unwrap();
    let token = driver.chain(ChainRole::Service).contracts.token;
    let policy = SenderPolicy {
        stuck_after: Duration::from_secs(1),
        fees: multibridge_chain::fees::FeePolicy {
            max_fee_per_gas: CAP,
            ..Default::default()
        },
        ..SenderPolicy::default()
    };
    let mut sender = net.sender(policy).await;
    let provider = driver.provider(ChainRole::Service).unwrap();
    net.mine_by_hand().await;
    // A known market first (an idle devnet's base fee decays toward zero): 2 gwei, so the first
    // bid (2 × base fee + tip) is under the cap and four times it is over.
    net.rpc(
        "anvil_setNextBlockBaseFeePerGas",
        serde_json::json!([format!("{:#x}", 2 * GWEI)]),
    )
    .await;
    net.rpc("evm_mine", serde_json::json!([])).await;
    let sent = sender.send(token, approve(7)).await.unwrap();
    // The next block's base fee four times the cap; empty blocks then lower it by 1/8 each, so
    // about eleven blocks later it is under the cap again.
    net.rpc(
        "anvil_setNextBlockBaseFeePerGas",
        serde_json::json!([format!("{:#x}", 4 * CAP)]),
    )
    .await;
    net.rpc("evm_mine", serde_json::json!([])).await;
    let mut seen = Vec::new();
    let capped = Poll::new("never reported at the fee cap", Duration::from_secs(20))
        .every(Duration::from_millis(200))
        .until(async || {
            let polled = sender.poll().await.unwrap();
            seen.extend(polled.iter().cloned());
            match polled
                .into_iter()
                .find(|t| matches!(t, Tracked::AtFeeCap { .. }))
            {
                Some(Tracked::AtFeeCap {
                    nonce,
                    max_fee_per_gas,
                }) => Ok((nonce, max_fee_per_gas)),
                _ => Err(format!("polls so far: {seen:?}")),
            }
        })
        .await;
    assert_eq!(capped.0, sent.nonce, "the stuck one");
    assert!(
        capped.1 <= CAP && capped.1 * 115 / 100 > CAP,
        "bids {} wei: under the cap, and a replacement's 15 % more would pass it",
        capped.1
    );
    assert!(
        !seen.iter().any(|t| matches!(t, Tracked::Mined { .. })),
        "nothing mined above the base fee: {seen:?}"
    );
    assert_eq!(sender.in_flight(), 1, "still tracked");

    net.rpc("evm_setIntervalMining", serde_json::json!([1]))
        .await;
    let receipt = Poll::new("not mined after the base fee fell", Duration::from_secs(40))
        .every(Duration::from_millis(200))
        .until(async || {
            for t in sender.poll().await.unwrap() {
                if let Tracked::Mined { nonce, receipt } = t {
                    return Ok((nonce, receipt));
                }
            }
            Err("not yet".to_owned())
        })
        .await;
    assert_eq!(receipt.0, sent.nonce);
    assert!(receipt.1.status());
    assert!(
        receipt.1.effective_gas_price <= capped.1,
        "paid {} above the cap",
        receipt.1.effective_gas_price
    );
    let block = provider
        .get_block_by_number(receipt.1.block_number.unwrap().into())
        .await
        .unwrap()
        .unwrap();
    assert!(
        u128::from(block.header.base_fee_per_gas.unwrap()) <= capped.1,
        "mined in a block whose base fee is under the bid"
    );
    assert_eq!(
        provider
            .get_transaction_count(signer.address())
            .await
            .unwrap(),
        sent.nonce + 1,
        "the nonce was used exactly once"
    );
    assert_eq!(sender.in_flight(), 0);
}

/// A round of calls (the submitter's: every pair's votes that wait, issue 54) is sent at once
/// under consecutive nonces and mined in one block. A call the node refuses in the middle (a
/// gas limit below a transaction's intrinsic gas) would leave the ones above it queued behind a
/// hole: its nonce is filled at once with a 0-value transfer to itself, so one block still takes
/// them all, and the refusal is that call's own result.
#[tokio::test(flavor = "multi_thread")]
async fn a_round_is_sent_at_once_and_a_refusal_in_it_leaves_no_hole() {
    let net = service_chain().await;
    let driver = &net.driver;
    let signer = driver.operator(0).unwrap();
    let token = driver.chain(ChainRole::Service).contracts.token;
    let mut sender = net.sender_mining_by_hand().await;
    let provider = driver.provider(ChainRole::Service).unwrap();
    let mined_in_one_block = async |from: u64, to: u64| {
        net.rpc("evm_mine", serde_json::json!([])).await;
        assert_eq!(
            provider
                .get_transaction_count(signer.address())
                .await
                .unwrap(),
            to,
            "one block took every nonce from {from}"
        );
    };

    let start = sender.next_nonce();
    let round = |sender: &Sender, gas: &[u64]| {
        gas.iter()
            .enumerate()
            .map(|(i, gas)| {
                let call = sender.call(token, approve(i as u8), U256::ZERO);
                (call, *gas, false)
            })
            .collect::<Vec<_>>()
    };
    let calls = round(&sender, &[100_000; 5]);
    let sent: Vec<u64> = sender
        .send_round(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap().nonce)
        .collect();
    assert_eq!(sent, (start..start + 5).collect::<Vec<_>>(), "in order");
    mined_in_one_block(start, start + 5).await;
    poll_until_mined(&mut sender, 5).await;

    // The third call's gas limit is below a transaction's intrinsic gas: the node refuses it.
    let start = sender.next_nonce();
    let calls = round(&sender, &[100_000, 100_000, 20_000, 100_000, 100_000]);
    let results = sender.send_round(calls).await;
    let refused = results[2].as_ref().unwrap_err();
    assert!(matches!(refused, SendError::Chain(_)), "{refused}");
    let nonces: Vec<u64> = [0, 1, 3, 4]
        .iter()
        .map(|i| results[*i].as_ref().unwrap().nonce)
        .collect();
    assert_eq!(nonces, vec![start, start + 1, start + 3, start + 4]);
    assert_eq!(
        net.chain.metrics().nonce_holes_filled.get(),
        1,
        "the refused one's nonce filled"
    );
    mined_in_one_block(start, start + 5).await;
    let filler = provider
        .get_transaction_by_sender_nonce(signer.address(), start + 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        alloy::consensus::Transaction::to(&filler),
        Some(signer.address()),
        "a transfer to itself"
    );
    assert_eq!(sender.next_nonce(), start + 5);

    // The node holds a transaction of the key at the round's first nonce that this sender does
    // not know (an earlier sequence's, bid higher): the node refuses the round's first call as
    // an underpriced replacement and takes the second. The nonce is taken, not a hole: no
    // filler replaces what holds it, and the refused call goes again at the next free nonce.
    let held = sender.next_nonce();
    let elsewhere = Address::repeat_byte(0x55);
    let key_wallet = driver.wallet_provider(ChainRole::Service, &signer).unwrap();
    let earlier = alloy::rpc::types::TransactionRequest::default()
        .from(signer.address())
        .to(elsewhere)
        .value(U256::ZERO)
        .nonce(held)
        .gas_limit(21_000)
        .max_fee_per_gas(500_000_000_000)
        .max_priority_fee_per_gas(100_000_000_000);
    let _pending = key_wallet.send_transaction(earlier).await.unwrap();
    let results = sender.send_round(round(&sender, &[100_000, 100_000])).await;
    let nonces: Vec<u64> = results.iter().map(|r| r.as_ref().unwrap().nonce).collect();
    assert_eq!(
        nonces,
        vec![held + 2, held + 1],
        "the refused call again above the taken one"
    );
    assert_eq!(
        net.chain.metrics().nonce_holes_filled.get(),
        1,
        "no filler for a nonce the node holds"
    );
    mined_in_one_block(held, held + 3).await;
    let kept = provider
        .get_transaction_by_sender_nonce(signer.address(), held)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        alloy::consensus::Transaction::to(&kept),
        Some(elsewhere),
        "the transaction that held the nonce was mined, not replaced"
    );
}

/// A transaction can be mined only in a new block: while the head stands still, polls of what is
/// in flight ask the node nothing (each key's sender read its nonce and the latest block every
/// 200 ms, five times a block at 1 s; issue 54), and the first poll after a block reads it and
/// reports the transaction mined.
#[tokio::test(flavor = "multi_thread")]
async fn polls_ask_nothing_while_the_head_stands_still_and_report_the_next_block() {
    let net = service_chain().await;
    let token = net.driver.chain(ChainRole::Service).contracts.token;
    let mut sender = net.sender_mining_by_hand().await;
    let sent = sender.send(token, approve(1)).await.unwrap();
    assert!(sender.poll().await.unwrap().is_empty(), "nothing mined yet");
    let (counts, blocks) = (
        net.requests("eth_getTransactionCount"),
        net.requests("eth_getBlockByNumber"),
    );
    assert!(counts >= 1.0, "the first poll read the key's nonce");
    for _ in 0..5 {
        assert!(sender.poll().await.unwrap().is_empty(), "nothing mined yet");
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    assert_eq!(
        (
            net.requests("eth_getTransactionCount"),
            net.requests("eth_getBlockByNumber")
        ),
        (counts, blocks),
        "polls within a second of the last, the head unmoved, ask the node nothing"
    );
    net.rpc("evm_mine", serde_json::json!([])).await;
    let tracked = poll_until_mined(&mut sender, 1).await;
    assert!(
        tracked
            .iter()
            .any(|t| matches!(t, Tracked::Mined { nonce, .. } if *nonce == sent.nonce)),
        "{tracked:?}"
    );
    assert!(
        net.requests("eth_getTransactionCount") > counts,
        "the poll after the block read the nonce"
    );
}
