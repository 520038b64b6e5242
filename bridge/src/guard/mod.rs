//! The guardian (issue 38): a replica with a pauser key (`[guardian]`) that stops a bridge when
//! it sees a breach, instead of only alerting.
//!
//! What it watches:
//! - every `HandleValueTransfer` on each lane's destination **at the head** (not at the
//!   confirmation depth: a forged release must be stopped before its queued part can run),
//!   compared with the source chain's request at that nonce ([`verdict`]): from this relay's
//!   store when indexed, else from the source transaction the handle names, else from the
//!   source's `requestNonce` and logs;
//! - alarms the conservation scan raises ([`AlarmSender`]): an execution under another
//!   payload than the indexed request, and a release matched by nonce to a source request it
//!   does not pay.
//!
//! A release it cannot judge yet (the source's request out of reach) goes on a retry list of its
//! lane and the watch moves on (audit A3-L7): `guardian_unjudged{lane}` and the age of the
//! oldest show one that stays unknown.
//!
//! What a pause rests on (audit A3-M3, DESIGN §9.10): every alarm carries its [`Evidence`] — the
//! execution and the source's side — and is acted on only once [`confirm`] read it again on a
//! quorum of each chain's endpoints (two where two are configured). An endpoint that answers the
//! opposite is named (`guardian_disputes_total{chain, endpoint}`); until the finding holds, the
//! alarm waits (`guardian_unconfirmed{lane}`). Every alarm names one executed nonce, and a
//! breach is a nonce: acted on once (recorded in the store), so an owner's unpause is overruled
//! only by a new forged nonce, never by the same one seen again or by honest traffic completing
//! around it.
//!
//! What it does on an alarm, through its own sender (unfenced: every replica of every operator
//! acts, the first pause wins, the rest find the bridge paused): `pause()` on the lane's
//! destination bridge and, with `pause_both`, on the other bridge; then, for a forged release
//! the destination queued, `setQueuedReleaseFrozen(nonce, true)` (pausers may freeze; only the
//! owner cancels — the freeze outlives an unpause). It never unpauses: the owner decides
//! (docs/security.md, "After a guardian pause").

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, Bytes};
use alloy::rpc::types::Filter;
use alloy::sol_types::{SolCall, SolEvent};
use multibridge_contracts::{Bridge, ChainRole, Lane, VoteDomain};
use multibridge_monitoring::{GuardianMetrics, StatusBoard};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::chain::logs::{LogSpan, blocks_in};
use crate::chain::lookup::{ScanBounds, find_request, requests_of_tx};
use crate::chain::submitter::{JobEvent, SubmitClient, send_estimated};
use crate::chain::{ChainError, ChainPair};
use crate::store::{SharedStore, StoreError, unix_now};

pub mod confirm;
pub mod resume;
pub mod verdict;

use confirm::{Confirmation, SourceClock};
pub use confirm::{Evidence, SourceClaim};
use resume::SinceBreach;
use verdict::{SourceEvidence, Verdict, judge};

/// Why the guardian was alarmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmReason {
    /// A release the source never requested (seen at the destination's head).
    ForgedRelease,
    /// An execution under another payload than the request this relay indexed (seen by the
    /// conservation scan at the confirmation depth).
    HandledMismatch,
    /// Released more than requested, in two consecutive conservation scans.
    Conservation,
}

impl AlarmReason {
    /// The metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ForgedRelease => "forged_release",
            Self::HandledMismatch => "handled_mismatch",
            Self::Conservation => "conservation",
        }
    }
}

/// One breach the guardian acts on: one executed nonce and what shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alarm {
    /// The lane whose destination released.
    pub lane: Lane,
    /// Why.
    pub reason: AlarmReason,
    /// The forged nonce (its queued release is frozen).
    pub nonce: u64,
    /// What was seen, for the log and `/status`.
    pub detail: String,
    /// What it rests on (read again on every endpoint before acting).
    #[serde(skip)]
    pub evidence: Evidence,
}

impl Alarm {
    /// What makes two alarms the same breach (acted on once, across restarts): the nonce of a
    /// forged execution, however it was seen.
    fn breach(&self) -> String {
        format!("{}/nonce/{}", self.lane, self.nonce)
    }
}

/// Where the conservation scan raises alarms (never blocks: a full queue drops, the next scan
/// raises again).
#[derive(Debug, Clone)]
pub struct AlarmSender(mpsc::Sender<Alarm>);

impl AlarmSender {
    /// Raise `alarm`; `false` when the queue is full or closed (raise it again later).
    pub fn raise(&self, alarm: Alarm) -> bool {
        match self.0.try_send(alarm) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, "guardian alarm queue full or closed");
                false
            }
        }
    }
}

/// A channel of alarms: the sender for the scanners, the receiver for the guardian.
pub fn alarm_channel() -> (AlarmSender, mpsc::Receiver<Alarm>) {
    let (tx, rx) = mpsc::channel(64);
    (AlarmSender(tx), rx)
}

/// Why a guardian round could not finish (retried next round).
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// A chain call failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A transaction could not be sent.
    #[error(transparent)]
    Submit(#[from] crate::chain::submitter::SubmitError),
}

/// A pause sent and not yet seen is not sent again before this.
const RESEND_AFTER: Duration = Duration::from_secs(15);
/// Alarms shown in `/status`.
const ALARMS_SHOWN: usize = 10;
/// How often the key's pauser role is read again.
const READY_EVERY: Duration = Duration::from_secs(60);
/// How often `paused()` is read for `/status` and `bridge_paused` (acting reads it fresh).
const PAUSED_EVERY: Duration = Duration::from_secs(5);
/// Most `eth_getLogs` calls one search for a source request may make.
const SOURCE_SCAN_QUERIES: usize = 64;
/// Releases kept per lane for a later judgement (beyond them the watch waits where it is).
const UNJUDGED_KEPT: usize = 1_024;
/// Releases judged again per lane and round.
const REJUDGED_PER_ROUND: usize = 16;
/// Alarms waiting for their evidence to hold on a quorum of endpoints (beyond them the oldest
/// is dropped, loudly).
const UNCONFIRMED_KEPT: usize = 256;
/// An alarm whose evidence never held is dropped after this (it stays in the log and metrics).
const UNCONFIRMED_FOR: Duration = Duration::from_secs(3_600);

/// One lane as the guardian watches it.
struct GuardedLane {
    lane: Lane,
    domain: VoteDomain,
    /// Next destination block to read (the head at the first round: what came before is the
    /// conservation scan's, which reads every handle from its stored position).
    next: Option<u64>,
    /// Width of the next read, sized by how many handles the last ones held (a guardian that
    /// fell behind a burst never holds more than about a thousand handles at once).
    span: LogSpan,
    /// Releases not judged yet (the source's request out of reach for now), oldest first.
    unjudged: VecDeque<Unjudged>,
}

/// A release the guardian could not judge yet.
#[derive(Debug, Clone)]
struct Unjudged {
    handle: Bridge::HandleValueTransfer,
    tx: B256,
    block: u64,
    since: Instant,
}

/// An alarm waiting for its evidence to hold on a quorum of endpoints.
#[derive(Debug)]
struct Unconfirmed {
    alarm: Alarm,
    since: Instant,
    /// The source block the executed payload names, once read (`Some(None)`: it names none).
    claimed_block: Option<Option<u64>>,
    /// The destination block's time, once read.
    anchor: Option<u64>,
    /// Endpoints already counted as disputing it.
    disputed: HashSet<(bool, usize)>,
    /// Rounds it was read again.
    tries: u32,
}

/// An alarm whose evidence held, not yet fully acted on.
#[derive(Debug)]
struct Standing {
    alarm: Alarm,
    /// When the guardian first saw the breach (its reaction time is counted from here).
    seen: Instant,
    /// Whether [`Guardian::secure`] ran for it (later tries wait for the retry interval).
    tried: bool,
}

/// Settings of the guardian.
#[derive(Debug, Clone)]
pub struct GuardianSettings {
    /// The pauser address.
    pub address: Address,
    /// Source heads older than this make a missing request "unknown", not forged.
    pub source_stale_secs: u64,
    /// Pause the other bridge too.
    pub pause_both: bool,
    /// How often each destination's head is looked at for new executions (the shared head's
    /// freshness: a forged release is to be paused within two blocks, so its sighting must not
    /// wait for a poll interval).
    pub watch_every: Duration,
    /// How often what could not be done is tried again: releases not judged yet, alarms not
    /// confirmed yet, actions not finished.
    pub interval: Duration,
    /// Most blocks per `eth_getLogs`, per chain.
    pub max_range: HashMap<ChainRole, u64>,
    /// First block of each bridge (where a source scan stops).
    pub start_block: HashMap<ChainRole, u64>,
}

/// The guardian task of one replica.
pub struct Guardian {
    settings: GuardianSettings,
    chains: ChainPair,
    store: SharedStore,
    metrics: GuardianMetrics,
    board: Arc<StatusBoard>,
    /// The pauser key's sender per chain, and its events.
    clients: HashMap<ChainRole, (SubmitClient, mpsc::UnboundedReceiver<JobEvent>)>,
    alarms: mpsc::Receiver<Alarm>,
    lanes: Vec<GuardedLane>,
    /// Alarms whose evidence has not held on a quorum of endpoints yet.
    unconfirmed: Vec<Unconfirmed>,
    /// Alarms not yet fully acted on.
    standing: Vec<Standing>,
    /// Each chain's block time, for the margin a "never requested" needs.
    clocks: HashMap<ChainRole, SourceClock>,
    /// When a pause was last sent per chain.
    pause_sent: HashMap<ChainRole, Instant>,
    /// Freezes sent (lane destination, nonce).
    frozen: HashSet<(ChainRole, u64)>,
    /// Where each (breach, chain) starts counting as after the breach (other chain only).
    since: HashMap<(String, ChainRole), resume::Since>,
    /// Resumes respected (breach, chain), each counted once.
    respected: HashSet<(String, ChainRole)>,
    /// Since when the resume check of (breach, chain) has failed.
    unread: HashMap<(String, ChainRole), Instant>,
    /// (breach, chain) whose first pause's reaction time is recorded (a pause sent again after
    /// `RESEND_AFTER` is not another reaction).
    reacted: HashSet<(String, ChainRole)>,
    /// What `/status` shows.
    recent: VecDeque<(u64, Alarm)>,
    paused: HashMap<ChainRole, bool>,
    ready_read: Option<Instant>,
    paused_read: Option<Instant>,
}

impl Guardian {
    /// A guardian of `lanes`, sending through `clients` (the pauser key's submitters).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: GuardianSettings,
        chains: ChainPair,
        lanes: &[Lane],
        store: SharedStore,
        metrics: GuardianMetrics,
        board: Arc<StatusBoard>,
        clients: HashMap<ChainRole, (SubmitClient, mpsc::UnboundedReceiver<JobEvent>)>,
        alarms: mpsc::Receiver<Alarm>,
    ) -> Self {
        let lanes = lanes
            .iter()
            .map(|lane| {
                let (source, destination) =
                    (chains.get(lane.source()), chains.get(lane.destination()));
                GuardedLane {
                    lane: *lane,
                    domain: VoteDomain {
                        src_chain_id: source.chain_id(),
                        src_bridge: source.bridge(),
                        dst_chain_id: destination.chain_id(),
                        dst_bridge: destination.bridge(),
                    },
                    next: None,
                    span: LogSpan::with_max(
                        settings
                            .max_range
                            .get(&lane.destination())
                            .copied()
                            .unwrap_or(1_000),
                    ),
                    unjudged: VecDeque::new(),
                }
            })
            .collect();
        Self {
            settings,
            chains,
            store,
            metrics,
            board,
            clients,
            alarms,
            lanes,
            unconfirmed: Vec::new(),
            standing: Vec::new(),
            clocks: HashMap::new(),
            pause_sent: HashMap::new(),
            frozen: HashSet::new(),
            since: HashMap::new(),
            respected: HashSet::new(),
            unread: HashMap::new(),
            reacted: HashSet::new(),
            recent: VecDeque::new(),
            paused: HashMap::new(),
            ready_read: None,
            paused_read: None,
        }
    }

    /// Run until the relay stops. Every [`GuardianSettings::watch_every`] the destinations'
    /// new executions are judged and a new suspicion is confirmed and acted on at once; what
    /// waits (releases not judged, alarms not confirmed, actions not finished) is tried again
    /// every [`GuardianSettings::interval`].
    pub async fn run(mut self) {
        let mut retried: Option<Instant> = None;
        loop {
            let retry = retried.is_none_or(|at| at.elapsed() >= self.settings.interval);
            if retry {
                retried = Some(Instant::now());
            }
            while let Ok(alarm) = self.alarms.try_recv() {
                self.suspect(alarm);
            }
            self.drain_events();
            self.read_state().await;
            let mut lanes = std::mem::take(&mut self.lanes);
            for lane in &mut lanes {
                if let Err(e) = self.watch(lane).await {
                    tracing::warn!(lane = %lane.lane, error = %e, "guardian: cannot check the destination's releases; retrying");
                }
                if retry {
                    self.rejudge(lane).await;
                }
                self.metrics.set_unjudged(
                    lane.lane,
                    lane.unjudged.len(),
                    lane.unjudged.front().map(|u| u.since.elapsed()),
                );
            }
            self.lanes = lanes;
            self.confirm_all(retry).await;
            self.act(retry).await;
            self.publish();
            tokio::select! {
                alarm = self.alarms.recv() => {
                    if let Some(alarm) = alarm {
                        self.suspect(alarm);
                    }
                }
                () = tokio::time::sleep(self.settings.watch_every) => {}
            }
        }
    }

    /// Take `alarm` on as a suspicion: its evidence is read again on every endpoint before
    /// anything is paused. A breach already acted on, or already waiting, is not taken twice.
    fn suspect(&mut self, alarm: Alarm) {
        let breach = alarm.breach();
        match self.store.lock().guardian_breach_known(&breach) {
            Ok(false) => {}
            Ok(true) => {
                tracing::debug!(lane = %alarm.lane, %breach, reason = alarm.reason.as_str(), "guardian: breach already acted on");
                return;
            }
            Err(e) => tracing::error!(error = %e, "guardian: cannot read the breaches acted on"),
        }
        if self.unconfirmed.iter().any(|u| u.alarm.breach() == breach)
            || self.standing.iter().any(|s| s.alarm.breach() == breach)
        {
            return;
        }
        if self.unconfirmed.len() >= UNCONFIRMED_KEPT {
            let dropped = self.unconfirmed.remove(0);
            tracing::error!(lane = %dropped.alarm.lane, nonce = dropped.alarm.nonce, "guardian: too many unconfirmed alarms; the oldest is dropped");
        }
        tracing::warn!(
            lane = %alarm.lane,
            reason = alarm.reason.as_str(),
            nonce = alarm.nonce,
            detail = %alarm.detail,
            "guardian: suspected breach; confirming it on every endpoint before acting"
        );
        self.unconfirmed.push(Unconfirmed {
            alarm,
            since: Instant::now(),
            claimed_block: None,
            anchor: None,
            disputed: HashSet::new(),
            tries: 0,
        });
    }

    /// Read the evidence of every new unconfirmed alarm, and with `retry` of every other one;
    /// act on the ones that hold.
    async fn confirm_all(&mut self, retry: bool) {
        let waiting = std::mem::take(&mut self.unconfirmed);
        for mut entry in waiting {
            if entry.tries > 0 && !retry {
                self.unconfirmed.push(entry);
                continue;
            }
            let lane = entry.alarm.lane;
            let Some(domain) = self.lanes.iter().find(|l| l.lane == lane).map(|l| l.domain) else {
                continue;
            };
            let (source, destination) = (
                self.chains.get(lane.source()).clone(),
                self.chains.get(lane.destination()).clone(),
            );
            let evidence = entry.alarm.evidence;
            // Read at once, not one after the other: a forged release is to be paused within
            // two blocks, and each read may take a few hundred milliseconds on a loaded node.
            let (claimed, anchor, margin) = tokio::join!(
                async {
                    match entry.claimed_block {
                        Some(known) => known,
                        None => {
                            confirm::claimed_source_block(&destination, &domain, &evidence).await
                        }
                    }
                },
                async {
                    match entry.anchor {
                        Some(known) => Some(known),
                        None => destination.block_time(evidence.handle_block).await.ok(),
                    }
                },
                self.clocks
                    .entry(lane.source())
                    .or_default()
                    .margin(&source),
            );
            entry.claimed_block = Some(claimed);
            entry.anchor = anchor;
            let outcome = confirm::confirm(
                &destination,
                &source,
                &domain,
                &evidence,
                confirm::PastRule {
                    claimed_block: entry.claimed_block.flatten(),
                    // Unread, the anchor is now: the destination block cannot be younger.
                    anchor: entry.anchor.unwrap_or_else(unix_now),
                    margin,
                    stale_secs: self.settings.source_stale_secs,
                },
            )
            .await;
            entry.tries = entry.tries.saturating_add(1);
            let name = |metrics: &GuardianMetrics,
                        entry: &mut Unconfirmed,
                        voices: Vec<confirm::Voice>,
                        what: &str| {
                for v in voices {
                    let chain = if v.destination {
                        lane.destination()
                    } else {
                        lane.source()
                    };
                    if entry.disputed.insert((v.destination, v.endpoint)) {
                        metrics.disputed(lane, chain, v.endpoint);
                        tracing::error!(%lane, nonce = evidence.nonce, %chain, endpoint = %v.label, said = %v.said, "guardian: {what}; check that endpoint (it lies or is broken)");
                    }
                }
            };
            match outcome {
                Confirmation::Confirmed { contradicted_by } => {
                    name(
                        &self.metrics,
                        &mut entry,
                        contradicted_by,
                        "an RPC endpoint contradicts a breach its other endpoints confirm",
                    );
                    self.raise(entry.alarm, entry.since);
                    continue;
                }
                Confirmation::Refuted(why) => {
                    tracing::info!(%lane, nonce = evidence.nonce, reason = entry.alarm.reason.as_str(), %why, "guardian: the suspected breach does not hold on the chains (the view it came from was behind); dropped");
                    continue;
                }
                Confirmation::NotYet(why) => {
                    if entry.tries % 20 == 1 {
                        tracing::warn!(%lane, nonce = evidence.nonce, tries = entry.tries, %why, "guardian: the breach is not confirmed on enough endpoints yet; not acting");
                    }
                }
                Confirmation::Disputed { backers, summary } => {
                    name(
                        &self.metrics,
                        &mut entry,
                        backers,
                        "an RPC endpoint backs a breach another endpoint of its chain contradicts: not acting on it",
                    );
                    if entry.tries % 20 == 1 {
                        tracing::warn!(%lane, nonce = evidence.nonce, %summary, "guardian: a suspected breach is disputed between endpoints; not acting");
                    }
                }
            }
            if entry.since.elapsed() > UNCONFIRMED_FOR {
                tracing::error!(%lane, nonce = evidence.nonce, reason = entry.alarm.reason.as_str(), "guardian: a suspected breach never held on enough endpoints; dropped");
                continue;
            }
            self.unconfirmed.push(entry);
        }
        for guarded in &self.lanes {
            let n = self
                .unconfirmed
                .iter()
                .filter(|u| u.alarm.lane == guarded.lane)
                .count();
            self.metrics.set_unconfirmed(guarded.lane, n);
        }
    }

    /// Act on `alarm`, first seen at `seen`, once per breach: its evidence held.
    fn raise(&mut self, alarm: Alarm, seen: Instant) {
        match self.store.lock().record_guardian_breach(&alarm.breach()) {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(lane = %alarm.lane, breach = %alarm.breach(), "guardian: breach already acted on");
                return;
            }
            // Act anyway: a pause too many costs less than a breach let through.
            Err(e) => tracing::error!(error = %e, "guardian: cannot record the breach"),
        }
        self.metrics.alarm(alarm.lane, alarm.reason.as_str());
        tracing::error!(
            lane = %alarm.lane,
            reason = alarm.reason.as_str(),
            nonce = alarm.nonce,
            detail = %alarm.detail,
            guardian = %self.settings.address,
            "guardian: breach confirmed on every chain's endpoints; pausing the bridges (only the owner unpauses)"
        );
        self.recent.push_front((unix_now(), alarm.clone()));
        self.recent.truncate(ALARMS_SHOWN);
        self.standing.push(Standing {
            alarm,
            seen,
            tried: false,
        });
    }

    /// Log what became of the guardian's transactions.
    fn drain_events(&mut self) {
        for (chain, (_, events)) in &mut self.clients {
            while let Ok(event) = events.try_recv() {
                match event {
                    JobEvent::Mined { nonce, receipt, .. } if !receipt.status() => {
                        tracing::error!(%chain, nonce, tx = %receipt.transaction_hash, "guardian transaction reverted");
                    }
                    JobEvent::Mined { receipt, .. } => {
                        tracing::warn!(%chain, tx = %receipt.transaction_hash, "guardian transaction mined");
                    }
                    JobEvent::AtFeeCap {
                        nonce,
                        max_fee_per_gas,
                    } => {
                        tracing::error!(%chain, nonce, max_fee_per_gas, "guardian transaction stuck at its fee cap (chains.<chain>.max_fee_gwei, or four times its first bid): the chain's base fee is above it");
                    }
                    other => tracing::debug!(%chain, event = ?other, "guardian transaction"),
                }
            }
        }
    }

    /// Read whether each bridge is paused and (every [`READY_EVERY`]) whether the key may
    /// pause it.
    async fn read_state(&mut self) {
        let ready_due = self.ready_read.is_none_or(|at| at.elapsed() >= READY_EVERY);
        // With an alarm standing `secure` reads it itself, fresh, before every pause.
        let paused_due = self
            .paused_read
            .is_none_or(|at| at.elapsed() >= PAUSED_EVERY);
        if paused_due {
            self.paused_read = Some(Instant::now());
        }
        for (role, chain) in self.chains.each() {
            if paused_due {
                match chain.views().paused().await {
                    Ok(paused) => {
                        self.paused.insert(role, paused);
                        self.metrics.set_paused(role, paused);
                    }
                    Err(e) => {
                        tracing::debug!(chain = %role, error = %e, "guardian: cannot read paused()")
                    }
                }
            }
            if ready_due {
                match chain.views().is_pauser(self.settings.address).await {
                    Ok(ready) => {
                        self.metrics.set_ready(role, ready);
                        if !ready {
                            tracing::error!(chain = %role, guardian = %self.settings.address, "the guardian key is no pauser of this bridge: it cannot act; have the owner call setPauser");
                        }
                    }
                    Err(e) => {
                        tracing::debug!(chain = %role, error = %e, "guardian: cannot read isPauser")
                    }
                }
            }
        }
        if ready_due {
            self.ready_read = Some(Instant::now());
            // Each source's block time measured ahead, so a first alarm does not wait for it.
            let sources: HashSet<ChainRole> = self.lanes.iter().map(|l| l.lane.source()).collect();
            for role in sources {
                let chain = self.chains.get(role).clone();
                self.clocks
                    .entry(role)
                    .or_default()
                    .refresh(&chain, READY_EVERY.saturating_mul(2))
                    .await;
            }
        }
    }

    /// Check the destination's new handles of `guarded` up to its head. A release that cannot
    /// be judged yet goes on the lane's retry list; the watch moves on past it (audit A3-L7),
    /// unless the list is full.
    async fn watch(&mut self, guarded: &mut GuardedLane) -> Result<(), GuardError> {
        let lane = guarded.lane;
        if guarded.unjudged.len() >= UNJUDGED_KEPT {
            tracing::error!(%lane, kept = UNJUDGED_KEPT, "guardian: too many releases not judged yet; the watch waits for them");
            return Ok(());
        }
        let destination = self.chains.get(lane.destination()).clone();
        let head = destination.head().await?;
        let next = *guarded.next.get_or_insert(head);
        let Some(range) = guarded.span.next(next, head) else {
            return Ok(());
        };
        let (next, to, width) = (*range.start(), *range.end(), blocks_in(&range));
        let filter = Filter::new()
            .address(destination.bridge())
            .event_signature(Bridge::HandleValueTransfer::SIGNATURE_HASH)
            .from_block(next)
            .to_block(to);
        // At the head, read once for every pair's guardian of the chain in the process.
        let logs = match destination.logs_at_head(&filter).await {
            Ok(logs) => logs,
            Err(e) => {
                guarded.span.failed(width);
                return Err(e.into());
            }
        };
        guarded.span.observe(width, logs.len());
        let mut handles = Vec::new();
        for log in logs
            .iter()
            .filter(|l| !l.removed && l.address() == destination.bridge())
        {
            let (Ok(handle), Some(tx), Some(block)) = (
                log.log_decode::<Bridge::HandleValueTransfer>(),
                log.transaction_hash,
                log.block_number,
            ) else {
                tracing::error!(%lane, block = ?log.block_number, "guardian: undecodable HandleValueTransfer");
                continue;
            };
            handles.push(Unjudged {
                handle: handle.inner.data,
                tx,
                block,
                since: Instant::now(),
            });
        }
        // Judged before the range is passed: a chain error reads the whole range again.
        let mut verdicts = Vec::with_capacity(handles.len());
        for seen in &handles {
            verdicts.push(self.judge(guarded, &seen.handle).await?);
        }
        self.metrics.checked(lane, handles.len() as u64);
        for (seen, verdict) in handles.into_iter().zip(verdicts) {
            self.take_verdict(guarded, seen, verdict);
        }
        guarded.next = Some(to.saturating_add(1));
        Ok(())
    }

    /// Judge again some of the releases of `guarded` that could not be judged before.
    async fn rejudge(&mut self, guarded: &mut GuardedLane) {
        let round = guarded.unjudged.len().min(REJUDGED_PER_ROUND);
        for _ in 0..round {
            let Some(seen) = guarded.unjudged.pop_front() else {
                break;
            };
            match self.judge(guarded, &seen.handle).await {
                Ok(verdict) => self.take_verdict(guarded, seen, verdict),
                Err(e) => {
                    tracing::debug!(lane = %guarded.lane, nonce = seen.handle.nonce, error = %e, "guardian: cannot judge a release yet");
                    guarded.unjudged.push_back(seen);
                }
            }
        }
    }

    /// Act on the verdict of one release: a suspicion to confirm, or back on the retry list.
    fn take_verdict(&mut self, guarded: &mut GuardedLane, seen: Unjudged, verdict: Verdict) {
        let lane = guarded.lane;
        let handle = &seen.handle;
        match verdict {
            Verdict::Genuine => {}
            Verdict::Forged(detail, source) => self.suspect(Alarm {
                lane,
                reason: AlarmReason::ForgedRelease,
                nonce: handle.nonce,
                detail: format!(
                    "{detail} (destination block {}, tx {})",
                    seen.block, seen.tx
                ),
                evidence: Evidence {
                    nonce: handle.nonce,
                    executed_key: handle.voteKey,
                    handle_tx: seen.tx,
                    handle_block: seen.block,
                    source,
                },
            }),
            Verdict::Unknown(why) => {
                if seen.since.elapsed() < self.settings.interval.saturating_mul(2) {
                    tracing::warn!(%lane, nonce = handle.nonce, %why, "guardian: cannot judge a release yet; judging the rest and this one again later");
                }
                guarded.unjudged.push_back(seen);
            }
        }
    }

    /// What the source says (through the endpoint in use) of the request `handle` executed.
    async fn judge(
        &self,
        guarded: &GuardedLane,
        handle: &Bridge::HandleValueTransfer,
    ) -> Result<Verdict, GuardError> {
        let evidence = self.evidence(guarded, handle).await?;
        Ok(judge(
            handle.nonce,
            handle.voteKey,
            evidence,
            self.settings.source_stale_secs,
        ))
    }

    /// What the source says of the request `handle` executed.
    async fn evidence(
        &self,
        guarded: &GuardedLane,
        handle: &Bridge::HandleValueTransfer,
    ) -> Result<SourceEvidence, GuardError> {
        let lane = guarded.lane;
        let nonce = handle.nonce;
        if let Some(stored) = self.store.lock().get(lane, nonce)? {
            return Ok(SourceEvidence::Request {
                key: guarded.domain.vote_key(&stored.request),
                tx: stored.request.srcTxHash,
            });
        }
        let source = self.chains.get(lane.source()).clone();
        // An honest release this store has not indexed yet is found here, in one read.
        if let Some(requests) = requests_of_tx(&source, handle.srcTxHash).await?
            && let Some(request) = requests.iter().find(|r| r.nonce == nonce)
        {
            return Ok(SourceEvidence::Request {
                key: guarded.domain.vote_key(request),
                tx: handle.srcTxHash,
            });
        }
        // The source's nonce and head time read at once: a release no request pays is to be
        // paused within two blocks.
        let views = source.views();
        let (request_nonce, head) = tokio::join!(views.request_nonce(), async {
            let head = source.head().await?;
            Ok::<_, ChainError>((head, source.block_time(head).await?))
        });
        let (head, head_time) = head?;
        let request_nonce = request_nonce?;
        if nonce >= request_nonce {
            return Ok(SourceEvidence::NotRequested {
                request_nonce,
                head_age_secs: unix_now().saturating_sub(head_time),
            });
        }
        let bounds = ScanBounds {
            floor: self
                .settings
                .start_block
                .get(&lane.source())
                .copied()
                .unwrap_or(0),
            top: head,
            max_range: self
                .settings
                .max_range
                .get(&lane.source())
                .copied()
                .unwrap_or(1_000)
                .max(1),
            not_before: None,
            max_queries: SOURCE_SCAN_QUERIES,
        };
        Ok(match find_request(&source, nonce, bounds).await? {
            Some(request) => SourceEvidence::Request {
                key: guarded.domain.vote_key(&request),
                tx: request.srcTxHash,
            },
            None => SourceEvidence::NotFound,
        })
    }

    /// Act on every new standing alarm, and with `retry` on every other one; keep the ones not
    /// fully acted on for a later round.
    async fn act(&mut self, retry: bool) {
        let standing = std::mem::take(&mut self.standing);
        for mut entry in standing {
            if entry.tried && !retry {
                self.standing.push(entry);
                continue;
            }
            entry.tried = true;
            match self.secure(&entry.alarm, entry.seen).await {
                Ok(true) => {}
                Ok(false) => self.standing.push(entry),
                Err(e) => {
                    tracing::error!(lane = %entry.alarm.lane, error = %e, "guardian: cannot act yet; retrying");
                    self.standing.push(entry);
                }
            }
        }
    }

    /// Pause the alarm's bridges and freeze its forged queued release. `true` once every
    /// bridge reads paused and the freeze (if any) was sent. `seen`: when the breach was first
    /// seen (the reaction time of a pause).
    async fn secure(&mut self, alarm: &Alarm, seen: Instant) -> Result<bool, GuardError> {
        let destination = alarm.lane.destination();
        let mut targets = vec![destination];
        if self.settings.pause_both {
            targets.push(destination.other());
        }
        let mut done = true;
        for chain in targets {
            // Read now: another guardian's pause may have landed since the last round, and the
            // owner may have resumed since (an owner's decision stands: [`resume`]).
            let key = (alarm.breach(), chain);
            let state = match self.since_breach_state(alarm, chain).await {
                Ok(state) => {
                    self.unread.remove(&key);
                    state
                }
                // What cannot be read holds a pause back only for a while (a resume this
                // guardian read stands): then the bridge's flag decides, as it did before the
                // resume check.
                Err(e) => {
                    let failing_for = self
                        .unread
                        .entry(key.clone())
                        .or_insert_with(Instant::now)
                        .elapsed();
                    // Too recent for a pause and a resume since: nothing to wait for.
                    let fresh = self.chains.get(destination).head().await.is_ok_and(|head| {
                        head.saturating_sub(alarm.evidence.handle_block)
                            <= resume::FRESH_BREACH_BLOCKS
                    });
                    match resume::when_unread(self.respected.contains(&key), failing_for, fresh) {
                        resume::Unread::Resumed => SinceBreach::Resumed,
                        resume::Unread::AskAgain => {
                            tracing::warn!(%chain, lane = %alarm.lane, error = %e, "guardian: cannot read the bridge's pauses since the breach; asking again before going by its paused flag");
                            done = false;
                            continue;
                        }
                        resume::Unread::ByFlag => {
                            tracing::warn!(%chain, lane = %alarm.lane, error = %e, failing_secs = failing_for.as_secs(), "guardian: cannot read the bridge's pauses since the breach; going by its paused flag");
                            if self.chains.get(chain).views().paused().await? {
                                SinceBreach::Paused
                            } else {
                                SinceBreach::NeverPaused
                            }
                        }
                    }
                }
            };
            let paused = state == SinceBreach::Paused;
            self.paused.insert(chain, paused);
            self.metrics.set_paused(chain, paused);
            match state {
                SinceBreach::Paused => continue,
                SinceBreach::Resumed => {
                    if self.respected.insert((alarm.breach(), chain)) {
                        self.metrics.resume_respected(chain);
                        tracing::warn!(%chain, lane = %alarm.lane, nonce = alarm.nonce, "guardian: the bridge was paused after this breach and the owner resumed it since; not pausing it again (an owner's decision stands)");
                    }
                    continue;
                }
                SinceBreach::NeverPaused => {}
            }
            done = false;
            if self
                .pause_sent
                .get(&chain)
                .is_some_and(|at| at.elapsed() < RESEND_AFTER)
            {
                continue;
            }
            let input = Bytes::from(Bridge::pauseCall {}.abi_encode());
            match self.send(chain, input).await {
                Ok(()) => {
                    self.pause_sent.insert(chain, Instant::now());
                    self.metrics.action(chain, "pause");
                    let after = seen.elapsed();
                    if self.reacted.insert((alarm.breach(), chain)) {
                        self.metrics.reacted(chain, after.as_secs_f64());
                    }
                    tracing::error!(%chain, lane = %alarm.lane, after_ms = after.as_millis() as u64, "guardian: pause sent");
                }
                Err(e) => {
                    self.metrics.action_failed(chain, "pause");
                    return Err(e);
                }
            }
        }
        let nonce = alarm.nonce;
        // Frozen even where the owner resumed the bridge: the resume may have answered another
        // breach (a nonce forged before the same pause, confirmed later), and a freeze keeps the
        // release until the owner decides about it, without stopping anyone's transfers. Not
        // where the owner lifted a freeze of it since the breach: that was the owner's decision
        // about this very release (what cannot be read freezes, as before).
        if !self.frozen.contains(&(destination, nonce)) {
            let views = self.chains.get(destination).views();
            if views.queued_release_at(nonce).await?.is_some() {
                if self.freeze_lifted(alarm).await {
                    self.frozen.insert((destination, nonce));
                    self.metrics.unfreeze_respected(destination);
                    tracing::warn!(chain = %destination, nonce, "guardian: the owner lifted a freeze of this queued release after the breach; not freezing it again (an owner's decision stands)");
                } else {
                    let input = Bytes::from(
                        Bridge::setQueuedReleaseFrozenCall {
                            nonce,
                            frozen: true,
                        }
                        .abi_encode(),
                    );
                    match self.send(destination, input).await {
                        Ok(()) => {
                            self.frozen.insert((destination, nonce));
                            self.metrics.action(destination, "freeze");
                            tracing::error!(chain = %destination, nonce, "guardian: the forged queued release is frozen (only the owner cancels it)");
                        }
                        Err(e) => {
                            self.metrics.action_failed(destination, "freeze");
                            return Err(e);
                        }
                    }
                }
            }
        }
        Ok(done)
    }

    /// Whether the owner lifted a freeze of `alarm`'s queued release since its breach
    /// ([`resume::freeze_lifted`]); `false` where that cannot be read.
    async fn freeze_lifted(&self, alarm: &Alarm) -> bool {
        let destination = alarm.lane.destination();
        let max_range = self
            .settings
            .max_range
            .get(&destination)
            .copied()
            .unwrap_or(1_000);
        match resume::freeze_lifted(
            self.chains.get(destination),
            alarm.nonce,
            alarm.evidence.handle_block,
            max_range,
        )
        .await
        {
            Ok(lifted) => lifted,
            Err(e) => {
                tracing::warn!(chain = %destination, nonce = alarm.nonce, error = %e, "guardian: cannot read whether the owner lifted a freeze of the release; freezing it");
                false
            }
        }
    }

    /// What `chain`'s bridge did since `alarm`'s breach ([`resume::since_breach`]).
    async fn since_breach_state(
        &mut self,
        alarm: &Alarm,
        chain: ChainRole,
    ) -> Result<SinceBreach, GuardError> {
        let since = self.since_breach(alarm, chain).await?;
        let max_range = self
            .settings
            .max_range
            .get(&chain)
            .copied()
            .unwrap_or(1_000);
        Ok(resume::since_breach(self.chains.get(chain), since, max_range).await?)
    }

    /// Where `chain` counts as after `alarm`'s breach: the forged execution's block on its own
    /// chain; on the other, a block time (the latest any destination endpoint gives the
    /// execution's block: one that answers older cannot widen it) and the first block since
    /// (read once per alarm and chain).
    async fn since_breach(
        &mut self,
        alarm: &Alarm,
        chain: ChainRole,
    ) -> Result<resume::Since, GuardError> {
        let destination = alarm.lane.destination();
        if chain == destination {
            return Ok(resume::Since {
                block: alarm.evidence.handle_block,
                not_before_time: None,
            });
        }
        let key = (alarm.breach(), chain);
        if let Some(since) = self.since.get(&key) {
            return Ok(*since);
        }
        let block = alarm.evidence.handle_block;
        let times = self
            .chains
            .get(destination)
            .on_each_endpoint("eth_getBlockByNumber", |p| async move {
                use alloy::providers::Provider as _;
                Ok(
                    p.get_block_by_number(alloy::eips::BlockNumberOrTag::Number(block))
                        .await?
                        .map(|b| b.header.timestamp),
                )
            })
            .await;
        let latest = times
            .into_iter()
            .filter_map(|(_, t)| t.ok().flatten())
            .max();
        let at = match latest {
            Some(at) => at,
            None => self.chains.get(destination).block_time(block).await?,
        };
        let since = resume::since_time(self.chains.get(chain), at).await?;
        self.since.insert(key, since);
        Ok(since)
    }

    async fn send(&self, chain: ChainRole, input: Bytes) -> Result<(), GuardError> {
        let Some((client, _)) = self.clients.get(&chain) else {
            return Ok(());
        };
        let bridge = self.chains.get(chain).bridge();
        send_estimated(client, bridge, input, 50).await?;
        Ok(())
    }

    fn publish(&self) {
        #[derive(Serialize)]
        struct Seen<'a> {
            at: u64,
            #[serde(flatten)]
            alarm: &'a Alarm,
        }
        let value = serde_json::json!({
            "address": self.settings.address.to_string(),
            "paused": self.paused.iter().map(|(c, p)| (c.as_str(), *p)).collect::<HashMap<_, _>>(),
            "acting": !self.standing.is_empty(),
            "unconfirmed": self.unconfirmed.iter().map(|u| serde_json::json!({
                "lane": u.alarm.lane.as_str(),
                "nonce": u.alarm.nonce,
                "reason": u.alarm.reason.as_str(),
                "waiting_secs": u.since.elapsed().as_secs(),
            })).collect::<Vec<_>>(),
            "alarms": self.recent.iter().map(|(at, alarm)| Seen { at: *at, alarm }).collect::<Vec<_>>(),
        });
        self.board.set("guardian", value);
    }
}
