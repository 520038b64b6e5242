//! The backup worker of one replica: every second, for each lane, it keeps this replica's
//! membership, liveness (a key bound to the process's liveness lease) and SSV in etcd, publishes the
//! versions, and follows a backup another replica made (compacts the same nonces, bumps its
//! SSV). On the replica that writes the operator's registry transactions it also starts the
//! state-version-up action when a trigger fires: the handled bound, a majority of replicas
//! lost, or a `multibridge backup` request.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use multibridge_contracts::{Lane, RequestStatus};
use tokio::sync::watch;
use tracing::Instrument;

use super::state_reads::StateReads;
use super::version_up::{BackupContext, COMPACT_STEP};
use super::versions::{self, OnDemand, StateKeys, VersionsView};
use crate::config::BackupSettings;
use crate::leadership::etcd_pool::{EtcdPool, EtcdUnavailable};
use multibridge_chain::shared_reads::ProcessBook;

const ROUND: Duration = Duration::from_secs(1);

/// Where in its second a round starts: off the instants the process's other etcd work is due
/// on (every grid shares one epoch; the heartbeats go every 100 ms from it).
const GRID_OFFSET: Duration = Duration::from_millis(50);

#[derive(Debug, Default)]
struct LaneState {
    last_run: Option<Instant>,
    majority_handled: bool,
    /// Handled requests (compacted ones included) when this process last backed up.
    handled_at_last_run: Option<u64>,
    /// SV, SSI and membership are written once per process.
    initialized: bool,
    /// The lease the liveness key was last put under.
    alive_under: Option<i64>,
    /// Whether this process looked at SSI once since it last became the runner.
    ssi_checked: bool,
    /// A backup version whose compaction this follower refused, and when it looked.
    unvouched: Option<(u64, Instant)>,
}

/// How long a follower waits before it looks again at a backup it refused to follow.
const RECHECK_UNVOUCHED: Duration = Duration::from_secs(30);

/// The worker.
pub struct BackupWorker {
    /// What backups need.
    pub ctx: Arc<BackupContext>,
    /// The settings.
    pub settings: BackupSettings,
    /// The lanes.
    pub lanes: Vec<Lane>,
    /// Whether this replica writes the registry now (it leads the main chain's lane).
    pub runner: watch::Receiver<bool>,
    /// The liveness lease's TTL.
    pub lease_ttl: Duration,
    lease: Option<i64>,
    state: HashMap<Lane, LaneState>,
}

impl BackupWorker {
    /// A worker for `lanes`.
    pub fn new(
        ctx: Arc<BackupContext>,
        settings: BackupSettings,
        lanes: Vec<Lane>,
        runner: watch::Receiver<bool>,
        lease_ttl: Duration,
    ) -> Self {
        Self {
            ctx,
            settings,
            lanes,
            runner,
            lease_ttl,
            lease: None,
            state: HashMap::new(),
        }
    }

    /// Run until aborted.
    pub async fn run(mut self) {
        // The liveness lease is kept by a task of its own, one per process and etcd cluster: a
        // round busy with a backup (copying, waiting for the registry) must not let this replica
        // look gone.
        let liveness = LivenessLease::of(&self.ctx.pool, self.lease_ttl);
        let lease_rx = liveness.lease.clone();
        let reads = StateReads::of(&self.ctx.pool);
        // Each lane's keys (a lane without etcd keys has no state to keep).
        let lanes: Vec<(Lane, StateKeys)> = self
            .lanes
            .iter()
            .filter_map(|lane| {
                Some((
                    *lane,
                    StateKeys::of(&self.ctx.config, *lane, self.ctx.operator)?,
                ))
            })
            .collect();
        let _alive = AliveKeys {
            pool: Arc::clone(&self.ctx.pool),
            keys: lanes
                .iter()
                .map(|(_, keys)| keys.alive(&self.ctx.replica))
                .collect(),
            ttl: liveness_ttl(self.lease_ttl),
        };
        loop {
            self.lease = *lease_rx.borrow();
            let mut ready = Vec::with_capacity(lanes.len());
            for (lane, keys) in &lanes {
                match self.prepare(*lane, keys).await {
                    Ok(()) => ready.push((*lane, keys)),
                    Err(e) => tracing::warn!(%lane, error = %e, "backup worker: etcd unavailable"),
                }
            }
            // Every lane's state in one read, with the other workers of the process.
            let prefixes = ready.iter().map(|(_, keys)| keys.prefix()).collect();
            let found = reads.read(&self.ctx.pool, prefixes).await;
            let read_at = Instant::now();
            for ((lane, keys), kvs) in ready.into_iter().zip(found) {
                // A lane after one whose round took long (a backup: copying, uploading, waiting
                // for the registry) reads its state again, as it did before the reads were
                // gathered: its round decides on it.
                let view = if read_at.elapsed() > ROUND {
                    versions::read(&self.ctx.pool, keys).await
                } else {
                    kvs.map(|kvs| VersionsView::of(keys, kvs))
                };
                let done = match view {
                    Ok(view) => self.round(lane, keys, view).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = done {
                    tracing::warn!(%lane, error = %e, "backup worker: etcd unavailable");
                }
            }
            // On the process's grid, so the workers of a hub read together — 50 ms off its whole
            // seconds, where the lane leaders' heartbeats go.
            let next = crate::leadership::heartbeats::next_poll_offset(
                tokio::time::Instant::now(),
                ROUND,
                GRID_OFFSET,
            );
            tokio::time::sleep_until(next).await;
        }
    }

    /// Before the round's read: this replica's membership and liveness keys of `lane` (the
    /// read then sees them).
    async fn prepare(&mut self, lane: Lane, keys: &StateKeys) -> Result<(), EtcdUnavailable> {
        let ctx = self.ctx.clone();
        let replica = ctx.replica.clone();
        let state = self.state.entry(lane).or_default();
        if !state.initialized {
            versions::put_if_absent(&ctx.pool, keys.sv(), "1".into()).await?;
            versions::put_if_absent(&ctx.pool, keys.ssi(), "0".into()).await?;
            versions::put_if_absent(&ctx.pool, keys.member(&replica), "1".into()).await?;
            state.initialized = true;
        }
        if let Some(lease) = self.lease
            && state.alive_under != Some(lease)
        {
            versions::put(&ctx.pool, keys.alive(&replica), "1".into(), Some(lease)).await?;
            state.alive_under = Some(lease);
        }
        Ok(())
    }

    async fn round(
        &mut self,
        lane: Lane,
        keys: &StateKeys,
        view: VersionsView,
    ) -> Result<(), EtcdUnavailable> {
        let ctx = self.ctx.clone();
        self.follow(lane, keys, &view).await?;

        let metrics = &ctx.metrics.backup;
        let compaction = ctx.store.lock().compaction(lane).unwrap_or_default();
        metrics.set_versions(
            lane,
            view.sv.unwrap_or(1),
            compaction.version.saturating_add(1),
            view.ssi.unwrap_or(0),
        );
        let alive = view
            .alive
            .iter()
            .filter(|a| view.members.contains(a))
            .count();
        metrics.set_replicas(lane, view.members.len(), alive);

        if *self.runner.borrow() {
            self.maybe_back_up(lane, keys, &view).await?;
        } else if let Some(state) = self.state.get_mut(&lane) {
            // Another runner may stop mid-backup meanwhile: looked at again when this process
            // runs the backups again.
            state.ssi_checked = false;
        }
        Ok(())
    }

    /// A follower's part: compact what the last backup covered, SSV = the store's version.
    async fn follow(
        &mut self,
        lane: Lane,
        keys: &StateKeys,
        view: &VersionsView,
    ) -> Result<(), EtcdUnavailable> {
        let ctx = self.ctx.clone();
        let mut compaction = ctx.store.lock().compaction(lane).unwrap_or_default();
        if let Some(last) = &view.last_backup
            && last.version > compaction.version
            && last.compacted_below > 0
            && view.ssi != Some(-1)
            && indexed_past(&ctx.store, lane, last.compacted_below)
            && self.vouched(lane, last).await
        {
            let begun = ctx
                .store
                .lock()
                .begin_compaction(lane, last.compacted_below, last.version);
            if let Err(e) = begun {
                tracing::warn!(%lane, error = %e, "cannot compact after the backup");
            } else {
                let mut dropped = 0u64;
                loop {
                    match ctx.store.lock().compact_step(lane, COMPACT_STEP) {
                        Ok(0) => break,
                        Ok(n) => dropped = dropped.saturating_add(n),
                        Err(e) => {
                            tracing::warn!(%lane, error = %e, "compaction step failed");
                            break;
                        }
                    }
                    tokio::task::yield_now().await;
                }
                ctx.metrics.backup.compacted(lane, dropped);
                tracing::info!(%lane, version = last.version, below = last.compacted_below, dropped, "followed a backup: store compacted");
                compaction = ctx.store.lock().compaction(lane).unwrap_or_default();
            }
        }
        let ssv = compaction.version.saturating_add(1);
        if view.ssv.get(&ctx.replica) != Some(&ssv) {
            versions::put(&ctx.pool, keys.ssv(&ctx.replica), ssv.to_string(), None).await?;
        }
        Ok(())
    }

    /// Whether the chains vouch for the backup `last` etcd announces (audit NEW-L2: anyone who
    /// can write the operator's etcd prefix could announce one): every nonce below its
    /// compaction point is handled on the destination at its confirmation depth, and the
    /// registry holds its log. A refusal is counted and looked at again after
    /// [`RECHECK_UNVOUCHED`]; a chain that cannot be read now refuses for now.
    async fn vouched(&mut self, lane: Lane, last: &versions::LastBackup) -> bool {
        let state = self.state.entry(lane).or_default();
        if let Some((version, at)) = state.unvouched
            && version == last.version
            && at.elapsed() < RECHECK_UNVOUCHED
        {
            return false;
        }
        let ctx = &self.ctx;
        let check = async {
            let destination = ctx.chains.get(lane.destination());
            let head = destination.head().await.map_err(|e| e.to_string())?;
            let safe = destination
                .safe_head(
                    head,
                    ctx.config.chains.get(lane.destination()).confirmations,
                )
                .await
                .map_err(|e| e.to_string())?;
            let lower = destination
                .views()
                .lower_handle_nonce_at(safe)
                .await
                .map_err(|e| e.to_string())?;
            if last.compacted_below > lower {
                return Err(format!(
                    "it compacts below nonce {}, the destination has handled everything below {lower} only",
                    last.compacted_below
                ));
            }
            let id = ctx
                .service_id(lane)
                .ok_or_else(|| "no registry service for the lane".to_owned())?;
            let stored = ctx.latest_version(id).await.map_err(|e| e.to_string())?;
            if stored < last.version {
                return Err(format!(
                    "the registry holds version {stored}, etcd announces {}",
                    last.version
                ));
            }
            Ok(())
        };
        match check.await {
            Ok(()) => true,
            Err(why) => {
                ctx.metrics.backup.compaction_refused(lane);
                tracing::warn!(%lane, version = last.version, below = last.compacted_below, %why, "not following the backup etcd announces: the chains do not vouch for it");
                if let Some(state) = self.state.get_mut(&lane) {
                    state.unvouched = Some((last.version, Instant::now()));
                }
                false
            }
        }
    }

    async fn maybe_back_up(
        &mut self,
        lane: Lane,
        keys: &StateKeys,
        view: &VersionsView,
    ) -> Result<(), EtcdUnavailable> {
        let ctx = self.ctx.clone();
        let state = self.state.entry(lane).or_default();
        let rested = state
            .last_run
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(self.settings.min_interval_secs));
        if !view.majority_lost() {
            state.majority_handled = false;
        }
        // An SSI left at -1 by a runner that stopped mid-backup would hold followers back for
        // good: this runner is not backing up now, so no backup runs on its behalf.
        if view.ssi == Some(-1) && !state.ssi_checked {
            versions::put(&ctx.pool, keys.ssi(), "0".into(), None).await?;
            tracing::info!(%lane, "SSI was left at -1 by a stopped backup; reset to 0");
        }
        state.ssi_checked = true;
        let pending_request = view
            .request
            .as_ref()
            .filter(|r| view.result.as_ref().map(|x| &x.id) != Some(&r.id))
            .cloned();
        // A full count of the lane's handled rows: read at most once per round, and only when
        // a trigger needs it.
        let handled_in_store = || {
            ctx.store
                .lock()
                .counts(lane)
                .map(|c| c.of(RequestStatus::Handled))
                .unwrap_or(0)
        };
        let mut handled = None;
        // An on-demand request waits for the same rest as the other triggers (audit NEW-L2):
        // it stays pending and runs once the lane rested; the CLI waits for it.
        let trigger = if pending_request.is_some() && rested {
            Some("on-demand")
        } else if self.settings.on_majority_lost
            && view.majority_lost()
            && !state.majority_handled
            && rested
        {
            Some("majority-lost")
        } else if rested && {
            // Handled since the last backup of this process (at start: since the last
            // compaction), so a lane whose handled rows cannot be compacted yet (a request
            // below them waits) is not backed up again and again.
            let baseline = state.handled_at_last_run.unwrap_or_else(|| {
                ctx.store
                    .lock()
                    .compaction(lane)
                    .map(|c| c.dropped)
                    .unwrap_or(0)
            });
            let handled = *handled.get_or_insert_with(handled_in_store);
            handled.saturating_sub(baseline) >= self.settings.every_handled
        } {
            Some("bound")
        } else {
            None
        };
        let Some(trigger) = trigger else {
            return Ok(());
        };
        state.last_run = Some(Instant::now());
        let handled_now = handled.unwrap_or_else(handled_in_store);
        tracing::info!(%lane, trigger, "state backup starting");
        let result = ctx.version_up(lane, trigger).await;
        let outcome = match &result {
            Ok(done) => {
                ctx.metrics.backup.backup(
                    lane,
                    trigger,
                    Some((
                        done.version,
                        done.took.as_secs_f64(),
                        done.longest_hold.as_secs_f64(),
                    )),
                );
                ctx.metrics.backup.compacted(lane, done.dropped);
                if let Some(s) = self.state.get_mut(&lane) {
                    // The bound counts from this backup (a failed one is retried after
                    // min_interval_secs, not after another every_handled requests).
                    s.handled_at_last_run = Some(handled_now);
                    if trigger == "majority-lost" {
                        s.majority_handled = true;
                    }
                }
                tracing::info!(
                    %lane, trigger, version = done.version, below = done.compacted_below,
                    dropped = done.dropped, took_ms = done.took.as_millis(),
                    longest_store_hold_ms = done.longest_hold.as_millis(),
                    log_bytes = done.log_bytes, "state backup done"
                );
                Ok(done.version)
            }
            Err(e) => {
                ctx.metrics.backup.backup(lane, trigger, None);
                tracing::warn!(%lane, trigger, error = %e, retryable = e.is_retryable(), "state backup failed");
                Err(e.to_string())
            }
        };
        if let Some(request) = pending_request {
            let answer = OnDemand {
                id: request.id,
                at: crate::store::unix_now(),
                outcome: Some(outcome),
            };
            versions::put(
                &ctx.pool,
                keys.result(),
                serde_json::to_string(&answer).unwrap_or_default(),
                None,
            )
            .await?;
        }
        Ok(())
    }
}

/// Aborts a task when dropped (the liveness lease's keeper dies with its last worker).
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The liveness lease of a process: one for every backup worker it runs on one etcd cluster
/// (a hub's pairs each had their own, renewed every second: a request per pair and second).
/// Every lane's `alive/<replica>` key is put under it; it ends with the process.
#[derive(Debug)]
struct LivenessLease {
    /// The lease now held (`None` until the first grant).
    lease: watch::Receiver<Option<i64>>,
    _keeper: AbortOnDrop,
}

impl LivenessLease {
    /// The process's liveness lease on the cluster `pool` reaches, for relays whose campaign
    /// lease lives `ttl`; kept by the first caller's pool until the last worker drops it.
    fn of(pool: &Arc<EtcdPool>, ttl: Duration) -> Arc<Self> {
        static BOOK: ProcessBook<(Vec<String>, Duration), LivenessLease> = ProcessBook::new();
        BOOK.get_or_make((pool.endpoints().to_vec(), ttl), || {
            let (lease_tx, lease) = watch::channel(None);
            let keeper = LeaseKeeper {
                pool: Arc::clone(pool),
                ttl,
            };
            let task = tokio::spawn(keeper.run(lease_tx).instrument(tracing::info_span!(
                "liveness lease",
                endpoints = %pool.endpoints().join(",")
            )));
            Self {
                lease,
                _keeper: AbortOnDrop(task),
            }
        })
    }
}

/// The `alive` keys of one worker. When the worker stops while its process goes on (a hub's
/// pair that failed and waits alone) they move to a lease of their own that nobody renews, so
/// they go a liveness TTL later — as when each worker kept its own lease — instead of living on
/// under the process's. Where the process ends, they go with its lease.
struct AliveKeys {
    pool: Arc<EtcdPool>,
    keys: Vec<String>,
    ttl: i64,
}

impl Drop for AliveKeys {
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (pool, keys, ttl) = (
            Arc::clone(&self.pool),
            std::mem::take(&mut self.keys),
            self.ttl,
        );
        runtime.spawn(async move {
            let moved = async {
                let lease = grant(&pool, ttl).await?;
                for key in keys {
                    versions::put(&pool, key, "1".into(), Some(lease)).await?;
                }
                Ok::<_, EtcdUnavailable>(())
            };
            if let Err(e) = moved.await {
                tracing::debug!(error = %e, "a stopped worker's alive keys stay under the process's lease");
            }
        });
    }
}

/// The TTL of a liveness lease for relays whose campaign lease lives `lease_ttl`: twice that, at
/// least 6 s (a few missed renewals under load do not make a live replica look gone).
fn liveness_ttl(lease_ttl: Duration) -> i64 {
    i64::try_from(lease_ttl.as_secs().saturating_mul(2).max(6)).unwrap_or(6)
}

/// Keeps this process's liveness lease: granted with a TTL of at least 6 s (a few missed
/// renewals under load do not make a live replica look gone), renewed every second, granted
/// anew when etcd lost it.
struct LeaseKeeper {
    pool: Arc<EtcdPool>,
    ttl: Duration,
}

impl LeaseKeeper {
    async fn run(self, lease: watch::Sender<Option<i64>>) {
        let ttl = liveness_ttl(self.ttl);
        loop {
            let held = *lease.borrow();
            match self.keep(held, ttl).await {
                Ok(id) => {
                    if held != Some(id) {
                        lease.send_replace(Some(id));
                    }
                }
                Err(e) => tracing::debug!(error = %e, "liveness lease not renewed"),
            }
            tokio::time::sleep(ROUND).await;
        }
    }

    async fn keep(&self, held: Option<i64>, ttl: i64) -> Result<i64, EtcdUnavailable> {
        if let Some(id) = held {
            let alive = self
                .pool
                .call("liveness lease keep-alive", |mut c| async move {
                    // Opening the stream sends one renewal and reads its answer: "lease not
                    // found" when it ran out (a second `keep_alive` renewed it twice).
                    match c.lease_keep_alive(id).await {
                        Ok(_) => Ok(true),
                        Err(etcd_client::Error::LeaseKeepAliveError(e))
                            if e.contains("lease not found") =>
                        {
                            Ok(false)
                        }
                        Err(e) => Err(e),
                    }
                })
                .await?;
            if alive {
                return Ok(id);
            }
        }
        grant(&self.pool, ttl).await
    }
}

/// A new liveness lease of `ttl` seconds.
async fn grant(pool: &EtcdPool, ttl: i64) -> Result<i64, EtcdUnavailable> {
    pool.call("liveness lease grant", |mut c| async move {
        Ok(c.lease_grant(ttl, None).await?.id())
    })
    .await
}

/// Whether `lane`'s store holds every request below `below` (its watermark is at or past it):
/// only then is a backup's compaction point followed. Compaction keeps the rows of the
/// attested batch window the point falls in (an open request there is signed over its whole
/// batch, counted from the first request of its block or block pair), which it can find only
/// among rows stored; a replica behind (a restart after a long stop, a fresh store without a
/// restore) that followed at once never stored them, composed a shorter batch than its peers
/// and signed a digest nobody else did.
fn indexed_past(store: &crate::store::SharedStore, lane: Lane, below: u64) -> bool {
    match store.lock().contiguous_from(lane) {
        Ok(Some(next)) if next >= below => true,
        Ok(next) => {
            tracing::debug!(%lane, below, watermark = ?next, "not following the backup yet: the store has not indexed up to its point");
            false
        }
        Err(e) => {
            tracing::warn!(%lane, error = %e, "cannot read the store's watermark; not following the backup now");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use multibridge_contracts::Request;

    use super::*;
    use crate::attest::tests::request;
    use crate::store::{SharedStore, Store};

    /// The nonces of the attested batch of `nonce` that `store` composes.
    fn batch_of(store: &SharedStore, lane: Lane, nonce: u64) -> Vec<u64> {
        let batch = store.lock().batch_of(lane, nonce).unwrap();
        batch.iter().map(|r| r.nonce).collect()
    }

    #[test]
    fn a_backup_is_followed_once_its_batch_window_is_stored_and_the_window_stays_whole() {
        let lane = Lane::MainToService;
        let store = SharedStore::new(Store::open_in_memory("a pair, an operator").unwrap());
        // Nonces 4..=9 in one source block; the backup's point is 6 (nonce 6 still open).
        assert!(!indexed_past(&store, lane, 6), "nothing indexed yet");
        let early: Vec<Request> = (0..4).map(|n| request(n, 90)).collect();
        store.lock().record_range(lane, &early, 91).unwrap();
        // The indexer's gap check moves the watermark over what is stored.
        assert!(store.lock().missing_nonces(lane, 10).unwrap().is_empty());
        assert!(!indexed_past(&store, lane, 6), "behind the point");
        let block: Vec<Request> = (4..10).map(|n| request(n, 100)).collect();
        store.lock().record_range(lane, &block, 102).unwrap();
        assert!(store.lock().missing_nonces(lane, 10).unwrap().is_empty());
        assert!(indexed_past(&store, lane, 6));
        // Followed now, the compaction keeps the whole window, so the batch of 6 is the one
        // every operator composes: from the first request of its block.
        store.lock().begin_compaction(lane, 6, 1).unwrap();
        while store.lock().compact_step(lane, 100).unwrap() > 0 {}
        assert_eq!(batch_of(&store, lane, 6), (4..10).collect::<Vec<_>>());

        // What following before indexing did: the rows below the point never stored, a batch
        // of 6 that starts at 6, a digest no other operator signs.
        let behind = SharedStore::new(Store::open_in_memory("a pair, an operator").unwrap());
        behind.lock().begin_compaction(lane, 6, 1).unwrap();
        behind.lock().record_range(lane, &early, 91).unwrap();
        behind.lock().record_range(lane, &block, 102).unwrap();
        assert_eq!(batch_of(&behind, lane, 6), (6..10).collect::<Vec<_>>());
    }
}
