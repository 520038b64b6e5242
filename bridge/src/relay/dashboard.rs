//! The dashboard's running side of a replica: what its pages read, its registry writer (through
//! the main chain's submitter, or a submitter of the manager key's own), the timeline and the
//! claims history.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use multibridge_contracts::ChainRole;
use multibridge_monitoring::StatusBoard;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::chain::submitter::{Submitter, SubmitterHandle};
use crate::error::RelayError;
use crate::lane::{LaneControl, Shared};
use crate::task::run_stepper;

use super::owner;

/// The dashboard's side of the running relay: its registry writer (the operator's key through
/// the main chain's submitter, or a manager key with a submitter of its own), the timeline
/// sampler and the claims history.
pub(super) fn spawn_dashboard(
    shared: &Shared,
    handle: &Arc<crate::dashboard::DashboardHandle>,
    signer: &crate::chain::signer::OperatorSigner,
    controls: &[LaneControl],
    submitters: &HashMap<ChainRole, SubmitterHandle>,
    board: Arc<StatusBoard>,
    tasks: &mut JoinSet<crate::task::TaskResult>,
) -> Result<(), RelayError> {
    use crate::dashboard::writer::Writer;
    let config = &shared.config;
    let operator = shared.operator;
    let first_lane = controls.first().map(|c| c.lane);
    // The operator's key has one sender per chain: the main chain's submitter, under the
    // term of the lane that owns it.
    let operator_writer = |registry: alloy::primitives::Address| {
        let main = submitters.get(&ChainRole::Main)?;
        let owner = owner(controls, ChainRole::Main)?;
        let (submit, events) = main.client();
        Some(Writer::new(
            submit,
            events,
            owner.leading.clone(),
            signer.address(),
            registry,
        ))
    };
    let writer = match (&config.registry, &config.dashboard.manager) {
        (None, _) => None,
        (Some(registry), None) => operator_writer(registry.address),
        (Some(registry), Some(manager)) => {
            let key = crate::chain::signer::open::load_key(manager, config)
                .map_err(crate::dashboard::DashboardConfigError::Manager)?;
            if key.address() == signer.address() {
                operator_writer(registry.address)
            } else {
                Some(spawn_manager_writer(
                    shared,
                    crate::chain::signer::OperatorSigner::local(key),
                    registry.address,
                    tasks,
                ))
            }
        }
    };
    let dashboard = Arc::new(crate::dashboard::Dashboard {
        config: config.clone(),
        chains: shared.chains.clone(),
        store: shared.store.clone(),
        etcd: shared.etcd.clone(),
        replica: shared.replica.clone(),
        timeline: crate::dashboard::timeline::Timeline::new(crate::dashboard::SAMPLES),
        writer,
        managers: Default::default(),
        claims: crate::store::claims::ClaimsReader::of_file(&config.store.path),
    });
    handle.attach(dashboard.clone());
    let span = tracing::info_span!("dashboard timeline", %operator, replica = %shared.replica);
    let sampled = dashboard.clone();
    tasks.spawn(
        async move {
            crate::dashboard::sample_timeline(sampled, board).await;
            Ok(())
        }
        .instrument(span),
    );
    if let (Some(registry), Some(lane)) = (&config.registry, first_lane) {
        let history = crate::dashboard::claims_history::ClaimsHistory {
            chains: shared.chains.clone(),
            registry: registry.address,
            pair: crate::dashboard::PairLanes::of(config),
            confirmations: config.chains.main.confirmations,
            from_block: config
                .dashboard
                .claims_from_block
                .unwrap_or(config.chains.main.start_block),
            max_range: config.chains.main.max_block_range,
            window: config.dashboard.tracker_window_blocks,
            store: shared.store.clone(),
            metrics: shared.metrics.clone(),
            poll: Duration::from_millis(config.recovery.claims_poll_ms),
            services: HashMap::new(),
        };
        let span = tracing::info_span!("claims history", chain = %ChainRole::Main, %operator);
        tasks.spawn(run_stepper(lane, "claims history", history).instrument(span));
    }
    Ok(())
}

/// A registry writer for a manager key that is not the operator's: a submitter of its own,
/// always sending (no election: nothing else sends for this key).
fn spawn_manager_writer(
    shared: &Shared,
    key: crate::chain::signer::OperatorSigner,
    registry: alloy::primitives::Address,
    tasks: &mut JoinSet<crate::task::TaskResult>,
) -> crate::dashboard::writer::Writer {
    let config = &shared.config;
    // No election for this key: its term is always open (one receiver for the submitter, one
    // for the writer; the sender lives as long as the submitter).
    let (always, sending) = tokio::sync::watch::channel(true);
    let from = key.address();
    let (submitter, main) = Submitter::new(
        shared.chains.main.clone(),
        key,
        crate::chain::sender::SenderPolicy::new(&config.voting, &config.chains.main),
        crate::chain::fence::Fence::standalone(),
        always.subscribe(),
    );
    let span = tracing::info_span!("submitter", chain = %ChainRole::Main, signer = %from, role = "dashboard manager");
    tasks.spawn(
        async move {
            let _always = always;
            submitter.run().await;
            Ok(())
        }
        .instrument(span),
    );
    let (submit, events) = main.client();
    crate::dashboard::writer::Writer::new(submit, events, sending, from, registry)
}
