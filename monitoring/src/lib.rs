//! The one definition of every multibridge metric (prefix `multibridge_`) and the HTTP exporter
//! (`/metrics`, `/healthz`, `/readyz`, `/status`). Every label set is initialised at start, so a
//! metric exists (at 0) before its first event and dashboards never see gaps.
#![forbid(unsafe_code)]

pub mod attest_metrics;
pub mod backup_metrics;
pub mod dashboard_metrics;
pub mod drift_metrics;
pub mod exporter;
mod families;
pub mod guardian_metrics;
pub mod metrics;
pub mod readiness;
pub mod redact;
pub mod status_board;

pub use attest_metrics::AttestMetrics;
pub use backup_metrics::BackupMetrics;
pub use dashboard_metrics::DashboardMetrics;
pub use drift_metrics::DriftMetrics;
pub use exporter::{HttpState, serve};
pub use guardian_metrics::GuardianMetrics;
pub use metrics::{
    ChainMetrics, EtcdMetrics, EtcdOutcome, LaneMetrics, Metrics, RegistryUpdate, RpcOutcome,
    SendingPause, SkipReason, VoteTxOutcome,
};
pub use readiness::{Readiness, ReadyReport};
pub use redact::redact_urls;
pub use status_board::StatusBoard;

/// Prefix of every metric name.
pub const METRIC_PREFIX: &str = "multibridge_";
