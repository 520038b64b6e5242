//! Hot-standby scenarios shared by the leadership tests and the failover benchmark: a devnet
//! whose operators run several replicas through a real etcd cluster, a steady stream of
//! transfers, and waiting on a relay's metrics.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use multibridge_contracts::Lane;

use crate::error::DevnetError;
use crate::harness::invariants::handled_nonces_in;
use crate::harness::scrape::metric;
use crate::{Devnet, DevnetOptions, Driver};

/// The series of `multibridge_leader` for one lane.
pub fn leader_series(lane: Lane) -> String {
    format!("multibridge_leader{{lane=\"{lane}\"}}")
}

/// The series of `multibridge_votes_sent_total` for one lane.
pub fn votes_series(lane: Lane) -> String {
    format!("multibridge_votes_sent_total{{lane=\"{lane}\"}}")
}

/// Poll the relay on `port` until `series` equals `want`; returns how long it took.
pub async fn wait_metric(
    port: u16,
    series: &str,
    want: f64,
    timeout: Duration,
) -> Result<Duration, DevnetError> {
    let started = Instant::now();
    loop {
        if metric(port, series).await == Some(want) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > timeout {
            return Err(DevnetError::Invalid(format!(
                "relay on port {port}: {series} != {want} after {timeout:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Start a devnet with `options` (its `replicas` per operator, etcd required), then replica 1
/// of every operator; once it leads every lane, the other replicas, and wait until they follow.
pub async fn start_ha(options: DevnetOptions) -> Result<Devnet, DevnetError> {
    let replicas = options.replicas;
    let operators = usize::try_from(options.operators).unwrap_or(usize::MAX);
    let mut devnet = Devnet::start(DevnetOptions {
        relays: false,
        ..options
    })
    .await?;
    for op in 0..operators {
        devnet.start_replica(op, 0)?;
    }
    for op in 0..operators {
        for lane in Lane::ALL {
            let port = devnet.replica_http_ports[op][0];
            wait_metric(port, &leader_series(lane), 1.0, Duration::from_secs(30)).await?;
        }
    }
    for op in 0..operators {
        for replica in 1..replicas {
            devnet.start_replica(op, replica)?;
        }
    }
    for op in 0..operators {
        for replica in 1..replicas {
            let port = devnet.replica_http_ports[op][replica];
            for lane in Lane::ALL {
                wait_metric(port, &leader_series(lane), 0.0, Duration::from_secs(30)).await?;
            }
        }
    }
    Ok(devnet)
}

/// Which replica of operator `op` leads `lane` now (by its metrics).
pub async fn leading_replica(devnet: &Devnet, op: usize, lane: Lane) -> Option<usize> {
    for (replica, port) in devnet.replica_http_ports.get(op)?.iter().enumerate() {
        if metric(*port, &leader_series(lane)).await == Some(1.0) {
            return Some(replica);
        }
    }
    None
}

/// A task that runs until told to stop (it polls the flag it is given), then yields its result.
pub(crate) struct Background<T> {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<T>,
}

impl<T: Send + 'static> Background<T> {
    pub(crate) fn spawn<Fut>(run: impl FnOnce(Arc<AtomicBool>) -> Fut) -> Self
    where
        Fut: std::future::Future<Output = T> + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(run(stop.clone()));
        Self { stop, task }
    }

    pub(crate) async fn stop(self, what: &str) -> Result<T, DevnetError> {
        self.stop.store(true, Ordering::Relaxed);
        self.task
            .await
            .map_err(|e| DevnetError::Invalid(format!("{what} task: {e}")))
    }
}

/// One transfer of a [`Traffic`] stream.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// Request nonce.
    pub nonce: u64,
    /// When its request receipt came back.
    pub at: Instant,
}

/// Native transfers on one lane, one after another, until stopped.
pub struct Traffic(Background<Result<Vec<Sent>, DevnetError>>);

impl Traffic {
    /// Start requesting on `lane` as user `user` every `every`.
    pub fn start(driver: Driver, lane: Lane, user: usize, every: Duration) -> Self {
        Self(Background::spawn(|flag| async move {
            let mut sent = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let r = driver
                    .request_native(lane, user, Address::repeat_byte(0x7e), U256::from(3))
                    .await?;
                sent.push(Sent {
                    nonce: r.nonce,
                    at: Instant::now(),
                });
                tokio::time::sleep(every).await;
            }
            Ok(sent)
        }))
    }

    /// Like [`start`](Self::start), but a request the source refuses (a paused bridge) is
    /// skipped, not an error: the transfers that were requested are returned.
    pub fn start_through_refusals(
        driver: Driver,
        lane: Lane,
        user: usize,
        every: Duration,
    ) -> Self {
        Self(Background::spawn(|flag| async move {
            let mut sent = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                if let Ok(r) = driver
                    .request_native(lane, user, Address::repeat_byte(0x7e), U256::from(3))
                    .await
                {
                    sent.push(Sent {
                        nonce: r.nonce,
                        at: Instant::now(),
                    });
                }
                tokio::time::sleep(every).await;
            }
            Ok(sent)
        }))
    }

    /// Stop and return every transfer requested, in order.
    pub async fn stop(self) -> Result<Vec<Sent>, DevnetError> {
        self.0.stop("traffic").await?
    }
}

/// When each nonce of a lane was first seen handled, by polling the destination's
/// `HandleValueTransfer` events every 50 ms until stopped.
pub struct HandleWatch(Background<Result<BTreeMap<u64, Instant>, DevnetError>>);

impl HandleWatch {
    /// Start watching `lane`'s destination.
    pub fn start(driver: Driver, lane: Lane) -> Self {
        Self(Background::spawn(|flag| async move {
            let mut seen = BTreeMap::new();
            let destination = driver.provider(lane.destination())?;
            let mut from = driver.chain(lane.destination()).contracts.bridge_block;
            loop {
                let last_round = flag.load(Ordering::Relaxed);
                let head = destination
                    .get_block_number()
                    .await
                    .map_err(|e| DevnetError::chain("eth_blockNumber", e))?;
                if head >= from {
                    // Only the blocks not read yet.
                    for nonce in handled_nonces_in(&driver, lane, from, Some(head)).await? {
                        seen.entry(nonce).or_insert_with(Instant::now);
                    }
                    from = head.saturating_add(1);
                }
                if last_round {
                    return Ok(seen);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }))
    }

    /// Stop and return the first-seen instant of every handled nonce.
    pub async fn stop(self) -> Result<BTreeMap<u64, Instant>, DevnetError> {
        self.0.stop("handle watch").await?
    }
}

/// Wait until every nonce from the first to the last of `nonces` is handled on `lane` (60 s),
/// then check DESIGN §9 on it: each handled exactly once, at most one vote per (nonce,
/// operator), and no signer nonce gap of any of `operators` on either chain.
pub async fn check_drained(
    driver: &Driver,
    lane: Lane,
    nonces: &[u64],
    operators: usize,
) -> Result<(), DevnetError> {
    let (Some(first), Some(last)) = (nonces.first(), nonces.last()) else {
        return Err(DevnetError::Invalid("no transfers to check".into()));
    };
    let range = *first..last.saturating_add(1);
    crate::harness::invariants::wait_all_handled(
        driver,
        lane,
        range.clone(),
        Duration::from_secs(60),
    )
    .await?;
    crate::harness::invariants::assert_exactly_once(driver, lane, range).await?;
    for op in 0..operators {
        for role in [
            multibridge_contracts::ChainRole::Main,
            multibridge_contracts::ChainRole::Service,
        ] {
            crate::harness::invariants::wait_no_nonce_gap(
                driver,
                role,
                op,
                Duration::from_secs(30),
            )
            .await?;
        }
    }
    Ok(())
}

/// The series of `multibridge_leadership_changes_total` for one lane.
fn changes_series(lane: Lane) -> String {
    format!("multibridge_leadership_changes_total{{lane=\"{lane}\"}}")
}

/// The series of `multibridge_fence_open_seconds` for one lane.
fn fence_open_series(lane: Lane) -> String {
    format!("multibridge_fence_open_seconds{{lane=\"{lane}\"}}")
}

/// The series of `multibridge_lease_lapses_total` for one lane.
fn lapses_series(lane: Lane) -> String {
    format!("multibridge_lease_lapses_total{{lane=\"{lane}\"}}")
}

/// What one replica's `/metrics` said in one poll, per lane (`Lane::ALL` order).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Reading {
    /// `multibridge_leader` read 1.
    leading: [bool; 2],
    /// Came back within [`SIMULTANEOUS`] of the poll's start: the answers of one poll that can
    /// be compared as one instant (a filled-in reading counts as prompt).
    prompt: bool,
    /// `multibridge_leadership_changes_total`.
    changes: [f64; 2],
    /// `multibridge_lease_lapses_total` (a lease that ran out and came back without a change).
    lapses: [f64; 2],
    /// `multibridge_votes_sent_total`.
    votes: [f64; 2],
    /// `multibridge_fence_open_seconds`: how much longer it may send without etcd.
    open: [f64; 2],
}

impl Reading {
    const NOTHING: Self = Self {
        leading: [false; 2],
        prompt: true,
        changes: [0.0; 2],
        lapses: [0.0; 2],
        votes: [0.0; 2],
        open: [0.0; 2],
    };

    fn parse(text: &str) -> Self {
        let value = |series: &str| {
            text.lines().find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
        };
        let mut reading = Self::NOTHING;
        for lane in Lane::ALL {
            let i = lane_index(lane);
            reading.leading[i] = value(&leader_series(lane)) == Some(1.0);
            reading.changes[i] = value(&changes_series(lane)).unwrap_or(0.0);
            reading.lapses[i] = value(&lapses_series(lane)).unwrap_or(0.0);
            reading.votes[i] = value(&votes_series(lane)).unwrap_or(0.0);
            reading.open[i] = value(&fence_open_series(lane)).unwrap_or(0.0);
        }
        reading
    }
}

/// One poll of every replica's `/metrics` by a [`LeaderWatch`].
#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    /// Per operator, per replica: what it said (`None`: no answer in time — a killed or paused
    /// replica, or one too slow to answer on a loaded machine).
    readings: Vec<Vec<Option<Reading>>>,
}

/// A poll's view of one operator, with the replicas that did not answer filled in (see
/// [`LeaderTimeline::filled`]).
#[derive(Debug, Clone)]
struct OperatorView {
    at: Instant,
    /// Per lane: replicas leading.
    leaders: [u8; 2],
    /// Per lane: replicas leading in answers within [`SIMULTANEOUS`] of the poll's start.
    senders: [u8; 2],
    /// Per lane: votes sent, summed over the replicas.
    votes: [f64; 2],
    /// Per lane: the longest any replica's fence stays open without etcd (answers only).
    open: [f64; 2],
}

/// What a [`LeaderWatch`] saw: every replica's leadership gauge, leadership changes and vote
/// counter every 50 ms.
#[derive(Debug, Clone, Default)]
pub struct LeaderTimeline {
    samples: Vec<Sample>,
}

/// Polls every replica of every operator until stopped, all at once each time, waiting up to a
/// second for each. A replica that does not answer is *unknown* in that poll, not "not leading":
/// on a loaded machine a scrape can miss a 200 ms deadline while the replica leads throughout,
/// which once read as a second without a leader.
pub struct LeaderWatch(Background<LeaderTimeline>);

/// How long a [`LeaderWatch`] waits for one replica's `/metrics`.
const WATCH_SCRAPE_TIMEOUT: Duration = Duration::from_secs(1);

/// Answers of one poll that came back within this of its start count as one instant for "two
/// replicas lead at once": the fence's margin at a 1 s lease (a leader's sends stop this long
/// before a standby may take over). A later answer (a loaded relay) can read a moment after the
/// others: the old leader just before its fence closed, its successor just after it took over.
const SIMULTANEOUS: Duration = Duration::from_millis(100);

fn lane_index(lane: Lane) -> usize {
    Lane::ALL.iter().position(|l| *l == lane).unwrap_or(0)
}

impl LeaderWatch {
    /// Start polling the replicas listening on `ports[operator][replica]`.
    pub fn start(ports: Vec<Vec<u16>>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(WATCH_SCRAPE_TIMEOUT)
            .build()
            .unwrap_or_default();
        Self(Background::spawn(|flag| async move {
            let mut timeline = LeaderTimeline::default();
            while !flag.load(Ordering::Relaxed) {
                let at = Instant::now();
                let scrape = |port: u16| {
                    let http = http.clone();
                    async move {
                        let resp = http
                            .get(format!("http://127.0.0.1:{port}/metrics"))
                            .send()
                            .await
                            .ok()?;
                        let mut reading = Reading::parse(&resp.text().await.ok()?);
                        reading.prompt = at.elapsed() <= SIMULTANEOUS;
                        Some(reading)
                    }
                };
                let readings = futures::future::join_all(ports.iter().map(|replicas| {
                    futures::future::join_all(replicas.iter().map(|port| scrape(*port)))
                }))
                .await;
                timeline.samples.push(Sample { at, readings });
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            timeline
        }))
    }

    /// Stop and return what was seen.
    pub async fn stop(self) -> Result<LeaderTimeline, DevnetError> {
        self.0.stop("leader watch").await
    }
}

impl LeaderTimeline {
    /// Operator `op`'s polls, each replica that did not answer filled in from its answers
    /// around it: leading a lane only if it led it in its last answer before and its first
    /// after *and* neither its leadership-change nor its lease-lapse counter moved between them
    /// (so it never stopped leading, nor had its fence closed, in between); otherwise not
    /// leading. Its votes are those of its last
    /// answer (a vote it sent while unanswered shows at its next answer).
    fn filled(&self, op: usize) -> Vec<OperatorView> {
        let replicas = self
            .samples
            .iter()
            .map(|s| s.readings.get(op).map_or(0, Vec::len))
            .max()
            .unwrap_or(0);
        let mut views: Vec<OperatorView> = self
            .samples
            .iter()
            .map(|s| OperatorView {
                at: s.at,
                leaders: [0; 2],
                senders: [0; 2],
                votes: [0.0; 2],
                open: [0.0; 2],
            })
            .collect();
        for r in 0..replicas {
            let series: Vec<Option<Reading>> = self
                .samples
                .iter()
                .map(|s| {
                    s.readings
                        .get(op)
                        .and_then(|rs| rs.get(r).copied().flatten())
                })
                .collect();
            let mut before: Option<Reading> = None;
            for (i, reading) in series.iter().enumerate() {
                let filled = match reading {
                    Some(known) => {
                        before = Some(*known);
                        *known
                    }
                    None => {
                        let after = series
                            .get(i..)
                            .and_then(|rest| rest.iter().flatten().next());
                        let mut guess = before.unwrap_or(Reading::NOTHING);
                        guess.prompt = true;
                        for l in 0..2 {
                            guess.leading[l] = match (before, after) {
                                (Some(b), Some(a)) => {
                                    b.leading[l]
                                        && a.leading[l]
                                        && b.changes[l] == a.changes[l]
                                        && b.lapses[l] == a.lapses[l]
                                }
                                _ => false,
                            };
                        }
                        guess
                    }
                };
                if let Some(view) = views.get_mut(i) {
                    for l in 0..2 {
                        view.leaders[l] =
                            view.leaders[l].saturating_add(u8::from(filled.leading[l]));
                        view.senders[l] = view.senders[l]
                            .saturating_add(u8::from(filled.leading[l] && filled.prompt));
                        view.votes[l] += filled.votes[l];
                        if reading.is_some() {
                            view.open[l] = view.open[l].max(filled.open[l]);
                        }
                    }
                }
            }
        }
        views
    }

    /// How many scrapes got no answer in time, of how many.
    pub fn unanswered(&self) -> (usize, usize) {
        let all = self
            .samples
            .iter()
            .flat_map(|s| s.readings.iter().flatten());
        let (mut missed, mut total) = (0, 0);
        for reading in all {
            total += 1;
            if reading.is_none() {
                missed += 1;
            }
        }
        (missed, total)
    }

    /// The longest time within `[from, to]` during which no replica of operator `op` led
    /// `lane`. Each end is placed halfway between the polls that bracket it (the last poll with
    /// a leader and the first without; the last without and the first with again): polls are
    /// as far apart as their slowest answer, up to a second on a loaded machine, and counting
    /// from the first poll without a leader to the next with one read a 0.9 s lapse as 1.07 s.
    pub fn leaderless(&self, op: usize, lane: Lane, from: Instant, to: Instant) -> Duration {
        let i = lane_index(lane);
        let halfway = |a: Instant, b: Instant| a + b.saturating_duration_since(a) / 2;
        let mut longest = Duration::ZERO;
        let mut since: Option<Instant> = None;
        let mut previous: Option<Instant> = None;
        for s in self
            .filled(op)
            .iter()
            .filter(|s| s.at >= from && s.at <= to)
        {
            let led = s.leaders[i] > 0;
            let edge = previous.map_or(s.at, |p| halfway(p, s.at));
            match (led, since) {
                (false, None) => since = Some(edge),
                (true, Some(start)) => {
                    longest = longest.max(edge.saturating_duration_since(start));
                    since = None;
                }
                _ => {}
            }
            previous = Some(s.at);
        }
        if let Some(start) = since {
            longest = longest.max(to.saturating_duration_since(start));
        }
        longest
    }

    /// How much longer operator `op`'s leader of `lane` could send without etcd at the last
    /// poll that started before `at` (zero when none led).
    pub fn fence_open_before(&self, op: usize, lane: Lane, at: Instant) -> Duration {
        let i = lane_index(lane);
        self.filled(op)
            .iter()
            .rev()
            .find(|s| s.at < at)
            .map_or(Duration::ZERO, |s| {
                Duration::try_from_secs_f64(s.open[i]).unwrap_or_default()
            })
    }

    /// The most replicas of operator `op` that read leading `lane` in one poll, of the answers
    /// that came back within [`SIMULTANEOUS`] of its start (`multibridge_leader` is the fence's
    /// answer at the scrape). Answers further apart are not one instant: a leader's fence
    /// closes a margin before its successor may take over, and a poll's answers on a loaded
    /// machine spread over up to a second.
    pub fn most_leaders(&self, op: usize, lane: Lane) -> u8 {
        let i = lane_index(lane);
        self.filled(op)
            .iter()
            .map(|s| s.senders[i])
            .max()
            .unwrap_or(0)
    }

    /// When operator `op` sent votes on `lane` (a rise of its summed counter).
    fn vote_rises(&self, op: usize, lane: Lane) -> Vec<Instant> {
        let i = lane_index(lane);
        self.filled(op)
            .windows(2)
            .filter(|p| p[1].votes[i] > p[0].votes[i])
            .map(|p| p[1].at)
            .collect()
    }

    /// The longest time between two consecutive votes of operator `op` on `lane` that touches
    /// `[from, to]` (from its last vote before `from` to its first after it, and so on through
    /// `to`); `None` without a vote on both sides of `from`.
    pub fn vote_gap(&self, op: usize, lane: Lane, from: Instant, to: Instant) -> Option<Duration> {
        let rises = self.vote_rises(op, lane);
        rises.first().filter(|first| **first <= from)?;
        rises.last().filter(|last| **last > from)?;
        rises
            .windows(2)
            .filter(|w| w[1] >= from && w[0] <= to)
            .map(|w| w[1].saturating_duration_since(w[0]))
            .max()
    }

    /// The longest time between two votes of operator `op` on `lane` within `[from, to]` — what
    /// a vote gap looks like when nothing fails.
    pub fn steady_vote_gap(&self, op: usize, lane: Lane, from: Instant, to: Instant) -> Duration {
        let rises: Vec<Instant> = self
            .vote_rises(op, lane)
            .into_iter()
            .filter(|at| *at >= from && *at <= to)
            .collect();
        rises
            .windows(2)
            .map(|w| w[1].saturating_duration_since(w[0]))
            .max()
            .unwrap_or_default()
    }
}

/// The etcd fault an [`EtcdFaultRound`] injects on etcd's raft leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtcdFault {
    /// SIGKILL (restarted afterwards, so the next round has three members again).
    Kill,
    /// SIGSTOP for this long, then SIGCONT.
    Pause(Duration),
}

/// What one etcd-leader fault cost, per operator and lane (`Lane::ALL` order).
#[derive(Debug, Clone)]
pub struct EtcdFaultRound {
    /// The fault.
    pub fault: EtcdFault,
    /// From the fault until a live etcd member first named a new raft leader (`None`: not
    /// seen while the fault was held).
    pub election: Option<Duration>,
    /// Longest time without a leading replica, from the fault to `settle` after it.
    pub leaderless: Vec<[Duration; 2]>,
    /// The longest time between two votes from the fault to `settle` after it (the last vote
    /// before the fault to the first after it included).
    pub vote_gap: Vec<[Option<Duration>; 2]>,
    /// The longest vote gap in the 5 s before the fault (for comparison).
    pub steady_gap: Vec<[Duration; 2]>,
    /// How much longer the leading replica's fence would stay open without etcd at the last
    /// poll before the fault (`multibridge_fence_open_seconds`): what the lane can ride out.
    pub fence_at_fault: Vec<[Duration; 2]>,
}

/// When an etcd fault was injected, and how long etcd took to elect another raft leader.
#[derive(Debug, Clone, Copy)]
pub struct EtcdFaultAt {
    /// The instant of the SIGKILL or SIGSTOP.
    pub at: Instant,
    /// Until a live member first named a new leader (`None`: not within the fault's hold).
    pub election: Option<Duration>,
}

/// Inject `fault` on etcd's raft leader of a running hot-standby devnet (traffic and a
/// [`LeaderWatch`] running), time etcd's election of another leader, wait `settle`, bring the
/// member back, and measure from `timeline` once the watch is stopped: call
/// [`EtcdFaultRound::measure`].
pub async fn etcd_leader_fault(
    devnet: &mut Devnet,
    fault: EtcdFault,
    settle: Duration,
) -> Result<EtcdFaultAt, DevnetError> {
    let etcd = devnet
        .etcd
        .as_mut()
        .ok_or_else(|| DevnetError::Invalid("the devnet runs no etcd".into()))?;
    let leader = etcd
        .leader_index()
        .await
        .ok_or_else(|| DevnetError::Invalid("etcd has no leader".into()))?;
    let member = etcd
        .member(leader)
        .ok_or_else(|| DevnetError::Invalid(format!("no etcd member {leader}")))?;
    let at = Instant::now();
    match fault {
        EtcdFault::Kill => member.process().kill()?,
        EtcdFault::Pause(_) => member.process().pause()?,
    }
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    eprintln!(
        "etcd member {leader} (the raft leader): {fault:?} at unix {}.{:03} (the relays' logs are in UTC)",
        wall.as_secs(),
        wall.subsec_millis()
    );
    let hold = match fault {
        EtcdFault::Kill => settle,
        EtcdFault::Pause(d) => d,
    };
    let mut election = None;
    while at.elapsed() < hold {
        if let Some(new) = etcd.new_leader_without(leader).await {
            election = Some(at.elapsed());
            eprintln!(
                "etcd member {new} leads {:.2} s after the fault",
                at.elapsed().as_secs_f64()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    tokio::time::sleep(hold.saturating_sub(at.elapsed())).await;
    let member = etcd
        .member(leader)
        .ok_or_else(|| DevnetError::Invalid(format!("no etcd member {leader}")))?;
    match fault {
        EtcdFault::Kill => member.process().start_again()?,
        EtcdFault::Pause(_) => member.process().resume()?,
    }
    let etcd = devnet
        .etcd
        .as_ref()
        .ok_or_else(|| DevnetError::Invalid("the devnet runs no etcd".into()))?;
    crate::harness::wait::poll_until("etcd member back", Duration::from_secs(30), || async {
        Ok(etcd.member_healthy(leader).await)
    })
    .await?;
    if hold < settle {
        tokio::time::sleep(settle.saturating_sub(hold)).await;
    }
    Ok(EtcdFaultAt { at, election })
}

impl EtcdFaultRound {
    /// Measure the fault injected at `at` for the `operators` of `timeline`, up to `until`.
    pub fn measure(
        timeline: &LeaderTimeline,
        fault: EtcdFault,
        injected: EtcdFaultAt,
        until: Instant,
        operators: usize,
    ) -> Self {
        let at = injected.at;
        fn per<T>(operators: usize, f: impl Fn(usize, Lane) -> T) -> Vec<[T; 2]> {
            (0..operators)
                .map(|op| [f(op, Lane::ALL[0]), f(op, Lane::ALL[1])])
                .collect()
        }
        let before = at.checked_sub(Duration::from_secs(5)).unwrap_or(at);
        Self {
            fault,
            election: injected.election,
            leaderless: per(operators, |op, lane| {
                timeline.leaderless(op, lane, at, until)
            }),
            vote_gap: per(operators, |op, lane| timeline.vote_gap(op, lane, at, until)),
            steady_gap: per(operators, |op, lane| {
                timeline.steady_vote_gap(op, lane, before, at)
            }),
            fence_at_fault: per(operators, |op, lane| {
                timeline.fence_open_before(op, lane, at)
            }),
        }
    }

    /// The worst leaderless time of any operator and lane.
    pub fn worst_leaderless(&self) -> Duration {
        self.leaderless
            .iter()
            .flatten()
            .copied()
            .max()
            .unwrap_or_default()
    }

    /// The worst vote gap of any operator and lane (`None` if some operator did not vote on
    /// both sides of the fault).
    pub fn worst_vote_gap(&self) -> Option<Duration> {
        self.vote_gap
            .iter()
            .flatten()
            .copied()
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .max()
    }

    /// The worst steady-state gap before the fault.
    pub fn worst_steady_gap(&self) -> Duration {
        self.steady_gap
            .iter()
            .flatten()
            .copied()
            .max()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A timeline of one operator with one replica, leading `lane` 0 at the polls `led` says,
    /// the polls `offsets_ms` after a start.
    fn timeline(offsets_ms: &[u64], led: &[bool]) -> (LeaderTimeline, Instant) {
        let start = Instant::now();
        let samples = offsets_ms
            .iter()
            .zip(led)
            .map(|(ms, led)| {
                let mut reading = Reading::NOTHING;
                reading.leading[0] = *led;
                reading.prompt = true;
                Sample {
                    at: start + Duration::from_millis(*ms),
                    readings: vec![vec![Some(reading)]],
                }
            })
            .collect();
        (LeaderTimeline { samples }, start)
    }

    #[test]
    fn a_lapse_is_measured_between_the_midpoints_of_the_polls_around_it() {
        // Polls 300 ms apart (slow answers); no leader at 600 and 900 ms.
        let (t, start) = timeline(
            &[0, 300, 600, 900, 1200, 1500],
            &[true, true, false, false, true, true],
        );
        let lane = Lane::ALL[0];
        let gap = t.leaderless(0, lane, start, start + Duration::from_secs(2));
        // From halfway 300..600 (450) to halfway 900..1200 (1050).
        assert_eq!(gap, Duration::from_millis(600));
    }

    #[test]
    fn a_lapse_that_has_not_ended_counts_to_the_end_of_the_window() {
        let (t, start) = timeline(&[0, 100, 200], &[true, false, false]);
        let lane = Lane::ALL[0];
        let gap = t.leaderless(0, lane, start, start + Duration::from_millis(1_000));
        assert_eq!(gap, Duration::from_millis(950));
    }
}
