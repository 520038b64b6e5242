//! `multibridge run` rides out an outage at start (issue 22), on a real hot-standby devnet
//! (3-member etcd, 3 operators × 2 replicas, threshold 3; every relay reaches both chains only
//! through a TCP proxy that can refuse connections):
//!
//! 1. both chains' RPC stop answering and every replica is SIGKILLed and started again: none
//!    exits; each serves `/healthz` 200 and `/readyz` 503 naming the chain; 20 s later the RPC
//!    answers again, every `/readyz` turns 200 and every transfer — requested during the outage
//!    or after — is handled exactly once;
//! 2. etcd loses its quorum and every replica is SIGKILLed and started again: `/readyz` 503
//!    naming etcd, nobody leads and no vote goes out; 20 s later the quorum is back, every
//!    `/readyz` turns 200, and the transfers requested meanwhile are handled exactly once.

use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use multibridge_contracts::{ChainRole, Lane};
use multibridge_devnet::harness::ha::check_drained;
use multibridge_devnet::harness::invariants::votes_per_operator;
use multibridge_devnet::harness::proxy::{ProxyMode, TcpProxy};
use multibridge_devnet::{Devnet, DevnetOptions, Driver};

use crate::Poll;

const OPERATORS: usize = 3;
const REPLICAS: usize = 2;
/// Long enough for every relay to start, fail its preflight and back off to the longest pause
/// (4 s) more than once.
const OUTAGE: Duration = Duration::from_secs(12);

async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let resp = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    let code = resp.status().as_u16();
    Some((code, resp.text().await.ok()?))
}

fn restart_all(devnet: &mut Devnet) {
    for op in devnet.operators() {
        for r in 0..REPLICAS {
            devnet.replica(op, r).unwrap().kill().unwrap();
        }
    }
    for op in devnet.operators() {
        for r in 0..REPLICAS {
            devnet.start_replica(op, r).unwrap();
        }
    }
}

/// Every replica alive and not ready, its `/readyz` naming `component`.
async fn all_waiting_on(devnet: &Devnet, component: &str) {
    for port in devnet.replica_ports() {
        Poll::new(
            format!("relay on :{port} alive and not ready for {component}"),
            Duration::from_secs(20),
        )
        .until(async || {
            let health = get(port, "/healthz").await.map(|(c, _)| c);
            let ready = get(port, "/readyz").await;
            match (health, ready) {
                (Some(200), Some((503, body))) if body.contains(component) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    }
}

/// Every replica ready; returns how long after `since` the last one turned ready.
async fn all_ready(devnet: &Devnet, since: Instant) -> Duration {
    let mut last = Duration::ZERO;
    for port in devnet.replica_ports() {
        Poll::new(format!("relay on :{port} ready"), Duration::from_secs(60))
            .every(Duration::from_millis(100))
            .logs(devnet.dir(), OPERATORS, 30)
            .until(async || match get(port, "/readyz").await {
                Some((200, _)) => Ok(()),
                other => Err(format!("{other:?}")),
            })
            .await;
        last = last.max(since.elapsed());
    }
    last
}

fn alive(devnet: &mut Devnet) {
    for op in devnet.operators() {
        for r in 0..REPLICAS {
            assert!(
                devnet.replica(op, r).unwrap().is_running(),
                "operator {op} replica {r} exited during the outage"
            );
        }
    }
}

/// One transfer per lane; its nonces, per lane, also added to `requested`.
async fn request(driver: &Driver, requested: &mut [Vec<u64>]) -> Vec<u64> {
    let mut nonces = Vec::new();
    for (i, lane) in Lane::ALL.into_iter().enumerate() {
        let r = driver
            .request_native(lane, i, Address::repeat_byte(0x22), U256::from(1))
            .await
            .unwrap();
        requested[i].push(r.nonce);
        nonces.push(r.nonce);
    }
    nonces
}

/// The outage just ended: every replica turns ready, and everything requested so far (plus one
/// more transfer per lane) is handled exactly once.
async fn recovered(devnet: &Devnet, driver: &Driver, what: &str, requested: &mut [Vec<u64>]) {
    let ready_after = all_ready(devnet, Instant::now()).await;
    println!(
        "{what}: every replica ready {:.1} s later",
        ready_after.as_secs_f64()
    );
    request(driver, requested).await;
    for (i, lane) in Lane::ALL.into_iter().enumerate() {
        check_drained(driver, lane, &requested[i], OPERATORS)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn relays_started_during_an_outage_wait_it_out_and_then_relay_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut devnet = Devnet::start(DevnetOptions {
        relays: false,
        ..DevnetOptions::hot_standby(dir.path())
    })
    .await
    .unwrap();
    let target = |url: String| url.trim_start_matches("http://").parse().unwrap();
    let main = TcpProxy::start(target(devnet.rpc_url(ChainRole::Main)), ProxyMode::Forward)
        .await
        .unwrap();
    let service = TcpProxy::start(
        target(devnet.rpc_url(ChainRole::Service)),
        ProxyMode::Forward,
    )
    .await
    .unwrap();
    for op in devnet.operators() {
        for r in 0..REPLICAS {
            let mut config = devnet.replica_config(op, r).unwrap();
            config.chains.main.rpc_urls = vec![main.url()];
            config.chains.service.rpc_urls = vec![service.url()];
            devnet.write_replica_config(op, r, &config).unwrap();
            devnet.start_replica(op, r).unwrap();
        }
    }
    all_ready(&devnet, Instant::now()).await;
    let driver = Driver::new(devnet.manifest());
    let mut requested = vec![Vec::new(), Vec::new()];
    request(&driver, &mut requested).await;

    // 1. The chains' RPC stops answering; every replica restarts into the outage.
    main.set_mode(ProxyMode::Refuse);
    service.set_mode(ProxyMode::Refuse);
    let down = Instant::now();
    restart_all(&mut devnet);
    all_waiting_on(&devnet, "chain:").await;
    // The chains themselves run: users request while the relays cannot see them.
    request(&driver, &mut requested).await;
    tokio::time::sleep(OUTAGE.saturating_sub(down.elapsed())).await;
    alive(&mut devnet);
    for port in devnet.replica_ports() {
        let (_, text) = get(port, "/metrics").await.unwrap();
        assert!(
            text.lines()
                .any(|l| l.starts_with("multibridge_startup_waits_total{") && !l.ends_with(" 0")),
            "relay on :{port} counted no start attempt"
        );
    }
    main.set_mode(ProxyMode::Forward);
    service.set_mode(ProxyMode::Forward);
    recovered(&devnet, &driver, "RPC answers again", &mut requested).await;

    // 2. etcd loses its quorum; every replica restarts into it.
    let etcd = devnet.etcd.as_mut().unwrap();
    for member in [1, 2] {
        etcd.member(member).unwrap().process().pause().unwrap();
    }
    let lost = Instant::now();
    restart_all(&mut devnet);
    all_waiting_on(&devnet, "etcd").await;
    let during = request(&driver, &mut requested).await;
    tokio::time::sleep(OUTAGE.saturating_sub(lost.elapsed())).await;
    alive(&mut devnet);
    // Nobody led without a quorum: no vote for what was requested meanwhile.
    for (i, lane) in Lane::ALL.into_iter().enumerate() {
        let votes = votes_per_operator(&driver, lane).await.unwrap();
        assert!(
            !votes.keys().any(|(n, _)| *n == during[i]),
            "{lane}: a vote went out without an etcd quorum"
        );
    }
    let etcd = devnet.etcd.as_mut().unwrap();
    for member in [1, 2] {
        etcd.member(member).unwrap().process().resume().unwrap();
    }
    recovered(&devnet, &driver, "etcd quorum back", &mut requested).await;
}
