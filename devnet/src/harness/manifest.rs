//! `devnet.json`: the one machine-readable file with every address, URL, endpoint and key.

use std::path::{Path, PathBuf};

use alloy::primitives::Address;
use multibridge_contracts::TokenMode;
use serde::{Deserialize, Serialize};

use crate::error::DevnetError;
use crate::harness::process::RecordedProcess;

/// One chain's contracts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainContracts {
    /// Chain id.
    pub chain_id: u64,
    /// The bridge.
    pub bridge: Address,
    /// Block the bridge was deployed in (where indexing starts).
    pub bridge_block: u64,
    /// This chain's side of the test token pair.
    pub token: Address,
    /// Mode of the token on this chain's bridge.
    pub token_mode: TokenMode,
    /// This chain's side of the test ERC-721 pair (lock/unlock on main, burn/mint on service).
    #[serde(default)]
    pub nft: Address,
}

/// Name of the manifest inside the devnet directory.
pub const MANIFEST_FILE: &str = "devnet.json";
/// Name of the process list inside the devnet directory (written by `up`, read by `down`).
pub const PROCESSES_FILE: &str = "processes.json";

/// Format version of the manifest.
pub const MANIFEST_VERSION: u32 = 1;

/// One chain as the devnet runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainEntry {
    /// JSON-RPC URL.
    pub rpc_url: String,
    /// Seconds per block (`null`: a block per transaction).
    pub block_time: Option<f64>,
    /// Deployed contracts.
    #[serde(flatten)]
    pub contracts: ChainContracts,
}

/// An account with its (public, devnet-only) key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountEntry {
    /// Address.
    pub address: Address,
    /// 0x-prefixed private key — a well-known anvil test key, devnet only.
    pub private_key: String,
}

/// One operator: its account and its relay config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorEntry {
    /// Account.
    #[serde(flatten)]
    pub account: AccountEntry,
    /// Relay config file for this operator.
    pub config: PathBuf,
    /// Each replica's HTTP API, which serves the dashboard at `/`.
    #[serde(default)]
    pub http_urls: Vec<String>,
}

/// One bridge pair of a hub devnet (`up --service-chains N`, `--nested`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairEntry {
    /// The pair's name in the relay configs, metrics (`pair` label) and stores.
    pub name: String,
    /// Its main chain (the devnet's main chain, or a service chain for a nested pair).
    pub main: ChainEntry,
    /// Its service chain.
    pub service: ChainEntry,
    /// Its `ServiceRegistry`, on its main chain.
    pub registry: Address,
    /// Each operator's replicas' HTTP APIs for this pair: `[operator][replica]`.
    pub http_urls: Vec<Vec<String>>,
}

/// The whole devnet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub version: u32,
    /// Reminder that every key in here is public.
    pub warning: String,
    /// The devnet directory.
    pub dir: PathBuf,
    /// Main chain.
    pub main: ChainEntry,
    /// Service chain.
    pub service: ChainEntry,
    /// `ServiceRegistry` on the main chain.
    pub registry: Address,
    /// etcd client endpoints.
    pub etcd_endpoints: Vec<String>,
    /// Prometheus scraping the relays, with the alert rules loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus_url: Option<String>,
    /// Votes needed on each bridge.
    pub threshold: u64,
    /// Owner (deployer, pauser) of every contract.
    pub owner: AccountEntry,
    /// Operators.
    pub operators: Vec<OperatorEntry>,
    /// Users with native coin and test tokens.
    pub users: Vec<AccountEntry>,
    /// Every bridge pair of a hub devnet, the first being `main`/`service` above (empty for a
    /// devnet of one pair).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pairs: Vec<PairEntry>,
}

/// The warning stored in every manifest.
pub const KEYS_WARNING: &str =
    "DEVNET ONLY: every key here is a public anvil test key; never use one anywhere else";

impl Manifest {
    /// Read `devnet.json` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, DevnetError> {
        read_json(&dir.join(MANIFEST_FILE))
    }

    /// A [`Driver`](crate::Driver) per pair, by name: on a hub devnet each sees its pair's
    /// chains as `main`/`service`, its registry and its HTTP APIs; a devnet of one pair gives
    /// that one, named `single`.
    pub fn drivers(&self, single: &str) -> std::collections::BTreeMap<String, crate::Driver> {
        if self.pairs.is_empty() {
            return std::collections::BTreeMap::from([(
                single.to_owned(),
                crate::Driver::new(self.clone()),
            )]);
        }
        self.pairs
            .iter()
            .map(|pair| {
                let mut view = self.clone();
                view.main = pair.main.clone();
                view.service = pair.service.clone();
                view.registry = pair.registry;
                for (operator, urls) in view.operators.iter_mut().zip(&pair.http_urls) {
                    operator.http_urls = urls.clone();
                }
                view.pairs = Vec::new();
                (pair.name.clone(), crate::Driver::new(view))
            })
            .collect()
    }

    /// Write `devnet.json` into `self.dir`.
    pub fn save(&self) -> Result<PathBuf, DevnetError> {
        let path = self.dir.join(MANIFEST_FILE);
        write_json(&path, self)?;
        Ok(path)
    }
}

/// Read the process list `up` left in `dir`, if any.
pub fn load_processes(dir: &Path) -> Result<Option<Vec<RecordedProcess>>, DevnetError> {
    let path = dir.join(PROCESSES_FILE);
    if !path.exists() {
        return Ok(None);
    }
    read_json(&path).map(Some)
}

/// Record the processes `up` leaves running.
pub fn save_processes(dir: &Path, processes: &[RecordedProcess]) -> Result<(), DevnetError> {
    write_json(&dir.join(PROCESSES_FILE), &processes)
}

/// Forget the process list (after `down`).
pub fn remove_processes(dir: &Path) -> Result<(), DevnetError> {
    let path = dir.join(PROCESSES_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(DevnetError::io(path, e)),
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, DevnetError> {
    let text = std::fs::read_to_string(path).map_err(|e| DevnetError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| DevnetError::BadState {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Write JSON atomically (temp file + rename): a crash never leaves half a file.
fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), DevnetError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| DevnetError::BadState {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    write_atomic(path, text.as_bytes())
}

/// Write a file atomically (temp file + rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DevnetError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| DevnetError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| DevnetError::io(path, e))
}
