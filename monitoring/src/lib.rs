//! The one definition of every multibridge metric (prefix `multibridge_`), the HTTP exporter
//! (`/metrics`, `/healthz`, `/readyz`), the Grafana dashboard and the Prometheus alert rules.
//!
//! Skeleton: the metric set arrives with the relay (see DESIGN.md §8).
#![forbid(unsafe_code)]

/// Prefix of every metric name.
pub const METRIC_PREFIX: &str = "multibridge_";
