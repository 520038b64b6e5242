//! One HTTP client for everything the harness asks over HTTP (the chains' RPCs, the relays'
//! `/metrics`). Building a reqwest client loaded the system's CA certificates — about 80 ms of
//! CPU through OpenSSL, before TLS was rustls — and the harness used to build one per provider and per scrape: a
//! transfer every 200 ms and a scrape every 50 ms kept a core busy, which is what the timing
//! tests then measured. The client keeps no idle connections: the end-to-end tests run many
//! tokio runtimes, and a pooled connection belongs to the runtime that opened it.

use std::sync::OnceLock;

use alloy::providers::{DynProvider, Provider, ProviderBuilder};

/// The shared client.
pub fn client() -> reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap_or_default()
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
