//! Relaying through etcd faults (real 3-member cluster, 3 operators × 2 replicas, threshold 3):
//! etcd's own leader killed and later another member paused — relaying goes on; the quorum
//! lost — nobody votes, and everything pending is handled once when it returns.

use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use multibridge_contracts::Lane;
use multibridge_devnet::ha::{Traffic, check_drained, leader_series, start_ha, wait_metric};
use multibridge_devnet::invariants::{dump_relay_logs, votes_per_operator};
use multibridge_devnet::{Devnet, DevnetOptions, Driver};

const TTL: Duration = Duration::from_secs(3);
const LANE: Lane = Lane::MainToService;

async fn ha_devnet() -> (tempfile::TempDir, Devnet) {
    let dir = tempfile::tempdir().unwrap();
    let devnet = start_ha(DevnetOptions::hot_standby(dir.path()))
        .await
        .unwrap();
    (dir, devnet)
}

async fn check(driver: &Driver, dir: &std::path::Path, nonces: &[u64]) {
    if let Err(e) = check_drained(driver, LANE, nonces, 3).await {
        dump_relay_logs(dir, 3, 30);
        panic!("{e}");
    }
}

/// Every transfer of `sent` handled within `bound` of its request.
fn assert_latency(
    sent: &[multibridge_devnet::ha::Sent],
    seen: &std::collections::BTreeMap<u64, Instant>,
    bound: Duration,
) {
    let worst = sent
        .iter()
        .map(|s| (s.nonce, seen[&s.nonce].saturating_duration_since(s.at)))
        .max_by_key(|(_, d)| *d)
        .unwrap();
    println!(
        "{} transfers, slowest nonce {} handled {:.2} s after its request",
        sent.len(),
        worst.0,
        worst.1.as_secs_f64()
    );
    assert!(worst.1 <= bound, "nonce {} took {:?}", worst.0, worst.1);
}

#[tokio::test(flavor = "multi_thread")]
async fn relaying_goes_on_when_the_etcd_leader_dies_and_later_a_member_pauses() {
    let (dir, mut devnet) = ha_devnet().await;
    let driver = Driver::new(devnet.manifest());
    let watch = multibridge_devnet::ha::HandleWatch::start(Driver::new(devnet.manifest()), LANE);
    let traffic = Traffic::start(
        Driver::new(devnet.manifest()),
        LANE,
        0,
        Duration::from_millis(200),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 1. etcd's raft leader is SIGKILLed: a new one is elected among the other two.
    let etcd = devnet.etcd.as_mut().unwrap();
    let leader = etcd.leader_index().await.expect("etcd has a leader");
    etcd.member(leader).unwrap().process().kill().unwrap();
    println!("killed etcd member {leader} (the raft leader)");
    tokio::time::sleep(Duration::from_secs(8)).await;
    // Some replica of every operator leads the lane all along or again.
    for op in 0..3 {
        let ports = devnet.replica_http_ports[op].clone();
        let deadline = Instant::now() + TTL + Duration::from_secs(2);
        loop {
            let mut leaders = 0;
            for port in &ports {
                if multibridge_devnet::scrape::metric(*port, &leader_series(LANE)).await
                    == Some(1.0)
                {
                    leaders += 1;
                }
            }
            if leaders == 1 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "operator {op}: {leaders} leaders"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // 2. The member comes back; then another member (the current raft leader) is paused.
    let etcd = devnet.etcd.as_mut().unwrap();
    etcd.member(leader)
        .unwrap()
        .process()
        .start_again()
        .unwrap();
    etcd.wait_healthy(Duration::from_secs(30)).await.unwrap();
    let paused = etcd.leader_index().await.expect("etcd has a leader");
    etcd.member(paused).unwrap().process().pause().unwrap();
    println!("paused etcd member {paused} (the raft leader now)");
    tokio::time::sleep(Duration::from_secs(8)).await;
    let etcd = devnet.etcd.as_mut().unwrap();
    etcd.member(paused).unwrap().process().resume().unwrap();

    // The relays saw it: attempts on the dead and the paused member failed and were counted.
    let mut failed_attempts = 0.0;
    for port in devnet.replica_http_ports.iter().flatten() {
        for outcome in ["outcome=\"error\"", "outcome=\"timeout\""] {
            failed_attempts += multibridge_devnet::scrape::metric_sum(
                *port,
                "multibridge_etcd_requests_total",
                outcome,
            )
            .await
            .unwrap_or_default();
        }
    }
    assert!(failed_attempts > 0.0, "no failed etcd attempt counted");

    let sent = traffic.stop().await.unwrap();
    let nonces: Vec<u64> = sent.iter().map(|s| s.nonce).collect();
    check(&driver, dir.path(), &nonces).await;
    let seen = watch.stop().await.unwrap();
    // Relaying continued: no transfer waited longer than a relay failover (TTL + 1 s) on top
    // of the ordinary latency (confirmation + inclusion, a few 1 s blocks).
    assert_latency(
        &sent,
        &seen,
        TTL + Duration::from_secs(1) + Duration::from_secs(6),
    );
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
            )
            .await
            .unwrap();
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
    check(&driver, dir.path(), &[request.nonce]).await;
    println!(
        "handled {:.1} s after the quorum returned",
        back.elapsed().as_secs_f64()
    );
}
