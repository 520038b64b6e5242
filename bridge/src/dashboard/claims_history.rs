//! The claims history: reads every `Claim` the registry emits (up to the main chain's
//! confirmation depth), keeps those against a lane service of this bridge pair in the store, and
//! marks each resolved once the destination handled the request it names, with the handle's
//! time and transaction.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, B256};
use alloy::rpc::types::Filter;
use alloy::sol_types::SolEvent;
use multibridge_contracts::bindings::ServiceRegistry;
use multibridge_contracts::{ClaimData, Lane, LaneServiceMeta};
use multibridge_monitoring::Metrics;

use super::{DashboardError, PairLanes};
use crate::chain::ChainPair;
use crate::chain::lookup::{ScanBounds, nonce_logs};
use crate::config::Confirmations;
use crate::store::SharedStore;
use crate::store::claims::{ClaimRecord, Resolution};
use crate::task::{Next, Stepper};

/// Requests checked for a handle per round.
const RESOLVE_PER_ROUND: usize = 32;

/// The claims-history task of one relay.
pub struct ClaimsHistory {
    /// Both chains.
    pub chains: ChainPair,
    /// `ServiceRegistry` on the main chain.
    pub registry: Address,
    /// Which lane a service meta belongs to, if of this pair.
    pub pair: PairLanes,
    /// The main chain's confirmation depth.
    pub confirmations: Confirmations,
    /// First block read when the store has no position yet.
    pub from_block: u64,
    /// Blocks per log query.
    pub max_range: u64,
    /// How far back a handle is looked for.
    pub window: u64,
    /// The relay's store.
    pub store: SharedStore,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Pause when caught up.
    pub poll: Duration,
    /// Services seen: id → (lane, operator), `None` for another pair's or an unreadable one.
    pub services: HashMap<B256, Option<(Lane, Address)>>,
}

impl ClaimsHistory {
    async fn service(&mut self, id: B256) -> Result<Option<(Lane, Address)>, DashboardError> {
        if let Some(known) = self.services.get(&id) {
            return Ok(*known);
        }
        let service = self
            .chains
            .main
            .registry_call(self.registry, "getService", |r| async move {
                r.getService(id).call().await
            })
            .await?;
        let found = LaneServiceMeta::decode(&service.meta)
            .ok()
            .filter(|m| m.service_id() == id && service.provider == m.operator)
            .and_then(|m| self.pair.lane_of(&m).map(|lane| (lane, m.operator)));
        self.services.insert(id, found);
        Ok(found)
    }

    async fn read_claims(&mut self) -> Result<Next, DashboardError> {
        let main = self.chains.main.clone();
        let head = main.head().await?;
        let safe = main.safe_head(head, self.confirmations).await?;
        let next = {
            let store = self.store.lock();
            store.claims_next_block()?
        }
        .unwrap_or(self.from_block);
        if safe < next {
            return Ok(Next::After(self.poll));
        }
        let to = next
            .saturating_add(self.max_range.max(1).saturating_sub(1))
            .min(safe);
        let filter = Filter::new()
            .address(self.registry)
            .event_signature(ServiceRegistry::Claim::SIGNATURE_HASH)
            .from_block(next)
            .to_block(to);
        let logs = main.logs(&filter).await?;
        let mut records = Vec::new();
        let mut times: HashMap<u64, u64> = HashMap::new();
        let registry = self.registry;
        for log in logs
            .iter()
            .filter(|l| !l.removed && l.address() == registry)
        {
            let (Ok(claim), Some(tx_hash), Some(block), Some(log_index)) = (
                log.log_decode::<ServiceRegistry::Claim>(),
                log.transaction_hash,
                log.block_number,
                log.log_index,
            ) else {
                continue;
            };
            let claim = claim.inner.data;
            let Some((lane, operator)) = self.service(claim.id).await? else {
                continue;
            };
            let Ok(data) = ClaimData::decode(&claim.data) else {
                tracing::debug!(claimant = %claim.claimant, "claim with unreadable data: not in the history");
                continue;
            };
            let (src, dst) = (
                self.chains.get(lane.source()).chain_id(),
                self.chains.get(lane.destination()).chain_id(),
            );
            if data.src_chain_id != src || data.dst_chain_id != dst {
                continue;
            }
            let filed_at = match (log.block_timestamp, times.get(&block)) {
                (Some(t), _) => t,
                (None, Some(t)) => *t,
                (None, None) => {
                    let t = main.block_time(block).await?;
                    times.insert(block, t);
                    t
                }
            };
            records.push(ClaimRecord {
                tx_hash,
                log_index,
                block,
                filed_at,
                service: claim.id,
                operator,
                lane,
                nonce: data.nonce,
                claimant: claim.claimant,
                location: claim.location,
            });
        }
        let new = self
            .store
            .lock()
            .record_claims(&records, to.saturating_add(1))?;
        if new > 0 {
            tracing::info!(new, to, "claims recorded in the history");
        }
        Ok(if to < safe {
            Next::Now
        } else {
            Next::After(self.poll)
        })
    }

    async fn resolve(&mut self) -> Result<(), DashboardError> {
        let open = self.store.lock().unresolved_claims(RESOLVE_PER_ROUND)?;
        for (lane, nonce) in open {
            let dst = self.chains.get(lane.destination()).clone();
            if !dst.views().is_handled(nonce).await? {
                continue;
            }
            let head = dst.head().await?;
            let logs = nonce_logs(
                &dst,
                nonce,
                ScanBounds {
                    floor: head.saturating_sub(self.window),
                    top: head,
                    max_range: self.max_range,
                    not_before: None,
                    max_queries: usize::MAX,
                },
                true,
            )
            .await?;
            let resolution = Resolution {
                at: logs.handle.map_or_else(crate::store::unix_now, |h| h.time),
                handle: logs.handle.map(|h| (h.tx, h.block)),
            };
            let marked = self.store.lock().resolve_claims(lane, nonce, resolution)?;
            tracing::info!(%lane, nonce, marked, handle = ?resolution.handle, "claimed request handled: claims resolved");
        }
        Ok(())
    }

    fn publish(&self) -> Result<(), DashboardError> {
        let store = self.store.lock();
        let (all, open) = store.claim_counts()?;
        let next = store.claims_next_block()?.unwrap_or(self.from_block);
        self.metrics.dashboard.set_claims(all, open, next);
        Ok(())
    }

    /// One round: read new claims, resolve what was handled, publish the counts.
    pub async fn round(&mut self) -> Result<Next, DashboardError> {
        let next = self.read_claims().await?;
        self.resolve().await?;
        self.publish()?;
        Ok(next)
    }
}

impl Stepper for ClaimsHistory {
    type Error = DashboardError;

    fn step(&mut self) -> impl Future<Output = Result<Next, DashboardError>> + Send {
        self.round()
    }
}
