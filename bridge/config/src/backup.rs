//! The `[backup]` section: when to back up, where to, and the backup key pair (the public key
//! encrypts the backup log; the private key, held only where a replica should be able to join
//! from a backup, decrypts it).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::Problem;

/// Why a backup public key does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublicKeyError {
    /// Not hex.
    #[error("backup key is not hex")]
    NotHex,
    /// Not a secp256k1 point.
    #[error(
        "backup public key is not a secp256k1 point (give 33 or 65 bytes SEC1 hex, e.g. from `multibridge backup keygen`)"
    )]
    NotAPoint,
}

/// The backup public key from SEC1 hex (compressed or uncompressed, with or without `0x`).
pub fn parse_public_key(text: &str) -> Result<k256::PublicKey, PublicKeyError> {
    let text = text.trim();
    let bytes = alloy_primitives::hex::decode(text.strip_prefix("0x").unwrap_or(text))
        .map_err(|_| PublicKeyError::NotHex)?;
    k256::PublicKey::from_sec1_bytes(&bytes).map_err(|_| PublicKeyError::NotAPoint)
}

/// State backups (DESIGN §7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSettings {
    /// Back up a lane when this many requests were handled since its last backup.
    #[serde(default = "default_every_handled")]
    pub every_handled: u64,
    /// Also back up when a majority of this operator's replicas is gone (their liveness keys
    /// expired with their leases).
    #[serde(default = "yes")]
    pub on_majority_lost: bool,
    /// At least this long between two backups of one lane (also on demand: a request sooner
    /// is answered with how long to wait, so whoever can write etcd cannot make the operator
    /// pay for a registry transaction every second).
    #[serde(default = "default_min_interval_secs")]
    pub min_interval_secs: u64,
    /// How long the leader waits for live followers to catch up before it backs up anyway
    /// (the log names who had caught up).
    #[serde(default = "default_catch_up_secs")]
    pub catch_up_secs: u64,
    /// The service's backup public key (SEC1 hex, compressed or not): every backup log is
    /// encrypted to it. A key pair of its own, never the operator's signing key.
    pub public_key: String,
    /// File holding the backup private key (hex, first line): needed to join from a backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_file: Option<PathBuf>,
    /// Environment variable holding the backup private key (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_env: Option<String>,
    /// Whether a replica that starts with an empty store joins from the newest backup (needs
    /// the private key); otherwise it replays the chain.
    #[serde(default = "yes")]
    pub join_from_backup: bool,
    /// Also save a full etcd snapshot (maintenance API) beside the operator's etcd prefix.
    #[serde(default)]
    pub etcd_snapshot: bool,
    /// Largest store copy a join reads (MiB): a backup log may name any object, so a larger one
    /// is refused before it is read into memory.
    #[serde(default = "default_max_restore_mib")]
    pub max_restore_mib: u64,
    /// Where snapshots go.
    pub storage: StorageSettings,
}

/// Off-chain storage for snapshots (and, in `[voting]`, for attested signatures).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum StorageSettings {
    /// A local directory (the embedded default; put it on a volume that outlives the host).
    Local {
        /// The directory.
        path: PathBuf,
    },
    /// Any S3-compatible object store.
    S3 {
        /// Bucket.
        bucket: String,
        /// Endpoint URL (absent: AWS S3 of `region`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        endpoint: Option<String>,
        /// Region.
        #[serde(default = "default_region")]
        region: String,
        /// Key prefix inside the bucket.
        #[serde(default)]
        prefix: String,
        /// Environment variable holding the access key id (only its name is ever written).
        #[serde(default = "default_access_key_env")]
        access_key_id_env: String,
        /// Environment variable holding the secret access key.
        #[serde(default = "default_secret_key_env")]
        secret_access_key_env: String,
        /// Allow a plain `http://` endpoint (a local test server; never in production).
        #[serde(default)]
        allow_http: bool,
    },
}

fn yes() -> bool {
    true
}
fn default_every_handled() -> u64 {
    10_000
}
fn default_max_restore_mib() -> u64 {
    2_048
}
fn default_min_interval_secs() -> u64 {
    60
}
fn default_catch_up_secs() -> u64 {
    10
}
fn default_region() -> String {
    "us-east-1".to_owned()
}
fn default_access_key_env() -> String {
    "AWS_ACCESS_KEY_ID".to_owned()
}
fn default_secret_key_env() -> String {
    "AWS_SECRET_ACCESS_KEY".to_owned()
}

impl BackupSettings {
    /// What is wrong with the section, as (field, problem).
    pub fn problem(&self) -> Option<Problem> {
        if self.every_handled == 0 {
            return Some(("backup.every_handled", "must be at least 1".into()));
        }
        if let Err(e) = parse_public_key(&self.public_key) {
            return Some(("backup.public_key", e.to_string()));
        }
        if let Some(file) = &self.private_key_file
            && let Err(e) = std::fs::metadata(file)
        {
            return Some((
                "backup.private_key_file",
                format!("cannot read {}: {e}", file.display()),
            ));
        }
        match &self.storage {
            StorageSettings::Local { path } if path.as_os_str().is_empty() => {
                Some(("backup.storage.path", "name a directory".into()))
            }
            StorageSettings::S3 {
                bucket, endpoint, ..
            } => {
                if bucket.is_empty() {
                    return Some(("backup.storage.bucket", "name a bucket".into()));
                }
                if let Some(endpoint) = endpoint
                    && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
                {
                    return Some((
                        "backup.storage.endpoint",
                        format!("{endpoint:?} is not an http(s) URL"),
                    ));
                }
                None
            }
            StorageSettings::Local { .. } => None,
        }
    }
}
