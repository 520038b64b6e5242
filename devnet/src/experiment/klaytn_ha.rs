//! The Klaytn service-chain HA test (seed 004): four bridge operators ("EN4/SEN4") with
//! threshold 1, value moving both ways (native and ERC-20), and all relays stopped and started
//! again and again. With threshold 1 every operator executes alone, so the four race on every
//! transfer: the contract must refuse every vote after the first (duplicates 0), and after each
//! restart the relays must recover what was requested while they were down.
//!
//! Restarts alternate between a graceful stop (SIGTERM) and SIGKILL. Recovery time: from the
//! relays started again to every request made before that moment handled.

use std::time::{Duration, Instant};

use alloy::primitives::U256;
use multibridge_contracts::Lane;
use multibridge_contracts::bindings::Bridge;
use serde::Serialize;

use super::load::LoadSpec;
use super::report::{Spread, secs};
use super::{Common, Finished, Run, sleep_until};
use crate::error::DevnetError;
use crate::{Devnet, DevnetOptions, Driver};

/// How to run it.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Stop/start rounds.
    pub rounds: usize,
    /// Seconds the relays run between stops.
    pub up_secs: f64,
    /// Seconds they stay down.
    pub down_secs: f64,
    /// Users sending.
    pub users: usize,
    /// Requests per second per user.
    pub per_user_rate: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            rounds: 10,
            up_secs: 30.0,
            down_secs: 10.0,
            users: 4,
            per_user_rate: 1.0,
        }
    }
}

/// One stop/start.
#[derive(Debug, Clone, Serialize)]
pub struct Restart {
    /// How the relays were stopped.
    pub stop: &'static str,
    /// Requests made while the relays were down (both lanes).
    pub requested_while_down: u64,
    /// Requests made before the start (both lanes): all must be handled for the recovery.
    pub requested_before: u64,
    /// Start → every one of them handled, seconds.
    pub recovery_secs: f64,
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Seed.
    pub seed: u64,
    /// Build profile of the harness.
    pub build: &'static str,
    /// Each restart.
    pub restarts: Vec<Restart>,
    /// Requests on the chains.
    pub requests: u64,
    /// Handled exactly once.
    pub handled: u64,
    /// Nonces handled more than once (must be 0).
    pub duplicates: u64,
    /// Late votes the contracts refused (`HandleSkipped` AlreadyHandled/AlreadyVoted).
    pub refused_duplicates: u64,
    /// Nonces never handled (must be 0).
    pub lost: u64,
    /// Recovery time over the restarts.
    pub recovery: Spread,
    /// Latency of every transfer.
    pub latency: Spread,
    /// Consistent (chains).
    pub consistent: bool,
    /// What was not.
    pub inconsistencies: Vec<String>,
    /// The run in full.
    pub run: Finished,
}

/// The devnet: 4 operators, threshold 1, one relay each, no etcd.
pub fn devnet_options(dir: std::path::PathBuf, users: usize) -> DevnetOptions {
    DevnetOptions {
        operators: 4,
        threshold: 1,
        users: u32::try_from(users).unwrap_or(4),
        ..DevnetOptions::standalone_relays(dir)
    }
}

/// Run it.
pub async fn run(common: &Common, settings: &Settings) -> Result<Report, DevnetError> {
    let devnet =
        Devnet::start(devnet_options(common.part_dir("klaytn-ha"), settings.users)).await?;
    let spec = LoadSpec {
        users: (0..settings.users).collect(),
        per_user_rate: settings.per_user_rate,
        lanes: Lane::ALL.to_vec(),
        erc20_share: 0.5,
        in_flight: 2,
        limit: None,
    };
    let tokens = alloy::primitives::utils::parse_ether("100").unwrap_or(U256::ZERO);
    let mut run = Run::start(devnet, &spec, common.seed, tokens).await?;
    let operators = run.devnet.operator_http_ports.len();
    let mut restarts = Vec::new();
    let mut at = settings.up_secs;
    for round in 0..settings.rounds {
        sleep_until(&run.timeline, at).await;
        let graceful = round % 2 == 0;
        let at_stop = request_nonces(&run.driver).await?;
        let start = run.timeline.now();
        for op in 0..operators {
            if let Some(relay) = run.devnet.relay(op) {
                if graceful {
                    relay
                        .stop(Duration::from_secs(10))
                        .map_err(|e| DevnetError::Invalid(e.to_string()))?;
                } else {
                    relay
                        .kill()
                        .map_err(|e| DevnetError::Invalid(e.to_string()))?;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs_f64(settings.down_secs)).await;
        let stop = if graceful { "SIGTERM" } else { "SIGKILL" };
        // What was requested up to now must be handled by the restarted relays.
        let backlog = request_nonces(&run.driver).await?;
        let started = Instant::now();
        for op in 0..operators {
            run.devnet.start_relay(op)?;
        }
        run.timeline.fault(
            &format!("all-relays-{}", stop.to_lowercase()),
            "4 relays",
            start,
        );
        let recovery =
            wait_handled_below(&run.driver, backlog.clone(), Duration::from_secs(120)).await?;
        let took = recovery.duration_since(started).as_secs_f64();
        let requested_before: u64 = backlog.iter().sum();
        let requested_while_down = requested_before.saturating_sub(at_stop.iter().sum());
        eprintln!(
            "  restart {}/{} ({stop}): {requested_while_down} requests while down, all {requested_before} handled {:.1} s after the start",
            round.saturating_add(1),
            settings.rounds,
            took
        );
        restarts.push(Restart {
            stop,
            requested_while_down,
            requested_before,
            recovery_secs: took,
        });
        at = run.timeline.now() + settings.up_secs;
    }
    sleep_until(&run.timeline, at).await;
    let finished = run.finish(Duration::from_secs(120), false).await?;
    let end = &finished.end;
    Ok(Report {
        seed: common.seed,
        build: super::build_profile(),
        requests: end.requests(),
        handled: end.lanes.iter().map(|l| l.handled_once).sum(),
        duplicates: end.lanes.iter().map(|l| l.handled_twice).sum(),
        refused_duplicates: end.lanes.iter().map(|l| l.refused_duplicates).sum(),
        lost: end.lanes.iter().map(|l| l.lost).sum(),
        recovery: Spread::of_values(restarts.iter().map(|r| r.recovery_secs).collect()),
        latency: Spread::of(&finished.outcomes),
        consistent: finished.consistent(),
        inconsistencies: finished.inconsistencies(),
        restarts,
        run: finished,
    })
}

/// `requestNonce` of both lanes' sources now (`Lane::ALL` order).
async fn request_nonces(driver: &Driver) -> Result<Vec<u64>, DevnetError> {
    let mut nonces = Vec::new();
    for lane in Lane::ALL {
        let source = lane.source();
        let bridge = Bridge::new(
            driver.chain(source).contracts.bridge,
            driver.provider(source)?,
        );
        nonces.push(
            bridge
                .requestNonce()
                .call()
                .await
                .map_err(|e| DevnetError::chain("requestNonce", e))?,
        );
    }
    Ok(nonces)
}

/// Wait until every nonce below `nonces[lane]` is handled on each lane; returns when.
async fn wait_handled_below(
    driver: &Driver,
    nonces: Vec<u64>,
    timeout: Duration,
) -> Result<Instant, DevnetError> {
    let mut seen = Instant::now();
    for (lane, upto) in Lane::ALL.iter().zip(nonces) {
        seen = crate::harness::invariants::wait_handled_below(driver, *lane, upto, timeout).await?;
    }
    Ok(seen)
}

/// The table.
pub fn render(r: &Report) -> String {
    let mut out = format!(
        "Klaytn service-chain HA (seed 004) — 4 operators, threshold 1 (EN4/SEN4), native and ERC-20 both ways,\n\
         all relays stopped and started {} times (SIGTERM and SIGKILL alternately); seed {}, {} build\n\n",
        r.restarts.len(),
        r.seed,
        r.build
    );
    out.push_str(&format!(
        "{:<10} {:>8} {:>11} {:>20} {:>5} {:>14} {:>14}\n",
        "requests",
        "handled",
        "duplicates",
        "refused duplicates",
        "lost",
        "recovery p50",
        "recovery max"
    ));
    out.push_str(&format!(
        "{:<10} {:>8} {:>11} {:>20} {:>5} {:>12} s {:>12} s\n",
        r.requests,
        r.handled,
        r.duplicates,
        r.refused_duplicates,
        r.lost,
        secs(r.recovery.p50),
        secs(r.recovery.max)
    ));
    out.push_str(
        "\nrestart  stop     requested while down  recovery (all earlier requests handled)\n",
    );
    for (i, x) in r.restarts.iter().enumerate() {
        out.push_str(&format!(
            "{:>7}  {:<7} {:>20} {:>8} s\n",
            i.saturating_add(1),
            x.stop,
            x.requested_while_down,
            secs(x.recovery_secs)
        ));
    }
    out.push_str(&format!(
        "\nthe talk: duplicates refused by the contract's nonce check; consistent here: {}\n",
        if r.consistent { "yes" } else { "NO" }
    ));
    out
}
