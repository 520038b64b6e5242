//! `multibridge transfer` and `multibridge status` as a user and an operator run them, against
//! a devnet with relays.

use std::process::Command;

use std::time::Duration;

use alloy::primitives::{Address, U256, utils::parse_ether};
use alloy::providers::Provider;
use multibridge_contracts::ChainRole;
use multibridge_devnet::harness::tools::relay_binary;
use multibridge_devnet::{Devnet, DevnetOptions, Driver};

/// Run the `multibridge` CLI with `USER_KEY` set to `key`: (success, stdout, stderr).
pub(crate) fn multibridge(args: &[&str], key: &str) -> (bool, String, String) {
    let out = Command::new(relay_binary().unwrap())
        .args(args)
        .env("USER_KEY", key)
        .env("MULTIBRIDGE_LOG", "off")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_transfers_and_follows_it_and_status_shows_the_lanes() {
    let dir = tempfile::tempdir().unwrap();
    let devnet = Devnet::start(DevnetOptions::standalone_relays(dir.path()))
        .await
        .unwrap();
    let driver = Driver::new(devnet.manifest());
    let config = devnet.operator_config_path(0);
    let config = config.to_str().unwrap();
    let user_key = driver.manifest().users[0].private_key.clone();
    let to = Address::repeat_byte(0x77);
    let to_s = to.to_string();

    // `multibridge transfer` on main-to-service to `to` as user 0, with `extra` arguments.
    let transfer_to = |to: &str, extra: &[&str]| {
        let mut args = vec![
            "transfer",
            "--config",
            config,
            "--lane",
            "main-to-service",
            "--to",
            to,
        ];
        args.extend_from_slice(extra);
        args.extend(["--key-env", "USER_KEY"]);
        multibridge(&args, &user_key)
    };

    let (ok, out, err) = transfer_to(&to_s, &["--amount", "0.5", "--json"]);
    assert!(ok, "{out}{err}");
    let native: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(native["nonce"], 0);
    assert!(native["handle_tx"].is_string(), "{native}");
    assert_eq!(
        driver.native_balance(ChainRole::Service, to).await.unwrap(),
        parse_ether("0.5").unwrap()
    );

    let token = driver.manifest().main.contracts.token.to_string();
    let (ok, out, err) = transfer_to(&to_s, &["--amount", "12.25", "--token", &token]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("requested: nonce 1"), "{out}");
    assert!(out.contains("handled: nonce 1"), "{out}");
    assert_eq!(
        driver.token_balance(ChainRole::Service, to).await.unwrap(),
        parse_ether("12.25").unwrap()
    );

    // A refused request is named and nothing is spent on it.
    let (ok, out, err) = transfer_to(&to_s, &["--amount", "0"]);
    assert!(!ok);
    assert!(
        err.contains("refuses the request") && err.contains("ZeroAmount"),
        "{out}{err}"
    );

    let (ok, out, err) = multibridge(&["status", "--config", config, "--json"], "");
    assert!(ok, "{out}{err}");
    let lanes: serde_json::Value = serde_json::from_str(&out).unwrap();
    let m2s = lanes
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["lane"] == "main-to-service")
        .unwrap();
    assert_eq!(m2s["request_nonce"], 2);
    assert_eq!(m2s["lower_handle_nonce"], 2);
    assert_eq!(m2s["pending"], 0);
    let (ok, table, _) = multibridge(&["status", "--config", config], "");
    assert!(
        ok && table.contains("main-to-service") && table.contains("pending"),
        "{table}"
    );

    // A large transfer (the devnet holds releases of 500 or more for 10 s): the user is told
    // the release is held back and when it will be paid.
    let large = Address::repeat_byte(0x78);
    let (ok, out, err) = transfer_to(&large.to_string(), &["--amount", "600"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("release held back"), "{out}");
    assert_eq!(
        driver
            .native_balance(ChainRole::Service, large)
            .await
            .unwrap(),
        U256::ZERO,
        "paid before the release delay"
    );
    crate::Poll::new(
        "the held-back release was never paid",
        Duration::from_secs(60),
    )
    .until(async || {
        let paid = driver
            .native_balance(ChainRole::Service, large)
            .await
            .unwrap();
        if paid == parse_ether("600").unwrap() {
            Ok(())
        } else {
            Err(format!("paid {paid}"))
        }
    })
    .await;

    // An NFT: `--token <collection> --token-id N` moves that id; the same id arrives.
    let nft = driver.manifest().main.contracts.nft.to_string();
    let id = multibridge_devnet::harness::deploy::user_nft_ids(0)[0];
    let nft_transfer = |id: String, token: &str| {
        transfer_to(&to_s, &["--token", token, "--token-id", &id, "--json"])
    };
    let (ok, out, err) = nft_transfer(id.to_string(), &nft);
    assert!(ok, "{out}{err}");
    let moved: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(moved["handle_tx"].is_string(), "{moved}");
    assert_eq!(
        driver.nft_owner(ChainRole::Service, id).await.unwrap(),
        Some(to),
        "the same id arrived"
    );
    // Named before anything is sent: an id the user does not hold (any more), an ERC-20 given
    // a token id, an NFT given an amount.
    let nonce_before = driver
        .provider(ChainRole::Main)
        .unwrap()
        .get_transaction_count(driver.user(0).unwrap().address())
        .await
        .unwrap();
    let (ok, _, err) = nft_transfer(id.to_string(), &nft);
    assert!(
        !ok && err.contains("is held by") && err.contains("nothing was sent"),
        "{err}"
    );
    let (ok, _, err) = nft_transfer("1".into(), &token);
    assert!(
        !ok && err.contains("give --amount instead of --token-id"),
        "{err}"
    );
    let (ok, _, err) = transfer_to(&to_s, &["--token", &nft, "--amount", "1"]);
    assert!(
        !ok && err.contains("give --token-id instead of --amount"),
        "{err}"
    );
    let (ok, _, err) = transfer_to(&to_s, &["--token-id", "1"]);
    assert!(
        !ok && err.contains("--token"),
        "clap names the missing --token: {err}"
    );
    assert_eq!(
        driver
            .provider(ChainRole::Main)
            .unwrap()
            .get_transaction_count(driver.user(0).unwrap().address())
            .await
            .unwrap(),
        nonce_before,
        "no refused transfer sent a transaction"
    );
}
