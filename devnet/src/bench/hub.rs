//! `bench-hub` (issue 37): one relay process per operator serving 1, 2, 4, 8 … service chains
//! under one main chain — transfers on every lane at once, each handled exactly once, the
//! relays' peak RSS per number of lanes — and, on the largest hub, one service chain's RPC
//! blackholed for every relay while the other lanes' latency is measured beside an undisturbed
//! window of the same length.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use multibridge_contracts::{ChainRole, Lane};
use serde::Serialize;

use crate::bench::percentile;
use crate::error::DevnetError;
use crate::harness::invariants::{assert_exactly_once, handled_nonces_in};
use crate::harness::proxy::ProxyMode;
use crate::{Devnet, DevnetOptions, Driver};

/// What to run.
#[derive(Debug, Clone)]
pub struct HubBenchOptions {
    /// The hub sizes, in service chains (each a pair, two lanes).
    pub pairs: Vec<usize>,
    /// Native transfers per lane in the all-lanes burst.
    pub per_lane: usize,
    /// Seconds one service chain stays blackholed (0: skip that part); the undisturbed window
    /// before it is as long.
    pub blackhole_seconds: u64,
    /// Seconds between two probe transfers on a lane during the latency windows.
    pub probe_every: f64,
    /// The relays' etcd lease TTL, seconds.
    pub lease_ttl_secs: u64,
    /// The relays follow each chain's head by subscription (`ws_url`).
    pub head_feeds: bool,
}

/// One hub size.
#[derive(Debug, Clone, Serialize)]
pub struct HubRow {
    /// Service chains (pairs).
    pub pairs: usize,
    /// Lanes served by each relay process.
    pub lanes: usize,
    /// Transfers requested (every lane at once) and each handled exactly once.
    pub transfers: usize,
    /// Seconds from the first request to the last handle.
    pub drain_seconds: f64,
    /// Latency (request receipt → handle seen), over every transfer of the burst.
    pub latency_p50: f64,
    /// 99th percentile of the same.
    pub latency_p99: f64,
    /// Peak RSS (VmHWM) of each operator's relay process, MiB.
    pub peak_rss_mib: Vec<f64>,
    /// RPC requests to the main chain per second by operator 1's relay process at rest (every
    /// pair's `rpc_requests_total` of the main chain over [`AT_REST`] after the burst).
    pub main_reads_per_sec: f64,
    /// Of those, `eth_blockNumber` (the head and the endpoints' probe).
    pub main_head_reads_per_sec: f64,
    /// Of those, `eth_getLogs`.
    pub main_log_reads_per_sec: f64,
    /// Every replica of every operator SIGKILLed and restarted at once: seconds from the
    /// restart to every (operator, pair, lane) led by one of its replicas.
    pub cold_start_led_seconds: f64,
    /// The same start: seconds to half of the (operator, pair, lane)s led.
    pub cold_start_half_led_seconds: f64,
    /// CPU used at rest over the same window, cores (CPU seconds per second) per kind of process.
    pub cpu_at_rest: CpuShare,
}

/// CPU used over a window, in cores (CPU seconds per wall-clock second), per kind of process:
/// where a hub's 2 cores go.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CpuShare {
    /// Every operator's first relay replica (the only one `bench-hub` runs), summed.
    pub relays: f64,
    /// The main chain's node.
    pub main_node: f64,
    /// Every service chain's node, summed.
    pub service_nodes: f64,
    /// Every etcd member, summed.
    pub etcd: f64,
    /// This benchmark (the users' transactions and the watchers).
    pub bench: f64,
    /// The whole machine (`/proc/stat`), including all of the above.
    pub machine: f64,
}

impl CpuShare {
    fn row(&self) -> String {
        format!(
            "relays {:.2}, main node {:.2}, service nodes {:.2}, etcd {:.2}, bench {:.2}; machine {:.2} cores",
            self.relays, self.main_node, self.service_nodes, self.etcd, self.bench, self.machine
        )
    }
}

/// CPU seconds used so far by each kind of process of a devnet, and when they were read.
struct CpuSample {
    at: Instant,
    used: CpuShare,
}

impl CpuSample {
    fn take(devnet: &Devnet) -> Self {
        let sum = |pids: &[i32]| {
            pids.iter()
                .filter_map(|pid| crate::harness::process::cpu_seconds(*pid))
                .sum::<f64>()
        };
        let service: Vec<i32> = devnet
            .service
            .pid()
            .into_iter()
            .chain(devnet.hub_edges().iter().filter_map(|e| e.node.pid()))
            .collect();
        let own = i32::try_from(std::process::id()).unwrap_or(0);
        Self {
            at: Instant::now(),
            used: CpuShare {
                relays: sum(&devnet.relay_pids()),
                main_node: sum(devnet.main.pid().as_slice()),
                service_nodes: sum(&service),
                etcd: sum(&devnet.etcd.as_ref().map(|e| e.pids()).unwrap_or_default()),
                bench: sum(&[own]),
                machine: machine_cpu_seconds(),
            },
        }
    }

    /// Cores used from `earlier` to this sample.
    fn since(&self, earlier: &Self) -> CpuShare {
        let secs = self.at.duration_since(earlier.at).as_secs_f64().max(1e-9);
        let rate =
            |pick: fn(&CpuShare) -> f64| (pick(&self.used) - pick(&earlier.used)).max(0.0) / secs;
        CpuShare {
            relays: rate(|c| c.relays),
            main_node: rate(|c| c.main_node),
            service_nodes: rate(|c| c.service_nodes),
            etcd: rate(|c| c.etcd),
            bench: rate(|c| c.bench),
            machine: rate(|c| c.machine),
        }
    }
}

/// CPU seconds every core of the machine spent busy so far (`/proc/stat`'s first line: every
/// column but idle and iowait, in ticks of 1/100 s).
fn machine_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|stat| {
            let line = stat.lines().next()?.strip_prefix("cpu ")?;
            let ticks: Vec<f64> = line
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal guest guest_nice; guest time is
            // already counted in user.
            let busy: f64 = ticks.iter().take(8).sum::<f64>()
                - ticks.get(3).copied().unwrap_or(0.0)
                - ticks.get(4).copied().unwrap_or(0.0);
            Some(busy / 100.0)
        })
        .unwrap_or(0.0)
}

/// How long the main chain's reads are counted at rest.
const AT_REST: Duration = Duration::from_secs(10);

/// The blackhole window on the largest hub.
#[derive(Debug, Clone, Serialize)]
pub struct Blackhole {
    /// Service chains of the hub.
    pub pairs: usize,
    /// The pair whose service chain was blackholed for every relay.
    pub blackholed: String,
    /// Seconds it was.
    pub seconds: u64,
    /// Seconds per block.
    pub block_time: f64,
    /// Per other lane (`pair/lane`): p99 latency undisturbed, then while blackholed.
    pub lanes: BTreeMap<String, (f64, f64)>,
    /// Every lane's latency at steady load (the undisturbed window: one transfer per lane every
    /// `--probe-every` seconds on every lane at once), `pair/lane` → (p50, p99).
    pub steady: BTreeMap<String, (f64, f64)>,
    /// The largest p50 of any lane at steady load (target ≤ [`STEADY_P50`]).
    pub steady_worst_p50: f64,
    /// The largest p99 of any lane at steady load (target ≤ [`STEADY_P99`]).
    pub steady_worst_p99: f64,
    /// Per pair, how far its service chain's block clock runs behind the main chain's, as
    /// measured before the steady window (seconds into the main chain's block interval; the
    /// devnet spreads them over one interval): which direction's votes make the destination's
    /// next block depends on it.
    pub phases: BTreeMap<String, f64>,
    /// The largest increase of an other lane's p99, seconds.
    pub worst_increase: f64,
    /// CPU used during the steady-load window, per kind of process.
    pub cpu_steady: CpuShare,
    /// Transfers requested on the blackholed pair while it was cut.
    pub queued: usize,
    /// Of those, handled before the cut ended (0: the cut held).
    pub handled_while_cut: usize,
    /// Seconds from the cut's end until every one of them was handled.
    pub catch_up_seconds: f64,
}

/// Everything `bench-hub` measured.
#[derive(Debug, Clone, Serialize)]
pub struct HubReport {
    /// Per hub size.
    pub rows: Vec<HubRow>,
    /// (largest − smallest hub's peak RSS, max over operators) ÷ the lanes added, MiB.
    pub rss_per_added_lane_mib: Option<f64>,
    /// The blackhole window.
    pub blackhole: Option<Blackhole>,
}

const BLOCK_TIME: f64 = 1.0;

/// Issue 54's steady-load targets per lane: p50 and p99, seconds.
pub const STEADY_P50: f64 = 2.0;
/// See [`STEADY_P50`].
pub const STEADY_P99: f64 = 2.5;

/// Run every hub size under `dir`, the blackhole on the largest.
pub async fn run(dir: &Path, options: &HubBenchOptions) -> Result<HubReport, DevnetError> {
    let mut rows = Vec::new();
    let mut blackhole = None;
    let largest = options.pairs.iter().copied().max().unwrap_or(1);
    for &pairs in &options.pairs {
        let sub = dir.join(format!("{pairs}-pairs"));
        let _ = std::fs::remove_dir_all(&sub);
        let mut devnet = Devnet::start(DevnetOptions {
            relays: true,
            etcd_members: 1,
            service_chains: pairs,
            users: pairs.saturating_add(1) as u32,
            block_time: Some(BLOCK_TIME),
            backup_every: None,
            edge_proxies: pairs == largest && pairs > 1 && options.blackhole_seconds > 0,
            // Every offset between two chains' block clocks a deployment can have, not all
            // pairs at the one the devnet's start happens to give.
            spread_block_phases: true,
            // Native transfers only: no pair but the first mints tokens to every user.
            edge_user_tokens: false,
            lease_ttl_secs: options.lease_ttl_secs.max(1),
            head_feeds: options.head_feeds,
            // Every size with the hub's allocator setting, the 1-pair row too: the per-lane
            // growth is measured against it.
            relay_env: crate::harness::devnet::hub_allocator_env(true, &[])
                .into_iter()
                .collect(),
            ..DevnetOptions::new(&sub)
        })
        .await?;
        let drivers = drivers(&devnet);
        wait_ready(&devnet).await?;
        let mut row = burst(&devnet, &drivers, options.per_lane).await?;
        let before = CpuSample::take(&devnet);
        let reads = main_reads_at_rest(&devnet).await?;
        row.cpu_at_rest = CpuSample::take(&devnet).since(&before);
        (
            row.main_reads_per_sec,
            row.main_head_reads_per_sec,
            row.main_log_reads_per_sec,
        ) = reads;
        (row.cold_start_led_seconds, row.cold_start_half_led_seconds) =
            cold_start(&mut devnet).await?;
        eprintln!(
            "{} pair(s): {} transfers in {:.1}s, p50 {:.2}s p99 {:.2}s, peak RSS {:?} MiB, main-chain RPC {:.1}/s at rest, every lane led {:.2}s after a cold start",
            row.pairs,
            row.transfers,
            row.drain_seconds,
            row.latency_p50,
            row.latency_p99,
            row.peak_rss_mib,
            row.main_reads_per_sec,
            row.cold_start_led_seconds
        );
        eprintln!("  CPU at rest: {}", row.cpu_at_rest.row());
        rows.push(row);
        if devnet.options.edge_proxies {
            blackhole = Some(cut_one(&mut devnet, &drivers, options).await?);
        }
    }
    let rss_per_added_lane_mib = match (rows.first(), rows.last()) {
        (Some(a), Some(b)) if b.lanes > a.lanes => {
            let peak = |r: &HubRow| r.peak_rss_mib.iter().copied().fold(0.0, f64::max);
            Some((peak(b) - peak(a)) / (b.lanes - a.lanes) as f64)
        }
        _ => None,
    };
    Ok(HubReport {
        rows,
        rss_per_added_lane_mib,
        blackhole,
    })
}

/// A driver per pair, by name (the single-pair devnet: its one pair).
fn drivers(devnet: &Devnet) -> BTreeMap<String, Driver> {
    devnet.manifest().drivers(&Devnet::first_pair_name())
}

/// Every pair's API of every operator answers `/readyz` 200.
async fn wait_ready(devnet: &Devnet) -> Result<(), DevnetError> {
    let manifest = devnet.manifest();
    let mut urls: Vec<String> = manifest
        .operators
        .iter()
        .flat_map(|o| o.http_urls.iter().take(1).cloned())
        .collect();
    for pair in manifest.pairs.iter().skip(1) {
        urls.extend(pair.http_urls.iter().filter_map(|u| u.first().cloned()));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    for url in urls {
        loop {
            let ready = reqwest::get(format!("{url}readyz"))
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                break;
            }
            if Instant::now() > deadline {
                return Err(DevnetError::NotReady {
                    component: url,
                    waited: Duration::from_secs(120),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok(())
}

/// Operator 1's relay process: its pairs' `/metrics` URLs (one per pair).
fn operator_one_metrics(devnet: &Devnet) -> Vec<String> {
    let manifest = devnet.manifest();
    let mut urls: Vec<String> = manifest
        .operators
        .first()
        .and_then(|o| o.http_urls.first().cloned())
        .into_iter()
        .collect();
    for pair in manifest.pairs.iter().skip(1) {
        urls.extend(pair.http_urls.first().and_then(|u| u.first().cloned()));
    }
    urls.into_iter().map(|u| format!("{u}metrics")).collect()
}

/// Operator 1's RPC requests to the main chain so far: (all, `eth_blockNumber`, `eth_getLogs`).
async fn main_reads(urls: &[String]) -> Result<(f64, f64, f64), DevnetError> {
    let mut sums = (0.0, 0.0, 0.0);
    for url in urls {
        let text = reqwest::get(url)
            .await
            .map_err(|e| DevnetError::Invalid(format!("{url}: {e}")))?
            .text()
            .await
            .map_err(|e| DevnetError::Invalid(format!("{url}: {e}")))?;
        for line in text.lines().filter(|l| {
            l.starts_with("multibridge_rpc_requests_total{") && l.contains("chain=\"main\"")
        }) {
            let value: f64 = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            sums.0 += value;
            if line.contains("method=\"eth_blockNumber\"") {
                sums.1 += value;
            }
            if line.contains("method=\"eth_getLogs\"") {
                sums.2 += value;
            }
        }
    }
    Ok(sums)
}

/// Operator 1's requests to the main chain per second over [`AT_REST`], no transfer moving.
async fn main_reads_at_rest(devnet: &Devnet) -> Result<(f64, f64, f64), DevnetError> {
    let urls = operator_one_metrics(devnet);
    let before = main_reads(&urls).await?;
    let started = Instant::now();
    tokio::time::sleep(AT_REST).await;
    let after = main_reads(&urls).await?;
    let secs = started.elapsed().as_secs_f64();
    Ok((
        (after.0 - before.0) / secs,
        (after.1 - before.1) / secs,
        (after.2 - before.2) / secs,
    ))
}

/// Every replica of every operator SIGKILLed, then all started at once: seconds from the
/// start to every (operator, pair, lane) led by one of the operator's replicas, and to half of
/// them.
async fn cold_start(devnet: &mut Devnet) -> Result<(f64, f64), DevnetError> {
    let operators = devnet.manifest().operators.len();
    let replicas = devnet.options.replicas.max(1);
    for op in 0..operators {
        for replica in 0..replicas {
            if let Some(process) = devnet.replica(op, replica) {
                process.kill()?;
            }
        }
    }
    let started = Instant::now();
    for op in 0..operators {
        for replica in 0..replicas {
            devnet.start_replica(op, replica)?;
        }
    }
    // (operator, pair) → its replicas' API ports; a pair's ports list operators in order,
    // replicas within each.
    let manifest = devnet.manifest();
    let pairs: Vec<Vec<Vec<u16>>> = std::iter::once(
        manifest
            .operators
            .iter()
            .map(|o| port_list(&o.http_urls))
            .collect(),
    )
    .chain(
        manifest
            .pairs
            .iter()
            .skip(1)
            .map(|p| p.http_urls.iter().map(|r| port_list(r)).collect()),
    )
    .collect();
    use futures::StreamExt;
    // Each (operator, pair) is asked only until both its lanes were seen led, many at once: a
    // round of every API one after the other took seconds at 64 pairs, and its last round
    // decided the figure (and its scrapes loaded the relays being measured).
    let mut waiting: Vec<(Vec<u16>, [bool; 2])> = pairs
        .iter()
        .flatten()
        .map(|replicas| (replicas.clone(), [false; 2]))
        .collect();
    let apis = waiting.iter().map(|(ports, _)| ports.len()).sum::<usize>();
    let mut led_after: Vec<f64> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !waiting.is_empty() {
        if Instant::now() > deadline {
            return Err(DevnetError::NotReady {
                component: format!(
                    "every lane of every pair led after a cold start ({} operator-pairs not yet)",
                    waiting.len()
                ),
                waited: Duration::from_secs(120),
            });
        }
        let scrapes = waiting.iter().flat_map(|(ports, _)| ports.iter().copied());
        let texts: HashMap<u16, String> = futures::stream::iter(scrapes)
            .map(|port| async move {
                crate::harness::scrape::metrics_text(port)
                    .await
                    .map(|text| (port, text))
            })
            .buffer_unordered(COLD_START_SCRAPES)
            .filter_map(|got| async move { got })
            .collect()
            .await;
        let seen = started.elapsed().as_secs_f64();
        for (ports, led) in &mut waiting {
            for (i, lane) in Lane::ALL.into_iter().enumerate() {
                let label = format!("lane=\"{lane}\"");
                let now_led = ports.iter().filter_map(|p| texts.get(p)).any(|text| {
                    text.lines().any(|l| {
                        l.starts_with("multibridge_leader{")
                            && l.contains(&label)
                            && l.ends_with(" 1")
                    })
                });
                if now_led && !led[i] {
                    led[i] = true;
                    led_after.push(seen);
                }
            }
        }
        waiting.retain(|(_, led)| !led.iter().all(|l| *l));
        if !waiting.is_empty() {
            tokio::time::sleep(crate::harness::wait::POLL_INTERVAL).await;
        }
    }
    led_after.sort_by(f64::total_cmp);
    let took = led_after.last().copied().unwrap_or_default();
    let half = percentile(&led_after, 50.0);
    eprintln!(
        "cold start of {} relay processes: every lane of every pair led {took:.2}s after the start (half of them by {half:.2}s; {apis} APIs)",
        operators.saturating_mul(replicas),
    );
    Ok((took, half))
}

/// Relay APIs asked at once while a cold start is watched.
const COLD_START_SCRAPES: usize = 16;

fn port_list(urls: &[String]) -> Vec<u16> {
    urls.iter()
        .filter_map(|u| u.parse::<reqwest::Url>().ok()?.port())
        .collect()
}

/// Pair `index` sends as user `index` (so no two pairs share a sender's nonce on the main
/// chain), to a recipient of its own.
fn sender_of(index: usize) -> (usize, Address) {
    (
        index,
        Address::repeat_byte(0xa0u8.wrapping_add(index as u8)),
    )
}

/// Requests sent on one (pair, lane): nonce → when its receipt arrived.
type Sent = HashMap<(String, Lane), Vec<(u64, Instant)>>;

/// `per_lane` native transfers on every lane of every pair at once; wait for every handle.
async fn burst(
    devnet: &Devnet,
    drivers: &BTreeMap<String, Driver>,
    per_lane: usize,
) -> Result<HubRow, DevnetError> {
    let watchers = Watchers::start(drivers);
    let started = Instant::now();
    let sends = drivers
        .iter()
        .enumerate()
        .flat_map(|(index, (name, driver))| {
            Lane::ALL.into_iter().map(move |lane| async move {
                let (user, to) = sender_of(index);
                let requests = driver
                    .request_native_burst(lane, user, to, U256::from(1_000u64), per_lane)
                    .await?;
                let at = Instant::now();
                Ok::<_, DevnetError>((
                    (name.clone(), lane),
                    requests.iter().map(|r| (r.nonce, at)).collect::<Vec<_>>(),
                ))
            })
        });
    let sent: Sent = futures::future::try_join_all(sends)
        .await?
        .into_iter()
        .collect();
    let seen = watchers.wait_for(&sent, Duration::from_secs(300)).await?;
    watchers.stop().await?;
    let drain_seconds = started.elapsed().as_secs_f64();
    assert_sent_once(drivers, &sent).await?;
    let mut latencies = latencies(&sent, &seen);
    latencies.sort_by(f64::total_cmp);
    Ok(HubRow {
        pairs: drivers.len(),
        lanes: drivers.len().saturating_mul(2),
        transfers: latencies.len(),
        drain_seconds,
        latency_p50: percentile(&latencies, 50.0),
        latency_p99: percentile(&latencies, 99.0),
        peak_rss_mib: peak_rss(devnet),
        main_reads_per_sec: 0.0,
        main_head_reads_per_sec: 0.0,
        main_log_reads_per_sec: 0.0,
        cold_start_led_seconds: 0.0,
        cold_start_half_led_seconds: 0.0,
        cpu_at_rest: CpuShare::default(),
    })
}

/// Seconds from each request's receipt to its handle being seen.
fn latencies(sent: &Sent, seen: &Seen) -> Vec<f64> {
    sent.iter()
        .flat_map(|(key, requests)| lane_latencies(requests, seen.get(key)))
        .collect()
}

/// Which probe rounds of the steady window held the transfers slower than `over` seconds, and
/// on which lanes: one round slow on many lanes is a stall of the whole hub (a one-off that
/// sets those lanes' p99), a lane slow in every round is the lane. Rounds are counted from the
/// window's start, whose wall-clock time is printed to find them in the relays' logs.
fn slow_rounds(
    sent: &Sent,
    seen: &Seen,
    (began, began_wall): (Instant, std::time::SystemTime),
    every: Duration,
    over: f64,
) -> String {
    let mut rounds: BTreeMap<u64, (usize, usize)> = BTreeMap::new();
    let mut total = 0usize;
    for (key, requests) in sent {
        for (nonce, at) in requests {
            let Some(handled) = seen.get(key).and_then(|s| s.get(nonce)) else {
                continue;
            };
            if handled.saturating_duration_since(*at).as_secs_f64() <= over {
                continue;
            }
            total = total.saturating_add(1);
            let round = (at.saturating_duration_since(began).as_secs_f64()
                / every.as_secs_f64().max(0.1)) as u64;
            let counts = rounds.entry(round).or_default();
            match key.1 {
                Lane::MainToService => counts.0 = counts.0.saturating_add(1),
                Lane::ServiceToMain => counts.1 = counts.1.saturating_add(1),
            }
        }
    }
    let since_epoch = began_wall
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let listed: Vec<String> = rounds
        .iter()
        .map(|(round, (ms, sm))| {
            format!("round {round}: {ms} main -> service, {sm} service -> main")
        })
        .collect();
    format!(
        "steady window (began at unix {since_epoch:.1}, a round every {:.1} s): {total} transfers over {over} s{}{}",
        every.as_secs_f64(),
        if listed.is_empty() {
            ""
        } else {
            "; by round: "
        },
        listed.join("; ")
    )
}

/// [`latencies`] of one lane.
fn lane_latencies(requests: &[(u64, Instant)], seen: Option<&HashMap<u64, Instant>>) -> Vec<f64> {
    requests
        .iter()
        .filter_map(|(nonce, at)| {
            let handled = seen?.get(nonce)?;
            Some(handled.saturating_duration_since(*at).as_secs_f64())
        })
        .collect()
}

/// Every nonce of every lane of `sent`, from 0 up to the highest sent, handled exactly once
/// with one vote per operator.
async fn assert_sent_once(
    drivers: &BTreeMap<String, Driver>,
    sent: &Sent,
) -> Result<(), DevnetError> {
    for ((name, lane), requests) in sent {
        let end = requests
            .iter()
            .map(|r| r.0)
            .max()
            .unwrap_or(0)
            .saturating_add(1);
        assert_exactly_once(&drivers[name], *lane, 0..end)
            .await
            .map_err(|e| DevnetError::Invalid(format!("pair {name}: {e}")))?;
    }
    Ok(())
}

/// When each handle was first seen, per (pair, lane).
type Seen = HashMap<(String, Lane), HashMap<u64, Instant>>;

/// One watcher per lane of every pair, each reading its destination's handle events every
/// 200 ms while the transfers are sent (so a handle's time is when it appeared, not when the
/// sender finished), from a few blocks below the last head each time (a block whose logs a
/// node stores after its state is read again).
struct Watchers {
    seen: std::sync::Arc<std::sync::Mutex<Seen>>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<Result<(), DevnetError>>>,
}

impl Watchers {
    fn start(drivers: &BTreeMap<String, Driver>) -> Self {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Seen::new()));
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for (name, driver) in drivers {
            for lane in Lane::ALL {
                let (driver, seen, stopped) = (driver.clone(), seen.clone(), stopped.clone());
                let key = (name.clone(), lane);
                tasks.push(tokio::spawn(async move {
                    let provider = driver.provider(lane.destination())?;
                    let mut from = 0u64;
                    while !*stopped.borrow() {
                        let head = provider
                            .get_block_number()
                            .await
                            .map_err(|e| DevnetError::chain("eth_blockNumber", e))?;
                        let handled = handled_nonces_in(&driver, lane, from, Some(head)).await?;
                        let now = Instant::now();
                        {
                            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                            let lane_seen = seen.entry(key.clone()).or_default();
                            for nonce in handled {
                                lane_seen.entry(nonce).or_insert(now);
                            }
                        }
                        from = head.saturating_sub(2);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Ok(())
                }));
            }
        }
        Self { seen, stop, tasks }
    }

    /// Wait until every nonce of `sent` was seen (or `timeout`); what was seen so far.
    async fn wait_for(&self, sent: &Sent, timeout: Duration) -> Result<Seen, DevnetError> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let missing: usize = sent
                .iter()
                .map(|(key, requests)| {
                    requests
                        .iter()
                        .filter(|(n, _)| !seen.get(key).is_some_and(|s| s.contains_key(n)))
                        .count()
                })
                .sum();
            if missing == 0 {
                return Ok(seen);
            }
            if Instant::now() > deadline {
                return Err(DevnetError::Invalid(format!(
                    "{missing} transfers not handled within {timeout:?}"
                )));
            }
            if self.tasks.iter().any(|t| t.is_finished()) {
                return Err(DevnetError::Invalid(
                    "a handle watcher stopped early (an RPC error)".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn stop(mut self) -> Result<(), DevnetError> {
        let _ = self.stop.send(true);
        for task in std::mem::take(&mut self.tasks) {
            task.await
                .map_err(|e| DevnetError::Invalid(format!("handle watcher: {e}")))??;
        }
        Ok(())
    }
}

/// Watchers given up on (an error before [`Watchers::stop`]) stop polling.
impl Drop for Watchers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Peak RSS (VmHWM) of every operator's relay, MiB.
fn peak_rss(devnet: &Devnet) -> Vec<f64> {
    devnet
        .relay_pids()
        .into_iter()
        .map(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("VmHWM:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                })
                .map_or(0.0, |kib| kib / 1024.0)
        })
        .collect()
}

/// Probe transfers, one per lane every `every`, for `window`; the blackholed pair's too
/// (they queue). Returns what was sent.
async fn probe(
    drivers: &BTreeMap<String, Driver>,
    window: Duration,
    every: Duration,
) -> Result<Sent, DevnetError> {
    let until = Instant::now() + window;
    let lanes = drivers
        .iter()
        .enumerate()
        .flat_map(|(index, (name, driver))| {
            Lane::ALL.into_iter().map(move |lane| async move {
                let (user, to) = sender_of(index);
                let mut sent = Vec::new();
                while Instant::now() < until {
                    let next = Instant::now() + every;
                    let request = driver
                        .request_native(lane, user, to, U256::from(7u64))
                        .await?;
                    sent.push((request.nonce, Instant::now()));
                    tokio::time::sleep_until(next.into()).await;
                }
                Ok::<_, DevnetError>(((name.clone(), lane), sent))
            })
        });
    Ok(futures::future::try_join_all(lanes)
        .await?
        .into_iter()
        .collect())
}

/// The undisturbed window, then the same with one service chain cut for every relay.
async fn cut_one(
    devnet: &mut Devnet,
    drivers: &BTreeMap<String, Driver>,
    options: &HubBenchOptions,
) -> Result<Blackhole, DevnetError> {
    let window = Duration::from_secs(options.blackhole_seconds);
    let every = Duration::from_secs_f64(options.probe_every.max(0.5));
    let edge_name = devnet
        .hub_edges()
        .first()
        .map(|e| e.name.clone())
        .ok_or_else(|| DevnetError::Invalid("no further pair to cut".into()))?;
    let phases = block_phases(drivers).await?;
    let watchers = Watchers::start(drivers);
    // Undisturbed.
    let before = CpuSample::take(devnet);
    let calm_began = (Instant::now(), std::time::SystemTime::now());
    let calm = probe(drivers, window, every).await?;
    let cpu_steady = CpuSample::take(devnet).since(&before);
    eprintln!("  CPU at steady load: {}", cpu_steady.row());
    let calm_seen = watchers.wait_for(&calm, Duration::from_secs(120)).await?;
    // Cut: every relay's connections to the edge's service chain go nowhere.
    let proxy = devnet
        .hub_edge(&edge_name)
        .and_then(|e| e.proxy.as_ref())
        .ok_or_else(|| DevnetError::Invalid("the edge has no proxy".into()))?;
    proxy.set_mode(ProxyMode::Blackhole);
    let cut = probe(drivers, window, every).await;
    proxy.set_mode(ProxyMode::Forward);
    let cut = cut?;
    let healed = Instant::now();
    let (others, blackholed): (Sent, Sent) = cut
        .into_iter()
        .partition(|((name, _), _)| *name != edge_name);
    let others_seen = watchers.wait_for(&others, Duration::from_secs(120)).await?;
    let blackholed_seen = watchers
        .wait_for(&blackholed, Duration::from_secs(300))
        .await?;
    let handled_while_cut = blackholed
        .iter()
        .flat_map(|(key, requests)| {
            requests
                .iter()
                .filter_map(|(n, _)| blackholed_seen.get(key)?.get(n))
        })
        .filter(|seen| **seen < healed)
        .count();
    let catch_up_seconds = healed.elapsed().as_secs_f64();
    watchers.stop().await?;
    assert_sent_once(drivers, &blackholed).await?;
    assert_sent_once(drivers, &others).await?;
    let sorted = |sent: &Sent, seen: &Seen, key| {
        let mut l = sent
            .get(key)
            .map(|requests| lane_latencies(requests, seen.get(key)))
            .unwrap_or_default();
        l.sort_by(f64::total_cmp);
        l
    };
    let p99 = |sent: &Sent, seen: &Seen, key| percentile(&sorted(sent, seen, key), 99.0);
    let steady: BTreeMap<String, (f64, f64)> = calm
        .keys()
        .map(|key| {
            let l = sorted(&calm, &calm_seen, key);
            (
                format!("{}/{}", key.0, key.1.as_str()),
                (percentile(&l, 50.0), percentile(&l, 99.0)),
            )
        })
        .collect();
    eprintln!(
        "{}",
        slow_rounds(&calm, &calm_seen, calm_began, every, STEADY_P99)
    );
    let worst = |pick: fn(&(f64, f64)) -> f64| steady.values().map(pick).fold(0.0, f64::max);
    let (steady_worst_p50, steady_worst_p99) = (worst(|l| l.0), worst(|l| l.1));
    let mut lanes = BTreeMap::new();
    let mut worst_increase = f64::MIN;
    for key in others.keys() {
        let (before, during) = (p99(&calm, &calm_seen, key), p99(&others, &others_seen, key));
        worst_increase = worst_increase.max(during - before);
        lanes.insert(format!("{}/{}", key.0, key.1.as_str()), (before, during));
    }
    Ok(Blackhole {
        pairs: drivers.len(),
        blackholed: edge_name,
        seconds: options.blackhole_seconds,
        block_time: BLOCK_TIME,
        lanes,
        steady,
        steady_worst_p50,
        steady_worst_p99,
        phases,
        worst_increase,
        cpu_steady,
        queued: blackholed.values().map(Vec::len).sum(),
        handled_while_cut,
        catch_up_seconds,
    })
}

/// Per pair, its service chain's block phase behind the main chain's, seconds in `[0,
/// BLOCK_TIME)`: every chain's head asked every 10 ms until it moved twice, the second move's
/// instant taken as the chain's phase (the first may come from a read already under way).
async fn block_phases(
    drivers: &BTreeMap<String, Driver>,
) -> Result<BTreeMap<String, f64>, DevnetError> {
    let epoch = Instant::now();
    let clock = |driver: &Driver, role: ChainRole| {
        let provider = driver.provider(role);
        async move {
            let provider = provider?;
            let deadline = Instant::now() + Duration::from_secs_f64(3.0 * BLOCK_TIME);
            let (mut last, mut moves) = (None, 0);
            while Instant::now() < deadline {
                let head = provider
                    .get_block_number()
                    .await
                    .map_err(|e| DevnetError::chain("eth_blockNumber", e))?;
                if last.is_some_and(|l| l != head) {
                    moves += 1;
                    if moves == 2 {
                        return Ok(epoch.elapsed().as_secs_f64().rem_euclid(BLOCK_TIME));
                    }
                }
                last = Some(head);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(DevnetError::Invalid(format!(
                "the {role} chain made no two blocks in {}s",
                3.0 * BLOCK_TIME
            )))
        }
    };
    let main = drivers
        .values()
        .next()
        .ok_or_else(|| DevnetError::Invalid("no pair".into()))?;
    let (main_phase, services) = tokio::join!(
        clock(main, ChainRole::Main),
        futures::future::join_all(drivers.values().map(|d| clock(d, ChainRole::Service)))
    );
    // Best effort: a chain not measured is left out of the table, not the bench.
    let main_phase = match main_phase {
        Ok(phase) => phase,
        Err(e) => {
            eprintln!("  block phases not measured: {e}");
            return Ok(BTreeMap::new());
        }
    };
    Ok(drivers
        .keys()
        .zip(services)
        .filter_map(|(name, phase)| match phase {
            Ok(phase) => Some((name.clone(), (phase - main_phase).rem_euclid(BLOCK_TIME))),
            Err(e) => {
                eprintln!("  {name}: block phase not measured: {e}");
                None
            }
        })
        .collect())
}

/// The allocator setting the relays ran with, as printed.
fn allocator_setting() -> String {
    use crate::harness::devnet::{ALLOCATOR_CONF_VAR, HUB_ALLOCATOR_CONF};
    std::env::var(ALLOCATOR_CONF_VAR).unwrap_or_else(|_| HUB_ALLOCATOR_CONF.to_owned())
}

/// The readable table.
pub fn render(report: &HubReport) -> String {
    let mut out = format!(
        "multibridge bench-hub: one relay process per operator (3 operators, threshold 2) serving N service chains under one main chain, 1 s blocks; relays' allocator {}\n\n",
        allocator_setting()
    );
    out.push_str(&format!(
        "{:>6} {:>6} {:>10} {:>9} {:>8} {:>8} {:>22} {:>16}   {}\n",
        "pairs",
        "lanes",
        "transfers",
        "drain s",
        "p50 s",
        "p99 s",
        "main RPC/s (head,logs)",
        "cold→led s (half)",
        "peak RSS per operator, MiB"
    ));
    for r in &report.rows {
        out.push_str(&format!(
            "{:>6} {:>6} {:>10} {:>9.1} {:>8.2} {:>8.2} {:>22} {:>16}   {}\n",
            r.pairs,
            r.lanes,
            r.transfers,
            r.drain_seconds,
            r.latency_p50,
            r.latency_p99,
            format!(
                "{:.0} ({:.0}, {:.0})",
                r.main_reads_per_sec, r.main_head_reads_per_sec, r.main_log_reads_per_sec
            ),
            format!(
                "{:.2} ({:.2})",
                r.cold_start_led_seconds, r.cold_start_half_led_seconds
            ),
            r.peak_rss_mib
                .iter()
                .map(|m| format!("{m:.1}"))
                .collect::<Vec<_>>()
                .join(" / ")
        ));
    }
    out.push_str("\nCPU at rest (cores):\n");
    for r in &report.rows {
        out.push_str(&format!("{:>6} pairs: {}\n", r.pairs, r.cpu_at_rest.row()));
    }
    if let Some(per_lane) = report.rss_per_added_lane_mib {
        out.push_str(&format!(
            "\npeak RSS per added lane: {per_lane:.2} MiB   target <= 1 MiB: {}\n",
            if per_lane <= 1.0 { "met" } else { "MISSED" }
        ));
    }
    if let Some(b) = &report.blackhole {
        let over = b
            .steady
            .values()
            .filter(|(p50, p99)| *p50 > STEADY_P50 || *p99 > STEADY_P99)
            .count();
        out.push_str(&format!(
            "\n{} pairs at steady load (a transfer per lane every probe period, every lane at once): worst lane p50 {:.2}s (target <= {STEADY_P50}), worst lane p99 {:.2}s (target <= {STEADY_P99}); {} of {} lanes over a target: {}\n",
            b.pairs,
            b.steady_worst_p50,
            b.steady_worst_p99,
            over,
            b.steady.len(),
            if over == 0 { "met" } else { "MISSED" }
        ));
        out.push_str(&format!("CPU at steady load: {}\n", b.cpu_steady.row()));
        out.push_str(
            "\nper pair at steady load, by how far its service chain's blocks come after the main chain's:\n  pair                   offset s   main -> service p50 / p99   service -> main p50 / p99\n",
        );
        let mut by_phase: Vec<(&String, &f64)> = b.phases.iter().collect();
        by_phase.sort_by(|a, b| a.1.total_cmp(b.1));
        for (pair, phase) in by_phase {
            let lane = |l: Lane| {
                b.steady.get(&format!("{pair}/{}", l.as_str())).map_or_else(
                    || "-".to_owned(),
                    |(p50, p99)| format!("{p50:.2} / {p99:.2}"),
                )
            };
            out.push_str(&format!(
                "  {pair:<22} {phase:>8.2}   {:>25}   {:>25}\n",
                lane(Lane::MainToService),
                lane(Lane::ServiceToMain)
            ));
        }
        out.push_str(&format!(
            "\n{} pairs, service chain of {} blackholed for every relay for {} s; p99 latency of every other lane, undisturbed -> during:\n",
            b.pairs, b.blackholed, b.seconds
        ));
        for (lane, (before, during)) in &b.lanes {
            out.push_str(&format!("  {lane:<32} {before:>6.2}s -> {during:>6.2}s\n"));
        }
        out.push_str(&format!(
            "  worst increase {:+.2}s   target <= 0.2 s: {}\n  {} transfers requested on {} while cut ({} of them handled before it healed), all handled exactly once {:.1}s after it healed\n",
            b.worst_increase,
            if b.worst_increase <= 0.2 { "met" } else { "MISSED" },
            b.queued,
            b.blackholed,
            b.handled_while_cut,
            b.catch_up_seconds
        ));
    }
    out
}
