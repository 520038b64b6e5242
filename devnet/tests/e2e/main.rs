//! The end-to-end tests: real anvil chains, a real etcd cluster, real relay processes, real
//! faults. One test binary (one link of the whole dependency graph); run one file with
//! `cargo test -p multibridge-devnet --test e2e relay::` or one test by name.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use multibridge_devnet::harness::invariants::dump_relay_logs;

mod attested;
mod backlog;
mod backup;
mod bad_input;
mod cli;
mod config_drift;
mod container;
mod dashboard;
mod deploy;
mod etcd_faults;
mod etcd_tls;
mod experiment;
mod guardian;
mod guardian_evidence;
mod head_feed;
mod hostile;
mod hub;
mod indexer;
mod lane_scope;
mod leadership;
mod lifecycle;
mod missing_votes;
mod monitoring;
mod outage;
mod recovery;
mod refunds;
mod relay;
mod reorg;
mod resume;
mod rpc_health;
mod secrets;
mod sender;
mod settlement;
mod signer;
mod step_down;
mod votes;

/// Stop `traffic` on `lane` and check every transfer it sent was handled exactly once, with
/// one vote per operator of 3 (the relay logs of `dir` printed on a failure).
pub(crate) async fn stop_and_check(
    traffic: multibridge_devnet::harness::ha::Traffic,
    driver: &multibridge_devnet::Driver,
    lane: multibridge_contracts::Lane,
    dir: &Path,
) {
    let nonces: Vec<u64> = traffic
        .stop()
        .await
        .unwrap()
        .iter()
        .map(|s| s.nonce)
        .collect();
    if let Err(e) = multibridge_devnet::harness::ha::check_drained(driver, lane, &nonces, 3).await {
        dump_relay_logs(dir, 3, 30);
        panic!("{lane}: {e}");
    }
}

/// Three operators, threshold 3, two replicas each through a real 3-member etcd; replica 1 of
/// every operator leads both lanes before replica 2 starts. Shared with other devnets: the tests
/// that use it assert correctness with bounds a shared machine meets.
pub(crate) async fn ha_devnet() -> (tempfile::TempDir, multibridge_devnet::Devnet) {
    let dir = tempfile::tempdir().unwrap();
    let devnet = multibridge_devnet::harness::ha::start_ha(
        multibridge_devnet::DevnetOptions::hot_standby(dir.path()),
    )
    .await
    .unwrap();
    (dir, devnet)
}

/// [`ha_devnet`] alone on the machine: for the timing contracts (a failover within TTL + 1 s, a
/// handover at once, an etcd election costing under a second), whose figures are the relay's
/// only when nothing else competes for the cores.
pub(crate) async fn ha_devnet_alone() -> (tempfile::TempDir, multibridge_devnet::Devnet) {
    let dir = tempfile::tempdir().unwrap();
    let devnet = multibridge_devnet::harness::ha::start_ha(
        multibridge_devnet::DevnetOptions::hot_standby(dir.path()).alone(),
    )
    .await
    .unwrap();
    (dir, devnet)
}

/// Rewrite every operator's config of `devnet` with `edit` (the relays read it when they start).
pub(crate) fn edit_configs(
    devnet: &multibridge_devnet::Devnet,
    edit: impl Fn(&mut multibridge_config::Config),
) {
    for op in devnet.operators() {
        let mut config = devnet.operator_config(op).unwrap();
        edit(&mut config);
        devnet.write_operator_config(op, &config).unwrap();
    }
}

/// How the tests wait for something (never a bare sleep as synchronisation): poll a check until
/// it yields `Ok(value)`; past the deadline, panic with `what: <the check's last Err>` (its last
/// observation), after dumping the relays' logs if asked to.
///
/// The clock starts at [`Poll::new`], so one `Poll` can bound several waits together.
pub(crate) struct Poll {
    what: String,
    deadline: Instant,
    every: Duration,
    logs: Option<(PathBuf, usize, usize)>,
}

impl Poll {
    /// Wait at most `timeout` from now, polling every 250 ms.
    pub(crate) fn new(what: impl Into<String>, timeout: Duration) -> Self {
        Self {
            what: what.into(),
            deadline: Instant::now() + timeout,
            every: Duration::from_millis(250),
            logs: None,
        }
    }

    /// Poll every `interval` instead.
    pub(crate) fn every(self, interval: Duration) -> Self {
        Self {
            every: interval,
            ..self
        }
    }

    /// On timeout, first print the last `lines` of the logs of relays `1..=relays` of the
    /// devnet in `devnet_dir` ([`dump_relay_logs`]).
    pub(crate) fn logs(self, devnet_dir: &Path, relays: usize, lines: usize) -> Self {
        Self {
            logs: Some((devnet_dir.to_owned(), relays, lines)),
            ..self
        }
    }

    /// Run `check` until it returns `Ok`; its value. A check may panic itself (an assertion that
    /// must hold at every poll, not only eventually).
    pub(crate) async fn until<T>(&self, mut check: impl AsyncFnMut() -> Result<T, String>) -> T {
        loop {
            match check().await {
                Ok(value) => return value,
                Err(last) if Instant::now() > self.deadline => {
                    if let Some((dir, relays, lines)) = &self.logs {
                        dump_relay_logs(dir, *relays, *lines);
                    }
                    panic!("{}: {last}", self.what);
                }
                Err(_) => tokio::time::sleep(self.every).await,
            }
        }
    }
}

/// [`Poll::until`] with the defaults: `Poll::new(what, timeout).until(check)`.
pub(crate) async fn eventually<T>(
    what: impl Into<String>,
    timeout: Duration,
    check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    Poll::new(what, timeout).until(check).await
}

/// The replica of operator `op` that leads `lane`, waited for: one scrape can miss it while a
/// term changes hands or a loaded relay answers late.
pub(crate) async fn leader_of(
    devnet: &multibridge_devnet::Devnet,
    op: usize,
    lane: multibridge_contracts::Lane,
) -> usize {
    eventually(
        format!("operator {} leads {lane:?} on one replica", op + 1),
        Duration::from_secs(30),
        async || {
            multibridge_devnet::harness::ha::leading_replica(devnet, op, lane)
                .await
                .ok_or_else(|| "no replica reports leading".to_owned())
        },
    )
    .await
}

/// Wait until the relay serving on `port` answers `/readyz` with 200.
pub(crate) async fn relay_ready(port: u16, timeout: Duration) {
    eventually(
        format!("the relay on port {port} never became ready"),
        timeout,
        async || match reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await {
            Ok(r) if r.status().is_success() => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
}

/// Wait until `series` on the relay serving on `port` is at least `at_least` (a counter that
/// must move, a 0/1 gauge that must turn 1); its value then. `what` names the failure.
pub(crate) async fn metric_at_least(
    what: &str,
    port: u16,
    series: &str,
    at_least: f64,
    timeout: Duration,
) -> f64 {
    eventually(
        what,
        timeout,
        async || match multibridge_devnet::harness::scrape::metric(port, series).await {
            Some(v) if v >= at_least => Ok(v),
            other => Err(format!("{series} = {other:?}, want at least {at_least}")),
        },
    )
    .await
}

/// The labels of every firing alert named `alert` in the devnet's Prometheus.
pub(crate) async fn firing_alerts(
    devnet: &multibridge_devnet::Devnet,
    alert: &str,
) -> Vec<std::collections::BTreeMap<String, String>> {
    devnet
        .prometheus
        .as_ref()
        .expect("the devnet runs Prometheus")
        .alerts()
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.name() == alert && a.state == "firing")
        .map(|a| a.labels)
        .collect()
}
