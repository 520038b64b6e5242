//! The lane-scoped election (the Klaytn test configuration: threshold 1, several operators):
//! every operator's relay campaigns in one election per lane, so exactly one operator votes per
//! transfer while all are healthy; when it dies another operator takes over. Real 3-member etcd,
//! 4 operators, one relay each.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use multibridge_config::ElectionScope;
use multibridge_contracts::Lane;
use multibridge_devnet::harness::ha::{check_drained, leader_series};
use multibridge_devnet::harness::invariants::{dump_relay_logs, votes_per_operator};
use multibridge_devnet::harness::scrape::metric;
use multibridge_devnet::{Devnet, DevnetOptions, Driver};

use crate::Poll;

const OPERATORS: usize = 4;
const TTL: Duration = Duration::from_secs(multibridge_devnet::LEASE_TTL_SECS);

/// The operators whose relay reports leading `lane`, among those not in `dead`.
async fn leaders(devnet: &Devnet, lane: Lane, dead: &[usize]) -> Vec<usize> {
    let mut out = Vec::new();
    for op in (0..OPERATORS).filter(|op| !dead.contains(op)) {
        if metric(devnet.operator_http_ports[op], &leader_series(lane)).await == Some(1.0) {
            out.push(op);
        }
    }
    out
}

/// Wait until exactly one live operator leads `lane`; returns it.
async fn sole_leader(devnet: &Devnet, lane: Lane, dead: &[usize], timeout: Duration) -> usize {
    Poll::new(format!("{lane}: exactly one leader"), timeout)
        .every(Duration::from_millis(100))
        .until(async || {
            let found = leaders(devnet, lane, dead).await;
            if let [one] = found[..] {
                Ok(one)
            } else {
                Err(format!("leaders {found:?}"))
            }
        })
        .await
}

/// Request `count` native transfers on `lane` one after another; their nonces.
async fn transfers(driver: &Driver, lane: Lane, count: usize) -> Vec<u64> {
    let mut nonces = Vec::new();
    for _ in 0..count {
        let r = driver
            .request_native(lane, 0, Address::repeat_byte(0x5c), U256::from(7))
            .await
            .unwrap();
        nonces.push(r.nonce);
    }
    nonces
}

/// Wait for `nonces` handled exactly once (DESIGN §9, no signer nonce gap); return, per nonce,
/// the operators that voted.
async fn voters(
    driver: &Driver,
    dir: &std::path::Path,
    lane: Lane,
    nonces: &[u64],
) -> BTreeMap<u64, BTreeSet<Address>> {
    if let Err(e) = check_drained(driver, lane, nonces, OPERATORS).await {
        dump_relay_logs(dir, OPERATORS, 30);
        panic!("{e}");
    }
    let mut out: BTreeMap<u64, BTreeSet<Address>> = BTreeMap::new();
    for ((nonce, operator), _) in votes_per_operator(driver, lane).await.unwrap() {
        if nonces.contains(&nonce) {
            out.entry(nonce).or_default().insert(operator);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn one_operator_votes_per_transfer_and_another_takes_over_when_it_dies() {
    let dir = tempfile::tempdir().unwrap();
    let mut devnet = Devnet::start(DevnetOptions {
        operators: OPERATORS as u32,
        threshold: 1,
        ..DevnetOptions::new(dir.path())
    })
    .await
    .unwrap();
    for op in devnet.operators() {
        let mut config = devnet.operator_config(op).unwrap();
        config.etcd.as_mut().unwrap().scope = ElectionScope::Lane;
        devnet.write_operator_config(op, &config).unwrap();
        devnet.start_relay(op).unwrap();
    }
    let driver = Driver::new(devnet.manifest());
    let addresses: Vec<Address> = devnet
        .accounts
        .operators
        .iter()
        .map(|s| s.address())
        .collect();
    let address = |op: usize| addresses[op];

    // Healthy: one operator leads each lane and is the only one to vote.
    let mut leader_of = BTreeMap::new();
    for lane in Lane::ALL {
        leader_of.insert(
            lane,
            sole_leader(&devnet, lane, &[], Duration::from_secs(30)).await,
        );
    }
    println!("leaders: {leader_of:?}");
    for lane in Lane::ALL {
        let nonces = transfers(&driver, lane, 6).await;
        let voted = voters(&driver, dir.path(), lane, &nonces).await;
        for nonce in &nonces {
            let want = BTreeSet::from([address(leader_of[&lane])]);
            assert_eq!(voted.get(nonce), Some(&want), "{lane} nonce {nonce}");
        }
        // Nobody else leads meanwhile.
        assert_eq!(leaders(&devnet, lane, &[]).await, [leader_of[&lane]]);
    }

    // The main → service leader dies: another operator leads within TTL + 1 s and is then the
    // only one to vote.
    let lane = Lane::MainToService;
    let dead = leader_of[&lane];
    devnet.relay(dead).unwrap().kill().unwrap();
    let killed = Instant::now();
    // Shared with other devnets: TTL + 3 s (alone it was TTL + 1 s, the failover contract the
    // leadership test keeps alone).
    let next = sole_leader(&devnet, lane, &[dead], TTL + Duration::from_secs(3)).await;
    println!(
        "operator {} took over from operator {} {:.2} s after the kill",
        next + 1,
        dead + 1,
        killed.elapsed().as_secs_f64()
    );
    assert_ne!(next, dead);
    let nonces = transfers(&driver, lane, 6).await;
    let voted = voters(&driver, dir.path(), lane, &nonces).await;
    for nonce in &nonces {
        assert_eq!(
            voted.get(nonce),
            Some(&BTreeSet::from([address(next)])),
            "{lane} nonce {nonce}"
        );
    }
}
