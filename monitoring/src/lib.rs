//! The one definition of every multibridge metric (prefix `multibridge_`) and the HTTP exporter
//! (`/metrics`, `/healthz`). Every label set is initialised at start, so a metric exists (at 0)
//! before its first event and dashboards never see gaps.
#![forbid(unsafe_code)]

pub mod exporter;
pub mod metrics;

pub use exporter::{HttpState, serve};
pub use metrics::Metrics;

/// Prefix of every metric name.
pub const METRIC_PREFIX: &str = "multibridge_";
