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
//!   payload than the indexed request, and conservation broken in two consecutive scans.
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

use alloy::primitives::{Address, Bytes};
use alloy::rpc::types::Filter;
use alloy::sol_types::{SolCall, SolEvent};
use multibridge_contracts::{Bridge, ChainRole, Lane, VoteDomain};
use multibridge_monitoring::{GuardianMetrics, StatusBoard};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::chain::logs::LogSpan;
use crate::chain::lookup::{ScanBounds, find_request, requests_of_tx};
use crate::chain::submitter::{JobEvent, SubmitClient, send_estimated};
use crate::chain::{ChainError, ChainPair};
use crate::store::{SharedStore, StoreError, unix_now};

pub mod verdict;

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

/// One breach the guardian acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alarm {
    /// The lane whose destination released.
    pub lane: Lane,
    /// Why.
    pub reason: AlarmReason,
    /// The forged nonce, when one is known (its queued release is frozen).
    pub nonce: Option<u64>,
    /// What was seen, for the log and `/status`.
    pub detail: String,
    /// Of a conservation alarm: the asset and its excess (what makes it a new breach).
    #[serde(skip)]
    pub excess: String,
}

impl Alarm {
    /// What makes two alarms the same breach (acted on once, across restarts): the nonce of a
    /// forged execution however it was seen, or a conservation excess (a larger one is new).
    fn breach(&self) -> String {
        match self.nonce {
            Some(nonce) => format!("{}/nonce/{nonce}", self.lane),
            None => format!("{}/{}", self.lane, self.excess),
        }
    }
}

/// Where the conservation scan raises alarms (never blocks: a full queue drops, the next scan
/// raises again).
#[derive(Debug, Clone)]
pub struct AlarmSender(mpsc::Sender<Alarm>);

impl AlarmSender {
    /// Raise `alarm`.
    pub fn raise(&self, alarm: Alarm) {
        if let Err(e) = self.0.try_send(alarm) {
            tracing::error!(error = %e, "guardian alarm queue full or closed");
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
    /// Pause between rounds.
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
    /// Alarms not yet fully acted on.
    standing: Vec<Alarm>,
    /// When a pause was last sent per chain.
    pause_sent: HashMap<ChainRole, Instant>,
    /// Freezes sent (lane destination, nonce).
    frozen: HashSet<(ChainRole, u64)>,
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
            standing: Vec::new(),
            pause_sent: HashMap::new(),
            frozen: HashSet::new(),
            recent: VecDeque::new(),
            paused: HashMap::new(),
            ready_read: None,
            paused_read: None,
        }
    }

    /// Run until the relay stops.
    pub async fn run(mut self) {
        loop {
            while let Ok(alarm) = self.alarms.try_recv() {
                self.raise(alarm);
            }
            self.drain_events();
            self.read_state().await;
            let mut lanes = std::mem::take(&mut self.lanes);
            for lane in &mut lanes {
                if let Err(e) = self.watch(lane).await {
                    tracing::warn!(lane = %lane.lane, error = %e, "guardian: cannot check the destination's releases; retrying");
                }
            }
            self.lanes = lanes;
            self.act().await;
            self.publish();
            tokio::select! {
                alarm = self.alarms.recv() => {
                    if let Some(alarm) = alarm {
                        self.raise(alarm);
                    }
                }
                () = tokio::time::sleep(self.settings.interval) => {}
            }
        }
    }

    /// Take `alarm` on, once per breach.
    fn raise(&mut self, alarm: Alarm) {
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
            nonce = ?alarm.nonce,
            detail = %alarm.detail,
            guardian = %self.settings.address,
            "guardian: breach seen; pausing the bridges (only the owner unpauses)"
        );
        self.recent.push_front((unix_now(), alarm.clone()));
        self.recent.truncate(ALARMS_SHOWN);
        self.standing.push(alarm);
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
        }
    }

    /// Check the destination's new handles of `guarded` up to its head.
    async fn watch(&mut self, guarded: &mut GuardedLane) -> Result<(), GuardError> {
        let lane = guarded.lane;
        let destination = self.chains.get(lane.destination()).clone();
        let head = destination.head().await?;
        let next = *guarded.next.get_or_insert(head);
        let Some(range) = guarded.span.next(next, head) else {
            return Ok(());
        };
        let (next, to) = (*range.start(), *range.end());
        let filter = Filter::new()
            .address(destination.bridge())
            .event_signature(Bridge::HandleValueTransfer::SIGNATURE_HASH)
            .from_block(next)
            .to_block(to);
        let logs = destination.logs(&filter).await?;
        guarded
            .span
            .observe(to.saturating_sub(next).saturating_add(1), logs.len());
        let mut checked = 0u64;
        for log in logs
            .iter()
            .filter(|l| !l.removed && l.address() == destination.bridge())
        {
            let Ok(handle) = log.log_decode::<Bridge::HandleValueTransfer>() else {
                tracing::error!(%lane, block = ?log.block_number, "guardian: undecodable HandleValueTransfer");
                continue;
            };
            let handle = handle.inner.data;
            let evidence = self.evidence(guarded, &handle).await?;
            checked = checked.saturating_add(1);
            match judge(
                handle.nonce,
                handle.voteKey,
                evidence,
                self.settings.source_stale_secs,
            ) {
                Verdict::Genuine => {}
                Verdict::Forged(detail) => self.raise(Alarm {
                    lane,
                    reason: AlarmReason::ForgedRelease,
                    nonce: Some(handle.nonce),
                    detail: format!("{detail} (destination block {:?})", log.block_number),
                    excess: String::new(),
                }),
                Verdict::Unknown(why) => {
                    // Read this range again next round rather than pass over a release.
                    self.metrics.checked(lane, checked);
                    tracing::warn!(%lane, nonce = handle.nonce, %why, "guardian: cannot judge a release yet");
                    return Ok(());
                }
            }
        }
        self.metrics.checked(lane, checked);
        guarded.next = Some(to.saturating_add(1));
        Ok(())
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
            return Ok(SourceEvidence::Request(
                guarded.domain.vote_key(&stored.request),
            ));
        }
        let source = self.chains.get(lane.source()).clone();
        if let Some(requests) = requests_of_tx(&source, handle.srcTxHash).await?
            && let Some(request) = requests.iter().find(|r| r.nonce == nonce)
        {
            return Ok(SourceEvidence::Request(guarded.domain.vote_key(request)));
        }
        let head = source.head().await?;
        let request_nonce = source.views().request_nonce().await?;
        if nonce >= request_nonce {
            let head_time = source.block_time(head).await?;
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
            Some(request) => SourceEvidence::Request(guarded.domain.vote_key(&request)),
            None => SourceEvidence::NotFound,
        })
    }

    /// Act on every standing alarm; keep the ones not fully acted on for the next round.
    async fn act(&mut self) {
        let standing = std::mem::take(&mut self.standing);
        for alarm in standing {
            match self.secure(&alarm).await {
                Ok(true) => {}
                Ok(false) => self.standing.push(alarm),
                Err(e) => {
                    tracing::error!(lane = %alarm.lane, error = %e, "guardian: cannot act yet; retrying");
                    self.standing.push(alarm);
                }
            }
        }
    }

    /// Pause the alarm's bridges and freeze its forged queued release. `true` once every
    /// bridge reads paused and the freeze (if any) was sent.
    async fn secure(&mut self, alarm: &Alarm) -> Result<bool, GuardError> {
        let destination = alarm.lane.destination();
        let mut targets = vec![destination];
        if self.settings.pause_both {
            targets.push(destination.other());
        }
        let mut done = true;
        for chain in targets {
            // Read now: another guardian's pause may have landed since the last round.
            let paused = self.chains.get(chain).views().paused().await?;
            self.paused.insert(chain, paused);
            self.metrics.set_paused(chain, paused);
            if paused {
                continue;
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
                    tracing::error!(%chain, lane = %alarm.lane, "guardian: pause sent");
                }
                Err(e) => {
                    self.metrics.action_failed(chain, "pause");
                    return Err(e);
                }
            }
        }
        if let Some(nonce) = alarm.nonce
            && alarm.reason != AlarmReason::Conservation
            && !self.frozen.contains(&(destination, nonce))
        {
            let views = self.chains.get(destination).views();
            if views.queued_release_at(nonce).await?.is_some() {
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
        Ok(done)
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
            "alarms": self.recent.iter().map(|(at, alarm)| Seen { at: *at, alarm }).collect::<Vec<_>>(),
        });
        self.board.set("guardian", value);
    }
}
