//! The `[http]` section: the relay's HTTP API (`/metrics`, `/healthz`, `/readyz`, `/status`, the
//! dashboard), where it listens and what it advertises.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::Problem;

/// HTTP API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address; loopback by default. `/metrics` and `/status` show the operator
    /// address, balances, gas prices, RPC host names (never their paths or credentials),
    /// waiting reasons and the etcd election; nothing there can change the relay.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Allow a `listen` address that is not loopback (the API is then reachable by anyone
    /// who reaches the port: put it behind a firewall or a reverse proxy with auth).
    #[serde(default)]
    pub expose: bool,
    /// URL published in the service registry when this replica leads (default: from `listen`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise_url: Option<String>,
    /// `/readyz` turns not-ready when a dependency (a chain, an indexer, etcd) last succeeded
    /// longer ago than this.
    #[serde(default = "default_ready_stale_secs")]
    pub ready_stale_secs: u64,
    /// How often the watcher reads heads, balances, gas prices, lane nonces and conservation.
    #[serde(default = "default_watch_interval_ms")]
    pub watch_interval_ms: u64,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}

fn default_ready_stale_secs() -> u64 {
    30
}
fn default_watch_interval_ms() -> u64 {
    2_000
}

impl HttpConfig {
    /// The first problem with the section.
    pub fn problem(&self) -> Option<Problem> {
        if !self.listen.ip().is_loopback() && !self.expose {
            return Some((
                "http.listen",
                format!(
                    "{} is not a loopback address: /metrics and /status (operator address, balances, RPC host names, waiting reasons) would be served to the network; bind 127.0.0.1 (behind a reverse proxy if others must read it) or set http.expose = true",
                    self.listen
                ),
            ));
        }
        if self.ready_stale_secs == 0 || self.watch_interval_ms < 100 {
            return Some((
                "http",
                "ready_stale_secs must be at least 1 and watch_interval_ms at least 100".into(),
            ));
        }
        if self.watch_interval_ms / 1000 >= self.ready_stale_secs {
            return Some((
                "http",
                format!(
                    "watch_interval_ms {} is not below ready_stale_secs {}: the relay would flap between ready and not ready",
                    self.watch_interval_ms, self.ready_stale_secs
                ),
            ));
        }
        None
    }
}
