//! The seed experiments (`multibridge-devnet experiment NAME`) in short, as regression tests:
//! the same code, the same real faults, fewer minutes. Each asserts the experiment's invariants
//! and that its faults really happened and really cost something the figures show.

use multibridge_devnet::experiment::{Common, klaytn_ha, leader_pause, network_cut, soak};

fn common(dir: &tempfile::TempDir) -> Common {
    Common {
        dir: dir.path().join("devnets"),
        out: dir.path().join("out"),
        seed: 4242,
    }
}

/// Table 2, leader test: the leading replica's RPCs and etcd blackholed for 6 s every 15 s (the
/// experiment itself runs 10 minutes with 20 s cuts; a cut only has to outlast the 3 s lease).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_whose_network_is_cut_hands_over_and_no_request_fails() {
    let dir = tempfile::tempdir().unwrap();
    let common = common(&dir);
    let settings = network_cut::Settings {
        minutes: 0.6,
        periods: vec![15],
        cut_secs: 6.0,
        targets: vec![network_cut::Target::Leader],
        ..Default::default()
    };
    let report = network_cut::run(&common, &settings).await.unwrap();
    let row = &report.rows[0];
    println!("{}", network_cut::render(&report));
    assert_eq!(row.cuts, 2, "cuts at 15 s and 30 s");
    assert_eq!(row.run.faults.len(), 2);
    assert!(
        row.run.faults.iter().all(|f| f.end - f.start >= 5.9),
        "every cut lasted its 6 s: {:?}",
        row.run.faults
    );
    // A cut leader loses its lease: another replica must have taken over, at least once per cut.
    assert!(
        row.leader_changes >= 2,
        "a cut leader must be replaced: {} changes",
        row.leader_changes
    );
    assert!(row.sent >= 55, "2 requests/s for 36 s: {} sent", row.sent);
    assert_eq!(row.failed, 0, "requests not handled within 30 s");
    assert!(row.synchronised, "{:?}", row.inconsistencies);
    let stores = row.run.stores.as_ref().unwrap();
    assert_eq!(stores.replicas, 6);
    assert_eq!(stores.in_sync, 6, "{:?}", stores.disagreements);
    // What a cut costs is bounded: the takeover (about a second, issue 52) and a few blocks,
    // far below the 30 s after which a request counts as failed. (This used to assert the
    // opposite — that some transfer waited over a second longer than the median — which a
    // one-second takeover at 1 s blocks no longer guarantees: a request sent just before the
    // cut is confirmed by the time the standby leads, and the suite saw max − p50 = 0.51 s.
    // That the cut hit the leader is `leader_changes` above.)
    assert!(
        row.latency.max < row.latency.p50 + 15.0,
        "a cut leader must cost at most its takeover and a few blocks: {:?}",
        row.latency
    );
}

/// Table 4: the leader SIGSTOPped for 6 s at intervals of 10–16 s under 5 users (a pause only
/// has to outlast the 3 s lease).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paused_leaders_cost_seconds_of_downtime_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let common = common(&dir);
    let settings = leader_pause::Settings {
        minutes: 0.7,
        pause_secs: 6.0,
        interval: (10.0, 16.0),
        per_user_rate: 1.0,
        ..Default::default()
    };
    let report = leader_pause::run(&common, &settings).await.unwrap();
    println!("{}", leader_pause::render(&report));
    assert!(report.pauses >= 2, "{} pauses", report.pauses);
    assert!(
        report.leader_changes >= report.pauses,
        "every paused leader (6 s > the 3 s lease) is replaced: {} changes for {} pauses",
        report.leader_changes,
        report.pauses
    );
    assert!(report.consistent, "{:?}", report.inconsistencies);
    assert_eq!(report.successful, report.requests);
    assert!(report.requests >= 100, "5 users × 1/s for 42 s");
    assert!(
        report.downtime_secs < 21.0,
        "downtime {} s in a 42 s run",
        report.downtime_secs
    );
}

/// Seed 004: 4 operators, threshold 1, all relays stopped twice (SIGTERM, then SIGKILL).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_operators_at_threshold_one_survive_restarts_without_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let common = common(&dir);
    let settings = klaytn_ha::Settings {
        rounds: 2,
        up_secs: 8.0,
        down_secs: 4.0,
        ..Default::default()
    };
    let report = klaytn_ha::run(&common, &settings).await.unwrap();
    println!("{}", klaytn_ha::render(&report));
    assert_eq!(report.restarts.len(), 2);
    assert_eq!(report.restarts[0].stop, "SIGTERM");
    assert_eq!(report.restarts[1].stop, "SIGKILL");
    assert!(
        report.restarts.iter().all(|r| r.requested_while_down > 0),
        "requests were made while the relays were down: {:?}",
        report.restarts
    );
    assert_eq!(report.duplicates, 0);
    assert_eq!(report.lost, 0);
    assert_eq!(report.handled, report.requests);
    assert!(report.consistent, "{:?}", report.inconsistencies);
    assert!(
        report.recovery.max < 60.0,
        "recovery after a restart: {:?}",
        report.recovery
    );
}

/// The soak, short: every fault kind once, a few hundred transfers, verified from the chains.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_soak_through_every_fault_kind_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let common = common(&dir);
    let settings = soak::Settings {
        transfers: 360,
        users: 6,
        gap: (1.0, 2.0),
        fault_scale: 0.4,
        // With the devnet's start, the users' give-up time and the store check, the test ends
        // with a report well inside the harness's 600 s deadline even if a request is lost.
        drain: std::time::Duration::from_secs(90),
        ..Default::default()
    };
    let report = soak::run(&common, &settings).await.unwrap();
    println!("{}", soak::render(&report));
    for (kind, n) in &report.faults {
        assert!(*n >= 1, "fault {kind} never happened: {:?}", report.faults);
    }
    assert!(report.requests >= 350, "{} requests", report.requests);
    assert_eq!(report.lost, 0);
    assert_eq!(report.doubled, 0);
    assert_eq!(report.recipients.1, 0, "{:?}", report.inconsistencies);
    assert!(report.recipients.0 >= 20, "recipients checked");
    assert!(report.conserved);
    assert!(report.stores_in_sync, "{:?}", report.inconsistencies);
    // The report and the picture are written.
    let written = common
        .write(
            "soak",
            &report,
            &[(String::new(), report.run.picture("soak".into(), 15.0))],
        )
        .unwrap();
    assert!(written.iter().all(|p| p.metadata().unwrap().len() > 500));
}
