//! One relay replica: checks the live chains against its config, then runs an indexer and a
//! voter per lane until it is told to stop or a task hits an error no retry can fix.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use alloy::signers::local::PrivateKeySigner;
use multibridge_contracts::{ChainRole, Lane};
use multibridge_monitoring::{HttpState, Metrics, Readiness, StatusBoard};
use multibridge_recovery::{Recovery, RecoveryConfig};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::chain::{ChainClient, ChainError, RetryPolicy};
use crate::config::Config;
use crate::conservation::{ConservationScanner, ScanSide};
use crate::indexer::{Indexer, Step};
use crate::keys::{KeyError, load_signer};
use crate::lane_recovery::{ChainLane, StoreQueue, publish_stuck, recovery_loop};
use crate::lane_voting::{RegistrySync, VoterFactory, vote_loop};
use crate::leadership::campaign::{Campaign, HeldLease, LeaderInfo, resign};
use crate::leadership::fence::Fence;
use crate::leadership::progress::Progress;
use crate::sender::SenderPolicy;
use crate::store::{Store, StoreError};
use crate::voter::VoterConfig;
use crate::watch::Watcher;

/// Why the relay cannot start or had to stop. Each says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The key could not be loaded.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A chain misbehaved.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// No configured endpoint of a chain answered.
    #[error("{chain}: none of rpc_urls answers; check the node and the URLs")]
    Unreachable {
        /// Chain.
        chain: ChainRole,
    },
    /// There is no contract at the configured bridge address.
    #[error("{chain}: no contract code at bridge address {address}; check chains.{chain}.bridge")]
    NoBridgeCode {
        /// Chain.
        chain: ChainRole,
        /// Configured address.
        address: Address,
    },
    /// The operator is not registered in a bridge.
    #[error(
        "{chain}: {operator} is not a registered operator of bridge {bridge}; ask the bridge owner to register it"
    )]
    NotRegistered {
        /// Chain.
        chain: ChainRole,
        /// Operator.
        operator: Address,
        /// Bridge.
        bridge: Address,
    },
    /// The bridges do not name each other as counterparts.
    #[error(
        "{chain}: bridge {bridge} names {actual} as counterpart, expected {expected}; the configured bridges are not a pair"
    )]
    NotAPair {
        /// Chain.
        chain: ChainRole,
        /// Bridge.
        bridge: Address,
        /// Expected counterpart.
        expected: Address,
        /// What it names.
        actual: Address,
    },
    /// The signer cannot pay for votes.
    #[error("{chain}: signer {operator} has no native balance to pay for votes; fund it")]
    Unfunded {
        /// Chain.
        chain: ChainRole,
        /// Operator.
        operator: Address,
    },
    /// The request store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The service registry could not be used.
    #[error("service registry: {0}")]
    Registry(String),
    /// A relay task panicked (a bug): the relay stops rather than run without it.
    #[error("a relay task panicked: {0}")]
    TaskPanicked(String),
    /// The HTTP API cannot listen where configured.
    #[error("cannot listen on http.listen {listen}: {source}; pick a free address")]
    Listen {
        /// Configured address.
        listen: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The metrics could not be set up (a bug).
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A lane task stopped on an error no retry fixes.
    #[error("{lane} {task} stopped: {message}")]
    TaskFailed {
        /// Lane.
        lane: Lane,
        /// Task name.
        task: &'static str,
        /// Why.
        message: String,
    },
}

/// What the preflight found out about one chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// Which chain.
    pub role: ChainRole,
    /// Chain id (as configured and served).
    pub chain_id: u64,
    /// Endpoints that answered.
    pub endpoints_up: usize,
    /// Endpoints configured.
    pub endpoints: usize,
    /// Votes needed on this chain's bridge.
    pub threshold: U256,
    /// Registered operators of this chain's bridge.
    pub operators: U256,
    /// The signer's native balance on this chain.
    pub signer_balance: U256,
}

/// A checked relay, ready to run.
pub struct Preflight {
    /// The config.
    pub config: Config,
    /// The operator's signer.
    pub signer: PrivateKeySigner,
    /// Main chain client.
    pub main: Arc<ChainClient>,
    /// Service chain client.
    pub service: Arc<ChainClient>,
    /// What was found per chain.
    pub reports: Vec<ChainReport>,
    /// The relay's metrics (RPC outcomes are already recorded from the preflight on).
    pub metrics: Arc<Metrics>,
}

impl Preflight {
    /// The client of one chain.
    pub fn chain(&self, role: ChainRole) -> &Arc<ChainClient> {
        match role {
            ChainRole::Main => &self.main,
            ChainRole::Service => &self.service,
        }
    }
}

/// Check the config against the live chains: key, chain ids, bridge code, counterparts,
/// registration, threshold, signer balance. Sends nothing.
pub async fn preflight(config: Config) -> Result<Preflight, RelayError> {
    let signer = load_signer(&config)?;
    let operator = signer.address();
    let policy = RetryPolicy {
        max_attempts: 3,
        attempt_timeout: Duration::from_secs(5),
        ..RetryPolicy::default()
    };
    let endpoints = config
        .chains
        .main
        .rpc_urls
        .len()
        .max(config.chains.service.rpc_urls.len());
    let metrics = Arc::new(Metrics::new(&config.lanes, endpoints)?);
    let main = Arc::new(
        ChainClient::new(ChainRole::Main, &config.chains.main, policy)?
            .with_metrics(metrics.clone()),
    );
    let service = Arc::new(
        ChainClient::new(ChainRole::Service, &config.chains.service, policy)?
            .with_metrics(metrics.clone()),
    );
    // First what each chain is (reachable, right id, a contract at the bridge address), then how
    // the bridges relate to each other and to this operator: the most basic problem is named.
    let mut endpoints_up = Vec::new();
    for (client, role) in [(&main, ChainRole::Main), (&service, ChainRole::Service)] {
        let up = client.verify_chain_id().await?;
        if up == 0 {
            return Err(RelayError::Unreachable { chain: role });
        }
        let bridge = config.chains.get(role).bridge;
        let code = client
            .call(
                "eth_getCode",
                |p| async move { p.get_code_at(bridge).await },
            )
            .await?;
        if code.is_empty() {
            return Err(RelayError::NoBridgeCode {
                chain: role,
                address: bridge,
            });
        }
        endpoints_up.push(up);
    }
    let mut reports = Vec::new();
    for ((client, role), endpoints_up) in [(&main, ChainRole::Main), (&service, ChainRole::Service)]
        .into_iter()
        .zip(endpoints_up)
    {
        let chain = config.chains.get(role);
        let bridge = chain.bridge;
        let counterpart = config.chains.get(role.other()).bridge;
        let named = client
            .bridge_call("counterpartBridge", move |b| async move {
                b.counterpartBridge().call().await
            })
            .await?;
        if named != counterpart {
            return Err(RelayError::NotAPair {
                chain: role,
                bridge,
                expected: counterpart,
                actual: named,
            });
        }
        let registered = client
            .bridge_call("isOperator", move |b| async move {
                b.isOperator(operator).call().await
            })
            .await?;
        if !registered {
            return Err(RelayError::NotRegistered {
                chain: role,
                operator,
                bridge,
            });
        }
        let threshold = client
            .bridge_call("threshold", |b| async move { b.threshold().call().await })
            .await?;
        let operators = client
            .bridge_call("operatorCount", |b| async move {
                b.operatorCount().call().await
            })
            .await?;
        let signer_balance = client
            .call("eth_getBalance", |p| async move {
                p.get_balance(operator).await
            })
            .await?;
        if signer_balance.is_zero() {
            return Err(RelayError::Unfunded {
                chain: role,
                operator,
            });
        }
        reports.push(ChainReport {
            role,
            chain_id: chain.chain_id,
            endpoints_up,
            endpoints: chain.rpc_urls.len(),
            threshold,
            operators,
            signer_balance,
        });
    }
    Ok(Preflight {
        config,
        signer,
        main,
        service,
        reports,
        metrics,
    })
}

/// The identity a store is bound to: the bridge pair and the operator.
pub fn store_identity(config: &Config) -> String {
    format!(
        "{}/{} <-> {}/{} operator {}",
        config.chains.main.chain_id,
        config.chains.main.bridge,
        config.chains.service.chain_id,
        config.chains.service.bridge,
        config.operator.address
    )
}

/// Run the relay until `shutdown` resolves or a task fails for good.
pub async fn run(
    preflight: Preflight,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RelayError> {
    let config = preflight.config.clone();
    let store = Arc::new(Mutex::new(Store::open(
        &config.store.path,
        &store_identity(&config),
    )?));
    let operator = preflight.signer.address();
    let metrics = preflight.metrics.clone();
    let readiness = Arc::new(Readiness::new(Duration::from_secs(
        config.http.ready_stale_secs,
    )));
    let board = Arc::new(StatusBoard::new());
    for lane in &config.lanes {
        readiness.register(&crate::watch::indexer_component(*lane));
        // Standalone: this replica is every lane's active voter; with etcd, its campaign says.
        metrics
            .leader
            .with_label_values(&[lane.as_str()])
            .set(i64::from(config.etcd.is_none()));
    }
    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http = multibridge_monitoring::serve(
        config.http.listen,
        HttpState {
            metrics: metrics.clone(),
            readiness: readiness.clone(),
            status: board.clone(),
        },
        async move {
            let _ = http_stopped.await;
        },
    )
    .await
    .map_err(|source| RelayError::Listen {
        listen: config.http.listen,
        source,
    })?;
    // Lane services first (before any voter owns the main-chain nonce sequence), so users can
    // file claims; bounded in time, never fatal.
    // With etcd, the replica that leads the main chain's lane does it at the start of its
    // term instead (see `lane_voting`).
    let services = crate::registry::lane_services(&config);
    let own_url = crate::registry::advertised_url(&config);
    if let (Some(registry), None) = (&config.registry, &config.etcd) {
        let wanted: Vec<_> = services.iter().map(|s| (*s, own_url.clone())).collect();
        crate::registry::ensure_registered(
            preflight.main.clone(),
            preflight.signer.clone(),
            Fence::standalone(),
            registry.address,
            &wanted,
            &metrics,
        )
        .instrument(tracing::info_span!("registry", chain = %ChainRole::Main, %operator))
        .await;
    }
    let etcd = crate::leadership::etcd_pool(&config).map(|pool| {
        metrics.init_etcd(pool.endpoints().len());
        Arc::new(pool.with_metrics(metrics.clone()))
    });
    let election_dir = |lane: Lane| crate::leadership::lane_election_dir(&config, lane);
    // The leases of this replica's campaigns, revoked when it stops so a follower takes over at
    // once instead of after the TTL.
    let mut held_leases = Vec::new();
    let replica = config
        .etcd
        .as_ref()
        .and_then(|e| e.replica.clone())
        .unwrap_or_else(|| own_url.clone());
    // The lane whose votes go to the main chain owns the main chain's nonce sequence, so it also
    // writes the registry; without it, the first lane does.
    let registry_lane = config
        .lanes
        .iter()
        .copied()
        .find(|l| l.destination() == ChainRole::Main)
        .or_else(|| config.lanes.first().copied());
    let mut tasks: JoinSet<Result<(), RelayError>> = JoinSet::new();
    let mut claim_senders = std::collections::HashMap::new();
    let span = tracing::info_span!("store_stats", %operator);
    tasks.spawn(
        store_stats_loop(config.lanes.clone(), store.clone(), metrics.clone()).instrument(span),
    );
    for lane in config.lanes.iter().copied() {
        let source = preflight.chain(lane.source()).clone();
        let destination = preflight.chain(lane.destination()).clone();
        let source_config = config.chains.get(lane.source()).clone();
        let destination_config = config.chains.get(lane.destination()).clone();

        let indexer =
            Indexer::new(lane, source, &source_config, store.clone()).with_metrics(metrics.clone());
        let poll = Duration::from_millis(source_config.poll_interval_ms.max(50));
        let span = tracing::info_span!("indexer", chain = %lane.source(), %lane, %operator);
        tasks.spawn(index_loop(lane, indexer, poll, readiness.clone()).instrument(span));

        let fence = if etcd.is_some() {
            Fence::leased()
        } else {
            Fence::standalone()
        };
        let (leading_tx, leading_rx) = tokio::sync::watch::channel(etcd.is_none());
        if let (Some(pool), Some(dir), Some(etcd_config)) =
            (&etcd, election_dir(lane), &config.etcd)
        {
            let campaign = Campaign {
                lane,
                key: crate::leadership::keys::leader_key(&dir),
                me: LeaderInfo {
                    replica: replica.clone(),
                    url: own_url.clone(),
                    operator: operator.to_string(),
                },
                ttl: Duration::from_secs(etcd_config.lease_ttl_secs),
                pool: pool.clone(),
                fence: fence.clone(),
                held: HeldLease::default(),
                leading: leading_tx,
                metrics: metrics.clone(),
                readiness: readiness.clone(),
            };
            held_leases.push((lane, fence.clone(), campaign.held.clone()));
            let span = tracing::info_span!("campaign", %lane, %operator, %replica);
            tasks.spawn(
                async move {
                    campaign.run().await;
                    Ok(())
                }
                .instrument(span),
            );
            let progress = Progress {
                lane,
                dir,
                replica: replica.clone(),
                pool: pool.clone(),
                store: store.clone(),
                leading: leading_rx.clone(),
            };
            let span = tracing::info_span!("progress", %lane, %operator, %replica);
            tasks.spawn(
                async move {
                    progress.run().await;
                    Ok(())
                }
                .instrument(span),
            );
        }
        let factory = VoterFactory {
            lane,
            destination,
            bridge: destination_config.bridge,
            signer: preflight.signer.clone(),
            policy: SenderPolicy {
                stuck_after: Duration::from_secs(config.voting.stuck_after_secs),
                gas_margin_percent: config.voting.gas_margin_percent,
                ..SenderPolicy::default()
            },
            config: VoterConfig {
                batch_size: config.voting.batch_size,
                batch_wait: Duration::from_millis(config.voting.batch_wait_ms),
                retry_after: Duration::from_secs(config.voting.retry_after_secs),
                max_in_flight: config.voting.max_in_flight,
            },
            store: store.clone(),
            metrics: metrics.clone(),
            fence,
            tamper: config.fault_injection.tamper_votes,
        };
        let registry_sync = match (&config.registry, &config.etcd) {
            (Some(registry), Some(_)) if Some(lane) == registry_lane => Some(RegistrySync {
                main: preflight.main.clone(),
                signer: preflight.signer.clone(),
                registry: registry.address,
                services: services
                    .iter()
                    .map(|s| {
                        (
                            *s,
                            election_dir(s.lane).map(|d| crate::leadership::keys::leader_key(&d)),
                        )
                    })
                    .collect(),
                pool: etcd.clone(),
                own_url: own_url.clone(),
                metrics: metrics.clone(),
            }),
            _ => None,
        };
        let span = tracing::info_span!("voter", chain = %lane.destination(), %lane, %operator);
        tasks.spawn(vote_loop(factory, leading_rx, registry_sync).instrument(span));

        let recovery = Recovery::new(
            lane,
            RecoveryConfig {
                interval: Duration::from_millis(config.recovery.interval_ms),
                stride_blocks: config.recovery.stride_blocks,
                max_per_round: config.recovery.max_per_round,
                ..RecoveryConfig::default()
            },
        )
        .with_metrics(metrics.clone());
        let chains = ChainLane {
            lane,
            source: preflight.chain(lane.source()).clone(),
            destination: preflight.chain(lane.destination()).clone(),
            confirmations: source_config.confirmations,
            operator,
        };
        let queue = StoreQueue {
            lane,
            store: store.clone(),
        };
        let (claims_tx, claims_rx) = tokio::sync::mpsc::channel(256);
        claim_senders.insert(lane, claims_tx);
        let span = tracing::info_span!("recovery", chain = %lane.destination(), %lane, %operator);
        tasks.spawn(recovery_loop(recovery, chains, queue, claims_rx).instrument(span));
    }
    let scanners = config
        .lanes
        .iter()
        .map(|lane| {
            let side = |role: ChainRole| {
                let chain = config.chains.get(role);
                ScanSide {
                    chain: preflight.chain(role).clone(),
                    bridge: chain.bridge,
                    start_block: chain.start_block,
                    confirmations: chain.confirmations,
                    max_range: chain.max_block_range.max(1),
                }
            };
            ConservationScanner::new(
                *lane,
                side(lane.source()),
                side(lane.destination()),
                store.clone(),
                metrics.clone(),
            )
        })
        .collect();
    let watcher = Watcher {
        operator,
        main: preflight.main.clone(),
        service: preflight.service.clone(),
        lanes: config.lanes.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        readiness: readiness.clone(),
        board: board.clone(),
        scanners,
        interval: Duration::from_millis(config.http.watch_interval_ms),
    };
    let span = tracing::info_span!("watch", %operator);
    tasks.spawn(
        async move {
            watcher.run().await;
            Ok(())
        }
        .instrument(span),
    );
    if let Some(registry) = &config.registry {
        let span = tracing::info_span!("claims", chain = %ChainRole::Main, %operator);
        tasks.spawn(
            crate::registry::claims_loop(
                preflight.main.clone(),
                registry.address,
                services,
                claim_senders,
                Duration::from_millis(config.recovery.claims_poll_ms),
                config.chains.main.max_block_range,
            )
            .instrument(span),
        );
    }
    tracing::info!(%operator, lanes = ?config.lanes, http = %config.http.listen, "relay running");
    let result = supervise(&mut tasks, shutdown).await;
    // Every task is aborted; wait until they are gone (no sender can broadcast any more), then
    // give the lanes up.
    while tasks.join_next().await.is_some() {}
    if let Some(pool) = &etcd {
        for (lane, fence, held) in held_leases {
            resign(pool, &fence, &held)
                .instrument(tracing::info_span!("resign", %lane, %operator, %replica))
                .await;
        }
    }
    let _ = http_stop.send(());
    let _ = http.await;
    result
}

/// Wait for `shutdown` or the first task that fails for good; stop the rest either way.
async fn supervise(
    tasks: &mut JoinSet<Result<(), RelayError>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RelayError> {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => {
                tracing::info!("shutting down");
                tasks.abort_all();
                return Ok(());
            }
            joined = tasks.join_next() => match joined {
                Some(Ok(Err(e))) => {
                    tasks.abort_all();
                    return Err(e);
                }
                Some(Ok(Ok(()))) => {}
                Some(Err(e)) if e.is_cancelled() => {}
                Some(Err(e)) => {
                    tasks.abort_all();
                    return Err(RelayError::TaskPanicked(e.to_string()));
                }
                None => return Ok(()),
            }
        }
    }
}

/// How often the store's counts are published.
const STORE_STATS_EVERY: Duration = Duration::from_secs(2);

/// Publish per-lane request counts by status and the oldest open request's age.
async fn store_stats_loop(
    lanes: Vec<Lane>,
    store: Arc<Mutex<Store>>,
    metrics: Arc<Metrics>,
) -> Result<(), RelayError> {
    loop {
        for lane in &lanes {
            let counts = store
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .counts(*lane);
            match counts {
                Ok(c) => {
                    let label = lane.as_str();
                    for (status, n) in [
                        ("observed", c.observed),
                        ("voting", c.voting),
                        ("voted", c.voted),
                        ("handled", c.handled),
                        ("rejected", c.rejected),
                    ] {
                        metrics
                            .requests
                            .with_label_values(&[label, status])
                            .set(i64::try_from(n).unwrap_or(i64::MAX));
                    }
                    let now = crate::store::unix_now();
                    let age = c
                        .oldest_open_observed_at
                        .map(|t| now.saturating_sub(t))
                        .unwrap_or(0);
                    metrics
                        .oldest_pending_age
                        .with_label_values(&[label])
                        .set(age as f64);
                }
                Err(e) => tracing::warn!(%lane, error = %e, "cannot read store counts"),
            }
            publish_stuck(
                *lane,
                &store.lock().unwrap_or_else(|p| p.into_inner()),
                &metrics,
            );
        }
        tokio::time::sleep(STORE_STATS_EVERY).await;
    }
}

/// Pause after a retryable failure.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

async fn index_loop(
    lane: Lane,
    indexer: Indexer,
    poll: Duration,
    readiness: Arc<Readiness>,
) -> Result<(), RelayError> {
    let component = crate::watch::indexer_component(lane);
    loop {
        let step = indexer.step().await;
        match &step {
            Ok(_) => readiness.ok(&component),
            Err(e) => readiness.failed(&component, e),
        }
        match step {
            Ok(Step::Indexed { range, found, new }) => {
                if found > 0 {
                    tracing::info!(
                        from = range.start(),
                        to = range.end(),
                        found,
                        new,
                        "indexed"
                    );
                }
            }
            Ok(Step::CaughtUp { .. }) => tokio::time::sleep(poll).await,
            Ok(Step::Rewound {
                missing,
                from_block,
            }) => {
                tracing::warn!(missing, from_block, "re-scanning after a nonce gap");
            }
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, "indexing failed; retrying");
                tokio::time::sleep(ERROR_PAUSE).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "indexing stopped");
                return Err(RelayError::TaskFailed {
                    lane,
                    task: "indexer",
                    message: e.to_string(),
                });
            }
        }
    }
}
