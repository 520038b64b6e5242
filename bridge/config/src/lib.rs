//! The relay's configuration file (TOML), one file per operator replica — the ground floor of
//! the relay's crates: it imports no component, and every component takes its own section.
//!
//! | module | section |
//! |---|---|
//! | this file | the whole [`Config`], loading with environment overrides, [`ConfigError`] |
//! | [`operator`] | `[operator]`: the address and its signer ([`SignerConfig`]), [`Secret`], [`read_secret`] |
//! | [`chain`] | `[chains.main]`, `[chains.service]`: endpoints, bridge, [`Confirmations`] |
//! | [`voting`], [`recovery`] | `[voting]`, `[recovery]`: tuning of the voter and the recovery worker |
//! | [`store`], [`http`], [`registry`], [`etcd`] | one section each |
//! | [`backup`], [`dashboard`] | `[backup]` (state backups, fast join), `[dashboard]` (the web page) |
//! | [`guardian`] | `[guardian]`: the pauser key that pauses on a forged release |
//! | [`admin`] | `[admin]`: the configuration watch (desired-state file, owner calls) |
//! | [`pairs`] | `[[pairs]]`: one process serving several bridge pairs over named `[chains.<name>]` |
//!
//! Each section says what is wrong with it (`problem()`); [`Config::validate`] asks them in turn.
//! The runtime forms of a section (the voter's tuning, the sender's policy, the recovery
//! worker's config) are built by their owners, not here.
//!
//! The devnet writes these files; `multibridge config validate` parses one offline. Field names
//! are part of the operator interface: add fields with defaults, never rename.
//!
//! Every field can be overridden by an environment variable: `MULTIBRIDGE__` followed by the
//! field's path with `__` between levels, e.g. `MULTIBRIDGE__CHAINS__MAIN__CONFIRMATIONS=3` or
//! `MULTIBRIDGE__CHAINS__SERVICE__RPC_URLS='["http://10.0.0.5:8545"]'`.
#![forbid(unsafe_code)]
#![deny(clippy::arithmetic_side_effects)]
#![cfg_attr(test, allow(clippy::arithmetic_side_effects))]

use std::path::{Path, PathBuf};

use multibridge_contracts::Lane;
use serde::{Deserialize, Serialize};

pub mod admin;
pub mod backup;
pub mod chain;
pub mod dashboard;
pub mod etcd;
pub mod guardian;
pub mod http;
pub mod operator;
pub mod pairs;
pub mod recovery;
pub mod registry;
pub mod store;
pub mod voting;

pub use admin::AdminWatchConfig;
pub use backup::{BackupSettings, StorageSettings};
pub use chain::{ChainConfig, Chains, Confirmations, is_devnet_chain};
pub use dashboard::DashboardSettings;
pub use etcd::{ElectionScope, EtcdConfig, EtcdTlsConfig};
pub use guardian::GuardianConfig;
pub use http::HttpConfig;
pub use operator::{OperatorConfig, Secret, SecretError, SignerConfig, SignerField, read_secret};
pub use pairs::{NamedPair, PairConfig, RenderError, render_hub};
pub use recovery::RecoverySettings;
pub use registry::RegistryConfig;
pub use store::StoreConfig;
pub use voting::{VotingMode, VotingSettings};

/// What a section says is wrong with it: the dotted field name and how to fix it.
pub type Problem = (&'static str, String);

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
    pub backup: Option<BackupSettings>,
    /// The Service Registry Dashboard served on the HTTP API (on by default, read-only
    /// without an admin token).
    #[serde(default, skip_serializing_if = "DashboardSettings::is_default")]
    pub dashboard: DashboardSettings,
    /// The guardian: a pauser key that pauses the bridges on a forged release (none: this
    /// replica only alerts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardian: Option<GuardianConfig>,
    /// The configuration watch: drift from a desired-state file, or owner calls once confirmed.
    #[serde(default, skip_serializing_if = "AdminWatchConfig::is_default")]
    pub admin: AdminWatchConfig,
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
    /// One pair of a file of `[[pairs]]` is unusable.
    #[error("invalid config {path}: pair {pair}: {field}: {problem}")]
    InPair {
        /// The file.
        path: PathBuf,
        /// The pair's name.
        pair: String,
        /// Dotted field name, as in a single-pair file (`chains.service` is the pair's service
        /// chain).
        field: &'static str,
        /// What is wrong and how to fix it.
        problem: String,
    },
}

impl Config {
    /// Read a config file, apply `MULTIBRIDGE__…` environment overrides, and validate the
    /// result (offline checks only).
    ///
    /// A file of `[[pairs]]` gives its pair's config when it has one pair; with more, every
    /// command but `run` needs one pair's file ([`Config::load_pairs`] reads them all).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut pairs = Self::load_pairs(path)?;
        if pairs.len() == 1
            && let Some(pair) = pairs.pop()
        {
            return Ok(pair.config);
        }
        Err(ConfigError::Invalid {
            path: path.to_owned(),
            field: "pairs",
            problem: format!(
                "this file serves {} pairs ({}): `multibridge run` serves them all; other commands take a single pair's file",
                pairs.len(),
                pairs
                    .iter()
                    .filter_map(|p| p.name.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
    }

    /// Read a config file (with `MULTIBRIDGE__…` overrides) as the pairs it serves: one
    /// unnamed pair for a single-pair file, one per `[[pairs]]` entry otherwise; each checked.
    pub fn load_pairs(path: &Path) -> Result<Vec<PairConfig>, ConfigError> {
        use figment::Figment;
        use figment::providers::{Env, Format, Toml};

        // Read first so a missing file is named as such, not as a missing field.
        std::fs::metadata(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let figment = Figment::from(Toml::file(path)).merge(Env::prefixed(ENV_PREFIX).split("__"));
        if pairs::is_hub(&figment) {
            return pairs::expand(&figment, path);
        }
        let config: Config = figment.extract().map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        config.validate(path)?;
        Ok(vec![PairConfig { name: None, config }])
    }

    /// Render as TOML.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string_pretty(self)
    }

    /// Every offline check of the sections, in turn; the first problem is the error.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        self.problem().map_or(Ok(()), |(field, problem)| {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                field,
                problem,
            })
        })
    }

    fn problem(&self) -> Option<Problem> {
        if self.lanes.is_empty() {
            return Some(("lanes", "serve at least one lane".into()));
        }
        // Audit L-8: a tampering relay spends its operator's one vote on every nonce.
        if self.fault_injection.tamper_votes
            && let Some(chain) = [&self.chains.main, &self.chains.service]
                .into_iter()
                .find(|c| !is_devnet_chain(c.chain_id))
        {
            return Some((
                "fault_injection.tamper_votes",
                format!(
                    "fault injection is for the test suite on devnet chains (31337-31413) only, chain {} is not",
                    chain.chain_id
                ),
            ));
        }
        if self.registry.is_none()
            && let Some(lane) = self
                .lanes
                .iter()
                .find(|l| self.voting.mode_of(**l) == VotingMode::Attestations)
        {
            return Some((
                "voting.mode",
                format!(
                    "lane {lane} executes attested batches, which needs [registry]: the operators find each other's signatures at the locations they publish there"
                ),
            ));
        }
        self.http
            .problem()
            .or_else(|| self.chains.problem())
            .or_else(|| self.voting.problem())
            .or_else(|| self.recovery.problem())
            .or_else(|| self.operator.problem())
            .or_else(|| {
                self.guardian
                    .as_ref()
                    .and_then(|g| g.problem(self.operator.address))
            })
            .or_else(|| self.etcd.as_ref().and_then(EtcdConfig::problem))
            .or_else(|| self.dashboard.problem())
            .or_else(|| self.admin.problem())
            .or_else(|| self.backup_problem())
    }

    /// The `[backup]` section, which also needs `[etcd]` and `[registry]`.
    fn backup_problem(&self) -> Option<Problem> {
        let backup = self.backup.as_ref()?;
        if self.etcd.is_none() {
            return Some((
                "backup",
                "backups need [etcd] (the state versions live there)".into(),
            ));
        }
        if self.registry.is_none() {
            return Some((
                "backup",
                "backups need [registry] (the encrypted backup log is stored there)".into(),
            ));
        }
        backup.problem()
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
        // The key history kept: at least 10 s, or 0 (never compacted by the relay).
        assert_eq!(
            field(case(
                "endpoints = [\"http://e:2379\"]\nkeep_history_secs = 5"
            )),
            "etcd.keep_history_secs"
        );
        let keep = |etcd: &str| case(etcd).unwrap().etcd.unwrap().keep_history();
        assert_eq!(
            keep("endpoints = [\"http://e:2379\"]"),
            Some(std::time::Duration::from_secs(300))
        );
        assert_eq!(
            keep("endpoints = [\"http://e:2379\"]\nkeep_history_secs = 10"),
            Some(std::time::Duration::from_secs(10))
        );
        assert_eq!(
            keep("endpoints = [\"http://e:2379\"]\nkeep_history_secs = 0"),
            None
        );
    }
}
