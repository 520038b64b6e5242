//! One relay replica, composed: the shared services (store, HTTP API, etcd pool), one submitter
//! per chain the operator's key writes to, the tasks of each lane ([`crate::lane::spawn`]), the
//! registry sync and claims watcher, and the watcher — supervised until shutdown or the first
//! task that fails for good, then stopped in an order that never lets a broadcast escape.
//!
//! How one replica is wired lives here only: [`backup`] (open the storage, join empty lanes,
//! start the worker), [`dashboard`] (the page's running side and its registry writer),
//! [`registry`] (location sync and the claims watcher).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use multibridge_contracts::ChainRole;
use multibridge_monitoring::StatusBoard;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::chain::submitter::{Submitter, SubmitterHandle};
use crate::config::Config;
use crate::error::RelayError;
use crate::lane::{LaneControl, Shared};
use crate::leadership::campaign::{resign, revoke_lease};
use crate::observe::conservation::{ConservationScanner, ScanSide};
use crate::observe::watcher::{WatchedLane, Watcher};
use crate::preflight::Preflight;
use crate::startup::Serving;
use crate::store::lock::StoreLock;
use crate::store::{SharedStore, Store};

mod backup;
mod dashboard;
mod guardian;
pub mod hub;
mod registry;

pub use hub::HubShare;

use dashboard::spawn_dashboard;
use registry::spawn_registry;

/// Run the relay of one bridge pair (its HTTP API already serving) until `shutdown` resolves or
/// a task fails for good; stops the HTTP API on the way out. Submitters and elections of chains
/// another pair of this process already writes to come from `hub` ([`hub`]; a single-pair
/// relay's share holds only its own).
pub async fn run(
    preflight: Preflight,
    serving: Serving,
    shutdown: impl Future<Output = ()>,
    hub: &HubShare,
) -> Result<(), RelayError> {
    let Preflight {
        config,
        signer,
        guardian,
        chains,
        ..
    } = preflight;
    let metrics = serving.metrics.clone();
    let signer = signer.with_metrics(metrics.clone());
    let readiness = serving.readiness.clone();
    let board = serving.board.clone();
    let operator = signer.address();
    // Held until this function returns: no other process runs on this store meanwhile.
    let store_lock = match StoreLock::acquire(&config.store.path) {
        Ok(lock) => lock,
        Err(e) => {
            serving.stop().await;
            return Err(e.into());
        }
    };
    let store = match Store::open(
        &config.store.path,
        &crate::store::identity(&config.chains, config.operator.address),
    ) {
        Ok(store) => SharedStore::new(store),
        Err(e) => {
            serving.stop().await;
            return Err(e.into());
        }
    };
    serving
        .attestations
        .attach(store.clone(), operator, metrics.attest.clone());
    // Background work waits for a slow etcd; the campaigns have their own pool with the lease's
    // short bound (`campaign_etcd` below).
    let etcd = crate::leadership::background_etcd_pool(&config, &metrics)
        .map(|pool| Arc::new(pool.sharing(hub.etcd_connections())));
    if let Some(pool) = &etcd {
        // One look at the members' versions (a known etcd defect is worth an upgrade).
        let (pool, etcd_metrics) = (pool.clone(), metrics.etcd());
        tokio::spawn(
            async move { crate::leadership::etcd_version::check(&pool, &etcd_metrics).await }
                .instrument(tracing::info_span!("etcd_version", %operator)),
        );
    }
    // The figures go to this pair's metrics until this function returns.
    let _history_metrics = match (&etcd, config.etcd.as_ref().and_then(|e| e.keep_history())) {
        (Some(pool), Some(keep)) => Some(crate::leadership::history::HistoryCompaction::start(
            pool,
            keep,
            &crate::registry::advertised_url(&config),
            metrics.etcd(),
        )),
        _ => None,
    };
    let storage = match backup::open_storage(&config) {
        Ok(storage) => storage,
        Err(e) => {
            serving.stop().await;
            return Err(e);
        }
    };
    let attestation_store = match config
        .voting
        .attestation_store
        .as_ref()
        .map(crate::storage::Storage::open)
        .transpose()
    {
        Ok(store) => store,
        Err(e) => {
            serving.stop().await;
            return Err(RelayError::AttestationStore(e));
        }
    };
    let own_url = crate::registry::advertised_url(&config);
    let replica = config
        .etcd
        .as_ref()
        .and_then(|e| e.replica.clone())
        .unwrap_or_else(|| own_url.clone());
    let controls: Vec<LaneControl> = config
        .lanes
        .iter()
        .map(|lane| {
            hub.control(
                *lane,
                config.chains.get(lane.destination()).chain_id,
                etcd.is_some(),
            )
        })
        .collect();
    for control in &controls {
        // Standalone: this replica is every lane's active voter; with etcd, its campaign says.
        metrics
            .lane(control.lane)
            .leader
            .set(i64::from(etcd.is_none()));
    }
    let shared = Shared {
        config: config.clone(),
        operator,
        chains: chains.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        readiness: readiness.clone(),
        etcd: etcd.clone(),
        campaign_etcd: crate::leadership::etcd_pool(&config, &metrics)
            .map(|pool| Arc::new(pool.sharing(hub.etcd_connections()))),
        replica: replica.clone(),
        own_url: own_url.clone(),
        signer: signer.clone(),
        store_holder: store_lock.holder().map(str::to_owned),
        signer_health: Default::default(),
        board: board.clone(),
        attestation_store,
        shared_tasks: hub.tasks().clone(),
        several_pairs: hub.several(),
    };
    for role in [ChainRole::Main, ChainRole::Service] {
        // What the step-down reads, at each scrape.
        let (liveness, gauge) = (chains.get(role).liveness(), metrics.chain(role).unanswered);
        metrics.on_render(move || {
            gauge.set(liveness.silent_for().map_or(0.0, |d| d.as_secs_f64()));
        });
    }
    if let Some(storage) = &storage {
        backup::join_empty_lanes(&shared, storage).await;
    }
    let mut tasks: JoinSet<crate::task::TaskResult> = JoinSet::new();
    let submitters = spawn_submitters(&shared, &signer, &controls, hub);
    let mut claim_senders = HashMap::new();
    let mut refund_asks = HashMap::new();
    for control in &controls {
        let lane = control.lane;
        let (claims_tx, claims_rx) = mpsc::channel(256);
        claim_senders.insert(lane, claims_tx);
        let (asks_tx, asks_rx) = mpsc::channel(256);
        refund_asks.insert(lane, asks_tx);
        let Some(submitter) = submitters.get(&lane.destination()) else {
            continue;
        };
        let settings = crate::lane::LaneSettings::of(&shared.config, lane);
        crate::lane::spawn(
            &shared, &settings, control, submitter, claims_rx, &mut tasks,
        );
        // The refund is sent on the lane's source, under the election of the lane that writes
        // there (its submitter's owner).
        let source_writer = owner(&controls, lane.source()).zip(submitters.get(&lane.source()));
        crate::refund::spawn(
            &shared,
            &settings,
            control,
            submitter,
            source_writer,
            asks_rx,
            &mut tasks,
        );
    }
    // Every lane's components are registered (their indexers were built above): from here
    // `/readyz` is up to them. Marked before, it read 200 for a moment between the preflight
    // and the lanes' registration.
    serving.preflight_passed();
    if let Some(registry) = &config.registry {
        spawn_registry(
            &shared,
            registry.address,
            &controls,
            &submitters,
            claim_senders,
            refund_asks,
            &mut tasks,
        );
    }
    if let (Some(storage), Some(main), Some(owner)) = (
        storage,
        submitters.get(&ChainRole::Main),
        owner(&controls, ChainRole::Main),
    ) {
        backup::spawn_worker(&shared, storage, main, owner, &mut tasks);
    }
    if let Some(handle) = &serving.dashboard
        && let Err(e) = spawn_dashboard(
            &shared,
            handle,
            &signer,
            &controls,
            &submitters,
            board.clone(),
            &mut tasks,
        )
    {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
        serving.stop().await;
        return Err(e);
    }
    let alarms = match &guardian {
        Some(pauser) => {
            let (alarms, alarm_rx) = crate::guard::alarm_channel();
            guardian::spawn_guardian(&shared, pauser, alarm_rx, board.clone(), hub, &mut tasks);
            Some(alarms)
        }
        None => None,
    };
    spawn_drift_watch(&shared, board.clone(), &mut tasks);
    spawn_watcher(&shared, &controls, board, alarms, &mut tasks);
    tracing::info!(%operator, lanes = ?config.lanes, http = %config.http.listen, "relay running");
    let result = supervise(&mut tasks, shutdown).await;
    // Every task is aborted; wait until they are gone (no submitter can broadcast any more),
    // then give the lanes up so a follower leads at once instead of after the TTL. A pair of
    // several that fails waits alone: the submitters and elections every pair shares go on.
    while tasks.join_next().await.is_some() {}
    let leaving = result.is_ok() || !hub.several();
    if leaving {
        hub.tasks().stop_all().await;
    }
    if let Some(pool) = &etcd
        && leaving
    {
        // A lane that follows another pair's election leaves the resigning to that pair.
        // Every key is released before the lease goes (the elections of the process, every
        // pair's, share one: the last to resign revokes it), so each standby leads at once
        // instead of waiting out a key deleted with its lease.
        let mut leases = Vec::new();
        for control in controls.iter().filter(|c| c.campaigns) {
            leases.extend(
                resign(pool, &control.fence, &control.held)
                    .instrument(
                        tracing::info_span!("resign", lane = %control.lane, %operator, %replica),
                    )
                    .await,
            );
        }
        for lease in leases {
            revoke_lease(pool, lease)
                .instrument(tracing::info_span!("revoke", %operator, %replica))
                .await;
        }
    }
    serving.stop().await;
    drop(store_lock);
    result
}

/// The lane whose lease a chain's submitter sends under: the lane that votes on that chain, or
/// (for a chain only the registry writes to) the first lane this replica serves.
pub(crate) fn owner(controls: &[LaneControl], chain: ChainRole) -> Option<&LaneControl> {
    controls
        .iter()
        .find(|c| c.lane.destination() == chain)
        .or_else(|| controls.first())
}

/// One submitter per chain the operator's key writes to: each lane's destination, and the
/// main chain when the registry is used — shared with every other pair of the process that
/// writes to the same chain.
fn spawn_submitters(
    shared: &Shared,
    signer: &crate::chain::signer::OperatorSigner,
    controls: &[LaneControl],
    hub: &HubShare,
) -> HashMap<ChainRole, SubmitterHandle> {
    let mut chains: Vec<ChainRole> = controls.iter().map(|c| c.lane.destination()).collect();
    if shared.config.registry.is_some() {
        chains.push(ChainRole::Main);
    }
    chains.sort();
    chains.dedup();
    let mut handles = HashMap::new();
    for chain in chains {
        let Some(owner) = owner(controls, chain) else {
            continue;
        };
        let chain_id = shared.config.chains.get(chain).chain_id;
        let handle = hub.submitter(chain_id, signer.address(), || {
            start_submitter(
                Submitter::new(
                    shared.chains.get(chain).clone(),
                    signer.clone(),
                    crate::chain::sender::SenderPolicy::new(
                        &shared.config.voting,
                        shared.config.chains.get(chain),
                    ),
                    owner.fence.clone(),
                    owner.leading.clone(),
                ),
                tracing::info_span!("submitter", %chain, chain_id, signer = %shared.operator, lane = %owner.lane),
                hub.tasks(),
            )
        });
        handles.insert(chain, handle);
    }
    handles
}

/// Run `submitter` on the process's shared tasks under `span` (one submitter serves every
/// pair that writes with the key to the chain); its handle.
pub(super) fn start_submitter(
    (submitter, handle): (Submitter, SubmitterHandle),
    span: tracing::Span,
    tasks: &crate::task::SharedTasks,
) -> SubmitterHandle {
    tasks.spawn(submitter.run().instrument(span));
    handle
}

/// The watcher of every lane.
fn spawn_watcher(
    shared: &Shared,
    controls: &[LaneControl],
    board: Arc<StatusBoard>,
    alarms: Option<crate::guard::AlarmSender>,
    tasks: &mut JoinSet<crate::task::TaskResult>,
) {
    let config: &Config = &shared.config;
    let side = |role: ChainRole| {
        let chain = config.chains.get(role);
        ScanSide {
            chain: shared.chains.get(role).clone(),
            bridge: chain.bridge,
            start_block: chain.start_block,
            confirmations: chain.confirmations,
            max_range: chain.max_block_range.max(1),
        }
    };
    let lanes = controls
        .iter()
        .map(|control| {
            let metrics = shared.metrics.lane(control.lane);
            WatchedLane {
                scanner: ConservationScanner::new(
                    side(control.lane.source()),
                    side(control.lane.destination()),
                    shared.store.clone(),
                    metrics.clone(),
                )
                .with_alarms(alarms.clone()),
                metrics,
                leading: control.leading.clone(),
                missing_published: Vec::new(),
                attested: shared.config.voting.mode_of(control.lane)
                    == crate::config::VotingMode::Attestations,
            }
        })
        .collect();
    let watcher = Watcher {
        operator: shared.operator,
        chains: shared.chains.clone(),
        lanes,
        store: shared.store.clone(),
        readiness: shared.readiness.clone(),
        board,
        interval: Duration::from_millis(config.http.watch_interval_ms),
    };
    let span = tracing::info_span!("watch", operator = %shared.operator);
    tasks.spawn(
        async move {
            watcher.run().await;
            Ok(())
        }
        .instrument(span),
    );
}

/// The configuration watch: drift from `[admin] desired`, or the owner calls once confirmed.
fn spawn_drift_watch(
    shared: &Shared,
    board: Arc<StatusBoard>,
    tasks: &mut JoinSet<crate::task::TaskResult>,
) {
    let watch = crate::observe::drift::DriftWatch {
        chains: shared.chains.clone(),
        config: shared.config.clone(),
        metrics: shared.metrics.drift.clone(),
        board,
        interval: Duration::from_millis(shared.config.http.watch_interval_ms),
    };
    let span = tracing::info_span!("config_watch", operator = %shared.operator);
    tasks.spawn(
        async move {
            watch.run().await;
            Ok(())
        }
        .instrument(span),
    );
}

/// Wait for `shutdown` or the first task that fails for good; stop the rest either way.
async fn supervise(
    tasks: &mut JoinSet<crate::task::TaskResult>,
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
                    return Err(e.into());
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
