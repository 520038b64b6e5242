//! Coming back from a crash (issue 35): a replica SIGKILLed and restarted while its lease still
//! lives takes its term back at start instead of waiting out the TTL — every replica of every
//! operator killed and restarted at once, each former leader leads again and no follower ever
//! leads; and only the process that held the store at its place may: a copy of a leader's store
//! started elsewhere never resumes, and a second process on the same store is refused.

use std::time::{Duration, Instant};

use multibridge_contracts::Lane;
use multibridge_devnet::harness::ha::{Traffic, leader_series, wait_metric};
use multibridge_devnet::harness::process::{ManagedProcess, ProcessSpec};
use multibridge_devnet::harness::scrape::metric_sum;
use multibridge_devnet::harness::tools::relay_binary;
use multibridge_devnet::{Devnet, Driver};

use crate::{Poll, stop_and_check};

/// A lease that outlives a debug relay's restart on a shared machine: these tests are about
/// taking a live term back (at the devnet's 1 s a restart often outlasts the lease, and then a
/// fresh election decides, as fast).
const TTL_SECS: u64 = 3;
const TTL: Duration = Duration::from_secs(TTL_SECS);

/// The devnet of these tests; `alone` for the one whose assertion is a duration (six processes
/// restarted at once on a machine shared with other devnets outlasted its bound twice).
async fn ha_devnet(alone: bool) -> (tempfile::TempDir, multibridge_devnet::Devnet) {
    let dir = tempfile::tempdir().unwrap();
    let options = multibridge_devnet::DevnetOptions {
        lease_ttl_secs: TTL_SECS,
        ..multibridge_devnet::DevnetOptions::hot_standby(dir.path())
    };
    let devnet =
        multibridge_devnet::harness::ha::start_ha(if alone { options.alone() } else { options })
            .await
            .unwrap();
    (dir, devnet)
}
const LANE: Lane = Lane::MainToService;

fn traffic(devnet: &Devnet) -> Traffic {
    Traffic::start(
        Driver::new(devnet.manifest()),
        LANE,
        0,
        Duration::from_millis(200),
    )
}

/// Wait until the relay on `port` answers its HTTP API (the process is up).
async fn up(port: u16) {
    Poll::new(format!("relay on port {port} up"), Duration::from_secs(30))
        .every(Duration::from_millis(20))
        .until(async || {
            metric_sum(port, "multibridge_leader", "")
                .await
                .map(|_| ())
                .ok_or_else(|| "not answering".to_owned())
        })
        .await;
}

/// Every replica of every operator SIGKILLed, then all restarted at once (a host's processes
/// after a crash): each operator's former leader takes both lanes back from its own live lease
/// (`leadership_resumed_total` = 2) — no follower leads in between, which it would once the
/// lease ran out — and every transfer is handled exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_killed_and_restarted_together_resume_their_own_terms() {
    let (dir, mut devnet) = ha_devnet(true).await;
    let driver = Driver::new(devnet.manifest());
    let traffic = traffic(&devnet);
    tokio::time::sleep(Duration::from_secs(3)).await;

    let operators: Vec<usize> = devnet.operators().collect();
    for op in &operators {
        for replica in 0..2 {
            devnet.replica(*op, replica).unwrap().kill().unwrap();
        }
    }
    let killed = Instant::now();
    for op in &operators {
        for replica in 0..2 {
            devnet.start_replica(*op, replica).unwrap();
        }
    }
    let mut worst_after_up = Duration::ZERO;
    for op in &operators {
        let leader = devnet.replica_http_ports[*op][0];
        up(leader).await;
        let up_at = Instant::now();
        for lane in Lane::ALL {
            // Alone on the machine (its figure is a duration); TTL × 5 all the same.
            wait_metric(leader, &leader_series(lane), 1.0, TTL * 5)
                .await
                .unwrap();
        }
        worst_after_up = worst_after_up.max(up_at.elapsed());
    }
    println!(
        "kill all: every former leader leads both lanes again {:.2} s after the kill, {:.2} s \
         at most after its process answered (TTL {TTL:?})",
        killed.elapsed().as_secs_f64(),
        worst_after_up.as_secs_f64()
    );
    for op in &operators {
        let [leader, follower] = [
            devnet.replica_http_ports[*op][0],
            devnet.replica_http_ports[*op][1],
        ];
        let resumed = metric_sum(leader, "multibridge_leadership_resumed_total", "")
            .await
            .unwrap_or_default();
        assert_eq!(
            resumed,
            2.0,
            "operator {}: both lanes resumed from the live lease",
            op + 1
        );
        let changes = metric_sum(follower, "multibridge_leadership_changes_total", "")
            .await
            .unwrap_or_default();
        assert_eq!(
            changes,
            0.0,
            "operator {}: the follower led after the restart",
            op + 1
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_and_check(traffic, &driver, LANE, dir.path()).await;
}

/// Only the process that held a store at its place resumes from it. A second relay on the
/// leader's store (its own HTTP port) is refused while the leader runs; a copy of the store
/// in another directory, started the moment the leader is SIGKILLed with the same replica name,
/// does not take the term back (it says why, and counts no resume): its operator leads again
/// only once the old lease ran out. Everything is handled exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_copied_store_never_resumes_and_a_second_process_on_one_store_is_refused() {
    let (dir, mut devnet) = ha_devnet(false).await;
    let driver = Driver::new(devnet.manifest());
    let traffic = traffic(&devnet);
    tokio::time::sleep(Duration::from_secs(3)).await;

    let config = devnet.replica_config(0, 0).unwrap();
    let spawn = |name: &str, config: &multibridge_config::Config| {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, toml::to_string(config).unwrap()).unwrap();
        ManagedProcess::spawn(ProcessSpec {
            name: name.into(),
            program: relay_binary().unwrap(),
            args: vec!["run".into(), "--config".into(), path.display().to_string()],
            envs: vec![("MULTIBRIDGE_LOG".into(), "info".into())],
            log_path: dir.path().join("logs").join(format!("{name}.log")),
        })
        .unwrap()
    };
    let other_port = |mut config: multibridge_config::Config| {
        let port = multibridge_devnet::harness::ports::free_port().unwrap();
        config.http.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        (config, port)
    };

    // A second process on the leader's store: refused, the leader unaffected.
    let (twice, _) = other_port(config.clone());
    let mut second = spawn("relay-1-twice", &twice);
    let log = dir.path().join("logs/relay-1-twice.log");
    Poll::new("the second process exits", Duration::from_secs(30))
        .until(async || {
            if second.is_running() {
                Err("still running".to_owned())
            } else {
                Ok(())
            }
        })
        .await;
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        said.contains("another relay process holds the store"),
        "the refusal names the cause: {said}"
    );
    let leader = devnet.replica_http_ports[0][0];
    assert_eq!(
        metric_sum(leader, "multibridge_leadership_changes_total", "").await,
        Some(2.0),
        "the leader kept both lanes"
    );

    // The leader dies; a copy of its store starts at once, elsewhere, as the same replica.
    devnet.replica(0, 0).unwrap().kill().unwrap();
    let killed = Instant::now();
    let copy_dir = dir.path().join("copied-store");
    std::fs::create_dir_all(&copy_dir).unwrap();
    let store = &config.store.path;
    let name = store.file_name().unwrap().to_str().unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let from = store.with_file_name(format!("{name}{suffix}"));
        if from.exists() {
            std::fs::copy(&from, copy_dir.join(format!("{name}{suffix}"))).unwrap();
        }
    }
    let (mut copied, copy_port) = other_port(config.clone());
    copied.store.path = copy_dir.join(name);
    let _copy = spawn("relay-1-copy", &copied);
    let copy_log = dir.path().join("logs/relay-1-copy.log");
    Poll::new(
        "the copy looked at the remembered lease",
        Duration::from_secs(30),
    )
    .until(async || {
        let said = std::fs::read_to_string(&copy_log).unwrap_or_default();
        if said.contains("not resuming the previous term") {
            Ok(())
        } else {
            Err("no word on the remembered lease yet".to_owned())
        }
    })
    .await;
    let said = std::fs::read_to_string(&copy_log).unwrap();
    assert!(
        said.contains("written by another place"),
        "refused for its place: {said}"
    );
    assert!(!said.contains("resumed after a restart"), "{said}");

    // Operator 1 leads again (the standby or the copy), only after the old lease ran out.
    let follower = devnet.replica_http_ports[0][1];
    let led_again = Poll::new("operator 1 leads again", Duration::from_secs(20))
        .every(Duration::from_millis(50))
        .until(async || {
            for port in [follower, copy_port] {
                if metric_sum(port, "multibridge_leader", &format!("lane=\"{LANE}\""))
                    .await
                    .unwrap_or_default()
                    == 1.0
                {
                    return Ok(killed.elapsed());
                }
            }
            Err("no replica of operator 1 leads".to_owned())
        })
        .await;
    println!(
        "copied store: operator 1 led again {:.2} s after the kill (the lease's TTL {TTL:?})",
        led_again.as_secs_f64()
    );
    assert_eq!(
        metric_sum(copy_port, "multibridge_leadership_resumed_total", "").await,
        Some(0.0),
        "the copy resumed nothing"
    );
    // Heartbeaten every ~500 ms with a 3 s TTL, the dead leader's key is taken over no sooner
    // than a TTL after the standby saw its last heartbeat (a resumed term would be at once).
    assert!(
        led_again >= TTL * 8 / 10,
        "a term taken {led_again:?} after the kill, before the old lease could run out"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_and_check(traffic, &driver, LANE, dir.path()).await;
}
