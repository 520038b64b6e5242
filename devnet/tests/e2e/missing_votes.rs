//! Missing votes (issue 38): with one operator's relay stopped on a threshold-of-all lane, the
//! other relays name that operator — in `/status` with the nonces it has not voted, and in
//! `multibridge_operator_missing_votes{operator}` — and only that operator; once its relay is
//! back, the requests are handled and the figures fall back to 0. Every operator's series is
//! there at 0 from the start.

use std::time::Duration;

use alloy::primitives::{Address, U256};
use multibridge_contracts::Lane;
use multibridge_devnet::harness::invariants::{assert_exactly_once, wait_all_handled};
use multibridge_devnet::harness::scrape::metric;
use multibridge_devnet::{Devnet, DevnetOptions, Driver};

const OPERATORS: usize = 3;

fn missing_series(operator: Address) -> String {
    format!(
        "multibridge_operator_missing_votes{{lane=\"main-to-service\",operator=\"{operator}\"}}"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_whose_relay_is_down_is_named_with_the_nonces_it_has_not_voted() {
    let dir = tempfile::tempdir().unwrap();
    let mut devnet = Devnet::start(DevnetOptions {
        threshold: 3,
        ..DevnetOptions::standalone_relays(dir.path())
    })
    .await
    .unwrap();
    let driver = Driver::new(devnet.manifest());
    let lane = Lane::MainToService;
    let port = devnet.operator_http_ports[0];
    crate::relay_ready(port, Duration::from_secs(60)).await;
    let down = driver.operator(2).unwrap().address();
    let up = driver.operator(1).unwrap().address();
    // Every operator has its series from the first rounds, at 0, before any request is late
    // (a dashboard shows 0, not "no data").
    crate::Poll::new(
        "no missing-votes series at 0 before any request",
        Duration::from_secs(30),
    )
    .until(async || {
        for operator in [up, down] {
            match metric(port, &missing_series(operator)).await {
                Some(0.0) => {}
                other => return Err(format!("{operator}: {other:?}")),
            }
        }
        Ok(())
    })
    .await;
    devnet.relay(2).unwrap().kill().unwrap();

    let requests = driver
        .request_native_burst(lane, 0, Address::repeat_byte(0x5e), U256::from(1_000), 3)
        .await
        .unwrap();
    let nonces: Vec<u64> = requests.iter().map(|r| r.nonce).collect();
    // Named once the requests are older than the bound (15 s) and the watcher looked again.
    crate::Poll::new(
        "operator 3 never named as missing votes",
        Duration::from_secs(60),
    )
    .logs(devnet.dir(), OPERATORS, 30)
    .until(async || {
        let status: serde_json::Value = reqwest::get(format!("http://127.0.0.1:{port}/status"))
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let lanes = status["lanes"]["main-to-service"]["missing_votes"].clone();
        let entry = lanes
            .as_array()
            .and_then(|a| {
                a.iter().find(|m| {
                    m["operator"]
                        .as_str()
                        .is_some_and(|o| o.eq_ignore_ascii_case(&down.to_string()))
                })
            })
            .cloned()
            .ok_or_else(|| format!("no entry for {down}: {lanes}"))?;
        let listed: Vec<u64> = entry["nonces"]
            .as_array()
            .map(|a| a.iter().filter_map(serde_json::Value::as_u64).collect())
            .unwrap_or_default();
        if listed == nonces {
            Ok(())
        } else {
            Err(format!("listed {listed:?}, want {nonces:?}: {lanes}"))
        }
    })
    .await;
    assert_eq!(metric(port, &missing_series(down)).await, Some(3.0));
    assert_eq!(
        metric(port, &missing_series(up)).await,
        Some(0.0),
        "an operator that voted is not named"
    );

    devnet.start_relay(2).unwrap();
    let range = nonces[0]..nonces[2] + 1;
    wait_all_handled(&driver, lane, range.clone(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_exactly_once(&driver, lane, range).await.unwrap();
    crate::Poll::new(
        "operator 3 still named once it voted",
        Duration::from_secs(30),
    )
    .until(async || match metric(port, &missing_series(down)).await {
        Some(0.0) => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .await;
}
