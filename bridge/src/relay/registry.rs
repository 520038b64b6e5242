//! The registry side of a replica: the location sync of every lane this replica leads, and the
//! claims watcher feeding each lane's recovery.

use std::collections::HashMap;
use std::time::Duration;

use multibridge_contracts::ChainRole;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::chain::submitter::SubmitterHandle;
use crate::lane::{LaneControl, Shared};
use crate::task::run_stepper;

use super::owner;
use crate::registry::claims::ClaimsWatch;
use crate::registry::sync::RegistrySync;

/// The registry sync (through the main chain's submitter) and the claims watcher.
pub(super) fn spawn_registry(
    shared: &Shared,
    registry: alloy::primitives::Address,
    controls: &[LaneControl],
    submitters: &HashMap<ChainRole, SubmitterHandle>,
    claim_senders: HashMap<multibridge_contracts::Lane, mpsc::Sender<u64>>,
    tasks: &mut JoinSet<crate::task::TaskResult>,
) {
    let config = &shared.config;
    let operator = shared.operator;
    let services = crate::registry::lane_services(config);
    let first_lane = controls.first().map(|c| c.lane);
    if let (Some(main), Some(owner)) = (
        submitters.get(&ChainRole::Main),
        owner(controls, ChainRole::Main),
    ) {
        let (submit, events) = main.client();
        let sync = RegistrySync {
            main: shared.chains.main.clone(),
            registry,
            services: services
                .iter()
                .map(|s| {
                    let key = crate::leadership::lane_leader_key(config, s.lane);
                    (*s, key)
                })
                .collect(),
            pool: shared.etcd.clone(),
            own_url: shared.own_url.clone(),
            fixed: config
                .voting
                .attestation_store
                .as_ref()
                .map(crate::storage::public_location)
                .map(|location| {
                    config
                        .lanes
                        .iter()
                        .filter(|l| {
                            config.voting.mode_of(**l) == crate::config::VotingMode::Attestations
                        })
                        .map(|l| (*l, location.clone()))
                        .collect()
                })
                .unwrap_or_default(),
            own_replica: shared.replica.clone(),
            allowed_urls: config
                .registry
                .iter()
                .flat_map(|r| r.replica_urls.iter().cloned())
                .chain(std::iter::once(shared.own_url.clone()))
                .collect(),
            submit,
            events,
            term: owner.leading.clone(),
            metrics: shared.metrics.clone(),
            in_flight: Default::default(),
        };
        let span = tracing::info_span!("registry", chain = %ChainRole::Main, %operator);
        if let Some(lane) = first_lane {
            tasks.spawn(run_stepper(lane, "registry sync", sync).instrument(span));
        }
    }
    let claims = ClaimsWatch::new(
        shared.chains.main.clone(),
        registry,
        &services,
        claim_senders,
        Duration::from_millis(config.recovery.claims_poll_ms),
        config.chains.main.max_block_range,
    );
    let span = tracing::info_span!("claims", chain = %ChainRole::Main, %operator);
    if let Some(lane) = first_lane {
        tasks.spawn(run_stepper(lane, "claims", claims).instrument(span));
    }
}
