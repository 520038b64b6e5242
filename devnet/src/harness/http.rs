//! One HTTP client for everything the harness asks over HTTP (the chains' RPCs, the relays'
//! `/metrics`). Building a reqwest client loaded the system's CA certificates — about 80 ms of
//! CPU through OpenSSL, before TLS was rustls — and the harness used to build one per provider and per scrape: a
//! transfer every 200 ms and a scrape every 50 ms kept a core busy, which is what the timing
//! tests then measured.
//!
//! By default the client keeps no idle connections: the end-to-end tests run many tokio
//! runtimes, and a pooled connection belongs to the runtime that opened it. A process that runs
//! one runtime for its whole life (the `multibridge-devnet` binary) calls
//! [`keep_connections`] first: a 64-pair hub's watchers and users opened a connection per
//! request, several hundred a second to the main chain's node, until the kernel's accept queue
//! overflowed ("possible SYN flooding") and a user's request failed to connect.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use alloy::providers::{DynProvider, Provider, ProviderBuilder};

/// Whether the shared client keeps idle connections (see [`keep_connections`]).
static KEEP_CONNECTIONS: AtomicBool = AtomicBool::new(false);

/// How long a kept connection may idle before it is closed.
const IDLE_FOR: Duration = Duration::from_secs(30);

/// Keep idle connections for reuse. Only for a process whose one tokio runtime outlives every
/// request (a pooled connection dies with the runtime that opened it); call before the first
/// request (the client is built once).
pub fn keep_connections() {
    KEEP_CONNECTIONS.store(true, Ordering::SeqCst);
}

/// The shared client.
pub fn client() -> reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let builder = reqwest::Client::builder();
            let builder = if KEEP_CONNECTIONS.load(Ordering::SeqCst) {
                builder.pool_idle_timeout(IDLE_FOR)
            } else {
                builder.pool_max_idle_per_host(0)
            };
            builder.build().unwrap_or_default()
        })
        .clone()
}

/// The JSON-RPC client of `url` over the shared HTTP client.
pub fn rpc_client(url: reqwest::Url) -> alloy::rpc::client::RpcClient {
    alloy::rpc::client::ClientBuilder::default().http_with_client(client(), url)
}

/// A read-only provider of `url` over the shared HTTP client.
pub fn provider(url: reqwest::Url) -> DynProvider {
    ProviderBuilder::new()
        .connect_client(rpc_client(url))
        .erased()
}
