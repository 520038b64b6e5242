//! Metrics of the configuration watch (issue 38): drift from the desired-state file, and the
//! owner calls seen in the bridges' events.

use std::collections::BTreeMap;

use multibridge_contracts::ChainRole;
use prometheus::{IntCounterVec, IntGaugeVec, Registry};

/// What an owner call changes (label `item` of `config_drift`).
pub const DRIFT_ITEMS: [&str; 9] = [
    "operators",
    "threshold",
    "pausers",
    "owner",
    "limits",
    "token_pairs",
    "fees",
    "counterpart",
    "other",
];

/// The configuration watch's metrics.
#[derive(Clone)]
pub struct DriftMetrics {
    drift: IntGaugeVec,
    checks: IntCounterVec,
    changes: IntCounterVec,
    change_time: IntGaugeVec,
}

impl DriftMetrics {
    /// Register every series in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let f = crate::families::Families(registry);
        let (int_gauge, counter) = (
            |n: &str, help: &str, labels: &[&str]| f.int_gauge(n, help, labels),
            |n: &str, help: &str, labels: &[&str]| f.counter(n, help, labels),
        );
        let metrics = Self {
            drift: int_gauge(
                "config_drift",
                "Owner calls the bridge still needs to match the desired-state file ([admin] desired), per item; 0: as desired",
                &["chain", "item"],
            )?,
            checks: counter(
                "config_drift_checks_total",
                "Comparisons of the bridges with the desired-state file, by outcome (ok, failed)",
                &["outcome"],
            )?,
            changes: counter(
                "admin_changes_total",
                "Owner calls seen in the bridge's events (without a desired-state file), by event",
                &["chain", "event"],
            )?,
            change_time: int_gauge(
                "admin_change_time",
                "Unix time of the block of each of the last owner calls seen, labelled with its transaction",
                &["chain", "event", "tx"],
            )?,
        };
        for outcome in ["ok", "failed"] {
            metrics.checks.with_label_values(&[outcome]).reset();
        }
        Ok(metrics)
    }

    /// Publish `chain`'s drift: `items` maps an item to its pending owner calls (absent: 0).
    pub fn set_drift(&self, chain: ChainRole, items: &BTreeMap<&'static str, u64>) {
        for item in DRIFT_ITEMS {
            let n = items.get(item).copied().unwrap_or(0);
            self.drift
                .with_label_values(&[chain.as_str(), item])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Count a comparison.
    pub fn checked(&self, ok: bool) {
        self.checks
            .with_label_values(&[if ok { "ok" } else { "failed" }])
            .inc();
    }

    /// Record an owner call `event` on `chain` in transaction `tx`, in a block of `time`.
    pub fn admin_change(&self, chain: ChainRole, event: &str, tx: &str, time: u64) {
        self.changes
            .with_label_values(&[chain.as_str(), event])
            .inc();
        self.change_time
            .with_label_values(&[chain.as_str(), event, tx])
            .set(i64::try_from(time).unwrap_or(i64::MAX));
    }

    /// Drop an old owner call's series (only the last few are kept).
    pub fn forget_admin_change(&self, chain: ChainRole, event: &str, tx: &str) {
        let _ = self
            .change_time
            .remove_label_values(&[chain.as_str(), event, tx]);
    }
}
