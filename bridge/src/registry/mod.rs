//! The relay's side of the service registry: its lane services (registered so users can file
//! claims against them, located at the URL of the replica that leads each lane), how the
//! registry lists them, the task that keeps their locations right ([`sync`]) and the one that
//! turns claims into recovery of one nonce ([`claims`]).

pub mod claims;
pub mod sync;

use alloy::primitives::{Address, B256};
use multibridge_contracts::{Lane, LaneServiceMeta};

use crate::chain::ChainClient;
use crate::config::Config;

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
/// is the one its meta derives and its provider is the operator the meta names, so nobody can
/// pose as another operator's service.
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
        // Only the operator's own registration counts (audit M-4): the id must be the one its
        // meta derives and the provider the operator it names.
        if meta.service_id() != id || service.provider != meta.operator {
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
