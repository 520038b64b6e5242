//! The seeds' experiments, reproduced on a real devnet (`multibridge-devnet experiment NAME`):
//! Table 2 of seed 001 (network cuts), Table 4 of seed 003 (leader pauses), the Klaytn
//! service-chain HA test (seed 004) and a soak under continuous mixed faults.
//!
//! Every experiment drives users through a [`load::Load`], injects its faults from a seeded
//! [`Rng`] (the seed is printed, so a run can be repeated), records a [`Timeline`] (requests,
//! handles, faults, leader changes), verifies the end state from the chains alone
//! ([`verify`]) and writes `<out>/<name>.json` (the report and the timeline) and
//! `<out>/<name>.svg` (latency over time with the faults marked).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::DevnetError;

pub mod klaytn_ha;
pub mod leader_pause;
pub mod load;
pub mod network_cut;
pub mod picture;
pub mod report;
pub mod soak;
pub mod verify;
pub mod watch;

/// A small, fully determined pseudo-random generator (SplitMix64): the same seed gives the same
/// fault schedule and traffic mix on every machine and every version of every crate.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// A generator for one party of the experiment (a user, the attacker), from the seed.
    pub fn fork(&self, stream: u64) -> Self {
        let mut forked = Self(self.0 ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        forked.next_u64();
        forked
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        usize::try_from(self.next_u64() % u64::try_from(n).unwrap_or(u64::MAX)).unwrap_or(0)
    }

    /// Uniform in `[low, high)`.
    pub fn between(&mut self, low: f64, high: f64) -> f64 {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        low + (high - low) * unit
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.between(0.0, 1.0) < p
    }
}

/// A seed from the clock, for runs not given one.
pub fn fresh_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        % 1_000_000
}

/// One fault as it happened: what, to whom, from when to when (seconds since the start).
#[derive(Debug, Clone, Serialize)]
pub struct FaultSpan {
    /// Kind (e.g. `network-cut`, `sigstop`, `sigkill`, `etcd-member-kill`, `rpc-blackhole`).
    pub kind: String,
    /// Whom (e.g. `operator-2-r1`, `etcd-1`, `main rpc of operator-1-r2`).
    pub target: String,
    /// Start, seconds since the experiment started.
    pub start: f64,
    /// End (the target back), seconds since the start.
    pub end: f64,
}

/// The experiment's clock and its record of faults (shared by the attacker and the report).
#[derive(Debug, Clone)]
pub struct Timeline {
    started: Instant,
    faults: Arc<Mutex<Vec<FaultSpan>>>,
}

impl Timeline {
    /// A timeline starting now.
    pub fn start() -> Self {
        Self {
            started: Instant::now(),
            faults: Arc::default(),
        }
    }

    /// Seconds since the start.
    pub fn now(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Seconds since the start at `at` (0 before it).
    pub fn at(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.started).as_secs_f64()
    }

    /// Record a fault that ran from `start` until now.
    pub fn fault(&self, kind: &str, target: &str, start: f64) {
        let span = FaultSpan {
            kind: kind.to_owned(),
            target: target.to_owned(),
            start,
            end: self.now(),
        };
        eprintln!(
            "  fault {:>6.1}–{:>6.1} s  {:<18} {}",
            span.start, span.end, span.kind, span.target
        );
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(span);
    }

    /// Every fault recorded, in order of start.
    pub fn faults(&self) -> Vec<FaultSpan> {
        let mut faults = self
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        faults.sort_by(|a, b| a.start.total_cmp(&b.start));
        faults
    }
}

/// Sleep until `deadline` seconds after the timeline's start (at once if it passed).
pub async fn sleep_until(timeline: &Timeline, deadline: f64) {
    let left = deadline - timeline.now();
    if left > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(left)).await;
    }
}

/// A random operator and lane, and the replica of that operator leading the lane now (its first
/// replica if none does): whom a "leader" fault hits.
pub async fn random_leader(
    devnet: &crate::Devnet,
    rng: &mut Rng,
) -> (usize, multibridge_contracts::Lane, usize) {
    use multibridge_contracts::Lane;
    let op = rng.below(devnet.replica_http_ports.len());
    let lane = Lane::ALL[rng.below(Lane::ALL.len())];
    let replica = crate::harness::ha::leading_replica(devnet, op, lane)
        .await
        .unwrap_or(0);
    (op, lane, replica)
}

/// What every experiment command shares: where the results go and the seed.
#[derive(Debug, Clone)]
pub struct Common {
    /// Devnet directory (a fresh devnet per run, or per row).
    pub dir: PathBuf,
    /// Where `<name>.json` and `<name>.svg` go.
    pub out: PathBuf,
    /// The seed of the fault schedule and the traffic mix.
    pub seed: u64,
}

impl Common {
    /// The devnet directory of one part of the experiment (a row).
    pub fn part_dir(&self, part: &str) -> PathBuf {
        self.dir.join(part)
    }

    /// Write `<out>/<name>.json` and one `<out>/<name><suffix>.svg` per picture; returns the
    /// paths written.
    pub fn write<T: Serialize>(
        &self,
        name: &str,
        report: &T,
        pictures: &[(String, String)],
    ) -> Result<Vec<PathBuf>, DevnetError> {
        std::fs::create_dir_all(&self.out).map_err(|e| DevnetError::io(&self.out, e))?;
        let json_path = self.out.join(format!("{name}.json"));
        let json = serde_json::to_vec_pretty(report)
            .map_err(|e| DevnetError::Invalid(format!("report JSON: {e}")))?;
        write_file(&json_path, &json)?;
        let mut written = vec![json_path];
        for (suffix, svg) in pictures {
            let path = self.out.join(format!("{name}{suffix}.svg"));
            write_file(&path, svg.as_bytes())?;
            written.push(path);
        }
        Ok(written)
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), DevnetError> {
    std::fs::write(path, bytes).map_err(|e| DevnetError::io(path, e))
}

/// Whether this executable was built with optimisations (the figures of a debug build are not
/// the relay's: the command says so).
pub fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// One run of an experiment on a devnet: the users' load, the handles and leaders watched, the
/// native balances before; [`finish`](Run::finish) drains and verifies.
pub struct Run {
    /// The devnet (for faults).
    pub devnet: crate::Devnet,
    /// Reads the chains.
    pub driver: crate::Driver,
    /// The clock and the faults.
    pub timeline: Timeline,
    load: load::Load,
    handles: Vec<(multibridge_contracts::Lane, crate::harness::ha::HandleWatch)>,
    leaders: watch::LeaderWatch,
    baseline: verify::NativeBaseline,
}

/// What a finished run saw.
#[derive(Debug, Clone, Serialize)]
pub struct Finished {
    /// Seconds the users sent for.
    pub load_secs: f64,
    /// Every transfer from its user's side.
    pub outcomes: Vec<report::Outcome>,
    /// The end state, from the chains alone.
    pub end: verify::EndState,
    /// Every replica's store against the chains (when checked).
    pub stores: Option<verify::StoreSync>,
    /// Leader changes seen.
    pub leader_changes: Vec<watch::LeaderChange>,
    /// Faults injected.
    pub faults: Vec<FaultSpan>,
}

impl Run {
    /// Prepare the users of `spec` on a running `devnet` (approvals; `service_tokens` wrapped
    /// tokens each when ERC-20 goes service → main) and start the load and the watches.
    pub async fn start(
        devnet: crate::Devnet,
        spec: &load::LoadSpec,
        seed: u64,
        service_tokens: alloy::primitives::U256,
    ) -> Result<Self, DevnetError> {
        let driver = crate::Driver::new(devnet.manifest());
        load::prepare_users(&driver, &spec.users, service_tokens).await?;
        let baseline = verify::NativeBaseline::read(&driver).await?;
        let timeline = Timeline::start();
        let handles = multibridge_contracts::Lane::ALL
            .iter()
            .map(|lane| {
                (
                    *lane,
                    crate::harness::ha::HandleWatch::start(
                        crate::Driver::new(devnet.manifest()),
                        *lane,
                    ),
                )
            })
            .collect();
        let leaders = watch::LeaderWatch::start(devnet.replica_http_ports.clone(), &timeline);
        let load = load::Load::start(&driver, spec, &Rng::new(seed).fork(1), seed, &timeline)?;
        Ok(Self {
            devnet,
            driver,
            timeline,
            load,
            handles,
            leaders,
            baseline,
        })
    }

    /// Transfers submitted so far.
    pub fn submitted(&self) -> usize {
        self.load.submitted()
    }

    /// Whether the load reached its limit.
    pub fn load_finished(&self) -> bool {
        self.load.finished()
    }

    /// Stop the users, wait up to `drain` for every request to be handled, verify the end state
    /// and (with `stores`) every replica's store; the relays are stopped by the store check.
    pub async fn finish(self, drain: Duration, stores: bool) -> Result<Finished, DevnetError> {
        self.finish_keeping(drain, stores)
            .await
            .map(|(finished, _devnet)| finished)
    }

    /// [`finish`](Self::finish), handing the devnet back (its chains still up, to be read).
    pub async fn finish_keeping(
        mut self,
        drain: Duration,
        stores: bool,
    ) -> Result<(Finished, crate::Devnet), DevnetError> {
        let submitted = self.load.stop().await?;
        let load_secs = self.timeline.now();
        let view = verify::ChainView::drained(&self.driver, drain).await?;
        let end = verify::end_state(&self.driver, &view, &submitted, self.baseline).await?;
        let mut handles = std::collections::BTreeMap::new();
        for (lane, watch) in self.handles {
            handles.insert(lane, watch.stop().await?);
        }
        let leader_changes = self.leaders.stop().await?;
        let outcomes = report::outcomes(&view, &self.timeline, &submitted, &handles);
        let stores = if stores {
            Some(verify::store_sync(&mut self.devnet, &view).await?)
        } else {
            None
        };
        let finished = Finished {
            load_secs,
            outcomes,
            end,
            stores,
            leader_changes,
            faults: self.timeline.faults(),
        };
        Ok((finished, self.devnet))
    }
}

impl Finished {
    /// Requests in all (from the chains).
    pub fn requests(&self) -> u64 {
        self.end.requests()
    }

    /// The run's picture.
    pub fn picture(&self, title: String, bound: f64) -> String {
        picture::Picture {
            title,
            outcomes: &self.outcomes,
            faults: &self.faults,
            leader_changes: &self.leader_changes,
            bound,
            end: self.load_secs,
        }
        .svg()
    }

    /// Exactly once, conservation, recipients, and (if checked) every store: "consistent".
    pub fn consistent(&self) -> bool {
        self.end.ok() && self.stores.as_ref().is_none_or(verify::StoreSync::ok)
    }

    /// What was inconsistent, for a message.
    pub fn inconsistencies(&self) -> Vec<String> {
        let mut all = self.end.failures();
        if let Some(stores) = &self.stores {
            all.extend(stores.disagreements.iter().cloned());
        }
        all
    }
}
