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
//! Order matters for a check that must not cry wolf: the destination is scanned first and the
//! source second, and totals are compared only after the source scan reached its safe head in
//! the same step. Anything released was requested earlier, so an honest bridge always shows
//! released ≤ requested.

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

use crate::chain::logs::LogSpan;
use crate::chain::{ChainClient, ChainError};
use crate::guard::{Alarm, AlarmReason, AlarmSender};
use crate::store::{AssetSide, SharedStore, Store, StoreError};

/// Why a conservation step failed (retried at the next watch tick either way).
#[derive(Debug, thiserror::Error)]
pub enum ConservationError {
    /// A chain call failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
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
    /// `released <= requested`.
    pub ok: bool,
}

/// Compare totals per source asset. `released` is keyed by destination token and translated
/// with `to_source` (destination token → source token); a released asset with no known source
/// counterpart is compared against zero requested.
pub fn compare(
    requested: &[(Address, U256)],
    released: &[(Address, U256)],
    to_source: &HashMap<Address, Address>,
) -> Vec<AssetConservation> {
    let mut by_asset: BTreeMap<Address, (U256, U256)> = BTreeMap::new();
    for (asset, amount) in requested {
        let entry = by_asset.entry(*asset).or_default();
        entry.0 = entry.0.saturating_add(*amount);
    }
    for (local, amount) in released {
        let asset = to_source.get(local).copied().unwrap_or(*local);
        let entry = by_asset.entry(asset).or_default();
        entry.1 = entry.1.saturating_add(*amount);
    }
    by_asset
        .into_iter()
        .map(|(asset, (requested, released))| AssetConservation {
            asset,
            requested,
            released,
            ok: released <= requested,
        })
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

/// Add `amount` to `asset`'s total in `amounts`.
fn add(amounts: &mut BTreeMap<Address, U256>, asset: Address, amount: U256) {
    let total = amounts.entry(asset).or_default();
    *total = total.saturating_add(amount);
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
    to_source: HashMap<Address, Address>,
    /// `eth_getLogs` widths of the source and the destination side.
    spans: [LogSpan; 2],
    /// Votes seen before this relay indexed their request, re-checked every step (bounded).
    unmatched: std::collections::VecDeque<SeenVote>,
    /// Handles of the range being read, measured once the range is recorded.
    handles: Vec<SeenHandle>,
    /// Block times read for latency: (chain is source, block) → unix seconds (bounded).
    block_times: HashMap<(bool, u64), u64>,
    /// Where breaches go when this replica has a guardian.
    alarms: Option<AlarmSender>,
    /// Which broken assets to raise to the guardian.
    broken: BrokenTracker,
    /// The source's `requestNonce` just before its scan starts: only handles of nonces from
    /// here on count as released (a relay configured to start after some history must not
    /// compare that history's handles with no requests).
    first_nonce: Option<u64>,
}

/// Per source asset: consecutive comparisons that found it broken, and the excess last raised
/// (a larger excess is raised again; the same one never twice, so an owner who resumes a
/// bridge after a pause is not overruled by the same figures).
#[derive(Debug, Default)]
pub struct BrokenTracker(HashMap<Address, (u32, U256)>);

impl BrokenTracker {
    /// Take one comparison; the assets to alarm on, with their excess and streak.
    pub fn observe(&mut self, assets: &[AssetConservation]) -> Vec<(Address, U256, u32)> {
        let mut raise = Vec::new();
        for a in assets {
            let entry = self.0.entry(a.asset).or_default();
            if a.ok {
                entry.0 = 0;
                continue;
            }
            entry.0 = entry.0.saturating_add(1);
            let excess = a.released.saturating_sub(a.requested);
            if entry.0 >= BROKEN_SCANS_TO_ALARM && excess > entry.1 {
                entry.1 = excess;
                raise.push((a.asset, excess, entry.0));
            }
        }
        raise
    }
}

/// Consecutive broken comparisons before the guardian is alarmed (one could be a glitch).
const BROKEN_SCANS_TO_ALARM: u32 = 2;

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
        ];
        let domain = VoteDomain {
            src_chain_id: source.chain.chain_id(),
            src_bridge: source.bridge,
            dst_chain_id: destination.chain.chain_id(),
            dst_bridge: destination.bridge,
        };
        let mut to_source = HashMap::new();
        to_source.insert(Address::ZERO, Address::ZERO);
        Self {
            lane,
            source,
            destination,
            domain,
            store,
            metrics,
            to_source,
            spans,
            unmatched: std::collections::VecDeque::new(),
            handles: Vec::new(),
            block_times: HashMap::new(),
            alarms: None,
            broken: BrokenTracker::default(),
            first_nonce: None,
        }
    }

    /// Raise breaches to a guardian through `alarms` (none: only metrics and logs).
    pub fn with_alarms(mut self, alarms: Option<AlarmSender>) -> Self {
        self.alarms = alarms;
        self
    }

    /// Alarm the guardian on an asset broken [`BROKEN_SCANS_TO_ALARM`] times in a row with
    /// more excess than last raised.
    fn track_broken(&mut self, assets: &[AssetConservation]) {
        for (asset, excess, streak) in self.broken.observe(assets) {
            let Some(a) = assets.iter().find(|a| a.asset == asset) else {
                continue;
            };
            if let Some(alarms) = &self.alarms {
                alarms.raise(Alarm {
                    lane: self.lane,
                    reason: AlarmReason::Conservation,
                    nonce: None,
                    detail: format!(
                        "asset {}: released {} > requested {} (excess {excess}) in {streak} consecutive scans",
                        asset_label(asset),
                        a.released,
                        a.requested,
                    ),
                    excess: format!("excess/{}/{excess}", asset_label(asset)),
                });
            }
        }
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock()
    }

    /// Scan both sides as far as final blocks go (bounded per call) and, when the source caught
    /// up, compare and publish. Returns the comparison when one was made.
    pub async fn step(&mut self) -> Result<Option<Vec<AssetConservation>>, ConservationError> {
        let waiting = std::mem::take(&mut self.unmatched);
        for vote in waiting {
            self.check_vote(vote)?;
        }
        if self.first_nonce.is_none() {
            let start = self.source.start_block;
            self.first_nonce = Some(self.source.chain.views().first_nonce_from(start).await?);
        }
        self.scan(AssetSide::Released).await?;
        if !self.scan(AssetSide::Requested).await? {
            return Ok(None);
        }
        let (requested, released) = {
            let store = self.store();
            (
                store.asset_totals(self.lane, AssetSide::Requested)?,
                store.asset_totals(self.lane, AssetSide::Released)?,
            )
        };
        for (local, _) in &released {
            if !self.to_source.contains_key(local) {
                let local = *local;
                let pair = self
                    .destination
                    .chain
                    .bridge_call(
                        "tokenPair",
                        |b| async move { b.tokenPair(local).call().await },
                    )
                    .await?;
                self.to_source.insert(local, pair.remoteToken);
            }
        }
        let compared = compare(&requested, &released, &self.to_source);
        self.track_broken(&compared);
        let lane = self.lane.as_str();
        for a in &compared {
            let label = asset_label(a.asset);
            self.metrics
                .set_asset(&label, f64::from(a.requested), f64::from(a.released), a.ok);
            if !a.ok {
                tracing::error!(
                    %lane,
                    asset = %label,
                    requested = %a.requested,
                    released = %a.released,
                    "conservation broken: the destination released more than the source locked or burned"
                );
            }
        }
        Ok(Some(compared))
    }

    /// Read `side` from its scan position up to its safe head, at most [`RANGES_PER_STEP`]
    /// ranges, recording each range's totals with the new position. `true` when it reached the
    /// safe head.
    async fn scan(&mut self, side: AssetSide) -> Result<bool, ConservationError> {
        let (at, span) = match side {
            AssetSide::Requested => (self.source.clone(), 0),
            AssetSide::Released => (self.destination.clone(), 1),
        };
        let head = at.chain.head().await?;
        let safe_head = at.chain.safe_head(head, at.confirmations).await?;
        let mut next = self
            .store()
            .asset_scan_next(self.lane, side)?
            .unwrap_or(at.start_block);
        for _ in 0..RANGES_PER_STEP {
            let Some(range) = self.spans[span].next(next, safe_head) else {
                return Ok(true);
            };
            // As the indexer: never more requests in one answer than the span aims at.
            let range = match side {
                AssetSide::Requested => {
                    at.chain
                        .views()
                        .requests_within(range, crate::chain::logs::TARGET_LOGS as u64)
                        .await
                }
                AssetSide::Released => range,
            };
            let (amounts, logs) = match side {
                AssetSide::Requested => self.requested_in(&at, range.clone()).await?,
                AssetSide::Released => self.released_in(&at, range.clone()).await?,
            };
            let width = range.end().saturating_sub(*range.start()).saturating_add(1);
            self.spans[span].observe(width, logs);
            next = range.end().saturating_add(1);
            let list: Vec<(Address, U256)> = amounts.iter().map(|(a, v)| (*a, *v)).collect();
            self.store()
                .record_asset_range(self.lane, side, next, &list)?;
            // Measured only once recorded: a range read again after a failure is not
            // observed twice.
            self.measure_latency().await;
        }
        Ok(next > safe_head)
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

    async fn requested_in(
        &self,
        at: &ScanSide,
        range: RangeInclusive<u64>,
    ) -> Result<(BTreeMap<Address, U256>, usize), ConservationError> {
        let mut amounts: BTreeMap<Address, U256> = BTreeMap::new();
        let logs = self
            .logs(
                at,
                vec![Bridge::RequestValueTransfer::SIGNATURE_HASH],
                range,
            )
            .await?;
        let count = logs.len();
        for log in logs {
            let event = log
                .log_decode::<Bridge::RequestValueTransfer>()
                .map_err(|_| ConservationError::BadLog {
                    lane: self.lane,
                    event: "RequestValueTransfer",
                    block: log.block_number,
                })?;
            add(
                &mut amounts,
                event.inner.token,
                units(event.inner.kind, event.inner.amount),
            );
        }
        Ok((amounts, count))
    }

    async fn released_in(
        &mut self,
        at: &ScanSide,
        range: RangeInclusive<u64>,
    ) -> Result<(BTreeMap<Address, U256>, usize), ConservationError> {
        self.handles.clear();
        let mut amounts: BTreeMap<Address, U256> = BTreeMap::new();
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
            if log.topic0() == Some(&Bridge::HandleValueTransfer::SIGNATURE_HASH) {
                let event = log
                    .log_decode::<Bridge::HandleValueTransfer>()
                    .map_err(|_| bad("HandleValueTransfer"))?;
                if event.inner.nonce >= self.first_nonce.unwrap_or(0) {
                    add(
                        &mut amounts,
                        event.inner.token,
                        units(event.inner.kind, event.inner.amount),
                    );
                }
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
                })?;
            }
        }
        Ok((amounts, count))
    }

    /// Count a vote or execution whose key differs from the payload this relay observed for its
    /// nonce; keep it for later if the request is not indexed yet.
    fn check_vote(&mut self, vote: SeenVote) -> Result<(), ConservationError> {
        let SeenVote {
            nonce,
            operator,
            key,
            executed,
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
                    nonce: Some(nonce),
                    detail: format!(
                        "nonce {nonce} executed under vote key {key}; the indexed request has {expected}"
                    ),
                    excess: String::new(),
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
    fn released_is_translated_to_the_source_asset_and_compared_exactly() {
        let src_token = Address::repeat_byte(1);
        let dst_token = Address::repeat_byte(2);
        let to_source = HashMap::from([(Address::ZERO, Address::ZERO), (dst_token, src_token)]);
        let requested = [(Address::ZERO, U256::from(10)), (src_token, U256::from(7))];
        let released = [(Address::ZERO, U256::from(10)), (dst_token, U256::from(7))];
        let out = compare(&requested, &released, &to_source);
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|a| a.ok), "{out:?}");
        let over = [(dst_token, U256::from(8))];
        let out = compare(&requested, &over, &to_source);
        let token = out.iter().find(|a| a.asset == src_token).unwrap();
        assert!(!token.ok);
        assert_eq!(
            (token.requested, token.released),
            (U256::from(7), U256::from(8))
        );
        // A release of something never requested is broken conservation, not ignored.
        let stray = Address::repeat_byte(9);
        let out = compare(&requested, &[(stray, U256::from(1))], &to_source);
        assert!(!out.iter().find(|a| a.asset == stray).unwrap().ok);
        // Differences below f64 precision still count.
        let big = U256::from(10).pow(U256::from(24));
        let out = compare(
            &[(Address::ZERO, big)],
            &[(Address::ZERO, big + U256::from(1))],
            &to_source,
        );
        assert!(!out[0].ok);
    }

    #[test]
    fn broken_conservation_alarms_after_two_scans_and_again_only_for_more_excess() {
        let at = |released: u64| AssetConservation {
            asset: Address::ZERO,
            requested: U256::from(10),
            released: U256::from(released),
            ok: released <= 10,
        };
        let mut t = BrokenTracker::default();
        assert!(
            t.observe(&[at(12)]).is_empty(),
            "one broken scan is not enough"
        );
        assert_eq!(
            t.observe(&[at(12)]),
            vec![(Address::ZERO, U256::from(2), 2)]
        );
        // The same figures after an owner resumed: not raised again.
        assert!(t.observe(&[at(12)]).is_empty());
        // More released: raised again.
        assert_eq!(
            t.observe(&[at(15)]),
            vec![(Address::ZERO, U256::from(5), 4)]
        );
        // Back to ok resets the streak: a new breach needs two scans again.
        assert!(t.observe(&[at(10)]).is_empty());
        assert!(t.observe(&[at(20)]).is_empty());
        assert_eq!(
            t.observe(&[at(20)]),
            vec![(Address::ZERO, U256::from(10), 2)]
        );
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
