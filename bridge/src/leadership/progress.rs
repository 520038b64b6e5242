//! Progress under the election's directory: every replica records how far it got (its lane
//! cursor and the highest request nonce it indexed — the seed papers' latest processed index),
//! and the leader records the lane cursor, so an operator can see which replica lags.

use std::sync::Arc;
use std::time::Duration;

use multibridge_contracts::{Lane, RequestStatus};
use tokio::sync::watch;

use super::etcd_pool::EtcdPool;
use super::health::ServeHealth;
pub use super::layout::ReplicaProgress;
use super::layout::{cursor_key, progress_key};
use super::progress_writes::ProgressWrites;
use crate::store::SharedStore;

/// How often progress is written.
const EVERY: Duration = Duration::from_secs(2);

/// How often a replica that does not lead the lane probes the signer (a leader's sends say).
const FOLLOWER_SIGNER_PROBE: Duration = Duration::from_secs(10);

/// The progress writer of one lane.
pub struct Progress {
    /// Lane.
    pub lane: Lane,
    /// The election's directory.
    pub dir: String,
    /// This replica.
    pub replica: String,
    /// etcd.
    pub pool: Arc<EtcdPool>,
    /// The replica's store.
    pub store: SharedStore,
    /// Leading or not.
    pub leading: watch::Receiver<bool>,
    /// Whether this replica can serve (published as `serving`; `None`: not said).
    pub health: Option<ServeHealth>,
    /// The operator's signer, probed now and then while not leading.
    pub signer: Option<crate::chain::signer::OperatorSigner>,
}

impl Progress {
    fn record(&self) -> Option<ReplicaProgress> {
        let store = self.store.lock();
        let counts = store.counts(self.lane).ok()?;
        Some(ReplicaProgress {
            replica: self.replica.clone(),
            leader: *self.leading.borrow(),
            cursor: store.cursor(self.lane).ok().flatten(),
            latest_nonce: counts.max_nonce,
            handled: counts.of(RequestStatus::Handled),
            at: crate::store::unix_now(),
            serving: self.health.as_ref().map(|health| health.unfit().is_none()),
        })
    }

    /// While not leading, learn now and then whether the signer still signs (a leader learns
    /// it from its sends), so the `serving` flag stays true to what a takeover would find.
    async fn probe_signer(&self, last: &mut Option<std::time::Instant>) {
        let (Some(signer), Some(health)) = (&self.signer, &self.health) else {
            return;
        };
        if *self.leading.borrow() || last.is_some_and(|at| at.elapsed() < FOLLOWER_SIGNER_PROBE) {
            return;
        }
        *last = Some(std::time::Instant::now());
        match signer.probe().await {
            Ok(_) => health.signer.answered(),
            Err(e) => {
                tracing::debug!(lane = %self.lane, error = %e, "the signer fails (follower probe)");
                health.signer.failed();
            }
        }
    }

    /// Write every [`EVERY`] until aborted, in one transaction with the other lanes' records
    /// handed in meanwhile ([`ProgressWrites`]); failures are counted and logged at debug (etcd
    /// faults are reported by the campaign).
    pub async fn run(self) {
        let writer = ProgressWrites::of(&self.pool);
        let mut probed = None;
        loop {
            self.probe_signer(&mut probed).await;
            if let Some(record) = self.record() {
                let value = serde_json::to_string(&record).unwrap_or_default();
                let mut writes = vec![(progress_key(&self.dir, &self.replica), value)];
                if record.leader
                    && let Some(cursor) = record.cursor
                {
                    writes.push((cursor_key(&self.dir), cursor.to_string()));
                }
                writer.put(&self.pool, writes);
            }
            tokio::time::sleep(EVERY).await;
        }
    }
}

/// Read every replica's record of an election directory.
pub async fn read_progress(
    pool: &EtcdPool,
    dir: &str,
) -> Result<Vec<ReplicaProgress>, super::etcd_pool::EtcdUnavailable> {
    let prefix = format!("{dir}/progress/");
    let values = pool
        .call("read progress", |mut c| {
            let prefix = prefix.clone();
            async move {
                let resp = c
                    .get(prefix, Some(etcd_client::GetOptions::new().with_prefix()))
                    .await?;
                Ok(resp
                    .kvs()
                    .iter()
                    .map(|kv| kv.value().to_vec())
                    .collect::<Vec<_>>())
            }
        })
        .await?;
    Ok(values
        .iter()
        .filter_map(|v| serde_json::from_slice(v).ok())
        .collect())
}

/// The lane cursor the leader last recorded in an election directory.
pub async fn read_cursor(
    pool: &EtcdPool,
    dir: &str,
) -> Result<Option<u64>, super::etcd_pool::EtcdUnavailable> {
    let value = pool.get("read cursor", &cursor_key(dir)).await?;
    Ok(value.and_then(|v| String::from_utf8(v).ok()?.parse().ok()))
}
