//! The relay's configuration file (TOML). One file per operator replica.
//!
//! The devnet writes these files; `multibridge config validate` parses one offline. Field names
//! are part of the operator interface: add fields with defaults, never rename.
//!
//! Every field can be overridden by an environment variable: `MULTIBRIDGE__` followed by the
//! field's path with `__` between levels, e.g. `MULTIBRIDGE__CHAINS__MAIN__CONFIRMATIONS=3` or
//! `MULTIBRIDGE__CHAINS__SERVICE__RPC_URLS='["http://10.0.0.5:8545"]'`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use alloy::primitives::Address;
use multibridge_contracts::{ChainRole, Lane};
use serde::{Deserialize, Serialize};

/// A whole relay configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The operator identity this replica signs for.
    pub operator: OperatorConfig,
    /// The two chains of the bridge pair.
    pub chains: Chains,
    /// Lanes this replica serves (default: both).
    #[serde(default = "default_lanes")]
    pub lanes: Vec<Lane>,
    /// Local request store.
    pub store: StoreConfig,
    /// Batching and sending of votes.
    #[serde(default)]
    pub voting: VotingSettings,
    /// The recovery worker.
    #[serde(default)]
    pub recovery: RecoverySettings,
    /// HTTP API (`/metrics`, `/healthz`, `/readyz`, `/status`).
    pub http: HttpConfig,
    /// The service registry on the main chain, if used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistryConfig>,
    /// etcd leadership; without it the replica runs standalone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd: Option<EtcdConfig>,
    /// State backups to off-chain storage and fast join (DESIGN §7); needs `[etcd]` and
    /// `[registry]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<crate::backup::BackupSettings>,
    /// The Service Registry Dashboard served on the HTTP API (on by default, read-only
    /// without an admin token).
    #[serde(
        default,
        skip_serializing_if = "crate::dashboard::DashboardSettings::is_default"
    )]
    pub dashboard: crate::dashboard::DashboardSettings,
    /// Deliberate misbehaviour for the test suite's invariant checks. Never set in production.
    #[serde(default, skip_serializing_if = "FaultInjection::is_off")]
    pub fault_injection: FaultInjection,
}

/// Deliberate misbehaviour, for tests only.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultInjection {
    /// Vote every request with its amount increased by one (an "invalid attempt").
    #[serde(default)]
    pub tamper_votes: bool,
}

impl FaultInjection {
    /// Whether nothing is injected.
    pub fn is_off(&self) -> bool {
        !self.tamper_votes
    }
}

fn default_lanes() -> Vec<Lane> {
    Lane::ALL.to_vec()
}

/// The operator and how to get its key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// Expected operator address; startup fails if the key does not match it.
    pub address: Address,
    /// Where the signing key comes from.
    pub signer: SignerConfig,
}

/// Signing key source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SignerConfig {
    /// Encrypted JSON keystore (v3) with its password in a file or an environment variable.
    Keystore {
        /// Path of the keystore file.
        path: PathBuf,
        /// File holding the password (first line).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password_file: Option<PathBuf>,
        /// Environment variable holding the password.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password_env: Option<String>,
    },
    /// A raw hex private key. Devnet only: refused unless the chain ids are devnet ones.
    DevKey {
        /// 0x-prefixed 32-byte hex key.
        private_key: Secret,
    },
    /// A secp256k1 key inside a PKCS#11 token (an HSM), found by label; the key never leaves
    /// the token (`multibridge hsm create-key` makes one).
    Pkcs11 {
        /// The vendor's PKCS#11 module (e.g. `/usr/lib/softhsm/libsofthsm2.so`).
        module: PathBuf,
        /// The token's label.
        token_label: String,
        /// The key's label.
        key_label: String,
        /// File holding the user PIN (first line).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pin_file: Option<PathBuf>,
        /// Environment variable holding the user PIN.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pin_env: Option<String>,
    },
    /// A secp256k1 key (`ECC_SECG_P256K1`) in AWS KMS; credentials from the standard AWS chain.
    AwsKms {
        /// Key id, ARN or alias.
        key_id: String,
        /// Region (default: the AWS chain's, e.g. `AWS_REGION`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        region: Option<String>,
        /// Endpoint (default: the region's; a VPC endpoint, or a test stand-in).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint_url: Option<String>,
    },
}

/// A string that never appears in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// The two chains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chains {
    /// The main (parent) chain.
    pub main: ChainConfig,
    /// The service (child) chain.
    pub service: ChainConfig,
}

impl Chains {
    /// The chain playing `role`.
    pub fn get(&self, role: ChainRole) -> &ChainConfig {
        match role {
            ChainRole::Main => &self.main,
            ChainRole::Service => &self.service,
        }
    }
}

/// One chain: where to reach it and its bridge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// Expected chain id; startup fails on a mismatch.
    pub chain_id: u64,
    /// RPC endpoints in order of preference (failover goes down the list).
    pub rpc_urls: Vec<String>,
    /// The bridge contract on this chain.
    pub bridge: Address,
    /// Blocks a request must be buried under before it is voted on, or `"finalized"`: only
    /// what the chain's finalized block includes (audit M-8).
    #[serde(default = "default_confirmations")]
    pub confirmations: Confirmations,
    /// First block to index (the bridge's deployment block).
    #[serde(default)]
    pub start_block: u64,
    /// How often the head is polled, in milliseconds.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Largest block range of one `eth_getLogs`.
    #[serde(default = "default_max_block_range")]
    pub max_block_range: u64,
    /// No transaction on this chain bids more than this fee cap, in gwei, whatever its RPC says
    /// the base fee or tip is (audit M-7).
    #[serde(default = "default_max_fee_gwei")]
    pub max_fee_gwei: u64,
    /// How many of `rpc_urls` must return the same request logs before they are indexed (1: the
    /// endpoint in use alone). With independent providers, one that lies or is broken cannot
    /// make this relay vote a request the chain does not hold (audit M-7).
    #[serde(default = "default_log_quorum")]
    pub log_quorum: usize,
}

fn default_log_quorum() -> usize {
    1
}

fn default_max_fee_gwei() -> u64 {
    1_000
}

fn default_confirmations() -> Confirmations {
    Confirmations::Depth(1)
}

/// When a block counts as final: a number of blocks below the head, or the chain's own
/// `finalized` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ConfirmationsRepr", into = "ConfirmationsRepr")]
pub enum Confirmations {
    /// This many blocks below the head.
    Depth(u64),
    /// The block the chain reports as `finalized`.
    Finalized,
}

impl Confirmations {
    /// The fixed depth, if it is one.
    pub fn depth(self) -> Option<u64> {
        match self {
            Self::Depth(d) => Some(d),
            Self::Finalized => None,
        }
    }
}

impl std::fmt::Display for Confirmations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Depth(d) => write!(f, "{d}"),
            Self::Finalized => f.write_str("finalized"),
        }
    }
}

/// How `confirmations` is written in the file: a number or `"finalized"`.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum ConfirmationsRepr {
    Depth(u64),
    Named(String),
}

impl TryFrom<ConfirmationsRepr> for Confirmations {
    type Error = String;

    fn try_from(repr: ConfirmationsRepr) -> Result<Self, String> {
        match repr {
            ConfirmationsRepr::Depth(d) => Ok(Self::Depth(d)),
            ConfirmationsRepr::Named(s) if s == "finalized" => Ok(Self::Finalized),
            ConfirmationsRepr::Named(s) => Err(format!(
                "confirmations must be a number of blocks or \"finalized\", not {s:?}"
            )),
        }
    }
}

impl From<Confirmations> for ConfirmationsRepr {
    fn from(c: Confirmations) -> Self {
        match c {
            Confirmations::Depth(d) => Self::Depth(d),
            Confirmations::Finalized => Self::Named("finalized".to_owned()),
        }
    }
}
fn default_poll_interval_ms() -> u64 {
    500
}
fn default_max_block_range() -> u64 {
    1_000
}

/// Batching and sending of votes (per lane).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VotingSettings {
    /// Most requests in one vote transaction (1–64; the bridge takes at most 64).
    pub batch_size: usize,
    /// How long to wait for more requests before sending a part-full batch, ms.
    pub batch_wait_ms: u64,
    /// Pause before retrying a request the destination cannot execute yet, seconds.
    pub retry_after_secs: u64,
    /// Most vote transactions of one lane unmined at once. More only queue in the mempool,
    /// where a rising base fee strands them; fewer leave block space unused.
    pub max_in_flight: usize,
    /// A vote transaction unmined this long is re-sent with higher fees, seconds.
    pub stuck_after_secs: u64,
    /// Percent added to a vote's gas estimate. The estimate already covers both paths a vote
    /// can take when mined (recording, or executing after other operators' votes landed first);
    /// the margin covers what changes in between. A block holds transactions by their gas
    /// limits, so a large margin leaves block space unused.
    pub gas_margin_percent: u64,
    /// For each request the first `threshold` operators (a ranking every operator computes
    /// alike) vote at once; the others vote only if it is still open this many seconds after
    /// they stored it. Votes arriving after the threshold cost gas and block space for nothing;
    /// this keeps them from being sent, at the price of this delay for the requests a down
    /// operator was first for. 0: every operator votes at once.
    pub standby_after_secs: u64,
}

impl Default for VotingSettings {
    fn default() -> Self {
        Self {
            batch_size: 64,
            batch_wait_ms: 200,
            retry_after_secs: 5,
            max_in_flight: 24,
            stuck_after_secs: 15,
            gas_margin_percent: 5,
            standby_after_secs: 5,
        }
    }
}

/// The recovery worker (per lane).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecoverySettings {
    /// Time between recovery ticks, ms (a lane is stalled when its lower handle nonce did not
    /// move over one interval).
    pub interval_ms: u64,
    /// Most source blocks per `eth_getLogs` of a recovery scan.
    pub stride_blocks: u64,
    /// Most requests handed to the voter per round.
    pub max_per_round: usize,
    /// How often the registry is polled for claims, ms.
    pub claims_poll_ms: u64,
}

impl Default for RecoverySettings {
    fn default() -> Self {
        Self {
            interval_ms: 5_000,
            stride_blocks: 1_000,
            max_per_round: 1_024,
            claims_poll_ms: 1_000,
        }
    }
}

impl VotingSettings {
    /// The voter's runtime tuning.
    pub fn voter(&self) -> crate::voter::VoterConfig {
        use std::time::Duration;
        crate::voter::VoterConfig {
            batch_size: self.batch_size,
            batch_wait: Duration::from_millis(self.batch_wait_ms),
            retry_after: Duration::from_secs(self.retry_after_secs),
            max_in_flight: self.max_in_flight,
            gas_margin_percent: self.gas_margin_percent,
            standby_after: Duration::from_secs(self.standby_after_secs),
        }
    }

    /// The sender's runtime policy.
    pub fn sender(&self, chain: &ChainConfig) -> crate::chain::sender::SenderPolicy {
        crate::chain::sender::SenderPolicy {
            stuck_after: std::time::Duration::from_secs(self.stuck_after_secs),
            gas_margin_percent: self.gas_margin_percent,
            fees: crate::chain::fees::FeePolicy {
                max_fee_per_gas: u128::from(chain.max_fee_gwei).saturating_mul(1_000_000_000),
                ..Default::default()
            },
        }
    }
}

impl RecoverySettings {
    /// The recovery worker's runtime tuning.
    pub fn worker(&self) -> multibridge_recovery::RecoveryConfig {
        multibridge_recovery::RecoveryConfig {
            interval: std::time::Duration::from_millis(self.interval_ms),
            stride_blocks: self.stride_blocks,
            max_per_round: self.max_per_round,
            ..Default::default()
        }
    }
}

/// Local request store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// SQLite database file.
    pub path: PathBuf,
}

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

/// The service registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// `ServiceRegistry` address on the main chain.
    pub address: Address,
    /// The advertised URLs of this operator's other replicas. A lane leader's URL read from
    /// etcd is published only if it is one of these or this replica's own (audit M-5: whoever
    /// can write to etcd cannot make the operator's key publish another URL).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replica_urls: Vec<String>,
}

/// etcd leadership.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// Client endpoints of the cluster members.
    pub endpoints: Vec<String>,
    /// Key prefix for elections and progress.
    #[serde(default = "default_etcd_prefix")]
    pub prefix: String,
    /// Leader lease TTL in seconds.
    #[serde(default = "default_lease_ttl_secs")]
    pub lease_ttl_secs: u64,
    /// This replica's name in elections and progress records (default: its advertised URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<String>,
    /// Who competes for a lane: `operator` (the replicas of this operator; default) or `lane`
    /// (every operator's replicas: one active voter per lane, for threshold-1 deployments).
    #[serde(default)]
    pub scope: ElectionScope,
    /// TLS to the cluster (the endpoints are then `https://`), with a client certificate when
    /// the cluster runs `--client-cert-auth` (audit M-5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<EtcdTlsConfig>,
    /// etcd user (with `auth enable` on the cluster); its password from `password_file` (first
    /// line) or `password_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// File holding the etcd user's password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the etcd user's password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
}

/// TLS material for etcd, as PEM files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdTlsConfig {
    /// The CA that signed the members' server certificates.
    pub ca_file: PathBuf,
    /// This replica's client certificate (with `key_file`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// The client certificate's private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// The name the members' certificates carry, when it is not the endpoints' host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

/// Who competes in one election.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ElectionScope {
    /// The replicas of one operator (every operator votes through its leader).
    #[default]
    Operator,
    /// Every replica of every operator: one active voter per lane (threshold-1 deployments).
    Lane,
}

fn default_etcd_prefix() -> String {
    "/multibridge".to_owned()
}
fn default_lease_ttl_secs() -> u64 {
    3
}

/// Prefix of environment overrides (`MULTIBRIDGE__CHAINS__MAIN__CONFIRMATIONS=3`).
pub const ENV_PREFIX: &str = "MULTIBRIDGE__";

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said, with line and column.
        message: String,
    },
    /// The file parsed but a value is unusable.
    #[error("invalid config {path}: {field}: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Dotted field name.
        field: &'static str,
        /// What is wrong and how to fix it.
        problem: String,
    },
}

impl Config {
    /// Read a config file, apply `MULTIBRIDGE__…` environment overrides, and validate the
    /// result (offline checks only).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        use figment::Figment;
        use figment::providers::{Env, Format, Toml};

        // Read first so a missing file is named as such, not as a missing field.
        std::fs::metadata(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config: Config = Figment::from(Toml::file(path))
            .merge(Env::prefixed(ENV_PREFIX).split("__"))
            .extract()
            .map_err(|e| ConfigError::Parse {
                path: path.to_owned(),
                message: e.to_string(),
            })?;
        config.validate(path)?;
        Ok(config)
    }

    /// Render as TOML.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string_pretty(self)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |field: &'static str, problem: String| ConfigError::Invalid {
            path: path.to_owned(),
            field,
            problem,
        };
        if self.lanes.is_empty() {
            return Err(invalid("lanes", "serve at least one lane".into()));
        }
        if !self.http.listen.ip().is_loopback() && !self.http.expose {
            return Err(invalid(
                "http.listen",
                format!(
                    "{} is not a loopback address: /metrics and /status (operator address, balances, RPC host names, waiting reasons) would be served to the network; bind 127.0.0.1 (behind a reverse proxy if others must read it) or set http.expose = true",
                    self.http.listen
                ),
            ));
        }
        for (field, confirmations_field, chain) in [
            (
                "chains.main",
                "chains.main.confirmations",
                &self.chains.main,
            ),
            (
                "chains.service",
                "chains.service.confirmations",
                &self.chains.service,
            ),
        ] {
            // Audit M-8: with no confirmations a source reorg has the relays vote for a request
            // that no longer exists.
            if chain.confirmations == Confirmations::Depth(0)
                && !crate::keys::is_devnet_chain(chain.chain_id)
            {
                return Err(invalid(
                    confirmations_field,
                    format!(
                        "0 is only accepted on devnet chains (31337-31399), chain {} is not: \
                         a reorg could remove a request after the relays voted for it; \
                         wait for at least the chain's usual reorg depth",
                        chain.chain_id
                    ),
                ));
            }
            // Audit L-8: a tampering relay spends its operator's one vote on every nonce.
            if self.fault_injection.tamper_votes && !crate::keys::is_devnet_chain(chain.chain_id) {
                return Err(invalid(
                    "fault_injection.tamper_votes",
                    format!(
                        "fault injection is for the test suite on devnet chains (31337-31399) only, chain {} is not",
                        chain.chain_id
                    ),
                ));
            }
            if chain.log_quorum == 0 || chain.log_quorum > chain.rpc_urls.len().max(1) {
                return Err(invalid(
                    "chains.*.log_quorum",
                    format!(
                        "chain {}: log_quorum {} must be between 1 and the number of rpc_urls ({})",
                        chain.chain_id,
                        chain.log_quorum,
                        chain.rpc_urls.len()
                    ),
                ));
            }
            if chain.rpc_urls.is_empty() {
                return Err(invalid(
                    field,
                    "rpc_urls is empty: give at least one URL".into(),
                ));
            }
            if chain.bridge == Address::ZERO {
                return Err(invalid(field, "bridge is the zero address".into()));
            }
            if chain.max_block_range == 0 {
                return Err(invalid(field, "max_block_range must be at least 1".into()));
            }
        }
        let v = &self.voting;
        if !(1..=64).contains(&v.batch_size) {
            return Err(invalid(
                "voting.batch_size",
                format!(
                    "{} is outside 1..=64 (the bridge takes at most 64)",
                    v.batch_size
                ),
            ));
        }
        if v.max_in_flight == 0 {
            return Err(invalid("voting.max_in_flight", "must be at least 1".into()));
        }
        if v.stuck_after_secs == 0 || v.retry_after_secs == 0 {
            return Err(invalid(
                "voting",
                "stuck_after_secs and retry_after_secs must be at least 1".into(),
            ));
        }
        let r = &self.recovery;
        if r.interval_ms < 100
            || r.stride_blocks == 0
            || r.max_per_round == 0
            || r.claims_poll_ms < 100
        {
            return Err(invalid(
                "recovery",
                "interval_ms and claims_poll_ms must be at least 100, stride_blocks and max_per_round at least 1".into(),
            ));
        }
        if self.http.ready_stale_secs == 0 || self.http.watch_interval_ms < 100 {
            return Err(invalid(
                "http",
                "ready_stale_secs must be at least 1 and watch_interval_ms at least 100".into(),
            ));
        }
        if self.http.watch_interval_ms / 1000 >= self.http.ready_stale_secs {
            return Err(invalid(
                "http",
                format!(
                    "watch_interval_ms {} is not below ready_stale_secs {}: the relay would flap between ready and not ready",
                    self.http.watch_interval_ms, self.http.ready_stale_secs
                ),
            ));
        }
        if self.chains.main.chain_id == self.chains.service.chain_id {
            return Err(invalid(
                "chains",
                format!(
                    "main and service have the same chain id {}: votes would not be domain-separated",
                    self.chains.main.chain_id
                ),
            ));
        }
        match &self.operator.signer {
            SignerConfig::Keystore {
                password_file: None,
                password_env: None,
                ..
            } => {
                return Err(invalid(
                    "operator.signer",
                    "a keystore needs password_file or password_env".into(),
                ));
            }
            SignerConfig::Pkcs11 {
                pin_file: None,
                pin_env: None,
                ..
            } => {
                return Err(invalid(
                    "operator.signer",
                    "a PKCS#11 key needs pin_file or pin_env".into(),
                ));
            }
            SignerConfig::AwsKms { key_id, .. } if key_id.trim().is_empty() => {
                return Err(invalid(
                    "operator.signer.key_id",
                    "must not be empty".into(),
                ));
            }
            _ => {}
        }
        if let Some(etcd) = &self.etcd {
            if etcd.endpoints.is_empty() {
                return Err(invalid(
                    "etcd.endpoints",
                    "give at least one endpoint or drop [etcd]".into(),
                ));
            }
            if etcd.lease_ttl_secs < 2 {
                return Err(invalid(
                    "etcd.lease_ttl_secs",
                    "must be at least 2 seconds".into(),
                ));
            }
            let https = etcd
                .endpoints
                .iter()
                .filter(|e| e.starts_with("https://"))
                .count();
            match &etcd.tls {
                Some(_) if https != etcd.endpoints.len() => {
                    return Err(invalid(
                        "etcd.endpoints",
                        "with [etcd.tls] every endpoint must be https://".into(),
                    ));
                }
                None if https > 0 => {
                    return Err(invalid(
                        "etcd.tls",
                        "https:// endpoints need [etcd.tls] with at least ca_file".into(),
                    ));
                }
                _ => {}
            }
            if let Some(tls) = &etcd.tls {
                if tls.cert_file.is_some() != tls.key_file.is_some() {
                    return Err(invalid(
                        "etcd.tls",
                        "cert_file and key_file go together (a client certificate and its key)"
                            .into(),
                    ));
                }
                for (field, file) in [
                    ("etcd.tls.ca_file", Some(&tls.ca_file)),
                    ("etcd.tls.cert_file", tls.cert_file.as_ref()),
                    ("etcd.tls.key_file", tls.key_file.as_ref()),
                ] {
                    if let Some(file) = file
                        && let Err(e) = std::fs::metadata(file)
                    {
                        return Err(invalid(
                            field,
                            format!("cannot read {}: {e}", file.display()),
                        ));
                    }
                }
            }
            if etcd.username.is_some()
                && etcd.password_file.is_none()
                && etcd.password_env.is_none()
            {
                return Err(invalid(
                    "etcd.username",
                    "an etcd user needs password_file or password_env".into(),
                ));
            }
        }
        if let Some((field, problem)) = self.dashboard.problem() {
            return Err(invalid(field, problem));
        }
        if let Some(backup) = &self.backup {
            if self.etcd.is_none() {
                return Err(invalid(
                    "backup",
                    "backups need [etcd] (the state versions live there)".into(),
                ));
            }
            if self.registry.is_none() {
                return Err(invalid(
                    "backup",
                    "backups need [registry] (the encrypted backup log is stored there)".into(),
                ));
            }
            if let Some((field, problem)) = backup.problem() {
                return Err(invalid(field, problem));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config file for chains `main_id` and `service_id` with `confirmations` on both.
    fn write(dir: &Path, main_id: u64, service_id: u64, confirmations: u64) -> std::path::PathBuf {
        write_with(
            dir,
            main_id,
            service_id,
            confirmations,
            "listen = \"127.0.0.1:0\"",
        )
    }

    /// [`write`] with `http` as the body of the `[http]` table.
    fn write_with(
        dir: &Path,
        main_id: u64,
        service_id: u64,
        confirmations: u64,
        http: &str,
    ) -> std::path::PathBuf {
        let path = dir.join(format!(
            "relay-{main_id}-{confirmations}-{}.toml",
            http.len()
        ));
        let text = format!(
            r#"
            [operator]
            address = "0x0000000000000000000000000000000000000007"
            signer = {{ kind = "dev-key", private_key = "0x00" }}
            [chains.main]
            chain_id = {main_id}
            rpc_urls = ["http://127.0.0.1:1"]
            bridge = "0x0000000000000000000000000000000000000001"
            confirmations = {confirmations}
            [chains.service]
            chain_id = {service_id}
            rpc_urls = ["http://127.0.0.1:2"]
            bridge = "0x0000000000000000000000000000000000000002"
            confirmations = {confirmations}
            [store]
            path = "unused.sqlite"
            [http]
            {http}
            "#
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Audit M-8: with 0 confirmations a source reorg makes the relays vote for a request that
    /// no longer exists; only devnet chains may run that way.
    #[test]
    fn zero_confirmations_are_refused_outside_devnet_chains() {
        let dir = tempfile::tempdir().unwrap();
        Config::load(&write(dir.path(), 31_337, 31_338, 0)).unwrap();
        Config::load(&write(dir.path(), 1, 8_217, 12)).unwrap();
        let err = Config::load(&write(dir.path(), 1, 8_217, 0)).unwrap_err();
        match err {
            ConfigError::Invalid { field, problem, .. } => {
                assert_eq!(field, "chains.main.confirmations");
                assert!(problem.contains("devnet"), "{problem}");
            }
            other => panic!("{other}"),
        }
    }

    /// Audit M-1: the API binds to loopback unless exposing it is asked for by name.
    #[test]
    fn the_http_api_binds_loopback_by_default_and_exposing_it_is_explicit() {
        let dir = tempfile::tempdir().unwrap();
        let c = Config::load(&write_with(dir.path(), 1, 8_217, 12, "")).unwrap();
        assert_eq!(c.http.listen, "127.0.0.1:9464".parse().unwrap());
        let err = Config::load(&write_with(
            dir.path(),
            1,
            8_217,
            12,
            "listen = \"0.0.0.0:9464\"",
        ))
        .unwrap_err();
        match err {
            ConfigError::Invalid { field, problem, .. } => {
                assert_eq!(field, "http.listen");
                assert!(problem.contains("http.expose = true"), "{problem}");
            }
            other => panic!("{other}"),
        }
        let c = Config::load(&write_with(
            dir.path(),
            1,
            8_217,
            12,
            "listen = \"0.0.0.0:9464\"\nexpose = true",
        ))
        .unwrap();
        assert!(c.http.expose);
    }

    /// Audit L-8: the fault-injection switch (also settable from the environment) is refused
    /// outside devnet chains.
    #[test]
    fn fault_injection_is_refused_outside_devnet_chains() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), 1, 8_217, 12);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            format!("{text}\n[fault_injection]\ntamper_votes = true\n"),
        )
        .unwrap();
        match Config::load(&path).unwrap_err() {
            ConfigError::Invalid { field, .. } => assert_eq!(field, "fault_injection.tamper_votes"),
            other => panic!("{other}"),
        }
        let path = write(dir.path(), 31_337, 31_338, 1);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            format!("{text}\n[fault_injection]\ntamper_votes = true\n"),
        )
        .unwrap();
        assert!(Config::load(&path).unwrap().fault_injection.tamper_votes);
    }

    /// Audit M-8: `confirmations = "finalized"` waits for the chain's finalized block; any other
    /// word is a named error.
    #[test]
    fn confirmations_may_be_finalized() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), 1, 8_217, 12);
        let text = std::fs::read_to_string(&path).unwrap();
        let finalized = text.replacen("confirmations = 12", "confirmations = \"finalized\"", 1);
        std::fs::write(&path, &finalized).unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.chains.main.confirmations, Confirmations::Finalized);
        assert_eq!(c.chains.service.confirmations, Confirmations::Depth(12));
        let round_trip = toml::to_string(&c).unwrap();
        assert!(
            round_trip.contains("confirmations = \"finalized\""),
            "{round_trip}"
        );
        std::fs::write(
            &path,
            text.replacen("confirmations = 12", "confirmations = \"safe\"", 1),
        )
        .unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(err.contains("finalized"), "{err}");
    }

    /// Audit M-5: TLS endpoints and material are checked when the config is read.
    #[test]
    fn etcd_tls_and_user_settings_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::read_to_string(write(dir.path(), 1, 8_217, 12)).unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not checked here").unwrap();
        let case = |etcd: &str| {
            let path = dir.path().join("etcd.toml");
            std::fs::write(&path, format!("{base}\n[etcd]\n{etcd}\n")).unwrap();
            Config::load(&path)
        };
        let field = |r: Result<Config, ConfigError>| match r {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(case("endpoints = [\"https://e:2379\"]")), "etcd.tls");
        let tls = format!("[etcd.tls]\nca_file = {:?}", ca.display().to_string());
        assert_eq!(
            field(case(&format!("endpoints = [\"http://e:2379\"]\n{tls}"))),
            "etcd.endpoints"
        );
        assert_eq!(
            field(case(&format!(
                "endpoints = [\"https://e:2379\"]\n{tls}\ncert_file = {:?}",
                ca.display().to_string()
            ))),
            "etcd.tls"
        );
        assert_eq!(
            field(case(
                "endpoints = [\"http://e:2379\"]\nusername = \"relay\""
            )),
            "etcd.username"
        );
        let c = case(&format!(
            "endpoints = [\"https://e:2379\"]\nusername = \"relay\"\npassword_env = \"P\"\n{tls}"
        ))
        .unwrap();
        assert!(c.etcd.unwrap().tls.is_some());
    }
}
