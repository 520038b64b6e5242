//! Metrics of state versions, backups, compaction and fast join (issue 15, DESIGN §7).

use multibridge_contracts::Lane;
use prometheus::{Gauge, GaugeVec, IntCounterVec, IntGaugeVec, Registry};

/// Why a backup ran (label `trigger`).
pub const TRIGGERS: [&str; 3] = ["bound", "majority-lost", "on-demand"];
/// How a replica got a lane's state at start (label `source`).
pub const JOIN_SOURCES: [&str; 2] = ["backup", "replay"];

/// The backup metrics.
#[derive(Clone)]
pub struct BackupMetrics {
    state_version: IntGaugeVec,
    server_state_version: IntGaugeVec,
    backup_in_progress: IntGaugeVec,
    backups: IntCounterVec,
    fence_waits: IntCounterVec,
    last_backup_version: IntGaugeVec,
    backup_seconds: GaugeVec,
    backup_store_hold_seconds: GaugeVec,
    compacted: IntCounterVec,
    compactions_refused: IntCounterVec,
    store_rows: IntGaugeVec,
    joins: IntCounterVec,
    join_seconds: GaugeVec,
    replicas_alive: IntGaugeVec,
    replicas_members: IntGaugeVec,
}

impl BackupMetrics {
    /// Register every series in `registry`, the label sets of `lanes` at 0.
    pub fn register(registry: &Registry, lanes: &[Lane]) -> Result<Self, prometheus::Error> {
        let f = crate::families::Families(registry);
        let (int_gauge, gauge, counter) = (
            |n: &str, help: &str, labels: &[&str]| f.int_gauge(n, help, labels),
            |n: &str, help: &str, labels: &[&str]| f.gauge(n, help, labels),
            |n: &str, help: &str, labels: &[&str]| f.counter(n, help, labels),
        );
        let lane = &["lane"];
        let metrics = Self {
            state_version: int_gauge(
                "state_version",
                "SV: the operator's latest state version of the lane, as etcd has it",
                lane,
            )?,
            server_state_version: int_gauge(
                "server_state_version",
                "SSV: the state version of this replica's store",
                lane,
            )?,
            backup_in_progress: int_gauge(
                "state_backup_in_progress",
                "1 while SSI = -1 (a backup of the lane runs)",
                lane,
            )?,
            backups: counter(
                "state_backups_total",
                "State backups (state-version-up) by trigger and result",
                &["lane", "trigger", "result"],
            )?,
            fence_waits: counter(
                "state_backup_fence_waits_total",
                "Backup log writes that waited for this replica's fence to reopen (a lease or heartbeat that lapsed while etcd answered slowly) instead of failing the backup",
                lane,
            )?,
            last_backup_version: int_gauge(
                "state_backup_last_version",
                "State version of the last backup this replica made",
                lane,
            )?,
            backup_seconds: gauge(
                "state_backup_seconds",
                "Duration of the last backup this replica made",
                lane,
            )?,
            backup_store_hold_seconds: gauge(
                "state_backup_store_hold_seconds",
                "Longest single hold of the store by the last backup (voting waits at most this long)",
                lane,
            )?,
            compacted: counter(
                "store_compacted_requests_total",
                "Handled requests dropped from the store after a backup covered them",
                lane,
            )?,
            compactions_refused: counter(
                "store_compactions_refused_total",
                "Backups a follower did not follow with a compaction: the destination has not handled everything below, or the registry does not hold the backup",
                lane,
            )?,
            store_rows: int_gauge("store_rows", "Request rows in this replica's store", lane)?,
            joins: counter(
                "state_joins_total",
                "How this replica got a lane's state at start: from a backup or by replay (reason: why not from a backup)",
                &["lane", "source", "reason"],
            )?,
            join_seconds: gauge(
                "state_join_seconds",
                "Time to restore the lane from the latest backup",
                lane,
            )?,
            replicas_alive: int_gauge(
                "replicas_alive",
                "This operator's replicas whose liveness lease is alive",
                lane,
            )?,
            replicas_members: int_gauge(
                "replicas_members",
                "This operator's replicas that ever ran",
                lane,
            )?,
        };
        for lane in lanes {
            let l = lane.as_str();
            for trigger in TRIGGERS {
                for result in ["ok", "failed"] {
                    metrics
                        .backups
                        .with_label_values(&[l, trigger, result])
                        .reset();
                }
            }
            metrics.compacted.with_label_values(&[l]).reset();
            metrics.fence_waits.with_label_values(&[l]).reset();
            metrics.compactions_refused.with_label_values(&[l]).reset();
            metrics.joins.with_label_values(&[l, "backup", ""]).reset();
            for g in [
                &metrics.state_version,
                &metrics.server_state_version,
                &metrics.backup_in_progress,
                &metrics.last_backup_version,
                &metrics.store_rows,
                &metrics.replicas_alive,
                &metrics.replicas_members,
            ] {
                g.with_label_values(&[l]).set(0);
            }
            for g in [
                &metrics.backup_seconds,
                &metrics.backup_store_hold_seconds,
                &metrics.join_seconds,
            ] {
                g.with_label_values(&[l]).set(0.0);
            }
        }
        Ok(metrics)
    }

    /// Publish the versions of `lane` (SSI -1: a backup runs).
    pub fn set_versions(&self, lane: Lane, sv: u64, ssv: u64, ssi: i64) {
        let l = [lane.as_str()];
        self.state_version.with_label_values(&l).set(int(sv));
        self.server_state_version
            .with_label_values(&l)
            .set(int(ssv));
        self.backup_in_progress
            .with_label_values(&l)
            .set(i64::from(ssi < 0));
    }

    /// Publish membership.
    pub fn set_replicas(&self, lane: Lane, members: usize, alive: usize) {
        let l = [lane.as_str()];
        self.replicas_members
            .with_label_values(&l)
            .set(i64::try_from(members).unwrap_or(i64::MAX));
        self.replicas_alive
            .with_label_values(&l)
            .set(i64::try_from(alive).unwrap_or(i64::MAX));
    }

    /// Count a backup; a finished one with its figures.
    pub fn backup(&self, lane: Lane, trigger: &str, done: Option<(u64, f64, f64)>) {
        let l = lane.as_str();
        let result = if done.is_some() { "ok" } else { "failed" };
        self.backups.with_label_values(&[l, trigger, result]).inc();
        if let Some((version, seconds, hold)) = done {
            self.last_backup_version
                .with_label_values(&[l])
                .set(int(version));
            self.backup_seconds.with_label_values(&[l]).set(seconds);
            self.backup_store_hold_seconds
                .with_label_values(&[l])
                .set(hold);
        }
    }

    /// Count `waits` times a backup log write found the fence closed and waited for it.
    pub fn fence_waits(&self, lane: Lane, waits: u32) {
        self.fence_waits
            .with_label_values(&[lane.as_str()])
            .inc_by(u64::from(waits));
    }

    /// Count rows dropped by compaction.
    pub fn compacted(&self, lane: Lane, rows: u64) {
        self.compacted
            .with_label_values(&[lane.as_str()])
            .inc_by(rows);
    }

    /// Count a backup this follower did not follow with a compaction.
    pub fn compaction_refused(&self, lane: Lane) {
        self.compactions_refused
            .with_label_values(&[lane.as_str()])
            .inc();
    }

    /// Publish the store's row count.
    pub fn set_store_rows(&self, lane: Lane, rows: u64) {
        self.store_rows
            .with_label_values(&[lane.as_str()])
            .set(int(rows));
    }

    /// Count how a lane's state was obtained at start.
    pub fn joined(&self, lane: Lane, source: &str, reason: &str, seconds: Option<f64>) {
        self.joins
            .with_label_values(&[lane.as_str(), source, reason])
            .inc();
        if let Some(s) = seconds {
            let g: &Gauge = &self.join_seconds.with_label_values(&[lane.as_str()]);
            g.set(s);
        }
    }
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
