//! Audit NEW-M2 and NEW-M4 (2026-11-23) on a real devnet: a threshold of operator keys executes a
//! forged 1-wei release for a nonce the source has not issued yet (inside the vote window and
//! the outflow bucket, so nothing is queued). When the genuine request gets that nonce, every
//! relay flags the execution under another payload (`multibridge_handled_mismatch_total`), and
//! the owner settles it with `multibridge admin settle`: read from the source, checked against
//! the destination's execution, queued for the release delay, where a freeze holds it until the
//! owner lifts it; then the relays execute it and the user is paid exactly once. A settlement of
//! a genuinely executed nonce, or a second one, is refused by name.

use std::process::Command;
use std::time::Duration;

use alloy::primitives::{Address, U256};
use multibridge_contracts::{ChainRole, Lane};
use multibridge_devnet::harness::scrape::metric;
use multibridge_devnet::harness::tools::relay_binary;
use multibridge_devnet::{Devnet, DevnetOptions, Driver, VoteOutcome};

use crate::eventually;

/// `multibridge admin …` with the owner's key in OWNER_KEY: (success, stdout + stderr).
fn admin(args: &[&str], owner_key: &str) -> (bool, String) {
    let out = Command::new(relay_binary().unwrap())
        .arg("admin")
        .args(args)
        .args(["--key-env", "OWNER_KEY"])
        .env("OWNER_KEY", owner_key)
        .env("MULTIBRIDGE_LOG", "off")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_execution_is_flagged_and_the_owner_settles_the_genuine_request() {
    let dir = tempfile::tempdir().unwrap();
    // Without guardians: they would pause both bridges at the forged execution (the guardian
    // test covers that); this test is about the owner's settlement of a nonce.
    let devnet = Devnet::start(DevnetOptions {
        guardians: false,
        ..DevnetOptions::standalone_relays(dir.path())
    })
    .await
    .unwrap();
    let driver = Driver::new(devnet.manifest());
    let lane = Lane::MainToService;
    let config = devnet.operator_config_path(0);
    let config = config.to_str().unwrap();
    let owner_key = driver.manifest().owner.private_key.clone();

    // Operators 0 and 1 (the threshold) forge nonce 2 before the source has issued it: by an
    // attested batch, so the settlement needs the window's attested executions from the logs
    // (the bridge checks them against its record); nonce 5 forged by votes in the same window
    // is no attested execution.
    let thief = Address::repeat_byte(0x7f);
    let forged = driver.forged_native_request(lane, 2, thief, U256::from(1));
    assert_eq!(driver.attest(lane, &[0, 1], &[forged]).await.unwrap(), 1);
    let forged_by_votes = driver.forged_native_request(lane, 5, thief, U256::from(1));
    assert!(matches!(
        driver.vote(lane, 0, &forged_by_votes).await.unwrap(),
        VoteOutcome::Recorded { .. }
    ));
    assert!(matches!(
        driver.vote(lane, 1, &forged_by_votes).await.unwrap(),
        VoteOutcome::Executed { .. }
    ));
    assert_eq!(
        driver
            .native_balance(ChainRole::Service, thief)
            .await
            .unwrap(),
        U256::from(2)
    );

    // The genuine requests 0, 1 and 2.
    let user = Address::repeat_byte(0x51);
    let amount = U256::from(10u64).pow(U256::from(17));
    let genuine = driver
        .request_native_burst(lane, 0, user, amount, 3)
        .await
        .unwrap();
    assert_eq!(genuine[2].nonce, 2);
    eventually(
        "nonces 0 and 1 handled",
        Duration::from_secs(60),
        async || {
            let paid = driver
                .native_balance(ChainRole::Service, user)
                .await
                .unwrap();
            if paid == amount * U256::from(2) {
                Ok(())
            } else {
                Err(format!("{paid}"))
            }
        },
    )
    .await;
    let series = format!("multibridge_handled_mismatch_total{{lane=\"{lane}\"}}");
    for port in &devnet.operator_http_ports {
        eventually(
            format!("relay {port} flags the forged execution"),
            Duration::from_secs(60),
            async || match metric(*port, &series).await {
                Some(v) if v >= 1.0 => Ok(()),
                other => Err(format!("{series} = {other:?}")),
            },
        )
        .await;
    }

    // Not forged: refused by name, nothing sent.
    let (ok, out) = admin(
        &[
            "settle",
            "--config",
            config,
            "--lane",
            "main-to-service",
            "--nonce",
            "1",
        ],
        &owner_key,
    );
    assert!(
        !ok && out.contains("executed with the genuine payload"),
        "{out}"
    );
    // A stranger cannot settle.
    let stranger_key = driver.manifest().users[3].private_key.clone();
    let (ok, out) = admin(
        &[
            "settle",
            "--config",
            config,
            "--lane",
            "main-to-service",
            "--nonce",
            "2",
        ],
        &stranger_key,
    );
    assert!(!ok && out.contains("NotOwner"), "{out}");

    let (ok, out) = admin(
        &[
            "settle",
            "--config",
            config,
            "--lane",
            "main-to-service",
            "--nonce",
            "2",
        ],
        &owner_key,
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("forged payload") && out.contains("queued"),
        "{out}"
    );
    // Frozen before it is due: nobody executes it.
    let (ok, out) = admin(
        &[
            "freeze-release",
            "--config",
            config,
            "--lane",
            "main-to-service",
            "--nonce",
            "2",
        ],
        &owner_key,
    );
    assert!(ok, "{out}");
    let (ok, out) = admin(
        &[
            "settle",
            "--config",
            config,
            "--lane",
            "main-to-service",
            "--nonce",
            "2",
        ],
        &owner_key,
    );
    assert!(!ok && out.contains("AlreadySettled"), "{out}");
    // Wait until it is due and two upkeep ticks (5 s each) have passed on the destination.
    let bridge = multibridge_contracts::Bridge::new(
        driver.chain(ChainRole::Service).contracts.bridge,
        driver.provider(ChainRole::Service).unwrap(),
    );
    let due = bridge.queuedRelease(2).call().await.unwrap().releaseAt;
    assert!(due > 0, "queued");
    eventually(
        "the settled release is due",
        Duration::from_secs(60),
        async || {
            let now = driver.latest_block_time(ChainRole::Service).await.unwrap();
            if now > due + 10 {
                Ok(())
            } else {
                Err(format!("block time {now}, due {due}"))
            }
        },
    )
    .await;
    assert_eq!(
        driver
            .native_balance(ChainRole::Service, user)
            .await
            .unwrap(),
        amount * U256::from(2),
        "a frozen release is not executed, even once due"
    );
    let (ok, out) = admin(
        &[
            "unfreeze-release",
            "--config",
            config,
            "--lane",
            "main-to-service",
            "--nonce",
            "2",
        ],
        &owner_key,
    );
    assert!(ok, "{out}");
    eventually(
        "the settled release paid",
        Duration::from_secs(60),
        async || {
            let paid = driver
                .native_balance(ChainRole::Service, user)
                .await
                .unwrap();
            if paid == amount * U256::from(3) {
                Ok(())
            } else {
                Err(format!("{paid}"))
            }
        },
    )
    .await;
    assert_eq!(
        bridge.queuedRelease(2).call().await.unwrap().releaseAt,
        0,
        "executed once: no longer queued"
    );
    assert_eq!(
        driver
            .native_balance(ChainRole::Service, thief)
            .await
            .unwrap(),
        U256::from(2),
        "the forgeries took their 1 wei each, nothing more"
    );
}
