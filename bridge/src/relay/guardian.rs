//! Wiring of the guardian (`[guardian]`): its pauser key's own submitter on each chain —
//! unfenced, since every replica of every operator may pause and the first pause wins — and
//! the guardian task.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use multibridge_contracts::ChainRole;
use multibridge_monitoring::StatusBoard;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::chain::fence::Fence;
use crate::chain::sender::SenderPolicy;
use crate::chain::signer::OperatorSigner;
use crate::chain::submitter::Submitter;
use crate::guard::{Alarm, Guardian, GuardianSettings};
use crate::lane::Shared;

/// Start the guardian of `shared`'s lanes with `signer` (the pauser key), fed by `alarms`.
pub(super) fn spawn_guardian(
    shared: &Shared,
    signer: &OperatorSigner,
    alarms: mpsc::Receiver<Alarm>,
    board: Arc<StatusBoard>,
    hub: &super::HubShare,
    tasks: &mut JoinSet<crate::task::TaskResult>,
) {
    let Some(settings) = shared.config.guardian.as_ref() else {
        return;
    };
    let guardian = signer.address();
    // The pauser's sends are never fenced: a term that is always open.
    let (term_tx, term) = watch::channel(true);
    let mut clients = HashMap::new();
    for role in [ChainRole::Main, ChainRole::Service] {
        // One submitter per (chain, pauser key) in the process, whatever the pairs.
        let chain_id = shared.config.chains.get(role).chain_id;
        let handle = hub.submitter(chain_id, guardian, || {
            let (submitter, handle) = Submitter::new(
                shared.chains.get(role).clone(),
                signer.clone(),
                SenderPolicy::new(&shared.config.voting, shared.config.chains.get(role)),
                Fence::standalone(),
                term.clone(),
            );
            super::start_submitter(
                // Its nonce read at start: a pause must not wait for it.
                (submitter.warm(), handle),
                tracing::info_span!("guardian_submitter", chain = %role, chain_id, %guardian),
                hub.tasks(),
            )
        });
        clients.insert(role, handle.client());
    }
    let config = &shared.config;
    let per_chain = |f: fn(&crate::config::ChainConfig) -> u64| {
        [ChainRole::Main, ChainRole::Service]
            .into_iter()
            .map(|role| (role, f(config.chains.get(role))))
            .collect::<HashMap<_, _>>()
    };
    let task = Guardian::new(
        GuardianSettings {
            address: guardian,
            source_stale_secs: settings.source_stale_secs,
            pause_both: settings.pause_both,
            // A head read is shared for this long: looking more often sees nothing sooner.
            watch_every: crate::chain::shared_reads::HEAD_FRESH_FOR,
            interval: Duration::from_millis(
                config
                    .chains
                    .main
                    .poll_interval_ms
                    .min(config.chains.service.poll_interval_ms)
                    .max(100),
            ),
            max_range: per_chain(|c| c.max_block_range),
            start_block: per_chain(|c| c.start_block),
        },
        shared.chains.clone(),
        &config.lanes,
        shared.store.clone(),
        shared.metrics.guardian.clone(),
        board,
        clients,
        alarms,
    );
    let span = tracing::info_span!("guardian", operator = %shared.operator, %guardian);
    tasks.spawn(
        async move {
            let _term = term_tx;
            task.run().await;
            Ok(())
        }
        .instrument(span),
    );
}
