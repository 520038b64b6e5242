//! A chain as the relay sees it: several RPC endpoints in order of preference, one active at a
//! time. Every call goes through [`ChainClient::call`], which times it out, classifies failures
//! in one place ([`crate::rpc_error`]) and fails over to the next endpoint on anything an
//! endpoint could be blamed for, backing off once every endpoint failed in a row.
//!
//! Endpoints are named by index and host only in logs and metrics: URLs may carry API keys.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use alloy::primitives::Address;
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::transports::TransportError;
use multibridge_contracts::ChainRole;
use multibridge_contracts::bindings::{Bridge, ServiceRegistry};
use multibridge_monitoring::Metrics;

use crate::config::ChainConfig;
use crate::rpc_error::{ErrorClass, classify};

/// How hard one call tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts over all endpoints before giving up.
    pub max_attempts: u32,
    /// Timeout of one attempt.
    pub attempt_timeout: Duration,
    /// Pause after every endpoint failed once in a row; doubles up to `max_backoff`.
    pub base_backoff: Duration,
    /// Longest pause.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            attempt_timeout: Duration::from_secs(10),
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// A failed chain call.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The request itself was refused (reverted, invalid): retrying cannot help.
    #[error("{chain} {method}: {source}")]
    Rejected {
        /// Chain.
        chain: ChainRole,
        /// RPC method or contract call.
        method: &'static str,
        /// What the node said.
        source: TransportError,
    },
    /// Every attempt on every endpoint failed with retryable errors.
    #[error("{chain} {method}: no endpoint answered after {attempts} attempts (last: {last})")]
    Unavailable {
        /// Chain.
        chain: ChainRole,
        /// RPC method or contract call.
        method: &'static str,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// A configured URL does not parse.
    #[error("{chain}: rpc_urls[{index}] is not a valid URL")]
    BadUrl {
        /// Chain.
        chain: ChainRole,
        /// Position in `rpc_urls`.
        index: usize,
    },
    /// The endpoint serves another chain than configured.
    #[error(
        "{chain}: endpoint {endpoint} serves chain id {actual}, configured chain_id is {expected}"
    )]
    WrongChainId {
        /// Chain.
        chain: ChainRole,
        /// Endpoint label.
        endpoint: String,
        /// Configured.
        expected: u64,
        /// Served.
        actual: u64,
    },
}

impl ChainError {
    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// One RPC endpoint.
#[derive(Debug, Clone)]
struct Endpoint {
    label: String,
    provider: DynProvider,
}

/// A chain with failover across its endpoints.
#[derive(Debug)]
pub struct ChainClient {
    role: ChainRole,
    chain_id: u64,
    bridge: Address,
    endpoints: Vec<Endpoint>,
    active: AtomicUsize,
    policy: RetryPolicy,
    metrics: Option<Arc<Metrics>>,
}

/// The transport error inside a contract-call error (what the classifier understands).
pub(crate) fn contract_to_transport(e: alloy::contract::Error) -> TransportError {
    match e {
        alloy::contract::Error::TransportError(t) => t,
        other => alloy::transports::TransportErrorKind::custom_str(&other.to_string()),
    }
}

/// `#<index> <host:port>`: identifies an endpoint without exposing path or query secrets.
pub fn endpoint_label(index: usize, url: &str) -> String {
    let host = url
        .parse::<reqwest::Url>()
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_owned(),
            })
        })
        .unwrap_or_else(|| "?".to_owned());
    format!("#{index} {host}")
}

impl ChainClient {
    /// A client for the chain `role` as configured.
    pub fn new(
        role: ChainRole,
        config: &ChainConfig,
        policy: RetryPolicy,
    ) -> Result<Self, ChainError> {
        let endpoints = config
            .rpc_urls
            .iter()
            .enumerate()
            .map(|(index, url)| {
                let parsed = url
                    .parse()
                    .map_err(|_| ChainError::BadUrl { chain: role, index })?;
                Ok(Endpoint {
                    label: endpoint_label(index, url),
                    provider: ProviderBuilder::new().connect_http(parsed).erased(),
                })
            })
            .collect::<Result<Vec<_>, ChainError>>()?;
        if endpoints.is_empty() {
            return Err(ChainError::BadUrl {
                chain: role,
                index: 0,
            });
        }
        Ok(Self {
            role,
            chain_id: config.chain_id,
            bridge: config.bridge,
            endpoints,
            active: AtomicUsize::new(0),
            policy,
            metrics: None,
        })
    }

    /// Record RPC outcomes in `metrics` (`multibridge_rpc_requests_total`).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn record(&self, endpoint: usize, method: &'static str, outcome: &str) {
        if let Some(m) = &self.metrics {
            m.rpc_requests
                .with_label_values(&[
                    self.role.as_str(),
                    endpoint.to_string().as_str(),
                    method,
                    outcome,
                ])
                .inc();
        }
    }

    /// Which chain.
    pub fn role(&self) -> ChainRole {
        self.role
    }

    /// Configured chain id.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// The bridge contract configured on this chain.
    pub fn bridge(&self) -> Address {
        self.bridge
    }

    /// The chain's latest block number, with failover.
    pub async fn head(&self) -> Result<u64, ChainError> {
        self.call(
            "eth_blockNumber",
            |p| async move { p.get_block_number().await },
        )
        .await
    }

    /// A call on this chain's bridge contract (typically a view), with failover.
    pub async fn bridge_call<T, F, Fut>(&self, method: &'static str, f: F) -> Result<T, ChainError>
    where
        F: Fn(Bridge::BridgeInstance<DynProvider>) -> Fut,
        Fut: Future<Output = Result<T, alloy::contract::Error>>,
    {
        let bridge = self.bridge;
        self.call(method, |p| {
            let fut = f(Bridge::new(bridge, p));
            async move { fut.await.map_err(contract_to_transport) }
        })
        .await
    }

    /// A call on the `ServiceRegistry` at `registry` on this chain, with failover.
    pub async fn registry_call<T, F, Fut>(
        &self,
        registry: Address,
        method: &'static str,
        f: F,
    ) -> Result<T, ChainError>
    where
        F: Fn(ServiceRegistry::ServiceRegistryInstance<DynProvider>) -> Fut,
        Fut: Future<Output = Result<T, alloy::contract::Error>>,
    {
        self.call(method, |p| {
            let fut = f(ServiceRegistry::new(registry, p));
            async move { fut.await.map_err(contract_to_transport) }
        })
        .await
    }

    /// Index of the endpoint in use (`endpoints` is never empty: `new` refuses that).
    fn active_index(&self) -> usize {
        self.active
            .load(Ordering::Relaxed)
            .checked_rem(self.endpoints.len())
            .unwrap_or(0)
    }

    /// Label of the endpoint in use.
    pub fn active_endpoint(&self) -> &str {
        &self.endpoints[self.active_index()].label
    }

    /// The provider in use, for building contract instances; run the calls through
    /// [`call`](Self::call) so they fail over.
    pub fn provider(&self) -> DynProvider {
        self.endpoints[self.active_index()].provider.clone()
    }

    /// Move to the next endpoint, unless another task already moved away from `from`.
    fn fail_over(&self, from: usize) {
        let next = from
            .saturating_add(1)
            .checked_rem(self.endpoints.len())
            .unwrap_or(0);
        let _ = self
            .active
            .compare_exchange(from, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Run `f` against the active endpoint with timeouts, failover and backoff.
    pub async fn call<T, F, Fut>(&self, method: &'static str, f: F) -> Result<T, ChainError>
    where
        F: Fn(DynProvider) -> Fut,
        Fut: Future<Output = Result<T, TransportError>>,
    {
        self.call_classified(method, classify, f).await
    }

    /// [`call`](Self::call) with another classification of failures (e.g. the send rules).
    pub async fn call_classified<T, F, Fut>(
        &self,
        method: &'static str,
        classify: fn(&TransportError) -> ErrorClass,
        f: F,
    ) -> Result<T, ChainError>
    where
        F: Fn(DynProvider) -> Fut,
        Fut: Future<Output = Result<T, TransportError>>,
    {
        let mut failures_in_a_row = 0usize;
        let mut backoff = self.policy.base_backoff;
        let mut last = String::new();
        for attempt in 1..=self.policy.max_attempts {
            let index = self.active_index();
            let endpoint = &self.endpoints[index];
            let class = match tokio::time::timeout(
                self.policy.attempt_timeout,
                f(endpoint.provider.clone()),
            )
            .await
            {
                Ok(Ok(value)) => {
                    self.record(index, method, "ok");
                    return Ok(value);
                }
                Ok(Err(error)) => {
                    let class = classify(&error);
                    self.record(index, method, class.label());
                    if class == ErrorClass::Fatal {
                        return Err(ChainError::Rejected {
                            chain: self.role,
                            method,
                            source: error,
                        });
                    }
                    last = format!("{}: {error}", endpoint.label);
                    class
                }
                Err(_) => {
                    self.record(index, method, ErrorClass::Retryable.label());
                    last = format!(
                        "{}: timed out after {:?}",
                        endpoint.label, self.policy.attempt_timeout
                    );
                    ErrorClass::Retryable
                }
            };
            tracing::warn!(chain = %self.role, endpoint = %endpoint.label, method, attempt, class = class.label(), error = %last, "rpc call failed");
            self.fail_over(index);
            failures_in_a_row = failures_in_a_row.saturating_add(1);
            if failures_in_a_row >= self.endpoints.len() || class == ErrorClass::RateLimited {
                if attempt < self.policy.max_attempts {
                    tokio::time::sleep(backoff).await;
                }
                backoff = (backoff.saturating_mul(2)).min(self.policy.max_backoff);
                failures_in_a_row = 0;
            }
        }
        Err(ChainError::Unavailable {
            chain: self.role,
            method,
            attempts: self.policy.max_attempts,
            last,
        })
    }

    /// Check every endpoint that answers serves the configured chain id; returns how many answered.
    pub async fn verify_chain_id(&self) -> Result<usize, ChainError> {
        let mut answered = 0usize;
        let mut first_up = None;
        for (index, endpoint) in self.endpoints.iter().enumerate() {
            let got = tokio::time::timeout(
                self.policy.attempt_timeout,
                endpoint.provider.get_chain_id(),
            )
            .await;
            let Ok(Ok(actual)) = got else {
                let outcome = match got {
                    Ok(Err(e)) => classify(&e).label(),
                    _ => ErrorClass::Retryable.label(),
                };
                self.record(index, "eth_chainId", outcome);
                tracing::warn!(chain = %self.role, endpoint = %endpoint.label, "endpoint does not answer");
                continue;
            };
            self.record(index, "eth_chainId", "ok");
            if actual != self.chain_id {
                return Err(ChainError::WrongChainId {
                    chain: self.role,
                    endpoint: endpoint.label.clone(),
                    expected: self.chain_id,
                    actual,
                });
            }
            answered = answered.saturating_add(1);
            first_up.get_or_insert(index);
        }
        // Start on the most preferred endpoint that answered.
        if let Some(index) = first_up {
            self.active.store(index, Ordering::Relaxed);
        }
        Ok(answered)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicU32;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A one-trick JSON-RPC endpoint: answers every request with `result_or_error` (a JSON
    /// fragment such as `"result":"0x7a69"`), counting requests.
    async fn fake_endpoint(result_or_error: &'static str) -> (String, Arc<AtomicU32>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicU32::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let mut read = 0;
                    // Read headers + body (small requests arrive in one or two segments).
                    while read < buf.len() {
                        let Ok(n) = socket.read(&mut buf[read..]).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        read += n;
                        let text = String::from_utf8_lossy(&buf[..read]);
                        if let Some((head, body)) = text.split_once("\r\n\r\n") {
                            let len = head
                                .lines()
                                .find_map(|l| {
                                    l.to_ascii_lowercase()
                                        .strip_prefix("content-length:")
                                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                                })
                                .unwrap_or(0);
                            if body.len() >= len {
                                break;
                            }
                        }
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let text = String::from_utf8_lossy(&buf[..read]).to_string();
                    let id = text
                        .split("\"id\":")
                        .nth(1)
                        .and_then(|s| s.split([',', '}']).next())
                        .unwrap_or("1")
                        .trim()
                        .to_owned();
                    let body = format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},{result_or_error}}}");
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(resp.as_bytes()).await;
                });
            }
        });
        (url, hits)
    }

    /// A URL nobody listens on.
    async fn dead_endpoint() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        url
    }

    fn client(urls: Vec<String>, chain_id: u64) -> ChainClient {
        let config = ChainConfig {
            chain_id,
            rpc_urls: urls,
            bridge: Address::repeat_byte(1),
            confirmations: 1,
            start_block: 0,
            poll_interval_ms: 100,
            max_block_range: 100,
        };
        ChainClient::new(
            ChainRole::Main,
            &config,
            RetryPolicy {
                max_attempts: 4,
                attempt_timeout: Duration::from_secs(2),
                base_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(20),
            },
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_dead_first_endpoint_fails_over_to_the_next_and_stays_there() {
        let (good, hits) = fake_endpoint("\"result\":\"0x7a69\"").await;
        let chain = client(vec![dead_endpoint().await, good], 31_337);
        let id = chain
            .call("eth_chainId", |p| async move { p.get_chain_id().await })
            .await
            .unwrap();
        assert_eq!(id, 31_337);
        assert!(
            chain.active_endpoint().starts_with("#1 "),
            "{}",
            chain.active_endpoint()
        );
        chain
            .call("eth_chainId", |p| async move { p.get_chain_id().await })
            .await
            .unwrap();
        assert_eq!(
            hits.load(Ordering::SeqCst),
            2,
            "the healthy endpoint serves both calls"
        );
    }

    #[tokio::test]
    async fn a_revert_is_final_and_does_not_fail_over() {
        let (reverting, hits) =
            fake_endpoint("\"error\":{\"code\":3,\"message\":\"execution reverted\"}").await;
        let (other, other_hits) = fake_endpoint("\"result\":\"0x1\"").await;
        let chain = client(vec![reverting, other], 1);
        let err = chain
            .call(
                "eth_blockNumber",
                |p| async move { p.get_block_number().await },
            )
            .await
            .unwrap_err();
        assert!(matches!(err, ChainError::Rejected { .. }), "{err}");
        assert!(!err.is_retryable());
        assert_eq!(
            (
                hits.load(Ordering::SeqCst),
                other_hits.load(Ordering::SeqCst)
            ),
            (1, 0)
        );
    }

    #[tokio::test]
    async fn rate_limits_and_dead_endpoints_end_as_unavailable_after_the_attempt_budget() {
        let (limited, hits) =
            fake_endpoint("\"error\":{\"code\":-32005,\"message\":\"rate limit exceeded\"}").await;
        let chain = client(vec![limited, dead_endpoint().await], 1);
        let err = chain
            .call(
                "eth_blockNumber",
                |p| async move { p.get_block_number().await },
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, ChainError::Unavailable { attempts: 4, .. }),
            "{err}"
        );
        assert!(err.is_retryable());
        assert_eq!(
            hits.load(Ordering::SeqCst),
            2,
            "alternates between the two endpoints"
        );
    }

    #[tokio::test]
    async fn an_endpoint_of_another_chain_is_named() {
        let (other_chain, _) = fake_endpoint("\"result\":\"0x1\"").await;
        let chain = client(vec![dead_endpoint().await, other_chain], 31_337);
        let err = chain.verify_chain_id().await.unwrap_err();
        assert!(
            matches!(
                err,
                ChainError::WrongChainId {
                    expected: 31_337,
                    actual: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("#1 127.0.0.1:"), "{err}");
    }

    #[test]
    fn endpoint_labels_hide_paths_and_queries() {
        assert_eq!(
            endpoint_label(2, "https://rpc.example.org/v3/SECRETKEY?x=1"),
            "#2 rpc.example.org"
        );
        assert_eq!(
            endpoint_label(0, "http://127.0.0.1:8545"),
            "#0 127.0.0.1:8545"
        );
    }
}
