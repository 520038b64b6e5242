//! The state-version-up action (Table 1 of seed 003), run for one lane by the replica that
//! writes this operator's registry transactions:
//!
//! 1. intake does not stop: the store copy is one read transaction, so it is a consistent cut
//!    at the leader's cursor while indexing and voting go on (the paper stops intake; a relay
//!    may not stop voting for longer than a block);
//! 2. wait (bounded) until alive followers indexed up to that cursor;
//! 3. SSI = -1;
//! 4. copy the store and the operator's etcd prefix (and a full etcd snapshot if configured)
//!    to off-chain storage with their SHA-256;
//! 5. encrypt the backup log to the backup public key and `storeBackupLog` it;
//! 6. compact the store below the backup's point, in short steps;
//! 7. SV and this replica's SSV + 1;
//! 8. SSI = 0 (followers compact the same nonces and bump their SSV).

use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, Bytes};
use alloy::sol_types::SolCall;
use k256::PublicKey;
use multibridge_contracts::{Lane, ServiceRegistry};
use multibridge_monitoring::Metrics;

use super::log::{BackupLog, LOG_FORMAT, StateData, Subject};
use super::versions::{self, LastBackup, StateKeys};
use super::{BackupError, millis_now};
use crate::chain::ChainPair;
use crate::chain::fence::Fence;
use crate::chain::sender::SendError;
use crate::chain::submitter::{Submit, SubmitClient, SubmitError, send_estimated};
use crate::config::Config;
use crate::leadership::etcd_pool::EtcdPool;
use crate::storage::Storage;
use crate::store::{SharedStore, Store};

/// Rows dropped per store lock while compacting.
pub const COMPACT_STEP: usize = 2_000;
/// How long the registry may take to show a stored log.
const STORE_DEADLINE: Duration = Duration::from_secs(90);
/// How long the log's write waits for this replica's fence to reopen. A lease or heartbeat that
/// lapsed while etcd answered slowly closes the fence for a fraction of a second and the
/// campaign resumes the same term; a backup that has copied and uploaded everything is not
/// thrown away for that. A term that moved to another replica does not come back in this
/// time: the backup fails, and the new leader's worker backs up on its own.
const FENCE_WAIT: Duration = Duration::from_secs(10);
/// How often a waiting write looks at the fence.
const FENCE_LOOK: Duration = Duration::from_millis(50);

/// Everything a backup needs.
pub struct BackupContext {
    /// The relay's config.
    pub config: Config,
    /// The operator.
    pub operator: Address,
    /// This replica.
    pub replica: String,
    /// The store.
    pub store: SharedStore,
    /// Both chains.
    pub chains: ChainPair,
    /// etcd.
    pub pool: Arc<EtcdPool>,
    /// Off-chain storage.
    pub storage: Storage,
    /// The backup public key.
    pub public_key: PublicKey,
    /// The registry.
    pub registry: Address,
    /// The main chain's submitter.
    pub submit: SubmitClient,
    /// The fence that submitter sends under (the runner's lane).
    pub fence: Fence,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

/// What a finished backup did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupDone {
    /// The version saved (SV is one more now).
    pub version: u64,
    /// Requests below were compacted.
    pub compacted_below: u64,
    /// Rows dropped from this replica's store.
    pub dropped: u64,
    /// The longest single hold of the store by the backup.
    pub longest_hold: Duration,
    /// The whole action.
    pub took: Duration,
    /// The log as stored (encrypted).
    pub log_bytes: usize,
}

impl BackupContext {
    /// The registry id of `lane`'s service.
    pub fn service_id(&self, lane: Lane) -> Option<B256> {
        crate::registry::lane_services(&self.config)
            .into_iter()
            .find(|s| s.lane == lane)
            .map(|s| s.id)
    }

    /// Run Table 1 for `lane`.
    pub async fn version_up(&self, lane: Lane, trigger: &str) -> Result<BackupDone, BackupError> {
        let started = Instant::now();
        let start_ms = millis_now();
        let keys = StateKeys::of(&self.config, lane, self.operator).ok_or(BackupError::NoEtcd)?;
        let id = self
            .service_id(lane)
            .ok_or(BackupError::NotRegistered(lane))?;
        let registered =
            crate::registry::registered_location(&self.chains.main, self.registry, id).await?;
        if registered.is_none() {
            return Err(BackupError::NotRegistered(lane));
        }
        // The version: the one after what the registry holds (the registry takes only that:
        // audit NEW-L3). SV in etcd normally says the same; etcd may have been wiped since, or
        // a backup may have ended before its log was stored.
        let view = versions::read(&self.pool, &keys).await?;
        let stored = self.latest_version(id).await?;
        let version = stored.saturating_add(1);
        if view.sv.is_some_and(|sv| sv != version) {
            tracing::info!(%lane, sv = ?view.sv, registry = stored, version, "SV in etcd differs from the registry's version: the registry's next is used");
        }

        // 1-2: the cut, and the followers that reach it.
        let cut = self.store.lock().cursor(lane)?.unwrap_or(0);
        let caught_up = self.wait_for_followers(lane, &view.alive, cut).await;

        // 3.
        versions::put(&self.pool, keys.ssi(), "-1".into(), None).await?;
        let result = self
            .save_and_compact(
                lane, trigger, &keys, version, id, start_ms, &view, caught_up,
            )
            .await;
        // 8 (also after a failure: followers must not wait for a backup that ended).
        let ssi = versions::put(&self.pool, keys.ssi(), "0".into(), None).await;
        let mut done = result?;
        ssi?;
        done.took = started.elapsed();
        Ok(done)
    }

    #[allow(clippy::too_many_arguments)]
    async fn save_and_compact(
        &self,
        lane: Lane,
        trigger: &str,
        keys: &StateKeys,
        version: u64,
        id: B256,
        start_ms: u64,
        view: &versions::VersionsView,
        caught_up: Vec<String>,
    ) -> Result<BackupDone, BackupError> {
        let owner = format!("{} {}", self.operator, self.replica);
        // One directory per attempt: a retried or concurrent attempt at the same version never
        // overwrites objects a stored log names.
        let base = format!(
            "{}/{lane}/{:#x}/v{version}-{start_ms}",
            crate::leadership::pair_name(&self.config),
            self.operator
        );

        // 4: the store, from one read transaction on a connection of its own (voting goes on).
        // Two objects: the archive (the whole copy: what the backup covers, handled history
        // included) and the state (the copy compacted below the backup's point: what a joining
        // replica restores, small whatever the history).
        let dir = tempfile::tempdir().map_err(|e| BackupError::Io(e.to_string()))?;
        let copy_path = dir.path().join("archive.sqlite");
        let state_path = dir.path().join("store.sqlite");
        let identity = crate::store::identity(&self.config.chains, self.config.operator.address);
        let (cursor, contiguous, rows) = {
            let (store_path, copy_path, identity) = (
                self.config.store.path.clone(),
                copy_path.clone(),
                identity.clone(),
            );
            blocking(move || {
                crate::store::copy_store_file(&store_path, &copy_path)?;
                let copy = Store::open_one_pass(&copy_path, &identity)?;
                Ok((
                    copy.cursor(lane)?,
                    copy.contiguous_from(lane)?,
                    copy.row_count(lane)?,
                ))
            })
            .await?
        };
        // Every nonce below the destination's lowerHandleNonce at its confirmation depth is
        // handled for good; the copy holds every nonce below its watermark.
        let destination = self.chains.get(lane.destination());
        let head = destination.head().await?;
        let safe = destination
            .safe_head(
                head,
                self.config.chains.get(lane.destination()).confirmations,
            )
            .await?;
        let lower = destination.views().lower_handle_nonce_at(safe).await?;
        let compacted_below = lower.min(contiguous.unwrap_or(0));
        {
            let (copy_path, state_path, identity) =
                (copy_path.clone(), state_path.clone(), identity.clone());
            blocking(move || {
                // The archive keeps every row; the state copy is made from it, compacted.
                Store::open_one_pass(&copy_path, &identity)?.copy_to(&state_path)?;
                let mut state = Store::open_one_pass(&state_path, &identity)?;
                state.begin_compaction(lane, compacted_below, version)?;
                while state.compact_step(lane, 100_000)? > 0 {}
                state.vacuum()?;
                Ok(())
            })
            .await?;
        }
        // Streamed: the archive grows with the history and is never read whole.
        let archive = self
            .storage
            .put_file(
                &format!("{base}/archive.sqlite"),
                "sqlite-archive",
                &owner,
                &copy_path,
            )
            .await?;
        let state = self
            .storage
            .put_file(
                &format!("{base}/store.sqlite"),
                "sqlite",
                &owner,
                &state_path,
            )
            .await?;
        let mut snapshots = Vec::new();
        if let Some(prefix) = StateKeys::pair_prefix(&self.config) {
            let dump = versions::dump_prefix(&self.pool, &prefix).await?;
            snapshots.push(
                self.storage
                    .put(
                        &format!("{base}/etcd-prefix.json"),
                        "etcd-prefix-json",
                        &owner,
                        dump,
                    )
                    .await?,
            );
        }
        if self.config.backup.as_ref().is_some_and(|b| b.etcd_snapshot) {
            let full = versions::full_snapshot(&self.pool).await?;
            snapshots.push(
                self.storage
                    .put(
                        &format!("{base}/etcd.snapshot"),
                        "etcd-snapshot",
                        &owner,
                        full,
                    )
                    .await?,
            );
        }

        // 5.
        let log = BackupLog {
            format: LOG_FORMAT,
            pair: crate::leadership::pair_name(&self.config),
            start_ms,
            end_ms: millis_now(),
            version,
            members: view.members.clone(),
            alive_members: view.alive.clone(),
            caught_up,
            snapshot_meta: snapshots,
            state_data_meta: StateData {
                object: state,
                archive: Some(archive),
                lane,
                cursor,
                contiguous_nonce: contiguous,
                compacted_below,
                rows,
            },
            storage: self.storage.meta().clone(),
            subject: Subject {
                replica: self.replica.clone(),
                operator: self.operator.to_string(),
            },
            trigger: trigger.to_owned(),
        };
        let sealed = log.seal(&self.public_key);
        let log_bytes = sealed.len();
        self.store_log(lane, id, version, sealed).await?;

        // 6: compaction in short steps.
        let mut longest_hold = Duration::ZERO;
        let mut dropped = 0u64;
        {
            // Timed from when the lock is held: waiting for it is not holding it.
            let mut store = self.store.lock();
            let at = Instant::now();
            store.begin_compaction(lane, compacted_below, version)?;
            longest_hold = longest_hold.max(at.elapsed());
        }
        loop {
            let n = {
                let mut store = self.store.lock();
                let at = Instant::now();
                let n = store.compact_step(lane, COMPACT_STEP)?;
                longest_hold = longest_hold.max(at.elapsed());
                n
            };
            dropped = dropped.saturating_add(n);
            if n == 0 {
                break;
            }
            tokio::task::yield_now().await;
        }

        // 7.
        let next = version.saturating_add(1);
        versions::put(&self.pool, keys.sv(), next.to_string(), None).await?;
        versions::put(&self.pool, keys.ssv(&self.replica), next.to_string(), None).await?;
        let record = LastBackup {
            version,
            compacted_below,
            at: crate::store::unix_now(),
            subject: self.replica.clone(),
        };
        versions::put(
            &self.pool,
            keys.last_backup(),
            serde_json::to_string(&record).unwrap_or_default(),
            None,
        )
        .await?;
        Ok(BackupDone {
            version,
            compacted_below,
            dropped,
            longest_hold,
            took: Duration::ZERO,
            log_bytes,
        })
    }

    /// The latest version the registry holds for `id` (0: none).
    pub async fn latest_version(&self, id: B256) -> Result<u64, BackupError> {
        Ok(
            super::join::latest_log(&self.chains.main, self.registry, id)
                .await?
                .0,
        )
    }

    /// Followers alive and indexed up to `cut` within the configured wait (this replica
    /// included).
    async fn wait_for_followers(&self, lane: Lane, alive: &[String], cut: u64) -> Vec<String> {
        let wait = Duration::from_secs(self.config.backup.as_ref().map_or(10, |b| b.catch_up_secs));
        let deadline = crate::backup::deadline_after(wait);
        let Some(dir) = crate::leadership::lane_election_dir(&self.config, lane) else {
            return vec![self.replica.clone()];
        };
        loop {
            let records = crate::leadership::progress::read_progress(&self.pool, &dir)
                .await
                .unwrap_or_default();
            let caught: Vec<String> = alive
                .iter()
                .filter(|name| {
                    **name == self.replica
                        || records
                            .iter()
                            .any(|r| &r.replica == *name && r.cursor.unwrap_or(0) >= cut)
                })
                .cloned()
                .collect();
            if caught.len() >= alive.len() || Instant::now() >= deadline {
                return caught;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `storeBackupLog` through the main chain's submitter; done when the registry shows it.
    async fn store_log(
        &self,
        lane: Lane,
        id: B256,
        version: u64,
        sealed: Vec<u8>,
    ) -> Result<(), BackupError> {
        let input: Bytes = ServiceRegistry::storeBackupLogCall {
            id,
            version,
            encryptedLog: sealed.clone().into(),
        }
        .abi_encode()
        .into();
        let sent = self.send_fenced(lane, input).await?;
        tracing::info!(version, tx = %sent.hash, "backup log sent to the registry");
        let deadline = crate::backup::deadline_after(STORE_DEADLINE);
        loop {
            // Done when the registry holds *this* log at this version; another log at it or
            // above means another attempt won (its objects are its own: nothing is compacted
            // on the strength of someone else's log).
            if let Ok((stored, log, _)) =
                super::join::latest_log(&self.chains.main, self.registry, id).await
            {
                if stored == version && log == sealed {
                    return Ok(());
                }
                if stored >= version {
                    return Err(BackupError::Superseded { version, stored });
                }
            }
            if Instant::now() >= deadline {
                return Err(BackupError::LogNotStored { version });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl BackupContext {
    /// Send the log's `input` through the runner's fence ([`send_when_open`]).
    async fn send_fenced(
        &self,
        lane: Lane,
        input: Bytes,
    ) -> Result<crate::chain::sender::Sent, BackupError> {
        let (result, waits) = send_when_open(
            &self.submit,
            &self.fence,
            self.registry,
            input,
            crate::backup::deadline_after(FENCE_WAIT),
        )
        .await;
        if waits > 0 {
            self.metrics.backup.fence_waits(lane, waits);
            tracing::info!(%lane, waits, sent = result.is_ok(), "backup log write waited for the fence to reopen");
        }
        Ok(result?)
    }
}

/// Send a call of `input` to `to` once `fence` is open; a send the fence refused (nothing was
/// broadcast) is sent again once it reopens, until `until`. The result, and how many times it
/// found the fence closed (before the first send, and at each refusal).
async fn send_when_open(
    submit: &impl Submit,
    fence: &Fence,
    to: Address,
    input: Bytes,
    until: Instant,
) -> (Result<crate::chain::sender::Sent, SubmitError>, u32) {
    let mut waits = u32::from(fence.check().is_err());
    loop {
        while fence.check().is_err() && Instant::now() < until {
            tokio::time::sleep(FENCE_LOOK).await;
        }
        match send_estimated(submit, to, input.clone(), 25).await {
            Err(SubmitError::Send(SendError::Fenced(_))) if Instant::now() < until => {
                waits = waits.saturating_add(1);
                tokio::time::sleep(FENCE_LOOK).await;
            }
            result => return (result, waits),
        }
    }
}

/// Run SQLite work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, BackupError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BackupError::Io(format!("store copy task: {e}")))?
        .map_err(BackupError::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::fence::Fenced;
    use crate::chain::sender::Sent;
    use crate::chain::submitter::{GasPlan, Job};
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A submitter that checks the fence like the real one: refused while it is closed.
    struct FencedSubmit {
        fence: Fence,
        sends: AtomicU32,
    }

    impl FencedSubmit {
        fn over(fence: &Fence) -> Self {
            Self {
                fence: fence.clone(),
                sends: AtomicU32::new(0),
            }
        }
    }

    impl Submit for FencedSubmit {
        async fn estimate(&self, _: Address, _: Bytes, _: GasPlan) -> Result<u64, SubmitError> {
            Ok(100_000)
        }
        async fn submit(&self, _: Job) -> Result<Sent, SubmitError> {
            self.sends.fetch_add(1, Ordering::SeqCst);
            self.fence
                .check()
                .map_err(|e| SubmitError::Send(SendError::Fenced(e)))?;
            Ok(Sent {
                hash: B256::repeat_byte(7),
                nonce: 0,
                gas_limit: 100_000,
            })
        }
    }

    fn leading_fence() -> Fence {
        let fence = Fence::leased();
        fence.lead(true);
        fence.extend(Instant::now(), Duration::from_secs(60));
        fence
    }

    #[tokio::test]
    async fn a_write_refused_by_a_lapsed_fence_is_sent_once_it_reopens() {
        let fence = leading_fence();
        fence.lead(false);
        let submit = FencedSubmit::over(&fence);
        let reopen = fence.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            reopen.lead(true);
        });
        let until = Instant::now() + Duration::from_secs(5);
        let (result, waits) =
            send_when_open(&submit, &fence, Address::ZERO, Bytes::new(), until).await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(waits, 1);
        assert_eq!(
            submit.sends.load(Ordering::SeqCst),
            1,
            "nothing sent while closed"
        );
    }

    #[tokio::test]
    async fn a_fence_that_stays_closed_fails_the_write_at_the_deadline_with_its_reason() {
        let fence = leading_fence();
        fence.lead(false);
        let submit = FencedSubmit::over(&fence);
        let started = Instant::now();
        let until = started + Duration::from_millis(400);
        let (result, _) = send_when_open(&submit, &fence, Address::ZERO, Bytes::new(), until).await;
        assert!(
            matches!(
                result,
                Err(SubmitError::Send(SendError::Fenced(Fenced::NotLeader)))
            ),
            "{result:?}"
        );
        assert!(started.elapsed() >= Duration::from_millis(400));
    }

    #[tokio::test]
    async fn an_open_fence_sends_at_once() {
        let fence = leading_fence();
        let submit = FencedSubmit::over(&fence);
        let until = Instant::now() + Duration::from_secs(5);
        let (result, waits) =
            send_when_open(&submit, &fence, Address::ZERO, Bytes::new(), until).await;
        assert!(result.is_ok());
        assert_eq!(waits, 0);
    }
}
