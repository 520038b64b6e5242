//! RPC health (issue 38): an endpoint that answers but has stopped following its chain is
//! demoted. Every relay's service-chain endpoints are the live node (behind a proxy) and a node
//! frozen at a past block (a fork of the service chain that never mines: it answers every call,
//! with an old head). A short outage of the live node's proxy moves the relays to the frozen
//! node; they find it stalled and lagging, go back to the live node as soon as it answers, and
//! both lanes keep their latency. Before, a relay stayed on the frozen node as long as it
//! answered.

use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use multibridge_contracts::{ChainRole, Lane};
use multibridge_devnet::harness::anvil::{AnvilNode, AnvilOptions};
use multibridge_devnet::harness::invariants::{assert_exactly_once, wait_handled_below};
use multibridge_devnet::harness::proxy::{ProxyMode, TcpProxy};
use multibridge_devnet::harness::scrape::metric;
use multibridge_devnet::harness::tools::Tools;
use multibridge_devnet::{Devnet, DevnetOptions, Driver};

use crate::Poll;

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_endpoint_that_still_answers_is_demoted_and_the_lanes_keep_their_latency() {
    let dir = tempfile::tempdir().unwrap();
    let mut devnet = Devnet::start(DevnetOptions {
        guardians: false,
        ..DevnetOptions::new(dir.path())
    })
    .await
    .unwrap();
    let service_id = devnet.manifest().service.contracts.chain_id;
    let frozen = AnvilNode::start(
        &Tools::locate().unwrap(),
        dir.path(),
        &AnvilOptions {
            name: "anvil-service-frozen".to_owned(),
            chain_id: service_id,
            block_time: None,
            accounts: 1,
            frozen_fork_of: Some(devnet.rpc_url(ChainRole::Service)),
            state_file: None,
            large_code: false,
            max_persisted_states: None,
        },
    )
    .await
    .unwrap();
    let live: std::net::SocketAddr = devnet
        .rpc_url(ChainRole::Service)
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let proxy = TcpProxy::start(live, ProxyMode::Forward).await.unwrap();
    for index in 0..3 {
        let mut config = devnet.operator_config(index).unwrap();
        config.chains.service.rpc_urls = vec![proxy.url(), frozen.url()];
        devnet.write_operator_config(index, &config).unwrap();
        devnet.start_relay(index).unwrap();
    }
    let driver = Driver::new(devnet.manifest());
    let user = Address::repeat_byte(0x52);
    let requests = driver
        .request_native_burst(Lane::MainToService, 0, user, U256::from(1_000), 1)
        .await
        .unwrap();
    wait_handled_below(
        &driver,
        Lane::MainToService,
        requests[0].nonce + 1,
        Duration::from_secs(60),
    )
    .await
    .unwrap();

    // The live node drops out for a few seconds: every call fails over to the frozen node.
    proxy.set_mode(ProxyMode::Refuse);
    for port in &devnet.operator_http_ports {
        let series = "multibridge_rpc_requests_total{chain=\"service\",endpoint=\"1\",method=\"eth_blockNumber\",outcome=\"ok\"}";
        Poll::new(
            format!("relay {port} reads the frozen node"),
            Duration::from_secs(30),
        )
        .logs(devnet.dir(), 3, 40)
        .until(async || match metric(*port, series).await {
            Some(v) if v > 0.0 => Ok(()),
            other => Err(format!("{series} = {other:?}")),
        })
        .await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.set_mode(ProxyMode::Forward);

    // Every relay demotes the frozen endpoint (#1) and keeps the live one (#0).
    for port in &devnet.operator_http_ports {
        for (endpoint, want) in [("1", 0.0), ("0", 1.0)] {
            let series = format!(
                "multibridge_rpc_endpoint_healthy{{chain=\"service\",endpoint=\"{endpoint}\"}}"
            );
            Poll::new(
                format!("relay {port}: service endpoint {endpoint} healthy = {want}"),
                Duration::from_secs(60),
            )
            .logs(devnet.dir(), 3, 40)
            .until(async || match metric(*port, &series).await {
                Some(v) if v == want => Ok(()),
                other => Err(format!("{series} = {other:?}")),
            })
            .await;
        }
    }

    // Both lanes move transfers at their usual latency (the devnet's undisturbed one is ~2 s).
    for lane in [Lane::MainToService, Lane::ServiceToMain] {
        let requests = driver
            .request_native_burst(lane, 0, user, U256::from(1_000), 5)
            .await
            .unwrap();
        let started = Instant::now();
        let (first, last) = (requests[0].nonce, requests[4].nonce);
        wait_handled_below(&driver, lane, last + 1, Duration::from_secs(60))
            .await
            .unwrap();
        let took = started.elapsed();
        eprintln!("{lane}: 5 transfers handled {took:?} after they were mined");
        assert!(
            took < Duration::from_secs(10),
            "{lane}: 5 transfers took {took:?} with a frozen endpoint configured first"
        );
        assert_exactly_once(&driver, lane, first..last + 1)
            .await
            .unwrap();
    }
    drop(frozen);
}
