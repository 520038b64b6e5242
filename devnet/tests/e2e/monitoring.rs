//! Monitoring on a real devnet: every DESIGN §8 metric is exported with values that match the
//! chains; `/readyz` follows a chain's reachability; a real Prometheus server scraping the relays
//! fires "lane stalled" when every relay is down and resolves it when they are back.

use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256, utils::parse_ether};
use alloy::providers::Provider;
use multibridge_contracts::{Bridge, ChainRole, Lane};
use multibridge_devnet::harness::invariants::{
    assert_exactly_once, dump_relay_logs, wait_all_handled,
};
use multibridge_devnet::{Devnet, DevnetOptions, Driver};

use crate::{Poll, eventually};

async fn get(port: u16, path: &str) -> (u16, String) {
    let resp = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .unwrap();
    let code = resp.status().as_u16();
    (code, resp.text().await.unwrap())
}

/// Value of `name{labels}` where every `(label, value)` pair matches (label order free).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (set, value) = match rest.strip_prefix('{') {
            Some(r) => r.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        labels
            .iter()
            .all(|(k, v)| set.split(',').any(|kv| kv == format!("{k}=\"{v}\"")))
            .then(|| value.trim().parse().ok())?
    })
}

/// The lane bookkeeping on the chains: `(requestNonce, lowerHandleNonce, upperHandleNonce)`.
async fn chain_nonces(driver: &Driver, lane: Lane) -> (u64, u64, u64) {
    let source = Bridge::new(
        driver.chain(lane.source()).contracts.bridge,
        driver.provider(lane.source()).unwrap(),
    );
    let destination = Bridge::new(
        driver.chain(lane.destination()).contracts.bridge,
        driver.provider(lane.destination()).unwrap(),
    );
    (
        source.requestNonce().call().await.unwrap(),
        destination.lowerHandleNonce().call().await.unwrap(),
        destination.upperHandleNonce().call().await.unwrap(),
    )
}

/// Every metric DESIGN §8 names (per lane, per chain and signer, leadership, build info).
const DESIGN_METRICS: [&str; 25] = [
    "multibridge_source_head",
    "multibridge_indexed_block",
    "multibridge_request_nonce",
    "multibridge_lower_handle_nonce",
    "multibridge_upper_handle_nonce",
    "multibridge_requests",
    "multibridge_oldest_pending_age_seconds",
    "multibridge_handle_latency_seconds_bucket",
    "multibridge_votes_sent_total",
    "multibridge_votes_skipped_total",
    "multibridge_vote_transactions_total",
    "multibridge_recovery_rounds_total",
    "multibridge_recovery_requeued_total",
    "multibridge_claims_seen_total",
    "multibridge_signer_nonce",
    "multibridge_signer_balance",
    "multibridge_gas_price_gwei",
    "multibridge_chain_unanswered_seconds",
    "multibridge_rpc_requests_total",
    "multibridge_leader",
    "multibridge_leadership_changes_total",
    "multibridge_build_info",
    "multibridge_asset_requested",
    "multibridge_asset_released",
    "multibridge_conservation_ok",
];

#[tokio::test(flavor = "multi_thread")]
async fn every_design_metric_is_exported_and_matches_the_chains() {
    let dir = tempfile::tempdir().unwrap();
    let devnet = Devnet::start(DevnetOptions::standalone_relays(dir.path()))
        .await
        .unwrap();
    let driver = Driver::new(devnet.manifest());
    let to = Address::repeat_byte(0x6d);
    let (native_out, tokens_out, native_back) = (
        parse_ether("2").unwrap(),
        parse_ether("30").unwrap(),
        parse_ether("1").unwrap(),
    );
    let mut requests = vec![
        (
            Lane::MainToService,
            driver
                .request_native(Lane::MainToService, 0, to, native_out)
                .await
                .unwrap(),
        ),
        (
            Lane::MainToService,
            driver
                .request_erc20(Lane::MainToService, 0, to, tokens_out)
                .await
                .unwrap(),
        ),
        (
            Lane::ServiceToMain,
            driver
                .request_native(Lane::ServiceToMain, 1, to, native_back)
                .await
                .unwrap(),
        ),
    ];
    requests.push((
        Lane::MainToService,
        driver
            .request_native(Lane::MainToService, 2, to, native_out)
            .await
            .unwrap(),
    ));
    for lane in Lane::ALL {
        let count = requests.iter().filter(|(l, _)| *l == lane).count() as u64;
        let nonces = 0..count;
        assert!(
            requests
                .iter()
                .all(|(l, r)| *l != lane || nonces.contains(&r.nonce))
        );
        if let Err(e) =
            wait_all_handled(&driver, lane, nonces.clone(), Duration::from_secs(60)).await
        {
            dump_relay_logs(dir.path(), 3, 20);
            panic!("{e}");
        }
        assert_exactly_once(&driver, lane, nonces).await.unwrap();
    }
    let main_token = format!("{:#x}", driver.chain(ChainRole::Main).contracts.token);
    let expected_assets = [
        (
            Lane::MainToService,
            "native".to_owned(),
            native_out * U256::from(2),
        ),
        (Lane::MainToService, main_token.clone(), tokens_out),
        (Lane::ServiceToMain, "native".to_owned(), native_back),
    ];

    for (op, port) in devnet.operator_http_ports.iter().copied().enumerate() {
        let signer = driver.operator(op).unwrap().address();
        eventually(
            format!("relay {op}: metrics match the chains"),
            Duration::from_secs(30),
            || {
                let driver = &driver;
                let expected_assets = &expected_assets;
                async move {
                    let (_, text) = get(port, "/metrics").await;
                    for name in DESIGN_METRICS {
                        if !text.lines().any(|l| l.starts_with(name)) {
                            return Err(format!("{name} missing"));
                        }
                    }
                    for lane in Lane::ALL {
                        let (request, lower, upper) = chain_nonces(driver, lane).await;
                        let l = [("lane", lane.as_str())];
                        for (name, expected) in [
                            ("multibridge_request_nonce", request),
                            ("multibridge_lower_handle_nonce", lower),
                            ("multibridge_upper_handle_nonce", upper),
                        ] {
                            let got = sample(&text, name, &l);
                            if got != Some(expected as f64) {
                                return Err(format!(
                                    "{name}{{{lane}}} = {got:?}, chain {expected}"
                                ));
                            }
                        }
                        if sample(&text, "multibridge_leader", &l) != Some(1.0) {
                            return Err(format!("standalone relay not leader on {lane}"));
                        }
                    }
                    for (lane, asset, amount) in expected_assets {
                        let l = [("lane", lane.as_str()), ("asset", asset.as_str())];
                        let amount = f64::from(*amount);
                        for (name, expected) in [
                            ("multibridge_asset_requested", amount),
                            ("multibridge_asset_released", amount),
                            ("multibridge_conservation_ok", 1.0),
                        ] {
                            let got = sample(&text, name, &l);
                            if got != Some(expected) {
                                return Err(format!("{name}{l:?} = {got:?}, want {expected}"));
                            }
                        }
                    }
                    for role in [ChainRole::Main, ChainRole::Service] {
                        let c = [("chain", role.as_str())];
                        let provider = driver.provider(role).unwrap();
                        let head = provider.get_block_number().await.unwrap() as f64;
                        let got_head = sample(&text, "multibridge_chain_head", &c).unwrap_or(0.0);
                        if got_head < head - 3.0 || got_head > head {
                            return Err(format!("{role} head {got_head} vs chain {head}"));
                        }
                        let balance = f64::from(provider.get_balance(signer).await.unwrap()) / 1e18;
                        let got = sample(&text, "multibridge_signer_balance", &c).unwrap_or(-1.0);
                        if (got - balance).abs() > 1e-9 * balance.max(1.0) {
                            return Err(format!("{role} balance {got} vs chain {balance}"));
                        }
                        let nonce = provider.get_transaction_count(signer).await.unwrap() as f64;
                        let got = sample(&text, "multibridge_signer_nonce", &c).unwrap_or(-1.0);
                        if got > 0.0 && got != nonce {
                            return Err(format!("{role} signer nonce {got} vs chain {nonce}"));
                        }
                        if sample(&text, "multibridge_gas_price_gwei", &c).unwrap_or(0.0) <= 0.0 {
                            return Err(format!("{role} gas price not read"));
                        }
                        if sample(&text, "multibridge_chain_up", &c) != Some(1.0) {
                            return Err(format!("{role} not up"));
                        }
                    }
                    Ok(())
                }
            },
        )
        .await;

        let (code, body) = get(port, "/readyz").await;
        assert_eq!(code, 200, "{body}");
        let (code, body) = get(port, "/status").await;
        assert_eq!(code, 200);
        let status: serde_json::Value = serde_json::from_str(&body).unwrap();
        let (request, lower, _) = chain_nonces(&driver, Lane::MainToService).await;
        let lane = &status["lanes"]["main-to-service"];
        assert_eq!(lane["request_nonce"], request, "{status:#}");
        assert_eq!(lane["lower_handle_nonce"], lower, "{status:#}");
        assert_eq!(lane["leader"], true);
        assert_eq!(status["readiness"]["ready"], true);
        assert_eq!(status["operator"], signer.to_string());
        assert_eq!(
            status["conservation"]["main-to-service"]["native"]["released"],
            (native_out * U256::from(2)).to_string()
        );
        assert_eq!(
            status["conservation"]["main-to-service"][main_token.as_str()]["ok"],
            true
        );
    }
}

/// `/readyz` turns not-ready (503, naming `chain:service`) while the service chain's only RPC URL
/// is blackholed, and ready again once it answers.
#[tokio::test(flavor = "multi_thread")]
async fn readyz_follows_the_reachability_of_a_chain_rpc() {
    use multibridge_devnet::harness::proxy::{ProxyMode, TcpProxy};
    let dir = tempfile::tempdir().unwrap();
    let mut devnet = Devnet::start(DevnetOptions::chains_only(dir.path()))
        .await
        .unwrap();
    let target = devnet
        .rpc_url(ChainRole::Service)
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let proxy = TcpProxy::start(target, ProxyMode::Forward).await.unwrap();
    let mut config = devnet.operator_config(0).unwrap();
    config.chains.service.rpc_urls = vec![proxy.url()];
    config.http.ready_stale_secs = 4;
    config.http.watch_interval_ms = 500;
    devnet.write_operator_config(0, &config).unwrap();
    devnet.start_relay(0).unwrap();
    let port = devnet.operator_http_ports[0];
    let readyz = |want: u16| {
        move || async move {
            let Ok(resp) = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await else {
                return Err("relay HTTP not up".to_owned());
            };
            let code = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            if code == want {
                Ok(())
            } else {
                Err(format!("{code}: {body}"))
            }
        }
    };
    eventually("ready after start", Duration::from_secs(30), readyz(200)).await;

    proxy.set_mode(ProxyMode::Blackhole);
    let cut = Instant::now();
    // Each component goes stale on its own clock (the last success of the watcher's probe, of
    // the indexer's poll): wait for both that depend on the service chain.
    let service_stale = || async move {
        let (code, body) = get(port, "/readyz").await;
        let report: serde_json::Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        let c = &report["components"];
        if code == 503
            && c["chain:service"]["ready"] == false
            && c["indexer:service-to-main"]["ready"] == false
        {
            Ok(())
        } else {
            Err(format!("{code}: {body}"))
        }
    };
    eventually(
        "service chain and its indexer not ready with the RPC blackholed",
        Duration::from_secs(30),
        service_stale,
    )
    .await;
    let took = cut.elapsed();
    let (_, body) = get(port, "/readyz").await;
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        report["components"]["chain:service"]["ready"], false,
        "{report:#}"
    );
    assert_eq!(
        report["components"]["chain:main"]["ready"], true,
        "{report:#}"
    );
    assert_eq!(
        report["components"]["indexer:service-to-main"]["ready"], false,
        "the service chain's indexer cannot read either: {report:#}"
    );
    println!(
        "not ready {:.1} s after the blackhole (stale after 4 s)",
        took.as_secs_f64()
    );

    proxy.set_mode(ProxyMode::Forward);
    let restored = Instant::now();
    eventually(
        "ready again after the RPC returned",
        Duration::from_secs(60),
        readyz(200),
    )
    .await;
    println!(
        "ready again {:.1} s after the RPC returned",
        restored.elapsed().as_secs_f64()
    );
    let (_, text) = get(port, "/metrics").await;
    assert_eq!(
        sample(&text, "multibridge_chain_up", &[("chain", "service")]),
        Some(1.0)
    );
}

async fn firing(devnet: &Devnet, alert: &str) -> Vec<String> {
    crate::firing_alerts(devnet, alert)
        .await
        .into_iter()
        .map(|mut labels| labels.remove("lane").unwrap_or_default())
        .collect()
}

/// A real Prometheus scraping the three relays with the project's rules: stopping every relay
/// fires `MultibridgeLaneStalled` for both lanes; restarting them resolves it, and a transfer made
/// while they were down is handled exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn prometheus_fires_lane_stalled_when_every_relay_stops_and_resolves_it_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut devnet = Devnet::start(DevnetOptions {
        prometheus: true,
        ..DevnetOptions::standalone_relays(dir.path())
    })
    .await
    .unwrap();
    let prometheus_url = devnet.prometheus.as_ref().unwrap().url();
    println!("prometheus {prometheus_url}");
    {
        let prometheus = devnet.prometheus.as_ref().unwrap();
        eventually(
            "prometheus scrapes all relays",
            Duration::from_secs(30),
            || async move {
                let up = prometheus
                    .query("count(multibridge_lower_handle_nonce) by (lane)")
                    .await
                    .map_err(|e| e.to_string())?;
                let all = up.len() == 2 && up.iter().all(|s| s["value"][1] == "3");
                if all { Ok(()) } else { Err(format!("{up:?}")) }
            },
        )
        .await;
    }
    assert!(firing(&devnet, "MultibridgeLaneStalled").await.is_empty());

    for op in devnet.operators() {
        devnet.relay(op).unwrap().kill().unwrap();
    }
    let stopped = Instant::now();
    let driver = Driver::new(devnet.manifest());
    let request = driver
        .request_native(
            Lane::MainToService,
            0,
            Address::repeat_byte(0x5a),
            U256::from(9),
        )
        .await
        .unwrap();
    Poll::new("lane stalled did not fire", Duration::from_secs(150))
        .every(Duration::from_secs(1))
        .until(async || {
            let mut lanes = firing(&devnet, "MultibridgeLaneStalled").await;
            lanes.sort();
            if lanes == ["main-to-service", "service-to-main"] {
                Ok(())
            } else {
                Err(format!("{lanes:?}"))
            }
        })
        .await;
    println!(
        "MultibridgeLaneStalled firing {:.0} s after the relays stopped (rule: for 1m)",
        stopped.elapsed().as_secs_f64()
    );
    let leadership = firing(&devnet, "MultibridgeLeadershipLost").await;
    assert_eq!(
        leadership.len(),
        6,
        "every (operator, lane) lost its active relay: {leadership:?}"
    );

    for op in devnet.operators() {
        devnet.start_relay(op).unwrap();
    }
    let restarted = Instant::now();
    Poll::new("lane stalled did not resolve", Duration::from_secs(60))
        .every(Duration::from_secs(1))
        .until(async || {
            let lanes = firing(&devnet, "MultibridgeLaneStalled").await;
            if lanes.is_empty() {
                Ok(())
            } else {
                Err(format!("firing for {lanes:?}"))
            }
        })
        .await;
    println!(
        "resolved {:.1} s after the relays restarted",
        restarted.elapsed().as_secs_f64()
    );
    let nonces = request.nonce..request.nonce + 1;
    wait_all_handled(
        &driver,
        Lane::MainToService,
        nonces.clone(),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_exactly_once(&driver, Lane::MainToService, nonces)
        .await
        .unwrap();
}
