//! The chain layer of the relay: everything that reads a chain or writes to it with the
//! operator's key, above the config and below every relay component.
//!
//! | module | job |
//! |---|---|
//! | this file | [`ChainClient`]: one chain's RPC endpoints with failover, timeouts and error classes |
//! | [`rpc_error`] | what an endpoint's error means: retryable, rate-limited, a refusal |
//! | [`health`] | which endpoints keep up: lagging or frozen ones are demoted |
//! | [`liveness`] | whether the chain answers: how long it has owed the process an answer |
//! | [`bridge_views`], [`lookup`], [`logs`] | what a bridge says: views, request logs, scans by nonce |
//! | [`bridge_counters`] | a bridge's nonces and queue size, read once per block for every task that watches them |
//! | [`pair`] | both chains of a pair |
//! | [`shared_reads`] | the head and the endpoints' probe, read once for every client of a chain in the process |
//! | [`head_cadence`], [`head_feed`] | when the next block is due; the head pushed by the node's `newHeads` subscription |
//! | [`head_logs`] | the newest blocks' events read once at each head for every reader that follows the head |
//! | [`sender`], [`fees`], [`submitter`] | the nonce sequence, fees and replacement; one submitter per (chain, signer) serving every writer |
//! | [`signer`] | the operator key: keystore, PKCS#11 token or AWS KMS; [`signer::open`] loads one from the config |
//! | [`fence`] | the lease a replica must hold before every broadcast |
//!
//! A chain as the relay sees it: several RPC endpoints in order of preference, one active at a
//! time. Every call goes through [`ChainClient::call`], which times it out, classifies failures
//! in one place ([`crate::rpc_error`]) and fails over to the next endpoint on anything an
//! endpoint could be blamed for, backing off once every endpoint failed in a row.
//!
//! Endpoints are named by index and host only in logs and metrics: URLs may carry API keys.
#![forbid(unsafe_code)]
#![deny(clippy::arithmetic_side_effects)]
#![cfg_attr(test, allow(clippy::arithmetic_side_effects))]

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use alloy::primitives::{Address, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{Filter, Log};
use alloy::transports::TransportError;
use multibridge_contracts::ChainRole;
use multibridge_contracts::bindings::{Bridge, ServiceRegistry};
use multibridge_monitoring::{ChainMetrics, RpcOutcome};

use crate::config::ChainConfig;

/// The config's sections this layer reads (chains, signers, voting for the sender's policy).
use multibridge_config as config;

pub mod bounded_http;
pub mod bridge_counters;
pub mod bridge_views;
pub mod fees;
pub mod fence;
pub mod head_cadence;
pub mod head_feed;
pub mod head_logs;
pub mod health;
pub mod liveness;
pub mod logs;
pub mod lookup;
pub mod pair;
pub mod rpc_error;
pub mod sender;
pub mod shared_reads;
pub mod signer;
pub mod submitter;

pub use bridge_views::{BridgeViews, ViewError};
pub use pair::ChainPair;
use rpc_error::{ErrorClass, classify};

/// How hard one call tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts over all endpoints before giving up.
    pub max_attempts: u32,
    /// Timeout of one attempt.
    pub attempt_timeout: Duration,
    /// Pause after every endpoint failed once in a row; doubles up to `max_backoff` while an
    /// endpoint says it limits the rate, up to [`UNREACHABLE_BACKOFF`] otherwise.
    pub base_backoff: Duration,
    /// Longest pause (rate limits).
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

/// Longest pause between rounds of attempts on endpoints that do not answer (not rate limits).
pub const UNREACHABLE_BACKOFF: Duration = Duration::from_millis(500);

/// A failed chain call.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The request itself was refused (reverted, invalid): retrying cannot help.
    #[error("{chain} {method}: {}", multibridge_monitoring::redact_urls(&source.to_string()))]
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

    /// Whether a node refused a transaction (its estimate or its broadcast) because the signer
    /// cannot pay for its gas.
    pub fn is_unfunded_refusal(&self) -> bool {
        matches!(self, Self::Rejected { source: alloy::transports::RpcError::ErrorResp(p), .. }
            if rpc_error::is_insufficient_funds(&p.message))
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
    metrics: ChainMetrics,
    /// Endpoints that must agree on request logs.
    log_quorum: usize,
    /// Heads seen per endpoint over the probe rounds.
    health: std::sync::Mutex<health::HealthBook>,
    /// Endpoints the last probe found unhealthy (calls avoid them while another is healthy).
    demoted: Vec<AtomicBool>,
    /// What makes an endpoint unhealthy.
    rules: health::HealthRules,
    /// The head, probe and confirmed logs every client of this chain in the process shares.
    shared: std::sync::Arc<shared_reads::SharedReads>,
    /// Blocks below the head that count as confirmed, when logs of confirmed blocks may be
    /// answered from the shared store (at least 1; `None` for no confirmations or `finalized`).
    store_depth: Option<u64>,
    /// Whether the chain answers the process's calls (the step-down's evidence): one per chain
    /// id in the process, whatever endpoints a client lists ([`liveness::of`]).
    liveness: std::sync::Arc<liveness::Liveness>,
}

/// The transport error inside a contract-call error (what the classifier understands). A call
/// answered with no data is [`rpc_error::NoContractCode`], which a call at a past block does
/// not retry ([`rpc_error::classify_at_block`]).
pub fn contract_to_transport(e: alloy::contract::Error) -> TransportError {
    match e {
        alloy::contract::Error::TransportError(t) => t,
        no_data @ alloy::contract::Error::ZeroData(..) => {
            alloy::transports::TransportErrorKind::custom(rpc_error::NoContractCode(
                no_data.to_string(),
            ))
        }
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

/// The one HTTP client every RPC endpoint of the process shares (it pools connections per
/// host). Building a client used to load the system's CA certificates — about 80 ms of CPU
/// through OpenSSL, before the relay's TLS was rustls — and one per endpoint and per connect was most of a relay's start: six relays
/// restarted together on two cores took 0.9 s each to pass their preflight.
///
/// An idle connection is closed after [`HTTP_IDLE_FOR`]: reqwest keeps one 90 s, so every
/// connection a moment's burst opened (a preflight's reads at once, a hub's pairs reacting to one
/// head) stayed, ~25 KB each (heaptrack: hyper's buffers and dispatch channel) — ten per
/// service chain and five per pair on the main chain, ~1,400 connections in a relay serving 64
/// pairs. The pool reuses the connection returned last, so the ones a relay's steady work needs
/// stay open and only a burst's surplus is closed.
fn shared_http() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .pool_idle_timeout(HTTP_IDLE_FOR)
                .build()
                // Fails only where `Client::new` (the client before) fails too: a TLS backend
                // that cannot start.
                .unwrap_or_else(|_| reqwest::Client::new())
        })
        .clone()
}

/// How long an idle RPC connection is kept.
const HTTP_IDLE_FOR: Duration = Duration::from_secs(10);

impl ChainClient {
    /// A client for the chain `role` as configured; every RPC attempt is counted in `metrics`
    /// (`rpc_requests_total`).
    pub fn new(
        role: ChainRole,
        config: &ChainConfig,
        policy: RetryPolicy,
        metrics: ChainMetrics,
    ) -> Result<Self, ChainError> {
        let max_bytes = usize::try_from(config.max_answer_mib.saturating_mul(1024 * 1024))
            .unwrap_or(usize::MAX);
        let endpoints = config
            .rpc_urls
            .iter()
            .enumerate()
            .map(|(index, url)| {
                let parsed = url
                    .parse()
                    .map_err(|_| ChainError::BadUrl { chain: role, index })?;
                let local = alloy::transports::utils::guess_local_url(url);
                let transport = bounded_http::BoundedHttp::new(shared_http(), parsed, max_bytes);
                Ok(Endpoint {
                    label: endpoint_label(index, url),
                    provider: ProviderBuilder::new()
                        .connect_client(
                            alloy::rpc::client::ClientBuilder::default()
                                .transport(transport, local),
                        )
                        .erased(),
                })
            })
            .collect::<Result<Vec<_>, ChainError>>()?;
        if endpoints.is_empty() {
            return Err(ChainError::BadUrl {
                chain: role,
                index: 0,
            });
        }
        let count = endpoints.len();
        let shared = shared_reads::of(config.chain_id, &config.rpc_urls, config.ws_url.as_deref());
        if let Some(url) = &config.ws_url {
            head_feed::start(&shared, url, config.chain_id, role, metrics.clone());
        }
        Ok(Self {
            role,
            chain_id: config.chain_id,
            bridge: config.bridge,
            endpoints,
            active: AtomicUsize::new(0),
            policy,
            metrics,
            log_quorum: config.log_quorum.max(1),
            health: std::sync::Mutex::new(health::HealthBook::new(count)),
            demoted: (0..count).map(|_| AtomicBool::new(false)).collect(),
            rules: health::HealthRules {
                max_lag_blocks: config.max_lag_blocks,
                stall_after: Duration::from_secs(config.stall_secs),
            },
            shared,
            liveness: liveness::of(config.chain_id),
            store_depth: match config.confirmations {
                crate::config::Confirmations::Depth(d) if d >= 1 => Some(d),
                _ => None,
            },
        })
    }

    /// How many endpoints must agree on request logs.
    pub fn log_quorum(&self) -> usize {
        self.log_quorum
    }

    /// How many endpoints are configured.
    pub fn endpoint_count(&self) -> usize {
        self.endpoints.len()
    }

    /// `f` on every endpoint at once, one bounded attempt each (no failover): each endpoint's
    /// label and answer, in `rpc_urls` order. For reads that must agree across providers.
    pub async fn on_each_endpoint<T, F, Fut>(
        &self,
        method: &'static str,
        f: F,
    ) -> Vec<(String, Result<T, String>)>
    where
        F: Fn(DynProvider) -> Fut,
        Fut: Future<Output = Result<T, TransportError>>,
    {
        let f = &f;
        let attempts = self
            .endpoints
            .iter()
            .enumerate()
            .map(|(index, endpoint)| async move {
                let asked = self.liveness.asking(&endpoint.label);
                let answer = match tokio::time::timeout(
                    self.policy.attempt_timeout,
                    f(endpoint.provider.clone()),
                )
                .await
                {
                    Ok(Ok(value)) => {
                        self.record(index, method, RpcOutcome::Ok, asked);
                        Ok(value)
                    }
                    Ok(Err(e)) => {
                        self.record(index, method, classify(&e).outcome(), asked);
                        Err(multibridge_monitoring::redact_urls(&e.to_string()).into_owned())
                    }
                    Err(_) => {
                        self.record(index, method, RpcOutcome::Retryable, asked);
                        Err("timed out".to_owned())
                    }
                };
                (endpoint.label.clone(), answer)
            });
        futures::future::join_all(attempts).await
    }

    /// Count an attempt's outcome; a value or a refusal is the chain answering.
    fn record(
        &self,
        endpoint: usize,
        method: &'static str,
        outcome: RpcOutcome,
        asked: liveness::Attempt<'_>,
    ) {
        if matches!(outcome, RpcOutcome::Ok | RpcOutcome::Fatal) {
            asked.answered();
        } else {
            asked.failed();
        }
        self.metrics.rpc(endpoint, method, outcome);
    }

    /// Whether this chain answers the process's calls (shared by every client of the chain).
    pub fn liveness(&self) -> std::sync::Arc<liveness::Liveness> {
        self.liveness.clone()
    }

    /// This chain's metrics.
    pub fn metrics(&self) -> &ChainMetrics {
        &self.metrics
    }

    /// The views of this chain's bridge contract.
    pub fn views(&self) -> BridgeViews<'_> {
        BridgeViews::new(self)
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

    /// The highest block that counts as final under `confirmations`, given the latest `head`
    /// (a `finalized` chain is asked for its finalized block).
    pub async fn safe_head(
        &self,
        head: u64,
        confirmations: crate::config::Confirmations,
    ) -> Result<u64, ChainError> {
        match confirmations {
            crate::config::Confirmations::Depth(d) => Ok(head.saturating_sub(d)),
            crate::config::Confirmations::Finalized => Ok(self
                .call("eth_getBlockByNumber", |p| async move {
                    p.get_block_by_number(alloy::eips::BlockNumberOrTag::Finalized)
                        .await
                })
                .await?
                .map_or(0, |b| b.header.number)
                .min(head)),
        }
    }

    /// `eth_getLogs` of `filter`, with failover (the node's answer as it is: callers drop
    /// `removed` logs and logs of other addresses themselves). A narrow range of confirmed
    /// blocks is answered from the logs every client of the chain in the process shares
    /// ([`shared_reads::LogStore`]); anything else is read from the node.
    pub async fn logs(&self, filter: &Filter) -> Result<Vec<Log>, ChainError> {
        if let Some(answer) = self.logs_from_store(filter).await {
            return answer;
        }
        self.logs_from_node(filter).await
    }

    /// [`logs`](Self::logs) for a reader that follows the head (the guardian's watch of new
    /// releases): a range ending near the shared head is answered from one read, at that head,
    /// of every such reader's contracts and events in the process ([`head_logs`]; counted as
    /// `rpc_shared_reads_total{read="head logs"}`); anything else as [`logs`](Self::logs).
    pub async fn logs_at_head(&self, filter: &Filter) -> Result<Vec<Log>, ChainError> {
        if let Some(answer) = self.logs_in_head_window(filter).await {
            return answer;
        }
        self.logs(filter).await
    }

    /// [`logs_at_head`](Self::logs_at_head) from the window only: `None` where the window does
    /// not serve the filter (a range reaching further back than it does, a window paused after
    /// a failure), so a reader that can do without asks no node of its own.
    pub async fn logs_in_head_window(
        &self,
        filter: &Filter,
    ) -> Option<Result<Vec<Log>, ChainError>> {
        let head = self.head().await.ok()?;
        let window = &self.shared.head_logs;
        let _fetching = window.fetching.lock().await;
        match window.plan(filter, head) {
            head_logs::HeadPlan::Pass => None,
            head_logs::HeadPlan::Held(logs) => {
                self.metrics.shared_read("head logs");
                Some(Ok(logs))
            }
            head_logs::HeadPlan::Read(read) => match self.logs_from_node(&read.filter()).await {
                Ok(logs) => {
                    let answer = head_logs::matching(filter, &logs);
                    window.keep(&read, logs);
                    Some(Ok(answer))
                }
                Err(e) => {
                    // Every reader's contracts may be what failed (an answer over the bound):
                    // each reader's own, narrower read may pass.
                    tracing::debug!(chain = %self.role, from = read.from, head = read.head, error = %e, "a read of the head's events for every reader failed; each reads its own");
                    self.metrics.shared_read("head logs read failed");
                    window.failed();
                    None
                }
            },
        }
    }

    /// `eth_getLogs` of `filter` from the node, with failover.
    async fn logs_from_node(&self, filter: &Filter) -> Result<Vec<Log>, ChainError> {
        let logs = self
            .call("eth_getLogs", |p| {
                let filter = filter.clone();
                async move { p.get_logs(&filter).await }
            })
            .await?;
        // Every reader sizes its ranges to about `TARGET_LOGS`: an answer far above it is a
        // range that escaped its bound, and the relay's memory peak (issue 54).
        if logs.len() > logs::TARGET_LOGS.saturating_mul(4) {
            tracing::warn!(
                chain = %self.role,
                logs = logs.len(),
                from = ?filter.get_from_block(),
                to = ?filter.get_to_block(),
                addresses = filter.address.len(),
                topics = filter.topics[0].len(),
                "an eth_getLogs answer far above the target size"
            );
        }
        Ok(logs)
    }

    /// [`logs`](Self::logs) through the shared store, or `None` where it does not serve (each
    /// such read counted by why: `rpc_shared_reads_total{read="logs passed: …"}`).
    async fn logs_from_store(&self, filter: &Filter) -> Option<Result<Vec<Log>, ChainError>> {
        let passed = |why: shared_reads::Pass| {
            self.metrics.shared_read(why.label());
            None
        };
        // A chain the store never serves (no depth, or `finalized`) is not counted: every read
        // of it would be.
        let depth = self.store_depth?;
        if filter.get_to_block().is_none() {
            return passed(shared_reads::Pass::NoRange);
        }
        let Some(confirmed) = self
            .head()
            .await
            .ok()
            .and_then(|head| head.checked_sub(depth))
        else {
            return passed(shared_reads::Pass::NoHead);
        };
        let store = &self.shared.logs;
        let _fetching = store.fetching.lock().await;
        match store.plan(filter, confirmed) {
            shared_reads::Plan::Pass(why) => passed(why),
            shared_reads::Plan::Held => {
                self.metrics.shared_read("logs");
                Some(Ok(store.answer(filter)))
            }
            shared_reads::Plan::Read {
                from,
                to,
                addresses,
                generation,
            } => {
                let every = Filter::new()
                    .address(addresses)
                    .from_block(from)
                    .to_block(to);
                match self.logs_from_node(&every).await {
                    Ok(logs) => {
                        // More than the store holds: the asker reads its own range.
                        if store.keep(from, to, generation, logs) {
                            Some(Ok(store.answer(filter)))
                        } else {
                            passed(shared_reads::Pass::NotKept)
                        }
                    }
                    Err(e) => {
                        // Every contract's logs may be what failed (an answer over the bound):
                        // the asker's own, narrower read may pass.
                        tracing::debug!(chain = %self.role, from, to, error = %e, "a read of every contract's logs failed; the asker reads its own range");
                        self.metrics.shared_read("logs read failed");
                        store.failed();
                        None
                    }
                }
            }
        }
    }

    /// How far below the head the logs every client of this chain shares begin (the chain's
    /// confirmations, when at least 1 and not `finalized`): a reader that may wait that long
    /// reads up to the head less this and is answered from the shared read.
    pub fn shared_log_depth(&self) -> Option<u64> {
        self.store_depth
    }

    /// Drop the shared store's logs from `block` on (an asker that doubts what it was answered,
    /// e.g. a nonce gap): the next read of those blocks asks the node.
    pub fn forget_logs_from(&self, block: u64) {
        self.shared.logs.forget_from(block);
    }

    /// The latest block's figures, with failover: read once a block for every client of the
    /// chain in the process (an answer serves while it is at or past the newest head the process
    /// read or was pushed, for at most [`shared_reads::LATEST_BLOCK_FRESH_FOR`]). It does not
    /// read the head itself: behind a slow endpoint that was one more round trip before every
    /// fee quote.
    pub async fn latest_block(&self) -> Result<shared_reads::LatestBlock, ChainError> {
        let head = self.newest_known_head();
        let got = self
            .shared
            .latest_block
            .get_if(
                |(serves, _)| *serves >= head,
                || async {
                    let block = self
                        .call("eth_getBlockByNumber", |p| async move {
                            p.get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
                                .await
                        })
                        .await?;
                    block
                        .map(|b| {
                            let block = shared_reads::LatestBlock {
                                number: b.header.number,
                                timestamp: b.header.timestamp,
                                base_fee_per_gas: b.header.base_fee_per_gas,
                                gas_used: b.header.gas_used,
                                gas_limit: b.header.gas_limit,
                            };
                            (head.max(block.number), block)
                        })
                        .ok_or_else(|| ChainError::Unavailable {
                            chain: self.role,
                            method: "eth_getBlockByNumber",
                            attempts: 1,
                            last: "the node has no latest block".into(),
                        })
                },
            )
            .await;
        self.got_answer(got, "latest block", "eth_getBlockByNumber")
            .map(|(_, block)| block)
    }

    /// The node's suggested priority fee once `block` is the latest, with failover: read once a
    /// block for every sender of the chain in the process (each read it for every quote).
    pub async fn suggested_tip(&self, block: u64) -> Result<u128, ChainError> {
        let got = self
            .shared
            .tip
            .get_if(
                |(kept, _)| *kept >= block,
                || async {
                    self.call("eth_maxPriorityFeePerGas", |p| async move {
                        p.get_max_priority_fee_per_gas().await
                    })
                    .await
                    .map(|tip| (block, tip))
                },
            )
            .await;
        self.got_answer(got, "priority fee", "eth_maxPriorityFeePerGas")
            .map(|(_, tip)| tip)
    }

    /// Read what a sender prices a transaction by — the latest block and the suggested tip —
    /// into the shared answers, where the send finds them (a failure is left for the send to
    /// meet and report).
    pub async fn warm_fee_reads(&self) {
        if let Ok(block) = self.latest_block().await {
            let _ = self.suggested_tip(block.number).await;
        }
    }

    /// `bridge`'s storage slot that holds its threshold
    /// ([`multibridge_contracts::THRESHOLD_SLOT`]; packed with the counterpart, `paused` and the
    /// operators' vote bits): read once for every asker while no newer block is known — the
    /// head as last read or pushed — and for [`shared_reads::THRESHOLD_SLOT_FRESH_FOR`] at
    /// most, so the read a voter starts while it pre-checks
    /// ([`warm_vote_reads`](Self::warm_vote_reads)) is the one its vote's gas plan finds.
    pub async fn threshold_slot(
        &self,
        bridge: Address,
    ) -> Result<alloy::primitives::B256, ChainError> {
        let head = self.newest_known_head();
        let slot = self.shared.threshold_slot(bridge);
        let got = slot
            .get_if(
                |(serves, _)| *serves >= head,
                || async {
                    let index = U256::from(multibridge_contracts::THRESHOLD_SLOT);
                    let value = self
                        .call("eth_getStorageAt", |p| async move {
                            p.get_storage_at(bridge, index).await
                        })
                        .await?;
                    Ok::<_, ChainError>((head, alloy::primitives::B256::from(value)))
                },
            )
            .await;
        self.got_answer(got, "threshold slot", "eth_getStorageAt")
            .map(|(_, value)| value)
    }

    /// Read what a vote's plan and send on this chain will ask for — the latest block, the
    /// suggested tip and `bridge`'s threshold slot — into the shared answers, all at once: a
    /// voter starts this while it pre-checks, so its plan finds them instead of reading them
    /// one after the other (issue 54). Failures are left for the reads themselves to meet.
    pub async fn warm_vote_reads(&self, bridge: Address) {
        let _ = tokio::join!(self.warm_fee_reads(), self.threshold_slot(bridge));
    }

    /// Unix time of block `number` (0 when the node does not have it).
    pub async fn block_time(&self, number: u64) -> Result<u64, ChainError> {
        let block = self
            .call("eth_getBlockByNumber", |p| async move {
                p.get_block_by_number(alloy::eips::BlockNumberOrTag::Number(number))
                    .await
            })
            .await?;
        Ok(block.map_or(0, |b| b.header.timestamp))
    }

    /// How long until the head can next move, on a chain that makes blocks on a clock
    /// ([`head_cadence`]): until the shared head's hold ends, [`head_cadence::MARGIN`] before
    /// the next block is due (zero once it has ended). `None` without a learned clock, and once
    /// the block is overdue by more than an interval (a stalled chain keeps no clock).
    pub fn next_block_in(&self) -> Option<std::time::Duration> {
        let cadence = self
            .shared
            .cadence
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (until, interval) = (cadence.hold_until()?, cadence.interval()?);
        let now = std::time::Instant::now();
        if until.checked_add(interval).is_some_and(|late| now > late) {
            return None;
        }
        Some(until.saturating_duration_since(now))
    }

    /// The blocks the node pushes through the head subscription ([`head_feed`]), as they come:
    /// `changed()` returns when the next one does (never while the subscription is down, so a
    /// waiter bounds its wait by its own timer).
    pub fn pushed_heads(&self) -> tokio::sync::watch::Receiver<u64> {
        self.shared.pushed.subscribe()
    }

    /// The shared head as it serves now (fresh, or held until the next block is due), without
    /// reading or waiting; `None` when no answer serves.
    pub fn known_head(&self) -> Option<u64> {
        self.shared.head.peek().and_then(Result::ok)
    }

    /// The newest block the process knows this chain has: the highest head read (however long
    /// ago) or pushed; 0 before either. An answer read before it is from an older block.
    fn newest_known_head(&self) -> u64 {
        self.shared
            .newest_head
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(*self.shared.pushed.borrow())
    }

    /// The chain's latest block number, with failover: read once for every client of the
    /// chain in the process and served to them for [`shared_reads::HEAD_FRESH_FOR`] (a failure
    /// too, so askers do not queue up behind a dead endpoint) — and, on a chain that makes
    /// blocks on a clock, until shortly before its next block is due ([`head_cadence`]).
    pub async fn head(&self) -> Result<u64, ChainError> {
        // Before waiting for another task's read: the earliest this answer can be from.
        let asked = std::time::Instant::now();
        let got = self
            .shared
            .head
            .get(|| {
                self.call(
                    "eth_blockNumber",
                    |p| async move { p.get_block_number().await },
                )
            })
            .await;
        match got {
            shared_reads::Got::Read(answer) => {
                match &answer {
                    Ok(head) => self.shared.head_read(*head, asked),
                    Err(_) => self.shared.head.hold(None),
                }
                answer
            }
            shared_reads::Got::Shared { answer, age } => {
                let read = if age < shared_reads::HEAD_FRESH_FOR {
                    "head"
                } else {
                    "head between blocks"
                };
                self.shared_answer(read, "eth_blockNumber", answer, age)
            }
        }
    }

    /// What a shared slot gave: this task's own read as it is, or another task's answer through
    /// [`shared_answer`](Self::shared_answer).
    fn got_answer<T>(
        &self,
        got: shared_reads::Got<T, ChainError>,
        read: &str,
        method: &'static str,
    ) -> Result<T, ChainError> {
        match got {
            shared_reads::Got::Read(answer) => answer,
            shared_reads::Got::Shared { answer, age } => {
                self.shared_answer(read, method, answer, age)
            }
        }
    }

    /// An answer another task's read gave (`read`: the `rpc_shared_reads_total` label), counted;
    /// a failure as that read's `Unavailable`.
    fn shared_answer<T>(
        &self,
        read: &str,
        method: &'static str,
        answer: Result<T, String>,
        age: Duration,
    ) -> Result<T, ChainError> {
        self.metrics.shared_read(read);
        answer.map_err(|last| ChainError::Unavailable {
            chain: self.role,
            method,
            attempts: 0,
            last: format!("{last} (another task's read, {} ms ago)", age.as_millis()),
        })
    }

    /// `account`'s balance and the gas price, with failover: read once for every client of the
    /// chain in the process and served to them for [`shared_reads::WALLET_FRESH_FOR`] (every
    /// pair's watcher shows the operator's balance on the main chain of a hub).
    pub async fn wallet(&self, account: Address) -> Result<(U256, u128), ChainError> {
        let slot = self.shared.wallet(account);
        let got = slot
            .get(|| async {
                let balance = self
                    .call(
                        "eth_getBalance",
                        |p| async move { p.get_balance(account).await },
                    )
                    .await?;
                let gas_price = self
                    .call("eth_gasPrice", |p| async move { p.get_gas_price().await })
                    .await?;
                Ok::<_, ChainError>((balance, gas_price))
            })
            .await;
        self.got_answer(got, "balance and gas price", "eth_getBalance/eth_gasPrice")
    }

    /// The bridge's counters at the shared head or a later block, with failover: one batch per
    /// block for every task of the process that asks ([`bridge_counters`]), which reads the
    /// other bridges of the chain the process asks about too (a hub's main chain: every pair's
    /// in one batch a block); a decision that must see the latest state reads the view itself.
    pub async fn counters(&self) -> Result<bridge_counters::BridgeCounters, ChainError> {
        let head = self.head().await?;
        let bridge = self.bridge;
        self.shared.counters_asked(bridge);
        // Read in another bridge's batch under way: answered from it.
        self.shared.counters_landed(bridge, head).await;
        let got = self
            .shared
            .counters(bridge)
            .get_if(
                |kept| kept.block >= head,
                || async {
                    let batch = self.shared.counters_batch(bridge, head);
                    let read = self
                        .call("bridge counters", |p| {
                            let alongside = batch.alongside().to_vec();
                            async move {
                                bridge_counters::read_with(p, bridge, &alongside, head).await
                            }
                        })
                        .await?;
                    if read.alone {
                        self.shared.counters_alone();
                    }
                    for (other, counters) in read.others {
                        let kept = self
                            .shared
                            .counters(other)
                            // At the same block too: its slot went stale there (blocks
                            // slower than the counters' freshness), and this read is later.
                            .offer(counters, |new, kept| new.block >= kept.block);
                        if kept {
                            self.metrics.shared_read("bridge counters read alongside");
                        }
                    }
                    Ok::<_, ChainError>(read.own)
                },
            )
            .await;
        self.got_answer(got, "bridge counters", "bridge counters")
    }

    /// A call on this chain's bridge contract (typically a view), with failover.
    pub async fn bridge_call<T, F, Fut>(&self, method: &'static str, f: F) -> Result<T, ChainError>
    where
        F: Fn(Bridge::BridgeInstance<DynProvider>) -> Fut,
        Fut: Future<Output = Result<T, alloy::contract::Error>>,
    {
        self.bridge_call_classified(method, rpc_error::classify, f)
            .await
    }

    /// [`bridge_call`](Self::bridge_call) at a past block: a bridge without code there is an
    /// answer, not a failure to retry ([`rpc_error::classify_at_block`]).
    pub async fn bridge_call_at_block<T, F, Fut>(
        &self,
        method: &'static str,
        f: F,
    ) -> Result<T, ChainError>
    where
        F: Fn(Bridge::BridgeInstance<DynProvider>) -> Fut,
        Fut: Future<Output = Result<T, alloy::contract::Error>>,
    {
        self.bridge_call_classified(method, rpc_error::classify_at_block, f)
            .await
    }

    async fn bridge_call_classified<T, F, Fut>(
        &self,
        method: &'static str,
        classify: fn(&TransportError) -> rpc_error::ErrorClass,
        f: F,
    ) -> Result<T, ChainError>
    where
        F: Fn(Bridge::BridgeInstance<DynProvider>) -> Fut,
        Fut: Future<Output = Result<T, alloy::contract::Error>>,
    {
        let bridge = self.bridge;
        self.call_classified(method, classify, |p| {
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

    /// The endpoint a call goes to: the active one, unless the last probe demoted it and
    /// another is healthy — then the next healthy one in `rpc_urls` order becomes active.
    fn pick(&self) -> usize {
        let active = self.active_index();
        if !self.is_demoted(active) {
            return active;
        }
        let n = self.endpoints.len();
        let healthy = (1..n)
            .map(|step| active.saturating_add(step).checked_rem(n).unwrap_or(0))
            .find(|i| !self.is_demoted(*i));
        match healthy {
            Some(next) => {
                let _ = self.active.compare_exchange(
                    active,
                    next,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
                next
            }
            None => active,
        }
    }

    fn is_demoted(&self, index: usize) -> bool {
        self.demoted
            .get(index)
            .is_some_and(|d| d.load(Ordering::Relaxed))
    }

    /// Read every endpoint's head at once and judge each ([`health`]): demote the ones that do
    /// not answer, lag, claim a head beyond the others' or stand still while another moves,
    /// restore the ones that recovered, make the first healthy one in `rpc_urls` order the one
    /// in use, and publish each endpoint's head and health. Returns (label, health, head) per
    /// endpoint.
    ///
    /// The endpoints' answers are shared with every client of the chain in the process for
    /// [`shared_reads::PROBE_FRESH_FOR`]; each client judges them with its own rules and book.
    pub async fn probe_health(&self) -> Vec<(String, health::Health, Option<u64>)> {
        let got = self
            .shared
            .probe
            .get(|| async {
                Ok::<_, std::convert::Infallible>(match self.endpoints.as_slice() {
                    // One endpoint: its head is the chain's, which every client of the chain in
                    // the process already reads ([`head`](Self::head), held between blocks): an
                    // answer that still serves is the probe's (a probe of its own was a request a
                    // second more per pair, issue 54). What the rules judge of one endpoint —
                    // whether it answers — is in that read. Without one (or after a failure)
                    // the probe asks as before: one bounded attempt, no retries.
                    [only] if let Some(Ok(head)) = self.shared.head.peek() => {
                        vec![(only.label.clone(), Ok(head))]
                    }
                    _ => {
                        self.on_each_endpoint("eth_blockNumber", |p| async move {
                            p.get_block_number().await
                        })
                        .await
                    }
                })
            })
            .await;
        let answers = match got {
            shared_reads::Got::Read(Ok(answers)) => answers,
            shared_reads::Got::Read(Err(never)) => match never {},
            shared_reads::Got::Shared { answer, .. } => {
                self.metrics.shared_read("probe");
                answer.unwrap_or_default()
            }
        };
        let heads: Vec<Option<u64>> = answers
            .iter()
            .map(|(_, a)| a.as_ref().ok().copied())
            .collect();
        let verdicts = self
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .observe(std::time::Instant::now(), &heads, self.rules);
        let mut out = Vec::with_capacity(verdicts.len());
        for (index, ((label, _), (health, head))) in answers
            .into_iter()
            .zip(verdicts.into_iter().zip(heads))
            .enumerate()
        {
            let healthy = health.is_healthy();
            let was_demoted = self
                .demoted
                .get(index)
                .is_some_and(|d| d.swap(!healthy, Ordering::Relaxed));
            if was_demoted == healthy {
                if healthy {
                    tracing::info!(chain = %self.role, endpoint = %label, "rpc endpoint healthy again");
                } else {
                    tracing::warn!(chain = %self.role, endpoint = %label, health = health.label(), detail = ?health, head, "rpc endpoint demoted: calls go to a healthy endpoint");
                    self.metrics.endpoint_demoted(index);
                }
            }
            self.metrics.endpoint_health(index, head, healthy);
            out.push((label, health, head));
        }
        // Back to the most preferred healthy endpoint: a failover is for the outage, not for
        // good, and no endpoint becomes the one in use by what it claims (audit A3-M3).
        if let Some(preferred) = out.iter().position(|(_, health, _)| health.is_healthy()) {
            self.active.store(preferred, Ordering::Relaxed);
        }
        out
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
            let index = self.pick();
            let endpoint = &self.endpoints[index];
            let asked = self.liveness.asking(&endpoint.label);
            let class = match tokio::time::timeout(
                self.policy.attempt_timeout,
                f(endpoint.provider.clone()),
            )
            .await
            {
                Ok(Ok(value)) => {
                    self.record(index, method, RpcOutcome::Ok, asked);
                    return Ok(value);
                }
                Ok(Err(error)) => {
                    let class = classify(&error);
                    self.record(index, method, class.outcome(), asked);
                    if class == ErrorClass::Fatal {
                        return Err(ChainError::Rejected {
                            chain: self.role,
                            method,
                            source: error,
                        });
                    }
                    last = multibridge_monitoring::redact_urls(&format!(
                        "{}: {error}",
                        endpoint.label
                    ))
                    .into_owned();
                    class
                }
                Err(_) => {
                    self.record(index, method, RpcOutcome::Retryable, asked);
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
                // A node that refuses connections or times out is retried every half second at
                // most: a restarted node is used within that of answering (a rate limit backs
                // off further).
                let cap = if class == ErrorClass::RateLimited {
                    self.policy.max_backoff
                } else {
                    self.policy.max_backoff.min(UNREACHABLE_BACKOFF)
                };
                backoff = (backoff.saturating_mul(2)).min(cap);
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
            let asked = self.liveness.asking(&endpoint.label);
            let got = tokio::time::timeout(
                self.policy.attempt_timeout,
                endpoint.provider.get_chain_id(),
            )
            .await;
            let Ok(Ok(actual)) = got else {
                let outcome = match got {
                    Ok(Err(e)) => classify(&e).outcome(),
                    _ => RpcOutcome::Retryable,
                };
                self.record(index, "eth_chainId", outcome, asked);
                tracing::warn!(chain = %self.role, endpoint = %endpoint.label, "endpoint does not answer");
                continue;
            };
            self.record(index, "eth_chainId", RpcOutcome::Ok, asked);
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
mod tests;
