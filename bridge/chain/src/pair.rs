//! The two chains of a bridge pair, each behind its own [`ChainClient`].

use std::sync::Arc;

use multibridge_contracts::{ChainRole, Lane};
use multibridge_monitoring::Metrics;

use super::{ChainClient, ChainError, RetryPolicy};
use crate::config::Chains;

/// Both chains of the pair.
#[derive(Debug, Clone)]
pub struct ChainPair {
    /// The main chain.
    pub main: Arc<ChainClient>,
    /// The service chain.
    pub service: Arc<ChainClient>,
}

/// A lane's bookkeeping on its two bridges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LaneNonces {
    /// `requestNonce` of the source.
    pub request: u64,
    /// `lowerHandleNonce` of the destination.
    pub lower: u64,
    /// `upperHandleNonce` of the destination.
    pub upper: u64,
}

impl ChainPair {
    /// Clients for both chains of `chains`, counting RPC attempts in `metrics`.
    pub fn connect(
        chains: &Chains,
        policy: RetryPolicy,
        metrics: &Metrics,
    ) -> Result<Self, ChainError> {
        let client = |role: ChainRole| {
            ChainClient::new(role, chains.get(role), policy, metrics.chain(role)).map(Arc::new)
        };
        Ok(Self {
            main: client(ChainRole::Main)?,
            service: client(ChainRole::Service)?,
        })
    }

    /// Clients for a command a person runs (its RPC attempts are counted nowhere).
    pub fn for_command(chains: &Chains, policy: RetryPolicy) -> Result<Self, ChainError> {
        let endpoints = chains
            .main
            .rpc_urls
            .len()
            .max(chains.service.rpc_urls.len());
        let metrics = Metrics::new(&[], endpoints)
            .expect("the metric definitions are unique and valid (unit-tested in monitoring)");
        Self::connect(chains, policy, &metrics)
    }

    /// The client of chain `role`.
    pub fn get(&self, role: ChainRole) -> &Arc<ChainClient> {
        match role {
            ChainRole::Main => &self.main,
            ChainRole::Service => &self.service,
        }
    }

    /// Both clients with their roles.
    pub fn each(&self) -> [(ChainRole, &Arc<ChainClient>); 2] {
        [
            (ChainRole::Main, &self.main),
            (ChainRole::Service, &self.service),
        ]
    }

    /// The source's `requestNonce` and the destination's handle nonces of `lane`, from each
    /// bridge's counters at its chain's head (read once per block for every task that asks).
    pub async fn lane_nonces(&self, lane: Lane) -> Result<LaneNonces, ChainError> {
        let (source, destination) = futures::future::try_join(
            self.get(lane.source()).counters(),
            self.get(lane.destination()).counters(),
        )
        .await?;
        Ok(LaneNonces {
            request: source.request_nonce,
            lower: destination.lower_handle_nonce,
            upper: destination.upper_handle_nonce,
        })
    }
}

impl RetryPolicy {
    /// For a person waiting at a command: three attempts of 5 s each.
    pub fn interactive() -> Self {
        Self {
            max_attempts: 3,
            attempt_timeout: std::time::Duration::from_secs(5),
            ..Self::default()
        }
    }
}
