//! Operator keys that never touch the disk: relays whose keys were generated inside a SoftHSM2
//! token (`multibridge hsm create-key`) vote through PKCS#11; with the token unplugged under
//! traffic they keep indexing and serving, pause sending with the reason `signer_unavailable`
//! (status, metrics) and resume when it is back, losing nothing and doubling nothing. A config
//! whose `operator.address` is not its key's is named by `config check`.

use std::time::Duration;

use alloy::primitives::{Address, utils::parse_ether};
use multibridge_contracts::Lane;
use multibridge_devnet::invariants::{assert_exactly_once, votes_per_operator, wait_all_handled};
use multibridge_devnet::scrape::metric;
use multibridge_devnet::tools::relay_binary;
use multibridge_devnet::{Devnet, DevnetOptions, DevnetSigner, Driver};

use crate::Poll;

/// Poll every relay's `series` until it equals `want`.
async fn every_relay(devnet: &Devnet, series: &str, want: f64, within: Duration) {
    for port in devnet.operator_http_ports.clone() {
        Poll::new(format!("relay :{port}: {series} != {want}"), within)
            .logs(&devnet.options.dir, 3, 20)
            .until(async || match metric(port, series).await {
                Some(v) if v == want => Ok(()),
                other => Err(format!("{series} is {other:?}")),
            })
            .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn relays_sign_in_an_hsm_and_pause_while_it_is_unplugged_losing_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let devnet = Devnet::start(DevnetOptions {
        signer: DevnetSigner::Hsm,
        ..DevnetOptions::standalone_relays(dir.path())
    })
    .await
    .unwrap();
    let driver = Driver::new(devnet.manifest());
    let hsm = devnet.hsm.clone().unwrap();
    let dev_keys: Vec<Address> = devnet
        .accounts
        .operators
        .iter()
        .map(|k| k.address())
        .collect();
    for address in &devnet.operator_addresses {
        assert!(!dev_keys.contains(address), "an HSM key, not a dev key");
    }
    let to = Address::repeat_byte(0x5a);
    let amount = parse_ether("1").unwrap();

    // Votes signed in the token execute transfers.
    for _ in 0..3 {
        driver
            .request_native(Lane::MainToService, 0, to, amount)
            .await
            .unwrap();
    }
    wait_all_handled(&driver, Lane::MainToService, 0..3, Duration::from_secs(60))
        .await
        .unwrap();
    let voters: std::collections::BTreeSet<Address> =
        votes_per_operator(&driver, Lane::MainToService)
            .await
            .unwrap()
            .keys()
            .map(|(_, op)| *op)
            .collect();
    assert!(
        voters.iter().all(|v| devnet.operator_addresses.contains(v)) && voters.len() >= 2,
        "votes come from the HSM keys: {voters:?}"
    );

    // Unplugged under traffic: sending pauses with a named reason, indexing goes on, nothing
    // is handled, every relay still serves.
    hsm.unplug().unwrap();
    for _ in 0..3 {
        driver
            .request_native(Lane::MainToService, 0, to, amount)
            .await
            .unwrap();
    }
    let paused =
        "multibridge_sending_paused{lane=\"main-to-service\",reason=\"signer_unavailable\"}";
    every_relay(&devnet, paused, 1.0, Duration::from_secs(60)).await;
    for nonce in 3..6 {
        assert_eq!(
            driver
                .handle_count(Lane::MainToService, nonce)
                .await
                .unwrap(),
            0,
            "nonce {nonce} handled while no operator could sign"
        );
    }
    for index in 0..devnet.operator_http_ports.len() {
        let out = std::process::Command::new(relay_binary().unwrap())
            .args(["status", "--json", "--config"])
            .arg(devnet.operator_config_path(index))
            .env("MULTIBRIDGE_LOG", "off")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = devnet.operator_http_ports[index];
        let failed = metric(
            port,
            "multibridge_signer_signatures_total{backend=\"pkcs11\",outcome=\"failed\"}",
        )
        .await
        .unwrap_or(0.0);
        assert!(failed >= 1.0, "relay :{port} counted its failed signatures");
        let health = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .unwrap();
        assert!(health.status().is_success(), "relay :{port} still alive");
    }
    every_relay(
        &devnet,
        "multibridge_requests_indexed_total{lane=\"main-to-service\"}",
        6.0,
        Duration::from_secs(30),
    )
    .await;

    // Back: sending resumes by itself and every transfer is handled exactly once.
    hsm.plug_in().unwrap();
    wait_all_handled(&driver, Lane::MainToService, 0..6, Duration::from_secs(90))
        .await
        .unwrap();
    every_relay(&devnet, paused, 0.0, Duration::from_secs(30)).await;
    assert_exactly_once(&driver, Lane::MainToService, 0..6)
        .await
        .unwrap();
    for ((nonce, op), n) in votes_per_operator(&driver, Lane::MainToService)
        .await
        .unwrap()
    {
        assert_eq!(n, 1, "nonce {nonce}: operator {op} voted {n} times");
    }

    // A config naming another operator's address for this key is refused by name.
    let config = std::fs::read_to_string(devnet.operator_config_path(0)).unwrap();
    let (mine, other) = (devnet.operator_addresses[0], devnet.operator_addresses[1]);
    let wrong = config
        .replace(&mine.to_string(), &other.to_string())
        .replace(&format!("{mine:#x}"), &format!("{other:#x}"));
    assert_ne!(wrong, config, "the config names its operator's address");
    let wrong_path = dir.path().join("wrong-address.toml");
    std::fs::write(&wrong_path, wrong).unwrap();
    let (conf_key, conf_value) = hsm.env();
    let out = std::process::Command::new(relay_binary().unwrap())
        .args(["config", "check", "--config"])
        .arg(&wrong_path)
        .env(conf_key, conf_value)
        .env("MULTIBRIDGE_LOG", "off")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && stderr.contains(&devnet.operator_addresses[0].to_string())
            && stderr.contains(&devnet.operator_addresses[1].to_string()),
        "config check names both addresses: {stderr}"
    );
    drop(devnet);
}
