//! The relay's side of the service registry: its lane services (registered so users can file
//! claims against them, located at the URL of the replica that leads each lane) and the watcher
//! that turns claims into recovery of one nonce.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, Bytes};
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolEvent};
use multibridge_contracts::bindings::ServiceRegistry;
use multibridge_contracts::{ClaimData, Lane, LaneServiceMeta};
use multibridge_monitoring::Metrics;
use tokio::sync::mpsc;

use crate::chain::ChainClient;
use crate::config::Config;
use crate::leadership::fence::Fence;
use crate::relay::RelayError;
use crate::sender::{Sender, SenderPolicy, Tracked};

/// One lane service of this operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneService {
    /// The lane.
    pub lane: Lane,
    /// Whose service it is.
    pub meta: LaneServiceMeta,
    /// Its registry id.
    pub id: B256,
}

/// The lane services of the operator of `config`, one per configured lane.
pub fn lane_services(config: &Config) -> Vec<LaneService> {
    config
        .lanes
        .iter()
        .map(|lane| {
            let src = config.chains.get(lane.source());
            let dst = config.chains.get(lane.destination());
            let meta = LaneServiceMeta {
                src_chain_id: src.chain_id,
                src_bridge: src.bridge,
                dst_chain_id: dst.chain_id,
                dst_bridge: dst.bridge,
                operator: config.operator.address,
            };
            LaneService {
                lane: *lane,
                meta,
                id: meta.service_id(),
            }
        })
        .collect()
}

/// The URL this replica advertises (its HTTP API).
pub fn advertised_url(config: &Config) -> String {
    config
        .http
        .advertise_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.http.listen))
}

/// How long one registration or location update may take.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(30);

/// Where each lane service should point: `(service, location)`.
pub type WantedLocations = Vec<(LaneService, String)>;

/// Register every service in `wanted` that is missing (the operator becomes its manager) and
/// point every registered one at its wanted location (`updateLocation`, emitting
/// `NewLocation`). Bounded in time and never fatal: a problem is logged and relaying goes on.
/// `fence` is checked before each transaction, so a replica that lost its lane sends nothing.
pub async fn ensure_registered(
    main: Arc<ChainClient>,
    signer: PrivateKeySigner,
    fence: Fence,
    registry: Address,
    wanted: &[(LaneService, String)],
    metrics: &Metrics,
) -> usize {
    let started = Instant::now();
    let result = tokio::time::timeout(
        REGISTER_TIMEOUT,
        sync_locations(main, signer, fence, registry, wanted, metrics),
    )
    .await;
    match result {
        Ok(Ok(0)) => 0,
        Ok(Ok(n)) => {
            tracing::info!(
                changed = n,
                after_ms = started.elapsed().as_millis() as u64,
                "lane services registered / located"
            );
            n
        }
        Ok(Err(e)) => {
            metrics
                .registry_updates
                .with_label_values(&["failed"])
                .inc();
            tracing::warn!(error = %e, "cannot register or locate lane services; retrying later");
            0
        }
        Err(_) => {
            metrics
                .registry_updates
                .with_label_values(&["failed"])
                .inc();
            tracing::warn!(
                "registering lane services took longer than {REGISTER_TIMEOUT:?}; retrying later"
            );
            0
        }
    }
}

/// What the registry says of a service: `None` when it is not registered.
pub async fn registered_location(
    main: &ChainClient,
    registry: Address,
    id: B256,
) -> Result<Option<String>, crate::chain::ChainError> {
    let exists = main
        .registry_call(
            registry,
            "exists",
            |r| async move { r.exists(id).call().await },
        )
        .await?;
    if !exists {
        return Ok(None);
    }
    let location = main
        .registry_call(registry, "getServiceLocation", |r| async move {
            r.getServiceLocation(id).call().await
        })
        .await?;
    Ok(Some(location))
}

/// A lane service as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredService {
    /// Its id (the one its meta derives).
    pub id: B256,
    /// Its meta: bridge pair, direction, operator.
    pub meta: LaneServiceMeta,
    /// Display name.
    pub name: String,
    /// Where it is served.
    pub location: String,
    /// Unix seconds of its last update.
    pub updated_at: u64,
}

impl RegisteredService {
    /// Whether it serves the direction from chain `src_chain_id` to chain `dst_chain_id` whose
    /// bridge is `dst_bridge`.
    pub fn serves(&self, src_chain_id: u64, dst_chain_id: u64, dst_bridge: Address) -> bool {
        self.meta.src_chain_id == src_chain_id
            && self.meta.dst_chain_id == dst_chain_id
            && self.meta.dst_bridge == dst_bridge
    }
}

/// Every lane service in the registry, in registration order. An entry counts only if its id
/// is the one its meta derives, so nobody can pose as another operator's service.
pub async fn registered_services(
    main: &ChainClient,
    registry: Address,
) -> Result<Vec<RegisteredService>, crate::chain::ChainError> {
    let count = main
        .registry_call(registry, "serviceCount", |r| async move {
            r.serviceCount().call().await
        })
        .await?;
    let count = u64::try_from(count).unwrap_or(u64::MAX);
    let mut out = Vec::new();
    for index in 0..count {
        let index = alloy::primitives::U256::from(index);
        let id = main
            .registry_call(registry, "serviceIdAt", |r| async move {
                r.serviceIdAt(index).call().await
            })
            .await?;
        let service = main
            .registry_call(registry, "getService", |r| async move {
                r.getService(id).call().await
            })
            .await?;
        let Ok(meta) = LaneServiceMeta::decode(&service.meta) else {
            continue;
        };
        if meta.service_id() != id {
            continue;
        }
        out.push(RegisteredService {
            id,
            meta,
            name: service.name,
            location: service.location,
            updated_at: service.updatedAt,
        });
    }
    Ok(out)
}

/// The services of `wanted` whose registry entry is missing or points elsewhere.
pub async fn outdated(
    main: &ChainClient,
    registry: Address,
    wanted: &[(LaneService, String)],
) -> Result<WantedLocations, crate::chain::ChainError> {
    let mut out = Vec::new();
    for (service, location) in wanted {
        if registered_location(main, registry, service.id)
            .await?
            .as_deref()
            != Some(location)
        {
            out.push((*service, location.clone()));
        }
    }
    Ok(out)
}

async fn sync_locations(
    main: Arc<ChainClient>,
    signer: PrivateKeySigner,
    fence: Fence,
    registry: Address,
    wanted: &[(LaneService, String)],
    metrics: &Metrics,
) -> Result<usize, RelayError> {
    let mut sender: Option<Sender> = None;
    let mut pending = 0usize;
    for (service, location) in wanted {
        let id = service.id;
        let current = registered_location(&main, registry, id).await?;
        let input: Bytes = match current {
            Some(current) if &current == location => continue,
            Some(_) => ServiceRegistry::updateLocationCall {
                id,
                location: location.clone(),
            }
            .abi_encode()
            .into(),
            None => ServiceRegistry::registerCall {
                id,
                name: format!(
                    "multibridge {} operator {}",
                    service.lane, service.meta.operator
                ),
                location: location.clone(),
                meta: service.meta.encode().into(),
            }
            .abi_encode()
            .into(),
        };
        if sender.is_none() {
            sender = Some(
                Sender::new(main.clone(), signer.clone(), SenderPolicy::default())
                    .await
                    .map_err(send_failed)?
                    .with_fence(fence.clone()),
            );
        }
        let Some(sender) = sender.as_mut() else {
            continue;
        };
        sender.send(registry, input).await.map_err(send_failed)?;
        tracing::info!(lane = %service.lane, %location, "service location sent to the registry");
        pending = pending.saturating_add(1);
    }
    let mut changed = 0usize;
    while pending > 0 {
        let Some(sender) = sender.as_mut() else {
            break;
        };
        for tracked in sender.poll().await.map_err(send_failed)? {
            if let Tracked::Mined { receipt, .. } = tracked {
                pending = pending.saturating_sub(1);
                if receipt.status() {
                    changed = changed.saturating_add(1);
                    metrics
                        .registry_updates
                        .with_label_values(&["updated"])
                        .inc();
                } else {
                    metrics
                        .registry_updates
                        .with_label_values(&["failed"])
                        .inc();
                    tracing::warn!(tx = %receipt.transaction_hash, "registry transaction reverted (registered by someone else meanwhile?)");
                }
            }
        }
        if pending > 0 {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok(changed)
}

fn send_failed(e: crate::sender::SendError) -> RelayError {
    RelayError::Registry(e.to_string())
}

/// Poll the registry for `Claim`s against this operator's lane services and hand each claimed
/// nonce to its lane's recovery worker. Claims are read from the head on start: recovery's first
/// tick after start scans everything pending anyway.
pub async fn claims_loop(
    main: Arc<ChainClient>,
    registry: Address,
    services: Vec<LaneService>,
    lanes: HashMap<Lane, mpsc::Sender<u64>>,
    poll: Duration,
    max_range: u64,
) -> Result<(), RelayError> {
    let ids: Vec<B256> = services.iter().map(|s| s.id).collect();
    let by_id: HashMap<B256, LaneService> = services.iter().map(|s| (s.id, *s)).collect();
    let mut next = main.head().await?.saturating_add(1);
    loop {
        match main.head().await {
            Ok(tip) if tip >= next => {
                let to = next
                    .saturating_add(max_range.max(1).saturating_sub(1))
                    .min(tip);
                let filter = Filter::new()
                    .address(registry)
                    .event_signature(ServiceRegistry::Claim::SIGNATURE_HASH)
                    .topic1(ids.clone())
                    .from_block(next)
                    .to_block(to);
                match main
                    .call("eth_getLogs", |p| {
                        let filter = filter.clone();
                        async move { p.get_logs(&filter).await }
                    })
                    .await
                {
                    Ok(logs) => {
                        for log in logs.iter().filter(|l| !l.removed) {
                            dispatch(log, &by_id, &lanes).await;
                        }
                        next = to.saturating_add(1);
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot read claims; retrying"),
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the main chain head; retrying"),
        }
        tokio::time::sleep(poll).await;
    }
}

async fn dispatch(
    log: &alloy::rpc::types::Log,
    by_id: &HashMap<B256, LaneService>,
    lanes: &HashMap<Lane, mpsc::Sender<u64>>,
) {
    let Ok(claim) = log.log_decode::<ServiceRegistry::Claim>() else {
        tracing::warn!(tx = ?log.transaction_hash, "undecodable Claim event; ignored");
        return;
    };
    let claim = claim.inner.data;
    let Some(service) = by_id.get(&claim.id) else {
        return;
    };
    let data = match ClaimData::decode(&claim.data) {
        Ok(data) => data,
        Err(e) => {
            tracing::warn!(claimant = %claim.claimant, error = %e, "claim with unreadable data; ignored");
            return;
        }
    };
    if data.src_chain_id != service.meta.src_chain_id
        || data.dst_chain_id != service.meta.dst_chain_id
    {
        tracing::warn!(claimant = %claim.claimant, lane = %service.lane, ?data, "claim names another lane than its service; ignored");
        return;
    }
    tracing::info!(lane = %service.lane, nonce = data.nonce, claimant = %claim.claimant, "claim filed");
    if let Some(tx) = lanes.get(&service.lane)
        && tx.send(data.nonce).await.is_err()
    {
        tracing::warn!(lane = %service.lane, "recovery worker gone; claim dropped");
    }
}
