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
    refund_asks: HashMap<multibridge_contracts::Lane, mpsc::Sender<crate::refund::RefundAsk>>,
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
            etcd: shared.etcd.as_ref().map(|pool| {
                (
                    std::sync::Arc::clone(pool),
                    crate::registry::sync::leader_reads(pool),
                )
            }),
            own_url: shared.own_url.clone(),
            fixed: attested_location(config, &shared.own_url)
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
            verified: Default::default(),
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
        refund_asks,
        Duration::from_millis(config.recovery.claims_poll_ms),
        config.chains.main.max_block_range,
    );
    let span = tracing::info_span!("claims", chain = %ChainRole::Main, %operator);
    if let Some(lane) = first_lane {
        tasks.spawn(run_stepper(lane, "claims", claims).instrument(span));
    }
}

/// Where an operator's attested lanes are served whoever leads: its object store
/// (`voting.attestation_store`), or every replica's URL (`registry.replica_urls` and this
/// replica's), space-separated and sorted so every replica publishes the same — every replica
/// signs and serves, so a peer reaches the operator's signatures through any replica alive
/// without waiting for the registry to follow an election (issue 52). `None`: one replica
/// only, the location follows the lane leader.
fn attested_location(config: &crate::config::Config, own_url: &str) -> Option<String> {
    if let Some(store) = &config.voting.attestation_store {
        return Some(crate::storage::public_location(store));
    }
    every_replica(
        config
            .registry
            .iter()
            .flat_map(|r| r.replica_urls.iter().map(String::as_str)),
        own_url,
    )
}

/// `urls` and `own_url` as one location (sorted, without duplicates, space-separated); `None`
/// when they are one URL.
fn every_replica<'a>(urls: impl Iterator<Item = &'a str>, own_url: &'a str) -> Option<String> {
    let mut urls: Vec<&str> = urls
        .chain(std::iter::once(own_url))
        .map(|u| u.trim_end_matches('/'))
        .collect();
    urls.sort_unstable();
    urls.dedup();
    (urls.len() > 1).then(|| urls.join(" "))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_replica_publishes_the_same_list_of_all_of_them() {
        let urls = ["https://b.example:9464/", "https://a.example:9464"];
        let from_a = super::every_replica(urls.into_iter(), "https://a.example:9464");
        let from_b = super::every_replica(urls.into_iter(), "https://b.example:9464");
        assert_eq!(
            from_a.as_deref(),
            Some("https://a.example:9464 https://b.example:9464")
        );
        assert_eq!(from_a, from_b);
        // One replica: the location follows the lane leader as before.
        assert_eq!(
            super::every_replica(std::iter::empty(), "https://a.example:9464"),
            None
        );
        assert_eq!(
            super::every_replica(
                ["https://a.example:9464"].into_iter(),
                "https://a.example:9464/"
            ),
            None
        );
    }
}
