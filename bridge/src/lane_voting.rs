//! A lane's voting term: wait until this replica leads the lane, reconcile the store, rebuild the
//! signer's nonce sequence from the chain, then vote until leadership ends or the fence refuses a
//! send. The replica that owns the main chain's nonce sequence also keeps the operator's
//! service locations in the registry pointing at each lane's leader, between batches.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use multibridge_contracts::Lane;
use multibridge_monitoring::Metrics;
use tokio::sync::watch;

use crate::chain::ChainClient;
use crate::leadership::campaign::read_leader;
use crate::leadership::etcd_pool::EtcdPool;
use crate::leadership::fence::Fence;
use crate::registry::{LaneService, WantedLocations, ensure_registered, outdated};
use crate::relay::RelayError;
use crate::sender::{SendError, Sender, SenderPolicy};
use crate::store::Store;
use crate::voter::{Voter, VoterConfig, VoterError};

/// Everything needed to build a lane's voter at the start of a term.
pub struct VoterFactory {
    /// Lane.
    pub lane: Lane,
    /// Destination chain.
    pub destination: Arc<ChainClient>,
    /// Destination bridge.
    pub bridge: Address,
    /// Operator key.
    pub signer: PrivateKeySigner,
    /// Sender policy.
    pub policy: SenderPolicy,
    /// Voter config.
    pub config: VoterConfig,
    /// Store.
    pub store: Arc<Mutex<Store>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The lane's fence.
    pub fence: Fence,
    /// Test-only fault injection.
    pub tamper: bool,
}

impl VoterFactory {
    async fn build(&self) -> Result<Voter, SendError> {
        let sender = Sender::new(self.destination.clone(), self.signer.clone(), self.policy)
            .await?
            .with_fence(self.fence.clone());
        let mut voter = Voter::new(
            self.lane,
            self.destination.clone(),
            self.bridge,
            self.store.clone(),
            sender,
            self.config,
        )
        .with_metrics(self.metrics.clone());
        voter.tamper_payloads(self.tamper);
        Ok(voter)
    }
}

/// Keeps the registry's locations of this operator's lane services at their leaders' URLs.
pub struct RegistrySync {
    /// Main chain.
    pub main: Arc<ChainClient>,
    /// Operator key.
    pub signer: PrivateKeySigner,
    /// `ServiceRegistry`.
    pub registry: Address,
    /// Each lane service with the leader key of its lane's election (`None`: standalone, this
    /// replica serves it).
    pub services: Vec<(LaneService, Option<String>)>,
    /// etcd (absent: standalone).
    pub pool: Option<Arc<EtcdPool>>,
    /// This replica's URL.
    pub own_url: String,
    /// Metrics (`registry_updates_total`).
    pub metrics: Arc<Metrics>,
}

/// How often the main-chain owner compares the registry with the lanes' leaders.
const REGISTRY_CHECK_EVERY: Duration = Duration::from_secs(5);

impl RegistrySync {
    async fn wanted(&self) -> WantedLocations {
        let mut out = Vec::new();
        for (service, key) in &self.services {
            let url = match (key, &self.pool) {
                (Some(key), Some(pool)) => match read_leader(pool, key).await {
                    // Under the lane scope the leader may be another operator's replica: its
                    // URL does not serve this operator's service.
                    Ok(Some(leader))
                        if leader.operator.parse::<Address>().ok()
                            == Some(service.meta.operator) =>
                    {
                        leader.url
                    }
                    // No leader of this operator (or etcd unreachable): leave it as it is.
                    _ => continue,
                },
                _ => self.own_url.clone(),
            };
            out.push((*service, url));
        }
        out
    }

    /// The services whose location must change (empty on any read failure).
    async fn pending(&self) -> WantedLocations {
        let wanted = self.wanted().await;
        outdated(&self.main, self.registry, &wanted)
            .await
            .unwrap_or_default()
    }

    /// Bring the registry in line (services already right are skipped); returns how many
    /// services changed.
    pub async fn sync(&self, fence: &Fence) -> usize {
        let wanted = self.wanted().await;
        ensure_registered(
            self.main.clone(),
            self.signer.clone(),
            fence.clone(),
            self.registry,
            &wanted,
            &self.metrics,
        )
        .await
    }
}

/// Pause after a retryable failure.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// Run the lane's voting terms until a failure needs a person.
pub async fn vote_loop(
    factory: VoterFactory,
    mut leading: watch::Receiver<bool>,
    registry: Option<RegistrySync>,
) -> Result<(), RelayError> {
    let lane = factory.lane;
    loop {
        while !*leading.borrow_and_update() {
            if leading.changed().await.is_err() {
                return Ok(());
            }
        }
        if let Some(registry) = &registry {
            registry.sync(&factory.fence).await;
        }
        let reopened = factory
            .store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reopen_in_flight(lane)?;
        let mut voter = match factory.build().await {
            Ok(v) => v,
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, "cannot start voting; retrying");
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
            Err(e) => {
                return Err(RelayError::TaskFailed {
                    lane,
                    task: "voter",
                    message: e.to_string(),
                });
            }
        };
        tracing::info!(
            next_nonce = voter.next_nonce(),
            reopened,
            "voting: nonce sequence rebuilt from the chain, store reconciled"
        );
        let term = vote_term(&factory, &mut voter, &mut leading, registry.as_ref()).await?;
        match term {
            TermEnd::LostLead => tracing::info!("not leading any more: voting stopped"),
            TermEnd::Registry => {}
        }
    }
}

enum TermEnd {
    LostLead,
    /// Leave the term to update the registry (nothing in flight), then start a new one.
    Registry,
}

async fn vote_term(
    factory: &VoterFactory,
    voter: &mut Voter,
    leading: &mut watch::Receiver<bool>,
    registry: Option<&RegistrySync>,
) -> Result<TermEnd, RelayError> {
    let lane = factory.lane;
    let wait = voter.batch_wait();
    let mut registry_checked = Instant::now();
    loop {
        if !*leading.borrow() {
            return Ok(TermEnd::LostLead);
        }
        match voter.step().await {
            Ok(step) => {
                if step.sent > 0 || step.handled > 0 || step.waiting > 0 {
                    tracing::info!(
                        sent = step.sent,
                        skipped = step.skipped,
                        handled = step.handled,
                        waiting = step.waiting,
                        "voted"
                    );
                }
                if step.sent == 0 {
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        _ = leading.changed() => {}
                    }
                }
            }
            Err(VoterError::Send(SendError::Fenced(reason))) => {
                factory
                    .metrics
                    .fenced_sends
                    .with_label_values(&[lane.as_str()])
                    .inc();
                tracing::warn!(%reason, "fenced: a send was refused");
                return Ok(TermEnd::LostLead);
            }
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, "voting failed; retrying");
                tokio::time::sleep(ERROR_PAUSE).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "voting stopped");
                return Err(RelayError::TaskFailed {
                    lane,
                    task: "voter",
                    message: e.to_string(),
                });
            }
        }
        if let Some(registry) = registry
            && registry_checked.elapsed() >= REGISTRY_CHECK_EVERY
            && voter.in_flight() == 0
        {
            registry_checked = Instant::now();
            if !registry.pending().await.is_empty() {
                return Ok(TermEnd::Registry);
            }
        }
    }
}
