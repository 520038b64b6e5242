//! Relaying through etcd faults (real 3-member cluster, 3 operators × 2 replicas, threshold 3):
//! etcd's own leader killed and later the next one paused — no lane loses its leader for more
//! than a second; the quorum lost — nobody votes, and everything pending is handled once when it
//! returns.

use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use multibridge_contracts::Lane;
use multibridge_devnet::Driver;
use multibridge_devnet::harness::ha::{
    EtcdFault, EtcdFaultRound, LeaderWatch, Traffic, check_drained, etcd_leader_fault,
    leader_series, wait_metric,
};
use multibridge_devnet::harness::invariants::{dump_relay_logs, votes_per_operator};

use crate::ha_devnet;

const TTL: Duration = Duration::from_secs(multibridge_devnet::LEASE_TTL_SECS);
/// The most a leader's fence can hold when etcd's raft leader fails: the lease TTL less the
/// fence's margin — 0.7 s at the devnet's 1 s lease. (This was 2.1 s, written for the 3 s lease
/// of an earlier devnet; after the devnet moved to 1 s leases it overstated what a fence rides
/// out, and an etcd election of 1.67 s on a slow CI machine failed the 1 s bound.) What each
/// leader's fence actually held at the last poll before the fault
/// (`multibridge_fence_open_seconds`: less, by the time since its last renewal) is what the
/// test counts from.
const FENCE_AT_FAULT: Duration = TTL.saturating_sub(multibridge_chain::fence::LEASE_MARGIN);
const LANE: Lane = Lane::MainToService;
const OTHER_LANE: Lane = Lane::ServiceToMain;

async fn check(driver: &Driver, dir: &std::path::Path, nonces: &[u64]) {
    if let Err(e) = check_drained(driver, LANE, nonces, 3).await {
        dump_relay_logs(dir, 3, 30);
        panic!("{e}");
    }
}

/// Every transfer of `sent` handled within `bound` of its request.
fn assert_latency(
    sent: &[multibridge_devnet::harness::ha::Sent],
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

/// An etcd leader election with quorum intact — its raft leader SIGKILLed, later the next raft
/// leader SIGSTOPped for 10 s — costs no (operator, lane) its leading replica for more than 1 s
/// (every replica's `multibridge_leader` polled every 50 ms; the gauge reads what the fence
/// would answer), never shows two leaders of one operator, and delays no operator's votes by
/// more than that on top of their ordinary spacing. Everything requested is handled once.
///
/// No lease can be renewed while etcd has no leader: an election slower than what a leader's
/// fence holds at the fault (at most [`FENCE_AT_FAULT`], measured per leader; etcd elects in
/// 0.6-0.8 s at its 500 ms election timeout, 1.7 s seen on a slow CI machine) closes the fences
/// for the excess, and the bound grows by exactly that. The election's time is measured (a live member names a new
/// raft leader) and printed.
#[tokio::test(flavor = "multi_thread")]
async fn an_etcd_leader_election_costs_no_lane_its_leader_for_more_than_a_second() {
    let (dir, mut devnet) = crate::ha_devnet_alone().await;
    let driver = Driver::new(devnet.manifest());
    let handles =
        multibridge_devnet::harness::ha::HandleWatch::start(Driver::new(devnet.manifest()), LANE);
    let leaders = LeaderWatch::start(devnet.replica_http_ports.clone());
    let traffic = [
        Traffic::start(
            Driver::new(devnet.manifest()),
            LANE,
            0,
            Duration::from_millis(200),
        ),
        Traffic::start(
            Driver::new(devnet.manifest()),
            OTHER_LANE,
            1,
            Duration::from_millis(200),
        ),
    ];
    tokio::time::sleep(Duration::from_secs(6)).await;

    let mut rounds = Vec::new();
    for fault in [EtcdFault::Kill, EtcdFault::Pause(Duration::from_secs(10))] {
        let at = etcd_leader_fault(&mut devnet, fault, Duration::from_secs(8))
            .await
            .unwrap();
        rounds.push((fault, at, Instant::now()));
    }

    // The relays saw it: attempts on the dead and the paused member failed and were counted.
    let mut failed_attempts = 0.0;
    for port in devnet.replica_http_ports.iter().flatten() {
        for outcome in ["outcome=\"error\"", "outcome=\"timeout\""] {
            failed_attempts += multibridge_devnet::harness::scrape::metric_sum(
                *port,
                "multibridge_etcd_requests_total",
                outcome,
            )
            .await
            .unwrap_or_default();
        }
    }
    assert!(failed_attempts > 0.0, "no failed etcd attempt counted");

    let [main_traffic, other_traffic] = traffic;
    let sent = main_traffic.stop().await.unwrap();
    let other_sent = other_traffic.stop().await.unwrap();
    let timeline = leaders.stop().await.unwrap();
    let (missed, scrapes) = timeline.unanswered();
    println!("{missed} of {scrapes} scrapes of the replicas' metrics went unanswered within 1 s");
    for (fault, at, until) in rounds {
        let round = EtcdFaultRound::measure(&timeline, fault, at, until, 3);
        println!(
            "{fault:?}: etcd elected a leader after {:?}; without a leader {:?} per operator and \
             lane, vote gaps {:?} (steady {:?})",
            round.election, round.leaderless, round.vote_gap, round.steady_gap
        );
        println!(
            "{fault:?}: the leaders' fences held {:?} at the fault",
            round.fence_at_fault
        );
        for op in devnet.operators() {
            for (i, lane) in Lane::ALL.into_iter().enumerate() {
                // No lease is renewed before etcd elects: an election that outlasts what the
                // fence held at the fault closes it for the excess, and the bound grows by that.
                let held = round.fence_at_fault[op][i].min(FENCE_AT_FAULT);
                let slow_election = round.election.unwrap_or_default().saturating_sub(held);
                let bound = Duration::from_secs(1).saturating_add(slow_election);
                if round.leaderless[op][i] > bound {
                    dump_relay_logs(dir.path(), 3, 40);
                }
                assert!(
                    round.leaderless[op][i] <= bound,
                    "{fault:?}: operator {op} had no leader on {lane} for {:?} (bound {bound:?}, \
                     etcd elected after {:?}, the fence held {held:?} at the fault)",
                    round.leaderless[op][i],
                    round.election
                );
                let gap = round.vote_gap[op][i]
                    .unwrap_or_else(|| panic!("{fault:?}: operator {op} never voted on {lane}"));
                // Through the fault a gap holds the leaderless time, a block and a new term's
                // start; on a loaded 2-core machine that reached 2.7-2.9 s against 1.0-1.1 s
                // steady. A relay that stopped for the fault would show the fault's 10 s.
                assert!(
                    gap <= round.worst_steady_gap() + Duration::from_millis(3_000) + slow_election,
                    "{fault:?}: operator {op} on {lane}: {gap:?} between two votes through the \
                     fault (steady gaps up to {:?})",
                    round.worst_steady_gap()
                );
            }
        }
    }
    for op in devnet.operators() {
        for lane in Lane::ALL {
            if timeline.most_leaders(op, lane) > 1 {
                // Seen once in a full suite run (2026-11-27, passed alone right after): keep
                // what the relays said for whoever reads the failure.
                dump_relay_logs(dir.path(), 3, 120);
            }
            assert!(
                timeline.most_leaders(op, lane) <= 1,
                "operator {op}: two replicas read leading {lane} at once"
            );
        }
    }

    let nonces: Vec<u64> = sent.iter().map(|s| s.nonce).collect();
    check(&driver, dir.path(), &nonces).await;
    let other: Vec<u64> = other_sent.iter().map(|s| s.nonce).collect();
    if let Err(e) = check_drained(&driver, OTHER_LANE, &other, 3).await {
        dump_relay_logs(dir.path(), 3, 30);
        panic!("{e}");
    }
    let seen = handles.stop().await.unwrap();
    // Relaying continued: no transfer waited much longer than the ordinary latency
    // (confirmation + inclusion, a few 1 s blocks) plus the leaderless second.
    assert_latency(&sent, &seen, Duration::from_secs(8));
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
    for op in devnet.operators() {
        for replica in 0..2 {
            let port = devnet.replica_http_ports[op][replica];
            // Shared with other devnets: TTL + 8 s (alone it was TTL + 5 s; the step-down's
            // own timing contract is step_down.rs's alone test).
            wait_metric(
                port,
                &leader_series(LANE),
                0.0,
                TTL + Duration::from_secs(8),
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
