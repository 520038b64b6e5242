//! Hot standby through a real 3-member etcd cluster: two replicas per operator, threshold 3 (so
//! every operator's vote is needed and a missing leader shows at once). A SIGKILLed leader is
//! replaced within TTL + 1 s and the registry points at the new one; a leader paused past its
//! TTL sends nothing after waking; with etcd's quorum lost nobody sends, and everything pending
//! is handled once when it returns.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use multibridge_contracts::bindings::ServiceRegistry;
use multibridge_contracts::{ChainRole, Lane};
use multibridge_devnet::invariants::{
    assert_exactly_once, dump_relay_logs, votes_per_operator, wait_all_handled, wait_no_nonce_gap,
};
use multibridge_devnet::scrape::metric;
use multibridge_devnet::{Devnet, DevnetOptions, Driver};

const TTL: Duration = Duration::from_secs(3);
const LANE: Lane = Lane::MainToService;

fn leader_series(lane: Lane) -> String {
    format!("multibridge_leader{{lane=\"{lane}\"}}")
}

async fn wait_metric(port: u16, series: &str, want: f64, timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    loop {
        if metric(port, series).await == Some(want) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {series} != {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Three operators, threshold 3, two replicas each; replica 1 of every operator leads both
/// lanes before replica 2 starts.
async fn ha_devnet() -> (tempfile::TempDir, Devnet) {
    let dir = tempfile::tempdir().unwrap();
    let mut devnet = Devnet::start(DevnetOptions {
        threshold: 3,
        replicas: 2,
        ..DevnetOptions::new(dir.path())
    })
    .await
    .unwrap();
    for op in 0..3 {
        devnet.start_replica(op, 0).unwrap();
    }
    for op in 0..3 {
        for lane in Lane::ALL {
            let port = devnet.replica_http_ports[op][0];
            wait_metric(
                port,
                &leader_series(lane),
                1.0,
                Duration::from_secs(30),
                "first replica leads",
            )
            .await;
        }
    }
    for op in 0..3 {
        devnet.start_replica(op, 1).unwrap();
    }
    for op in 0..3 {
        let port = devnet.replica_http_ports[op][1];
        wait_metric(
            port,
            &leader_series(LANE),
            0.0,
            Duration::from_secs(30),
            "second replica follows",
        )
        .await;
    }
    (dir, devnet)
}

/// Requests one native transfer after another on `LANE` until stopped; returns their nonces.
fn traffic(driver: Driver, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<u64>> {
    tokio::spawn(async move {
        let mut nonces = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let r = driver
                .request_native(LANE, 0, Address::repeat_byte(0x7e), U256::from(3))
                .await
                .unwrap();
            nonces.push(r.nonce);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        nonces
    })
}

async fn assert_all_handled_once(driver: &Driver, dir: &std::path::Path, nonces: &[u64]) {
    let (first, last) = (*nonces.first().unwrap(), *nonces.last().unwrap());
    let range = first..last + 1;
    if let Err(e) = wait_all_handled(driver, LANE, range.clone(), Duration::from_secs(60)).await {
        dump_relay_logs(dir, 3, 30);
        panic!("{e}");
    }
    assert_exactly_once(driver, LANE, range).await.unwrap();
    for ((nonce, operator), votes) in votes_per_operator(driver, LANE).await.unwrap() {
        assert_eq!(
            votes, 1,
            "operator {operator} voted nonce {nonce} {votes} times"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_leader_is_replaced_within_ttl_plus_one_second_and_the_registry_follows() {
    let (dir, mut devnet) = ha_devnet().await;
    let driver = Driver::new(devnet.manifest());
    let stop = Arc::new(AtomicBool::new(false));
    let generator = traffic(Driver::new(devnet.manifest()), stop.clone());
    // Traffic flows through the first replicas.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let follower = devnet.replica_http_ports[0][1];
    let votes = format!("multibridge_votes_sent_total{{lane=\"{LANE}\"}}");
    let before = metric(follower, &votes).await.unwrap();
    devnet.replica(0, 0).unwrap().kill().unwrap();
    let killed = Instant::now();
    let deadline = killed + Duration::from_secs(20);
    while metric(follower, &votes).await.unwrap_or(0.0) <= before {
        assert!(Instant::now() < deadline, "the follower never voted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let failover = killed.elapsed();
    println!(
        "failover: leader SIGKILL -> first vote by the new leader {:.2} s (TTL {:?})",
        failover.as_secs_f64(),
        TTL
    );
    assert!(
        failover <= TTL + Duration::from_secs(1),
        "failover took {failover:?}"
    );
    assert_eq!(metric(follower, &leader_series(LANE)).await, Some(1.0));

    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let nonces = generator.await.unwrap();
    assert_all_handled_once(&driver, dir.path(), &nonces).await;
    for role in [ChainRole::Main, ChainRole::Service] {
        wait_no_nonce_gap(&driver, role, 0, Duration::from_secs(30))
            .await
            .unwrap();
    }

    // The registry's location of operator 1's services is the new leader's endpoint.
    let config = devnet.replica_config(0, 1).unwrap();
    let want = format!("http://{}", config.http.listen);
    let registry = ServiceRegistry::new(
        driver.manifest().registry,
        driver.provider(ChainRole::Main).unwrap(),
    );
    for service in multibridge::registry::lane_services(&config) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let location = registry
                .getServiceLocation(service.id)
                .call()
                .await
                .unwrap_or_default();
            if location == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} location {location:?}, want {want}",
                service.lane
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_paused_past_its_ttl_sends_nothing_after_waking() {
    let (dir, mut devnet) = ha_devnet().await;
    let driver = Driver::new(devnet.manifest());
    let stop = Arc::new(AtomicBool::new(false));
    let generator = traffic(Driver::new(devnet.manifest()), stop.clone());
    tokio::time::sleep(Duration::from_secs(3)).await;

    devnet.replica(0, 0).unwrap().pause().unwrap();
    let follower = devnet.replica_http_ports[0][1];
    wait_metric(
        follower,
        &leader_series(LANE),
        1.0,
        TTL + Duration::from_secs(2),
        "the follower takes over",
    )
    .await;
    tokio::time::sleep(TTL).await;
    let woke_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    devnet.replica(0, 0).unwrap().resume().unwrap();
    let old = devnet.replica_http_ports[0][0];
    for lane in Lane::ALL {
        wait_metric(
            old,
            &leader_series(lane),
            0.0,
            Duration::from_secs(10),
            "the old leader steps down",
        )
        .await;
    }
    // Keep traffic going while the old leader is awake.
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    let nonces = generator.await.unwrap();
    assert_all_handled_once(&driver, dir.path(), &nonces).await;

    let config = devnet.replica_config(0, 0).unwrap();
    let store = multibridge::store::Store::open(
        &config.store.path,
        &multibridge::relay::store_identity(&config),
    )
    .unwrap();
    let after = store.txs_sent_since(woke_at).unwrap();
    assert!(
        after.is_empty(),
        "the old leader sent after waking: {after:?}"
    );
    for role in [ChainRole::Main, ChainRole::Service] {
        wait_no_nonce_gap(&driver, role, 0, Duration::from_secs(30))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_etcd_quorum_nobody_votes_and_relaying_resumes_when_it_returns() {
    let (dir, mut devnet) = ha_devnet().await;
    let driver = Driver::new(devnet.manifest());
    let etcd = devnet.etcd.as_mut().unwrap();
    for member in [1, 2] {
        etcd.member(member).unwrap().process().pause().unwrap();
    }
    let lost = Instant::now();
    for op in 0..3 {
        for replica in 0..2 {
            let port = devnet.replica_http_ports[op][replica];
            wait_metric(
                port,
                &leader_series(LANE),
                0.0,
                TTL + Duration::from_secs(5),
                "leaders step down",
            )
            .await;
        }
    }
    println!(
        "every leader stepped down {:.1} s after the quorum was lost",
        lost.elapsed().as_secs_f64()
    );
    let request = driver
        .request_native(LANE, 0, Address::repeat_byte(0x9a), U256::from(11))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let votes = votes_per_operator(&driver, LANE).await.unwrap();
    assert!(
        !votes.keys().any(|(n, _)| *n == request.nonce),
        "a vote went out without a quorum: {votes:?}"
    );
    let etcd = devnet.etcd.as_mut().unwrap();
    for member in [1, 2] {
        etcd.member(member).unwrap().process().resume().unwrap();
    }
    let back = Instant::now();
    assert_all_handled_once(&driver, dir.path(), &[request.nonce]).await;
    println!(
        "handled {:.1} s after the quorum returned",
        back.elapsed().as_secs_f64()
    );
}
