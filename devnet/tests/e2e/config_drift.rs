//! Configuration drift (issue 38): two relays compare the bridges with a desired-state file,
//! the third has none and watches the owner calls. The owner raises the service bridge's
//! threshold behind the file's back: a real Prometheus with the project's rules fires
//! `MultibridgeConfigDrift` for that item, and `MultibridgeAdminChange` naming the transaction.

use std::time::Duration;

use alloy::primitives::U256;
use multibridge_contracts::ChainRole;
use multibridge_contracts::bindings::Bridge;
use multibridge_devnet::harness::scrape::metric;
use multibridge_devnet::{Devnet, DevnetOptions, Driver};

use crate::eventually;

#[tokio::test(flavor = "multi_thread")]
async fn a_threshold_changed_behind_the_desired_file_fires_the_drift_alert_and_names_the_transaction()
 {
    let dir = tempfile::tempdir().unwrap();
    let mut devnet = Devnet::start(DevnetOptions {
        prometheus: true,
        ..DevnetOptions::standalone_relays(dir.path())
    })
    .await
    .unwrap();
    let desired = dir.path().join("bridge-config.toml");
    std::fs::write(
        &desired,
        "[main]\nthreshold = 2\n\n[service]\nthreshold = 2\n",
    )
    .unwrap();
    for index in 0..3 {
        let mut config = devnet.operator_config(index).unwrap();
        if index < 2 {
            config.admin.desired = Some(desired.clone());
            config.admin.check_every_secs = 2;
        }
        devnet.write_operator_config(index, &config).unwrap();
        devnet.relay(index).unwrap().kill().unwrap();
        devnet.start_relay(index).unwrap();
    }
    let driver = Driver::new(devnet.manifest());
    let port = devnet.operator_http_ports[0];
    let series = "multibridge_config_drift{chain=\"service\",item=\"threshold\"}";
    eventually(
        "the first comparison: no drift",
        Duration::from_secs(60),
        async || match metric(port, series).await {
            Some(0.0) => Ok(()),
            other => Err(format!("{series} = {other:?}")),
        },
    )
    .await;

    // Relay 3 reads owner calls from the head it saw at its start: it must be up before the
    // call (under the suite's load it once started after it, and the call was history to it).
    crate::relay_ready(devnet.operator_http_ports[2], Duration::from_secs(60)).await;

    // The owner raises the service bridge's threshold to 3 (of 3 operators).
    let owner = driver.owner().unwrap();
    let bridge = Bridge::new(
        driver.chain(ChainRole::Service).contracts.bridge,
        driver.wallet_provider(ChainRole::Service, &owner).unwrap(),
    );
    let receipt = bridge
        .setThreshold(U256::from(3))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());
    let tx = receipt.transaction_hash.to_string();

    eventually(
        "relay 1 measures the drift",
        Duration::from_secs(30),
        async || match metric(port, series).await {
            Some(1.0) => Ok(()),
            other => Err(format!("{series} = {other:?}")),
        },
    )
    .await;
    let change = format!(
        "multibridge_admin_change_time{{chain=\"service\",event=\"ThresholdChanged\",tx=\"{tx}\"}}"
    );
    eventually(
        "relay 3 (no desired file) names the transaction",
        Duration::from_secs(30),
        async || match metric(devnet.operator_http_ports[2], &change).await {
            Some(t) if t > 0.0 => Ok(()),
            other => Err(format!("{change} = {other:?}")),
        },
    )
    .await;
    eventually(
        "Prometheus fires MultibridgeConfigDrift and MultibridgeAdminChange",
        Duration::from_secs(150),
        async || {
            let drift = crate::firing_alerts(&devnet, "MultibridgeConfigDrift").await;
            let change = crate::firing_alerts(&devnet, "MultibridgeAdminChange").await;
            let drift_ok = drift.iter().any(|l| {
                l.get("chain").map(String::as_str) == Some("service")
                    && l.get("item").map(String::as_str) == Some("threshold")
            });
            let change_ok = change.iter().any(|l| {
                l.get("tx") == Some(&tx) && l.get("chain").map(String::as_str) == Some("service")
            });
            if drift_ok && change_ok {
                Ok(())
            } else {
                Err(format!("drift {drift:?}, change {change:?}"))
            }
        },
    )
    .await;
    // The main bridge, as desired, shows no drift.
    assert_eq!(
        metric(
            port,
            "multibridge_config_drift{chain=\"main\",item=\"threshold\"}"
        )
        .await,
        Some(0.0)
    );
}
