//! Keeps this operator's lane services in the registry pointing at the replica that leads each
//! lane: registers a missing service (the operator becomes its manager) and moves a location
//! that differs (`updateLocation`, emitting `NewLocation`). The writes go through the main
//! chain's submitter like every other transaction of the key, so they only happen while this
//! replica holds the main chain's nonce sequence; a problem is logged and counted, never fatal.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use alloy::primitives::{Address, Bytes};
use alloy::sol_types::SolCall;
use multibridge_contracts::bindings::ServiceRegistry;
use multibridge_monitoring::{Metrics, RegistryUpdate};
use tokio::sync::{mpsc, watch};

use super::{LaneService, registered_location};
use crate::chain::ChainClient;
use crate::chain::submitter::{JobEvent, SubmitClient, send_estimated};
use crate::leadership::campaign::read_leader_from;
use crate::leadership::etcd_pool::EtcdPool;
use crate::leadership::key_reads::KeyReads;
use crate::task::{Next, Stepper};

/// How often the registry is compared with the lanes' leaders.
const SYNC_EVERY: Duration = Duration::from_secs(2);

/// How long a location read from the registry and found as wanted is trusted without reading it
/// again, while the wanted location stays the same (a new leader is a new wanted location, read
/// at once). Only this operator's key writes its services; what this bounds is how long a write
/// by the operator's other tools (the dashboard's manager key) stands before it is put right.
/// Two registry reads per lane every 2 s were what a hub of 64 pairs spent on it.
const VERIFIED_FOR: Duration = Duration::from_secs(30);

/// How long one read of the leader keys serves the registry syncs of a process: they wake on
/// one grid every [`SYNC_EVERY`], so a hub's pairs are answered by one transaction a round.
const LEADERS_FRESH_FOR: Duration = Duration::from_millis(500);

/// Where in its round a sync starts (see the grid in [`RegistrySync::round`]).
const GRID_OFFSET: Duration = Duration::from_millis(1_025);

/// The leader keys' reads of the registry syncs of the process on `pool` (one transaction for
/// every pair's lanes a round; a read of its own kind, so a standby's never waits behind it).
pub fn leader_reads(pool: &EtcdPool) -> Arc<KeyReads> {
    KeyReads::of(
        pool,
        multibridge_monitoring::metrics::ETCD_REGISTRY_LEADER_KEYS,
        LEADERS_FRESH_FOR,
    )
}

/// The registry sync of one replica.
pub struct RegistrySync {
    /// Main chain (where the registry is).
    pub main: Arc<ChainClient>,
    /// `ServiceRegistry`.
    pub registry: Address,
    /// Each lane service with the leader key of its lane's election (`None`: standalone, this
    /// replica serves it).
    pub services: Vec<(LaneService, Option<String>)>,
    /// etcd, and the leader keys as the registry syncs of the process last read them through
    /// it ([`leader_reads`]); absent: standalone.
    pub etcd: Option<(Arc<EtcdPool>, Arc<KeyReads>)>,
    /// This replica's URL.
    pub own_url: String,
    /// Lanes whose service location is fixed whoever leads: attested lanes of an operator that
    /// publishes its signatures in an object store (`voting.attestation_store`) — every replica
    /// writes to the same storage.
    pub fixed: std::collections::HashMap<multibridge_contracts::Lane, String>,
    /// This replica's name in elections: when the lane's leader is this replica, `own_url` is
    /// published (in a process serving several pairs the leader record names the URL of the
    /// pair whose lane campaigned, which may be another pair's).
    pub own_replica: String,
    /// Every URL this operator's replicas advertise (`registry.replica_urls` and `own_url`):
    /// nothing else read from etcd is published.
    pub allowed_urls: Vec<String>,
    /// The main chain's submitter.
    pub submit: SubmitClient,
    /// Its events for our transactions.
    pub events: mpsc::UnboundedReceiver<JobEvent>,
    /// Whether this replica holds the main chain's nonce sequence now.
    pub term: watch::Receiver<bool>,
    /// Metrics (`registry_updates_total`).
    pub metrics: Arc<Metrics>,
    /// Registry transactions in flight: nonce → the lane service it writes.
    pub in_flight: BTreeMap<u64, LaneService>,
    /// Service id → the location last read from the registry that was the wanted one, and when.
    pub verified: std::collections::HashMap<alloy::primitives::B256, (String, std::time::Instant)>,
}

impl RegistrySync {
    /// Where each service should point now: `(service, url)`; services whose lane has no leader
    /// of this operator (or whose leader cannot be read) are left as they are.
    async fn wanted(&self) -> Vec<(LaneService, String)> {
        let mut out = Vec::new();
        for (service, key) in &self.services {
            if let Some(location) = self.fixed.get(&service.lane) {
                out.push((*service, location.clone()));
                continue;
            }
            let url = match (key, &self.etcd) {
                (Some(key), Some((pool, leaders))) => {
                    match read_leader_from(leaders, pool, key).await {
                        // Under the lane scope the leader may be another operator's replica: its
                        // URL does not serve this operator's service.
                        Ok(Some(leader))
                            if leader.operator.parse::<Address>().ok()
                                == Some(service.meta.operator) =>
                        {
                            if leader.replica == self.own_replica {
                                self.own_url.clone()
                            } else if !self.allowed_urls.contains(&leader.url) {
                                self.metrics.registry_update(RegistryUpdate::RefusedUrl);
                                tracing::warn!(lane = %service.lane, replica = %leader.replica, url = %leader.url, "the lane leader's URL in etcd is none of this operator's replica URLs (registry.replica_urls): not publishing it");
                                continue;
                            } else {
                                leader.url
                            }
                        }
                        _ => continue,
                    }
                }
                _ => self.own_url.clone(),
            };
            out.push((*service, url));
        }
        out
    }

    fn track(&mut self) {
        while let Ok(event) = self.events.try_recv() {
            let (nonce, outcome) = match &event {
                JobEvent::Mined { nonce, receipt, .. } => {
                    if !receipt.status() {
                        tracing::warn!(tx = %receipt.transaction_hash, "registry transaction reverted (registered by someone else meanwhile?)");
                    }
                    (
                        *nonce,
                        if receipt.status() {
                            RegistryUpdate::Updated
                        } else {
                            RegistryUpdate::Failed
                        },
                    )
                }
                JobEvent::Replaced { .. } | JobEvent::AtFeeCap { .. } => continue,
                JobEvent::Superseded { nonce } | JobEvent::Abandoned { nonce } => {
                    (*nonce, RegistryUpdate::Failed)
                }
            };
            if let Some(service) = self.in_flight.remove(&nonce) {
                self.metrics.registry_update(outcome);
                if outcome == RegistryUpdate::Updated {
                    tracing::info!(lane = %service.lane, "service location written to the registry");
                }
            }
        }
    }

    /// One round: follow what was sent; compare and write what is off.
    pub async fn round(&mut self) -> Result<Next, Infallible> {
        self.track();
        if !*self.term.borrow_and_update() || !self.in_flight.is_empty() {
            // What another holder of the term wrote meanwhile is not known here.
            self.verified.clear();
            // Not this replica's to write now, or the last writes are not mined yet.
            let mut term = self.term.clone();
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = term.changed() => {}
            }
            return Ok(Next::Now);
        }
        for (service, location) in self.wanted().await {
            let id = service.id;
            if self
                .verified
                .get(&id)
                .is_some_and(|(at, when)| *at == location && when.elapsed() < VERIFIED_FOR)
            {
                continue;
            }
            let current = match registered_location(&self.main, self.registry, id).await {
                Ok(current) => current,
                Err(e) => {
                    tracing::warn!(lane = %service.lane, error = %e, "cannot read the registry; retrying later");
                    break;
                }
            };
            let input: Bytes = match current {
                Some(current) if current == location => {
                    self.verified
                        .insert(id, (location, std::time::Instant::now()));
                    continue;
                }
                Some(_) => ServiceRegistry::updateLocationCall {
                    id,
                    location: location.clone(),
                }
                .abi_encode()
                .into(),
                // The registry derives the id from the caller (audit M-4): nobody else can
                // register this operator's service.
                None => ServiceRegistry::registerBridgeServiceCall {
                    srcChainId: alloy::primitives::U256::from(service.meta.src_chain_id),
                    srcBridge: service.meta.src_bridge,
                    dstChainId: alloy::primitives::U256::from(service.meta.dst_chain_id),
                    dstBridge: service.meta.dst_bridge,
                    name: format!(
                        "multibridge {} operator {}",
                        service.lane, service.meta.operator
                    ),
                    location: location.clone(),
                }
                .abi_encode()
                .into(),
            };
            match send_estimated(&self.submit, self.registry, input, 25).await {
                Ok(sent) => {
                    tracing::info!(lane = %service.lane, %location, tx = %sent.hash, "service location sent to the registry");
                    self.in_flight.insert(sent.nonce, service);
                }
                Err(e) => {
                    self.metrics.registry_update(RegistryUpdate::Failed);
                    tracing::warn!(lane = %service.lane, error = %e, "cannot write the registry; retrying later");
                    break;
                }
            }
        }
        let mut term = self.term.clone();
        // On the process's grid: the syncs of a hub's pairs read their leader keys together —
        // off the instants the process's other etcd work is due on (every grid shares one
        // epoch: the heartbeats go every 100 ms from it, the backup workers 50 ms after).
        let next = crate::leadership::heartbeats::next_poll_offset(
            tokio::time::Instant::now(),
            SYNC_EVERY,
            GRID_OFFSET,
        );
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            // The term went and came back (another holder may have written meanwhile).
            _ = term.changed() => self.verified.clear(),
        }
        Ok(Next::Now)
    }
}

impl Stepper for RegistrySync {
    type Error = Infallible;

    fn step(&mut self) -> impl Future<Output = Result<Next, Infallible>> + Send {
        self.round()
    }
}
