//! The guardian (issue 38): a threshold of operator keys forges a release the source never
//! requested — large enough that the destination queues it for the release delay. Every
//! relay's guardian (its own pauser key) sees it at the destination's head and pauses both
//! bridges within two blocks, the forged queued release is frozen, nothing is released after
//! the pause, and no guardian unpauses: once the owner resumes, the same breach is not acted on
//! again — not when a user's request later takes the forged nonce and the conservation scan,
//! matching releases by nonce, finds the forged release paying it (audit A3-M2, the owner's
//! resume overruled) — and the frozen release still cannot run.

use std::collections::HashSet;
use std::time::Duration;

use alloy::network::TransactionResponse as _;
use alloy::primitives::{Address, U256, utils::parse_ether};
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use multibridge_contracts::bindings::Bridge;
use multibridge_contracts::{ChainRole, Lane};
use multibridge_devnet::harness::accounts::guardian_signer;
use multibridge_devnet::harness::invariants::wait_handled_below;
use multibridge_devnet::harness::scrape::metric;
use multibridge_devnet::{Devnet, DevnetOptions, Driver, VoteOutcome};

use crate::eventually;

pub(crate) async fn paused(driver: &Driver, role: ChainRole) -> bool {
    let bridge = Bridge::new(
        driver.chain(role).contracts.bridge,
        driver.provider(role).unwrap(),
    );
    bridge.paused().call().await.unwrap()
}

/// The owner pauses the bridge on `role` (mined).
pub(crate) async fn owner_pauses(driver: &Driver, role: ChainRole) {
    let owner = driver.owner().unwrap();
    let bridge = Bridge::new(
        driver.chain(role).contracts.bridge,
        driver.wallet_provider(role, &owner).unwrap(),
    );
    multibridge_devnet::harness::tx::confirm("pause", bridge.pause().send().await)
        .await
        .unwrap();
}

/// The blocks and senders of the bridge's `PausedChanged(true)` events on `role` from `from`.
pub(crate) async fn pauses(driver: &Driver, role: ChainRole, from: u64) -> Vec<(u64, Address)> {
    let provider = driver.provider(role).unwrap();
    let filter = Filter::new()
        .address(driver.chain(role).contracts.bridge)
        .event_signature(Bridge::PausedChanged::SIGNATURE_HASH)
        .from_block(from);
    let mut out = Vec::new();
    for log in provider.get_logs(&filter).await.unwrap() {
        let event = log
            .log_decode::<Bridge::PausedChanged>()
            .unwrap()
            .inner
            .data;
        if !event.paused {
            continue;
        }
        let tx = provider
            .get_transaction_by_hash(log.transaction_hash.unwrap())
            .await
            .unwrap()
            .unwrap();
        out.push((log.block_number.unwrap(), tx.from()));
    }
    out
}

/// Assert that the destination was paused at most two blocks after the forged execution; if
/// not, print every relay's guardian lines first (when each saw it, confirmed it, sent the
/// pause and after how long).
pub(crate) fn within_two_blocks(dir: &std::path::Path, forged_block: u64, pause_block: u64) {
    if pause_block <= forged_block + 2 {
        return;
    }
    for (name, log) in multibridge_devnet::harness::invariants::relay_logs(dir, 0) {
        let lines: Vec<_> = log
            .lines()
            .filter(|l| l.contains("guardian") && !l.contains("DEBUG"))
            .take(30)
            .collect();
        eprintln!("--- {name}: guardian lines\n{}", lines.join("\n"));
    }
    panic!("forged in block {forged_block}, paused in block {pause_block}: more than two blocks");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_release_is_paused_by_the_guardians_within_two_blocks_and_frozen() {
    let dir = tempfile::tempdir().unwrap();
    let devnet = Devnet::start(DevnetOptions {
        relays: true,
        ..DevnetOptions::new(dir.path())
    })
    .await
    .unwrap();
    let driver = Driver::new(devnet.manifest());
    let lane = Lane::MainToService;
    let guardians: HashSet<Address> = (0..3)
        .map(|i| guardian_signer(i, 0).unwrap().address())
        .collect();

    // A genuine transfer goes through and pauses nothing.
    let user = Address::repeat_byte(0x51);
    let genuine = driver
        .request_native_burst(lane, 0, user, parse_ether("1").unwrap(), 1)
        .await
        .unwrap();
    wait_handled_below(&driver, lane, genuine[0].nonce + 1, Duration::from_secs(60))
        .await
        .unwrap();
    for port in &devnet.operator_http_ports {
        let series = "multibridge_guardian_ready{chain=\"service\"}";
        eventually(
            format!("relay {port}: its guardian is a pauser"),
            Duration::from_secs(30),
            async || match metric(*port, series).await {
                Some(1.0) => Ok(()),
                other => Err(format!("{series} = {other:?}")),
            },
        )
        .await;
    }
    assert!(!paused(&driver, ChainRole::Service).await);

    // Operators 0 and 1 (the threshold) forge 600 coins (≥ the devnet's 500-coin delay bound:
    // queued for 10 s) at the next nonce, which the source has not assigned.
    let main = driver.chain(ChainRole::Main).clone();
    let source = Bridge::new(
        main.contracts.bridge,
        driver.provider(ChainRole::Main).unwrap(),
    );
    let nonce = source.requestNonce().call().await.unwrap();
    let thief = Address::repeat_byte(0x7f);
    let forged = driver.forged_native_request(lane, nonce, thief, parse_ether("600").unwrap());
    assert!(matches!(
        driver.vote(lane, 0, &forged).await.unwrap(),
        VoteOutcome::Recorded { .. }
    ));
    let VoteOutcome::Executed { tx } = driver.vote(lane, 1, &forged).await.unwrap() else {
        panic!("the threshold's second vote executes the forged payload");
    };
    let service = driver.provider(ChainRole::Service).unwrap();
    let forged_block = service
        .get_transaction_receipt(tx)
        .await
        .unwrap()
        .unwrap()
        .block_number
        .unwrap();
    let destination = Bridge::new(
        driver.chain(ChainRole::Service).contracts.bridge,
        service.clone(),
    );
    let queued = destination.queuedRelease(nonce).call().await.unwrap();
    assert!(queued.releaseAt != 0, "the forged release is queued");

    // Both bridges paused, by guardian keys, the destination within two blocks.
    eventually("both bridges paused", Duration::from_secs(30), async || {
        if paused(&driver, ChainRole::Service).await && paused(&driver, ChainRole::Main).await {
            Ok(())
        } else {
            Err("not yet".into())
        }
    })
    .await;
    let on_destination = pauses(&driver, ChainRole::Service, forged_block).await;
    let (pause_block, by) = on_destination[0];
    eprintln!("forged in block {forged_block}; destination paused in block {pause_block} by {by}");
    assert!(
        guardians.contains(&by),
        "paused by {by}, not a guardian key"
    );
    within_two_blocks(dir.path(), forged_block, pause_block);
    assert!(
        pauses(&driver, ChainRole::Main, 0)
            .await
            .iter()
            .all(|(_, by)| guardians.contains(by)),
        "the main bridge is paused by a guardian too"
    );

    // The forged queued release is frozen by a guardian.
    eventually(
        "the forged release frozen",
        Duration::from_secs(30),
        async || {
            let filter = Filter::new()
                .address(driver.chain(ChainRole::Service).contracts.bridge)
                .event_signature(Bridge::QueuedReleaseFrozen::SIGNATURE_HASH)
                .from_block(forged_block);
            let logs = service.get_logs(&filter).await.unwrap();
            let frozen = logs.iter().any(|l| {
                let e = l
                    .log_decode::<Bridge::QueuedReleaseFrozen>()
                    .unwrap()
                    .inner
                    .data;
                e.nonce == nonce && e.frozen && guardians.contains(&e.by)
            });
            if frozen {
                Ok(())
            } else {
                Err(format!("{} freeze events", logs.len()))
            }
        },
    )
    .await;

    // Every guardian raised the alarm.
    for port in &devnet.operator_http_ports {
        for reason in ["forged_release"] {
            let series =
                format!("multibridge_guardian_alarms_total{{lane=\"{lane}\",reason=\"{reason}\"}}");
            eventually(
                format!("relay {port}: {reason} alarm"),
                Duration::from_secs(60),
                async || match metric(*port, &series).await {
                    Some(v) if v >= 1.0 => Ok(()),
                    other => Err(format!("{series} = {other:?}")),
                },
            )
            .await;
        }
    }
    // The guardians that sent a pause counted how long after their sighting they sent it.
    let mut reactions = 0.0;
    for port in &devnet.operator_http_ports {
        let count = "multibridge_guardian_reaction_seconds_count{chain=\"service\"}";
        let sum = "multibridge_guardian_reaction_seconds_sum{chain=\"service\"}";
        let (n, total) = (metric(*port, count).await, metric(*port, sum).await);
        eprintln!(
            "relay {port}: pauses of the destination sent {n:?}, seconds after the sighting {total:?}"
        );
        reactions += n.unwrap_or(0.0);
    }
    assert!(
        reactions >= 1.0,
        "no guardian counted the reaction time of its pause"
    );

    // Nothing released after the pause: the delay passes, the queued release cannot run, and
    // the destination handles nothing more.
    let due = queued.releaseAt;
    eventually(
        "the release delay passed",
        Duration::from_secs(60),
        async || {
            let now = service
                .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
                .await
                .unwrap()
                .unwrap()
                .header
                .timestamp;
            if now > due {
                Ok(())
            } else {
                Err(format!("{now} <= {due}"))
            }
        },
    )
    .await;
    let user_key = driver.user(2).unwrap();
    let as_user = Bridge::new(
        driver.chain(ChainRole::Service).contracts.bridge,
        driver
            .wallet_provider(ChainRole::Service, &user_key)
            .unwrap(),
    );
    assert!(
        as_user.executeQueuedRelease(nonce).call().await.is_err(),
        "a queued release cannot run while paused"
    );
    let handled_after = service
        .get_logs(
            &Filter::new()
                .address(driver.chain(ChainRole::Service).contracts.bridge)
                .event_signature(Bridge::HandleValueTransfer::SIGNATURE_HASH)
                .from_block(pause_block + 1),
        )
        .await
        .unwrap();
    assert!(
        handled_after.is_empty(),
        "handled after the pause: {handled_after:?}"
    );
    assert_eq!(
        driver
            .native_balance(ChainRole::Service, thief)
            .await
            .unwrap(),
        U256::ZERO
    );

    // The owner resumes: no guardian pauses again for the same breach, and the freeze holds.
    let owner = driver.owner().unwrap();
    for role in [ChainRole::Service, ChainRole::Main] {
        let bridge = Bridge::new(
            driver.chain(role).contracts.bridge,
            driver.wallet_provider(role, &owner).unwrap(),
        );
        bridge
            .unpause()
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
    }
    let resumed_at = service.get_block_number().await.unwrap();
    eventually("three more blocks", Duration::from_secs(30), async || {
        let now = service.get_block_number().await.unwrap();
        if now >= resumed_at + 3 {
            Ok(())
        } else {
            Err(format!("{now}"))
        }
    })
    .await;
    assert!(
        !paused(&driver, ChainRole::Service).await,
        "a guardian paused again"
    );
    assert!(
        !paused(&driver, ChainRole::Main).await,
        "a guardian paused again"
    );
    let err = as_user
        .executeQueuedRelease(nonce)
        .call()
        .await
        .expect_err("the frozen release stays frozen after the resume");
    assert!(
        err.as_decoded_interface_error::<Bridge::BridgeErrors>()
            .is_some_and(|e| matches!(e, Bridge::BridgeErrors::ReleaseFrozen(_))),
        "{err}"
    );

    // A user's request takes the forged nonce: the conservation scan, matching releases by
    // nonce, finds that the forged release pays none of it — the same breach, acted on already:
    // nobody pauses again; the next request is handled as usual.
    let voided = driver
        .request_native_burst(lane, 1, user, parse_ether("1").unwrap(), 1)
        .await
        .unwrap();
    assert_eq!(
        voided[0].nonce, nonce,
        "the user's request takes the forged nonce"
    );
    for port in &devnet.operator_http_ports {
        let series = format!("multibridge_conservation_nonces{{lane=\"{lane}\",state=\"forged\"}}");
        eventually(
            format!("relay {port}: the forged release is matched with the request it voided"),
            Duration::from_secs(60),
            async || match metric(*port, &series).await {
                Some(1.0) => Ok(()),
                other => Err(format!("{series} = {other:?}")),
            },
        )
        .await;
    }
    let after = driver
        .request_native_burst(lane, 1, user, parse_ether("1").unwrap(), 1)
        .await
        .unwrap();
    wait_handled_below(&driver, lane, after[0].nonce + 1, Duration::from_secs(60))
        .await
        .unwrap();
    for role in [ChainRole::Service, ChainRole::Main] {
        assert!(
            !paused(&driver, role).await,
            "a guardian paused {role} again after the owner's resume"
        );
    }
    for port in &devnet.operator_http_ports {
        let series =
            format!("multibridge_guardian_alarms_total{{lane=\"{lane}\",reason=\"conservation\"}}");
        assert_eq!(
            metric(*port, &series).await,
            Some(0.0),
            "relay {port}: the breach was acted on once, as a forged release"
        );
    }
}
