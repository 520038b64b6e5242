//! The relay's start-up side of backups: open the storage, join empty lanes from the newest
//! backup (or fall back to replay with a named reason), start the worker.

use std::sync::Arc;
use std::time::Duration;

use multibridge_contracts::Lane;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::backup::join::{JoinError, join_lane};
use crate::backup::keys::{matching, parse_public_key, read_private_key};
use crate::backup::version_up::BackupContext;
use crate::backup::versions::{self, StateKeys};
use crate::backup::worker::BackupWorker;
use crate::chain::submitter::SubmitterHandle;
use crate::config::Config;
use crate::error::RelayError;
use crate::lane::{LaneControl, Shared};
use crate::storage::Storage;

/// The configured storage (`None` without `[backup]`).
pub fn open_storage(config: &Config) -> Result<Option<Storage>, RelayError> {
    let Some(backup) = &config.backup else {
        return Ok(None);
    };
    parse_public_key(&backup.public_key)?;
    Ok(Some(Storage::open(&backup.storage)?))
}

/// Restore every lane the store holds nothing of from the newest backup; a lane that cannot be
/// restored is replayed from the chain (the reason is logged and counted).
pub async fn join_empty_lanes(shared: &Shared, storage: &Storage) {
    let config = &shared.config;
    let (Some(backup), Some(registry)) = (&config.backup, &config.registry) else {
        return;
    };
    for lane in config.lanes.clone() {
        let empty = shared.store.lock().lane_is_empty(lane).unwrap_or(false);
        if !empty {
            continue;
        }
        let metrics = &shared.metrics.backup;
        if !backup.join_from_backup {
            metrics.joined(lane, "replay", "disabled", None);
            continue;
        }
        let key = read_private_key(
            backup.private_key_file.as_deref(),
            backup.private_key_env.as_deref(),
        )
        .and_then(|k| matching(k, &parse_public_key(&backup.public_key)?));
        let result = match key {
            Ok(key) => {
                join_lane(
                    config,
                    &shared.chains.main,
                    registry.address,
                    storage,
                    &shared.store,
                    lane,
                    &key,
                )
                .await
            }
            Err(e) => Err(JoinError::from(e)),
        };
        match result {
            Ok(joined) => {
                metrics.joined(lane, "backup", "", Some(joined.took.as_secs_f64()));
                tracing::info!(
                    %lane, version = joined.version, rows = joined.rows, cursor = ?joined.cursor,
                    compacted_below = joined.compacted_below, took_ms = joined.took.as_millis(),
                    "joined from the latest backup; indexing only the tail"
                );
                if let Some(pool) = &shared.etcd
                    && let Some(keys) = StateKeys::of(config, lane, shared.operator)
                {
                    let ssv = joined.version.saturating_add(1).to_string();
                    if let Err(e) = versions::put(pool, keys.ssv(&shared.replica), ssv, None).await
                    {
                        tracing::warn!(%lane, error = %e, "SSV not written; the backup worker retries");
                    }
                }
            }
            Err(e) => {
                metrics.joined(lane, "replay", e.reason(), None);
                log_fallback(lane, &e);
            }
        }
    }
}

fn log_fallback(lane: Lane, e: &JoinError) {
    if matches!(e, JoinError::NoBackup(_)) {
        tracing::info!(%lane, reason = e.reason(), "no backup to join from; replaying the chain");
    } else {
        tracing::warn!(%lane, reason = e.reason(), error = %e, "cannot join from the latest backup; replaying the chain (nothing is lost)");
    }
}

/// Start the backup worker.
pub fn spawn_worker(
    shared: &Shared,
    storage: Storage,
    main: &SubmitterHandle,
    owner: &LaneControl,
    tasks: &mut JoinSet<crate::task::TaskResult>,
) {
    let config = &shared.config;
    let (Some(backup), Some(registry), Some(pool), Some(etcd)) =
        (&config.backup, &config.registry, &shared.etcd, &config.etcd)
    else {
        return;
    };
    let Ok(public_key) = parse_public_key(&backup.public_key) else {
        return;
    };
    let (submit, _events) = main.client();
    let ctx = BackupContext {
        config: config.clone(),
        operator: shared.operator,
        replica: shared.replica.clone(),
        store: shared.store.clone(),
        chains: shared.chains.clone(),
        pool: pool.clone(),
        storage,
        public_key,
        registry: registry.address,
        submit,
        fence: owner.fence.clone(),
        metrics: shared.metrics.clone(),
    };
    let worker = BackupWorker::new(
        Arc::new(ctx),
        backup.clone(),
        config.lanes.clone(),
        owner.leading.clone(),
        Duration::from_secs(etcd.lease_ttl_secs),
    );
    let span =
        tracing::info_span!("backup", operator = %shared.operator, replica = %shared.replica);
    tasks.spawn(
        async move {
            worker.run().await;
            Ok(())
        }
        .instrument(span),
    );
}
