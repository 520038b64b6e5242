//! Conservation per asset (DESIGN §8, §9): how much every lane released on its destination
//! against how much was requested (locked or burned) on its source, read from the chains' own
//! events — `RequestValueTransfer` on the source, `HandleValueTransfer` on the destination — not
//! from what this relay believes it did. Both scans stop at their chain's confirmation depth and
//! keep their totals in the store, so a restart carries on instead of re-reading history.
//!
//! The same destination scan compares every `VoteCast` and every `HandleValueTransfer` with the
//! payload this relay observed for the nonce: a different vote key in a vote means an operator
//! saw (or signed) another payload — vote divergence; in an execution, that a threshold of keys
//! executed a payload nobody requested and the genuine request at that nonce can never execute
//! (audit NEW-M2: the owner settles it with `multibridge admin settle`).
//!
//! A check that must not cry wolf compares by nonces, not by heads (audit A3-M2): each side is
//! read at its own depth through whatever endpoint, so a release may be read long before the
//! request it pays (this relay's source depth deeper than the executors', `"finalized"`, a
//! lagging endpoint). A release therefore counts only once the source scan has read its nonce,
//! and it is matched with the request at that nonce ([`Store::match_releases`]): under the same
//! vote key it counts as released under the request's asset; under any other key it is a
//! forged release — counted under its own asset, recorded with its evidence and raised once to
//! the guardian, which confirms it on every endpoint before it pauses. An honest bridge always
//! shows released ≤ requested, the difference being exactly what is in flight; a breach already
//! raised is a nonce, so honest traffic completing around it raises nothing new.

use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;
use std::sync::Arc;

use alloy::primitives::{Address, U256};
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use multibridge_contracts::{AssetKind, Bridge, Lane, VoteDomain};
use multibridge_monitoring::LaneMetrics;
use multibridge_monitoring::metrics::NATIVE_ASSET;
use serde::Serialize;

use crate::chain::ChainClient;
use crate::chain::ChainError;
use crate::chain::bridge_views::ViewError;
use crate::chain::logs::{LogSpan, blocks_in};
use crate::guard::{Alarm, AlarmReason, AlarmSender, Evidence, SourceClaim};
use crate::store::{
    AssetSide, ForgedRelease, ScannedRelease, ScannedRequest, SharedStore, Store, StoreError,
};

/// Why a conservation step failed (retried at the next watch tick either way).
#[derive(Debug, thiserror::Error)]
pub enum ConservationError {
    /// A chain call failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The source's request logs could not be read (or the endpoints disagree on them).
    #[error(transparent)]
    View(#[from] ViewError),
    /// A log did not decode as the bridge's event.
    #[error("{lane}: undecodable {event} log in block {block:?}")]
    BadLog {
        /// Lane.
        lane: Lane,
        /// Event name.
        event: &'static str,
        /// Block of the log.
        block: Option<u64>,
    },
}

/// One asset's figures on one lane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AssetConservation {
    /// The source token (zero address: native coin).
    pub asset: Address,
    /// Requested on the source, in base units.
    pub requested: U256,
    /// Released on the destination, in base units.
    pub released: U256,
    /// Refunded on the source after the destination cancelled the request, in base units.
    pub refunded: U256,
    /// `released + refunded <= requested`.
    pub ok: bool,
}

/// Compare totals per source asset (every side is keyed by the source asset: a release counts
/// under the asset of the request it paid): released + refunded (issue 53) ≤ requested, equal
/// when the lane is idle.
pub fn compare(
    requested: &[(Address, U256)],
    released: &[(Address, U256)],
    refunded: &[(Address, U256)],
) -> Vec<AssetConservation> {
    let mut by_asset: BTreeMap<Address, [U256; 3]> = BTreeMap::new();
    for (side, totals) in [requested, released, refunded].into_iter().enumerate() {
        for (asset, amount) in totals {
            let entry = by_asset.entry(*asset).or_default();
            entry[side] = entry[side].saturating_add(*amount);
        }
    }
    by_asset
        .into_iter()
        .map(
            |(asset, [requested, released, refunded])| AssetConservation {
                asset,
                requested,
                released,
                refunded,
                ok: released
                    .checked_add(refunded)
                    .is_some_and(|out| out <= requested),
            },
        )
        .collect()
}

/// What a request or handle moves in the asset's units: an ERC-721's amount is its id, so it
/// counts as one token.
fn units(kind: u8, amount: U256) -> U256 {
    if kind == AssetKind::Erc721 as u8 {
        U256::from(1)
    } else {
        amount
    }
}

/// The `asset` label of a source token.
pub fn asset_label(asset: Address) -> String {
    if asset == Address::ZERO {
        NATIVE_ASSET.to_owned()
    } else {
        format!("{asset:#x}")
    }
}

/// How many block ranges one side reads per step (bounds a step's time on a long history).
const RANGES_PER_STEP: usize = 20;

/// Where one side of a lane is read.
#[derive(Debug, Clone)]
pub struct ScanSide {
    /// The chain.
    pub chain: Arc<ChainClient>,
    /// The bridge on it.
    pub bridge: Address,
    /// First block to read.
    pub start_block: u64,
    /// Blocks below head that count as final (or the chain's finalized block).
    pub confirmations: crate::config::Confirmations,
    /// Most blocks per `eth_getLogs`.
    pub max_range: u64,
}

/// The conservation scanner of one lane.
pub struct ConservationScanner {
    lane: Lane,
    source: ScanSide,
    destination: ScanSide,
    domain: VoteDomain,
    store: SharedStore,
    metrics: LaneMetrics,
    /// Destination token → its source counterpart (from the store, else read once and kept).
    to_source: HashMap<Address, Option<Address>>,
    /// `eth_getLogs` widths of the source's requests, the destination and the source's refunds.
    spans: [LogSpan; 3],
    /// Votes seen before this relay indexed their request, re-checked every step (bounded).
    unmatched: std::collections::VecDeque<SeenVote>,
    /// Handles of the range being read, measured once the range is recorded.
    handles: Vec<SeenHandle>,
    /// Block times read for latency: (chain is source, block) → unix seconds (bounded).
    block_times: HashMap<(bool, u64), u64>,
    /// Where breaches go when this replica has a guardian.
    alarms: Option<AlarmSender>,
    /// The source's `requestNonce` just before its scan starts: only handles of nonces from
    /// here on count as released (a relay configured to start after some history must not
    /// compare that history's handles with no requests).
    first_nonce: Option<u64>,
}

/// A `HandleValueTransfer` whose latency is still to be measured.
#[derive(Debug, Clone, Copy)]
struct SeenHandle {
    nonce: u64,
    block: u64,
    time: Option<u64>,
}

/// Block-time reads one step may make for latency (the rest of the handles go unmeasured).
const LATENCY_READS_PER_STEP: usize = 128;
/// Block times cached at most.
const BLOCK_TIMES_KEPT: usize = 4096;

/// A `VoteCast` (or, `executed`, a `HandleValueTransfer`) as the divergence check needs it.
#[derive(Debug, Clone, Copy)]
struct SeenVote {
    nonce: u64,
    operator: Address,
    key: alloy::primitives::B256,
    executed: bool,
    /// The destination transaction and block.
    tx: alloy::primitives::B256,
    block: u64,
}

/// Most votes kept for a later check while their request is not indexed yet.
const MAX_UNMATCHED: usize = 4096;

impl ConservationScanner {
    /// A scanner of the lane of `metrics`.
    pub fn new(
        source: ScanSide,
        destination: ScanSide,
        store: SharedStore,
        metrics: LaneMetrics,
    ) -> Self {
        let lane = metrics.lane;
        let spans = [
            LogSpan::with_max(source.max_range),
            LogSpan::with_max(destination.max_range),
            LogSpan::with_max(source.max_range),
        ];
        let domain = VoteDomain {
            src_chain_id: source.chain.chain_id(),
            src_bridge: source.bridge,
            dst_chain_id: destination.chain.chain_id(),
            dst_bridge: destination.bridge,
        };
        Self {
            lane,
            source,
            destination,
            domain,
            store,
            metrics,
            to_source: HashMap::new(),
            spans,
            unmatched: std::collections::VecDeque::new(),
            handles: Vec::new(),
            block_times: HashMap::new(),
            alarms: None,
            first_nonce: None,
        }
    }

    /// Raise breaches to a guardian through `alarms` (none: only metrics and logs).
    pub fn with_alarms(mut self, alarms: Option<AlarmSender>) -> Self {
        self.alarms = alarms;
        self
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock()
    }

    /// Scan both sides as far as final blocks go (bounded per call), match releases with
    /// requests by nonce, raise forged releases and, when the source caught up, compare and
    /// publish. Returns the comparison when one was made.
    pub async fn step(&mut self) -> Result<Option<Vec<AssetConservation>>, ConservationError> {
        let waiting = std::mem::take(&mut self.unmatched);
        for vote in waiting {
            self.check_vote(vote)?;
        }
        let first_nonce = match self.first_nonce {
            Some(n) => n,
            None => {
                let start = self.source.start_block;
                let n = self
                    .source
                    .chain
                    .views()
                    .first_nonce_from(start, self.source.max_range)
                    .await?;
                self.first_nonce = Some(n);
                n
            }
        };
        self.scan(AssetSide::Released, first_nonce).await?;
        let caught_up = self.scan(AssetSide::Requested, first_nonce).await?
            & self.scan(AssetSide::Refunded, first_nonce).await?;
        self.learn_counterparts().await?;
        let forged = {
            let to_source = &self.to_source;
            self.store()
                .match_releases(self.lane, |local| to_source.get(&local).copied().flatten())?
        };
        for f in &forged {
            self.metrics.handled_mismatch.inc();
            tracing::error!(
                lane = %self.lane,
                nonce = f.release.nonce,
                executed = %f.release.key,
                request = ?f.request.map(|(key, _)| key),
                asset = %asset_label(f.asset),
                units = %f.release.units,
                tx = %f.release.tx,
                "conservation: a release pays no request the source made at its nonce (a forged \
                 payload): the genuine request at that nonce can never execute; pause the bridges \
                 and have the owner settle it (multibridge admin settle)"
            );
        }
        self.raise_forged()?;
        let (open, held, forged) = self.store().conservation_counts(self.lane)?;
        self.metrics.set_conservation_nonces(open, held, forged);
        if !caught_up {
            return Ok(None);
        }
        let (requested, released, refunded) = {
            let store = self.store();
            (
                store.asset_totals(self.lane, AssetSide::Requested)?,
                store.asset_totals(self.lane, AssetSide::Released)?,
                store.asset_totals(self.lane, AssetSide::Refunded)?,
            )
        };
        let compared = compare(&requested, &released, &refunded);
        let lane = self.lane.as_str();
        for a in &compared {
            let label = asset_label(a.asset);
            self.metrics
                .set_asset(&label, f64::from(a.requested), f64::from(a.released), a.ok);
            self.metrics
                .set_asset_refunded(&label, f64::from(a.refunded));
            if !a.ok {
                tracing::error!(
                    %lane,
                    asset = %label,
                    requested = %a.requested,
                    released = %a.released,
                    refunded = %a.refunded,
                    "conservation broken: the destination released and the source refunded more than the source locked or burned"
                );
            }
        }
        Ok(Some(compared))
    }

    /// Learn the source counterpart of every destination token a release to be matched
    /// released: from the store (kept as first seen), else from the destination bridge's
    /// `tokenPair` (kept when it names one; a pair deregistered since names none, and its
    /// releases are counted under the destination token — audit A3-L6: never as native).
    async fn learn_counterparts(&mut self) -> Result<(), ConservationError> {
        let tokens = self.store().held_tokens(self.lane)?;
        for local in tokens {
            if local == Address::ZERO || self.to_source.contains_key(&local) {
                continue;
            }
            let kept = self.store().token_counterpart(self.lane, local)?;
            if let Some(remote) = kept {
                self.to_source.insert(local, Some(remote));
                continue;
            }
            let pair = self
                .destination
                .chain
                .bridge_call(
                    "tokenPair",
                    |b| async move { b.tokenPair(local).call().await },
                )
                .await?;
            if pair.remoteToken == Address::ZERO {
                tracing::warn!(lane = %self.lane, token = %local, "conservation: a released token has no registered counterpart; its releases are counted under the destination token");
                self.to_source.insert(local, None);
            } else {
                self.store()
                    .keep_token_counterpart(self.lane, local, pair.remoteToken)?;
                self.to_source.insert(local, Some(pair.remoteToken));
            }
        }
        Ok(())
    }

    /// Raise every forged release not raised yet to the guardian, with its evidence.
    fn raise_forged(&mut self) -> Result<(), ConservationError> {
        let forged = self.store().forged_unraised(self.lane)?;
        for ForgedRelease {
            release,
            request,
            asset,
        } in forged
        {
            let Some((key, tx)) = request else {
                // A second release of a nonce already paid: no source request to show; the
                // log line and handled_mismatch_total say it.
                tracing::error!(lane = %self.lane, nonce = release.nonce, tx = %release.tx, "conservation: a release of a nonce whose request was already paid");
                self.store().forged_raised(self.lane, release.nonce)?;
                continue;
            };
            if let Some(alarms) = &self.alarms {
                let alarm = Alarm {
                    lane: self.lane,
                    reason: AlarmReason::Conservation,
                    nonce: release.nonce,
                    detail: format!(
                        "nonce {} released {} of {} under vote key {}, but the source's request at that nonce has key {key}",
                        release.nonce,
                        release.units,
                        asset_label(asset),
                        release.key,
                    ),
                    evidence: Evidence {
                        nonce: release.nonce,
                        executed_key: release.key,
                        handle_tx: release.tx,
                        handle_block: release.block,
                        source: SourceClaim::Request { key, tx },
                    },
                };
                if !alarms.raise(alarm) {
                    // The queue is full: raised again next step.
                    break;
                }
            }
            self.store().forged_raised(self.lane, release.nonce)?;
        }
        Ok(())
    }

    /// Read `side` from its scan position up to its safe head, at most [`RANGES_PER_STEP`]
    /// ranges, recording each range with the new position. `true` when it reached the safe
    /// head.
    async fn scan(&mut self, side: AssetSide, first_nonce: u64) -> Result<bool, ConservationError> {
        let (at, span) = match side {
            AssetSide::Requested => (self.source.clone(), 0),
            AssetSide::Released => (self.destination.clone(), 1),
            AssetSide::Refunded => (self.source.clone(), 2),
        };
        let head = at.chain.head().await?;
        let safe_head = at.chain.safe_head(head, at.confirmations).await?;
        let mut next = self
            .store()
            .asset_scan_next(self.lane, side)?
            .unwrap_or(at.start_block);
        for _ in 0..RANGES_PER_STEP {
            let range = match side {
                // Nothing known of the nonces before `next`: floor 0 (opens up on a young bridge).
                AssetSide::Requested => {
                    at.chain
                        .views()
                        .next_request_range(&mut self.spans[span], next, safe_head, 0)
                        .await
                }
                AssetSide::Released | AssetSide::Refunded => self.spans[span].next(next, safe_head),
            };
            let Some(range) = range else {
                return Ok(true);
            };
            let width;
            match side {
                AssetSide::Requested => {
                    // As the indexer: never more requests in one answer than the span aims at.
                    let range = at
                        .chain
                        .views()
                        .requests_within(range, crate::chain::logs::TARGET_LOGS as u64)
                        .await;
                    let requests = self.requested_in(&at, range.clone()).await;
                    let requests = self.narrowed_on_failure(span, &range, requests)?;
                    width = blocks_in(&range);
                    self.spans[span].observe(width, requests.len());
                    next = range.end().saturating_add(1);
                    self.store()
                        .record_requested(self.lane, first_nonce, next, &requests)?;
                }
                AssetSide::Released => {
                    let released = self.released_in(&at, range.clone()).await;
                    let (releases, logs) = self.narrowed_on_failure(span, &range, released)?;
                    width = blocks_in(&range);
                    self.spans[span].observe(width, logs);
                    next = range.end().saturating_add(1);
                    self.store()
                        .record_released(self.lane, first_nonce, next, &releases)?;
                    // Measured only once recorded: a range read again after a failure is not
                    // observed twice.
                    self.measure_latency().await;
                }
                AssetSide::Refunded => {
                    let logs = self
                        .logs(&at, vec![Bridge::Refunded::SIGNATURE_HASH], range.clone())
                        .await;
                    let logs = self.narrowed_on_failure(span, &range, logs)?;
                    let mut refunds = Vec::with_capacity(logs.len());
                    for log in &logs {
                        let event = log.log_decode::<Bridge::Refunded>().map_err(|_| {
                            ConservationError::BadLog {
                                lane: self.lane,
                                event: "Refunded",
                                block: log.block_number,
                            }
                        })?;
                        let e = event.inner.data;
                        // As for releases: only nonces the source scan counts as requested.
                        if e.nonce >= first_nonce {
                            refunds.push((e.token, units(e.kind, e.amount)));
                        }
                    }
                    width = blocks_in(&range);
                    self.spans[span].observe(width, logs.len());
                    next = range.end().saturating_add(1);
                    self.store().record_refunded(self.lane, next, &refunds)?;
                }
            }
        }
        Ok(next > safe_head)
    }

    /// `read` of `range` with span `span`; a failure halves that span from the range read
    /// ([`LogSpan::failed`]), so a range whose answer is over the endpoint's bound is not asked
    /// again as it was.
    fn narrowed_on_failure<T>(
        &mut self,
        span: usize,
        range: &RangeInclusive<u64>,
        read: Result<T, ConservationError>,
    ) -> Result<T, ConservationError> {
        if read.is_err()
            && let Some(span) = self.spans.get_mut(span)
        {
            span.failed(blocks_in(range));
        }
        read
    }

    /// Unix time of `block` on the source (`source`) or the destination, cached.
    async fn block_time(&mut self, source: bool, block: u64) -> Result<u64, ChainError> {
        if let Some(t) = self.block_times.get(&(source, block)) {
            return Ok(*t);
        }
        let chain = if source {
            self.source.chain.clone()
        } else {
            self.destination.chain.clone()
        };
        let time = chain.block_time(block).await?;
        if self.block_times.len() >= BLOCK_TIMES_KEPT {
            self.block_times.clear();
        }
        self.block_times.insert((source, block), time);
        Ok(time)
    }

    /// Observe each handle's latency, source block to destination block, in
    /// `transfer_latency_seconds` (requests no longer in the store, or beyond this step's block
    /// reads, go unmeasured; a chain that does not answer skips the rest).
    async fn measure_latency(&mut self) {
        let handles = std::mem::take(&mut self.handles);
        let mut reads = 0usize;
        for h in handles {
            let Ok(Some(src_block)) = self.store().src_block_of(self.lane, h.nonce) else {
                continue;
            };
            let cached = |this: &Self, source: bool, block: u64| {
                this.block_times.contains_key(&(source, block))
            };
            let needed = usize::from(h.time.is_none() && !cached(self, false, h.block))
                .saturating_add(usize::from(!cached(self, true, src_block)));
            if reads.saturating_add(needed) > LATENCY_READS_PER_STEP {
                break;
            }
            reads = reads.saturating_add(needed);
            let handled_at = match h.time {
                Some(t) => t,
                None => match self.block_time(false, h.block).await {
                    Ok(t) => t,
                    Err(_) => break,
                },
            };
            let Ok(requested_at) = self.block_time(true, src_block).await else {
                break;
            };
            #[allow(clippy::cast_precision_loss)]
            self.metrics
                .transfer_latency
                .observe(handled_at.saturating_sub(requested_at) as f64);
        }
    }

    async fn logs(
        &self,
        at: &ScanSide,
        signatures: Vec<alloy::primitives::B256>,
        range: RangeInclusive<u64>,
    ) -> Result<Vec<alloy::rpc::types::Log>, ConservationError> {
        let filter = Filter::new()
            .address(at.bridge)
            .event_signature(signatures)
            .from_block(*range.start())
            .to_block(*range.end());
        let logs = at.chain.logs(&filter).await?;
        Ok(logs.into_iter().filter(|l| !l.removed).collect())
    }

    /// The requests the source bridge made in `range` (through `log_quorum` endpoints where
    /// configured, as the indexer reads them).
    async fn requested_in(
        &self,
        at: &ScanSide,
        range: RangeInclusive<u64>,
    ) -> Result<Vec<ScannedRequest>, ConservationError> {
        let requests = at.chain.views().request_logs(range).await?;
        Ok(requests
            .iter()
            .map(|r| ScannedRequest {
                nonce: r.nonce,
                key: self.domain.vote_key(r),
                asset: r.token,
                units: units(r.kind, r.amount),
                tx: r.srcTxHash,
            })
            .collect())
    }

    /// The releases the destination bridge made in `range` (and every vote and execution
    /// checked against the indexed payloads), with how many logs the range held.
    async fn released_in(
        &mut self,
        at: &ScanSide,
        range: RangeInclusive<u64>,
    ) -> Result<(Vec<ScannedRelease>, usize), ConservationError> {
        self.handles.clear();
        let mut releases = Vec::new();
        let logs = self
            .logs(
                at,
                vec![
                    Bridge::HandleValueTransfer::SIGNATURE_HASH,
                    Bridge::VoteCast::SIGNATURE_HASH,
                ],
                range,
            )
            .await?;
        let count = logs.len();
        for log in logs {
            let bad = |event| ConservationError::BadLog {
                lane: self.lane,
                event,
                block: log.block_number,
            };
            let (tx, block) = (
                log.transaction_hash.unwrap_or_default(),
                log.block_number.unwrap_or_default(),
            );
            if log.topic0() == Some(&Bridge::HandleValueTransfer::SIGNATURE_HASH) {
                let event = log
                    .log_decode::<Bridge::HandleValueTransfer>()
                    .map_err(|_| bad("HandleValueTransfer"))?;
                releases.push(ScannedRelease {
                    nonce: event.inner.nonce,
                    key: event.inner.voteKey,
                    token: event.inner.token,
                    units: units(event.inner.kind, event.inner.amount),
                    tx,
                    block,
                });
                if let Some(block) = log.block_number {
                    self.handles.push(SeenHandle {
                        nonce: event.inner.nonce,
                        block,
                        time: log.block_timestamp,
                    });
                }
                self.check_vote(SeenVote {
                    nonce: event.inner.nonce,
                    operator: Address::ZERO,
                    key: event.inner.voteKey,
                    executed: true,
                    tx,
                    block,
                })?;
            } else {
                let event = log
                    .log_decode::<Bridge::VoteCast>()
                    .map_err(|_| bad("VoteCast"))?;
                self.metrics
                    .operator_voted(&event.inner.operator.to_string());
                self.check_vote(SeenVote {
                    nonce: event.inner.nonce,
                    operator: event.inner.operator,
                    key: event.inner.voteKey,
                    executed: false,
                    tx,
                    block,
                })?;
            }
        }
        Ok((releases, count))
    }

    /// Count a vote or execution whose key differs from the payload this relay observed for its
    /// nonce; keep it for later if the request is not indexed yet.
    fn check_vote(&mut self, vote: SeenVote) -> Result<(), ConservationError> {
        let SeenVote {
            nonce,
            operator,
            key,
            executed,
            tx,
            block,
        } = vote;
        let Some(stored) = self.store().get(self.lane, nonce)? else {
            if self.unmatched.len() >= MAX_UNMATCHED {
                self.unmatched.pop_front();
            }
            self.unmatched.push_back(vote);
            return Ok(());
        };
        let expected = self.domain.vote_key(&stored.request);
        if expected != key && executed {
            self.metrics.handled_mismatch.inc();
            if let Some(alarms) = &self.alarms {
                alarms.raise(Alarm {
                    lane: self.lane,
                    reason: AlarmReason::HandledMismatch,
                    nonce,
                    detail: format!(
                        "nonce {nonce} executed under vote key {key}; the indexed request has {expected}"
                    ),
                    evidence: Evidence {
                        nonce,
                        executed_key: key,
                        handle_tx: tx,
                        handle_block: block,
                        source: SourceClaim::Request {
                            key: expected,
                            tx: stored.request.srcTxHash,
                        },
                    },
                });
            }
            tracing::error!(
                lane = %self.lane,
                nonce,
                executed = %key,
                observed = %expected,
                "the destination executed another payload than the request this relay indexed: \
                 the genuine request can never execute there; pause the bridges and have the \
                 owner settle it (multibridge admin settle)"
            );
        } else if expected != key {
            self.metrics.vote_divergence.inc();
            tracing::warn!(
                lane = %self.lane,
                nonce,
                %operator,
                voted = %key,
                observed = %expected,
                "vote divergence: an operator voted another payload than the one this relay observed"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_are_compared_per_source_asset_exactly() {
        let token = Address::repeat_byte(1);
        let requested = [(Address::ZERO, U256::from(10)), (token, U256::from(7))];
        let released = [(Address::ZERO, U256::from(10)), (token, U256::from(7))];
        let out = compare(&requested, &released, &[]);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|a| a.ok), "{out:?}");
        let over = [(token, U256::from(8))];
        let out = compare(&requested, &over, &[]);
        let t = out.iter().find(|a| a.asset == token).unwrap();
        assert!(!t.ok);
        assert_eq!((t.requested, t.released), (U256::from(7), U256::from(8)));
        // A release of something never requested is broken conservation, not ignored.
        let stray = Address::repeat_byte(9);
        let out = compare(&requested, &[(stray, U256::from(1))], &[]);
        assert!(!out.iter().find(|a| a.asset == stray).unwrap().ok);
        // Differences below f64 precision still count.
        let big = U256::from(10).pow(U256::from(24));
        let out = compare(
            &[(Address::ZERO, big)],
            &[(Address::ZERO, big + U256::from(1))],
            &[],
        );
        assert!(!out[0].ok);
    }

    #[test]
    fn a_refund_counts_beside_the_releases_and_a_double_payment_breaks_conservation() {
        let token = Address::repeat_byte(1);
        let requested = [(token, U256::from(10))];
        // 7 released, 3 refunded (a cancelled request): whole.
        let out = compare(
            &requested,
            &[(token, U256::from(7))],
            &[(token, U256::from(3))],
        );
        assert!(out[0].ok, "{out:?}");
        assert_eq!(out[0].refunded, U256::from(3));
        // The 3 refunded were also released: paid twice.
        let out = compare(
            &requested,
            &[(token, U256::from(10))],
            &[(token, U256::from(3))],
        );
        assert!(!out[0].ok, "{out:?}");
    }

    #[test]
    fn native_is_labelled_native_and_tokens_by_address() {
        assert_eq!(asset_label(Address::ZERO), "native");
        assert_eq!(
            asset_label(Address::repeat_byte(0xab)),
            "0xabababababababababababababababababababab"
        );
    }

    #[test]
    fn an_erc721_counts_one_token_whatever_its_id() {
        let id = U256::from(u64::MAX);
        assert_eq!(units(AssetKind::Erc721 as u8, id), U256::from(1));
        assert_eq!(units(AssetKind::Erc20 as u8, id), id);
        assert_eq!(units(AssetKind::Native as u8, id), id);
    }
}
