//! The relay's side of the service registry: its lane services (registered at start so users
//! can file claims against them) and the watcher that turns claims into recovery of one nonce.

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
use tokio::sync::mpsc;

use crate::chain::ChainClient;
use crate::config::Config;
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

/// How long registration may hold up the relay's start.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(30);

/// Register every lane service not yet in the registry (the operator becomes its manager), so
/// users can file claims against it. Runs before the voters start, so its transactions cannot
/// race the voters' nonces on the main chain. Never fails the relay: a problem is logged and
/// relaying goes on (claims for an unregistered service are refused by the registry).
pub async fn ensure_registered(
    main: Arc<ChainClient>,
    signer: PrivateKeySigner,
    registry: Address,
    services: &[LaneService],
    location: &str,
) {
    let started = Instant::now();
    let result = tokio::time::timeout(
        REGISTER_TIMEOUT,
        register_missing(main, signer, registry, services, location),
    )
    .await;
    match result {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => tracing::info!(
            registered = n,
            after_ms = started.elapsed().as_millis() as u64,
            "lane services registered"
        ),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot register lane services; claims against them will be refused until they are")
        }
        Err(_) => tracing::warn!(
            "registering lane services took longer than {REGISTER_TIMEOUT:?}; going on without"
        ),
    }
}

async fn register_missing(
    main: Arc<ChainClient>,
    signer: PrivateKeySigner,
    registry: Address,
    services: &[LaneService],
    location: &str,
) -> Result<usize, RelayError> {
    let mut sender: Option<Sender> = None;
    let mut pending = 0usize;
    for service in services {
        let id = service.id;
        let exists = main
            .call("exists", |p| async move {
                ServiceRegistry::new(registry, p)
                    .exists(id)
                    .call()
                    .await
                    .map_err(crate::chain::contract_to_transport)
            })
            .await?;
        if exists {
            continue;
        }
        if sender.is_none() {
            sender = Some(
                Sender::new(main.clone(), signer.clone(), SenderPolicy::default())
                    .await
                    .map_err(send_failed)?,
            );
        }
        let Some(sender) = sender.as_mut() else {
            continue;
        };
        let input: Bytes = ServiceRegistry::registerCall {
            id,
            name: format!(
                "multibridge {} operator {}",
                service.lane, service.meta.operator
            ),
            location: location.to_owned(),
            meta: service.meta.encode().into(),
        }
        .abi_encode()
        .into();
        sender.send(registry, input).await.map_err(send_failed)?;
        pending = pending.saturating_add(1);
    }
    let registered = pending;
    while pending > 0 {
        let Some(sender) = sender.as_mut() else {
            break;
        };
        for tracked in sender.poll().await.map_err(send_failed)? {
            if let Tracked::Mined { receipt, .. } = tracked {
                pending = pending.saturating_sub(1);
                if !receipt.status() {
                    tracing::warn!(tx = %receipt.transaction_hash, "service registration reverted (registered by someone else meanwhile?)");
                }
            }
        }
        if pending > 0 {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    Ok(registered)
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
