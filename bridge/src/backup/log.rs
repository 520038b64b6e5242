//! The state-backup log (Table 2 of seed 003), encrypted to the backup public key and stored
//! in the service registry with `storeBackupLog(id, version, log)`.

use k256::{PublicKey, SecretKey};
use multibridge_contracts::Lane;
use serde::{Deserialize, Serialize};

use super::ecies;
use crate::storage::{ObjectMeta, StorageMeta};

/// Format of the log's JSON; bumped on incompatible change.
pub const LOG_FORMAT: u32 = 1;

/// What the store copy holds of the lane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateData {
    /// The store copy compacted below `compacted_below`: what a joining replica restores.
    pub object: ObjectMeta,
    /// The whole store copy, handled history included: what the backup covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ObjectMeta>,
    /// The lane it was made for.
    pub lane: Lane,
    /// The lane's indexing cursor in the copy: a joining replica indexes from here.
    pub cursor: Option<u64>,
    /// The lane's contiguous-nonce watermark in the copy.
    pub contiguous_nonce: Option<u64>,
    /// Requests below this nonce are compacted after the backup (handled for good).
    pub compacted_below: u64,
    /// The lane's rows in the copy.
    pub rows: u64,
}

/// Who made the backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// The replica (its etcd name).
    pub replica: String,
    /// The operator.
    pub operator: String,
}

/// Table 2 of the paper, for one lane of one operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupLog {
    /// [`LOG_FORMAT`].
    pub format: u32,
    /// The bridge pair (`main-id-bridge-service-id-bridge`).
    pub pair: String,
    /// Start (unix milliseconds).
    pub start_ms: u64,
    /// End (unix milliseconds).
    pub end_ms: u64,
    /// The state version saved.
    pub version: u64,
    /// Every replica of the operator (etcd membership).
    pub members: Vec<String>,
    /// Replicas alive at the backup (their leases).
    pub alive_members: Vec<String>,
    /// Alive replicas that had caught up with the leader's cursor when it backed up.
    pub caught_up: Vec<String>,
    /// The etcd state saved: the operator's prefix, and a full snapshot when configured.
    pub snapshot_meta: Vec<ObjectMeta>,
    /// The relay's state: the store copy.
    pub state_data_meta: StateData,
    /// Where the objects are and how to authenticate (by reference only).
    pub storage: StorageMeta,
    /// Who made it.
    pub subject: Subject,
    /// Why (`bound`, `majority-lost`, `on-demand`).
    pub trigger: String,
}

/// Why a stored log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// It does not open with the configured private key.
    #[error("backup log does not decrypt with the configured backup key: {0}")]
    Undecryptable(#[from] ecies::EciesError),
    /// It opens but is not a backup log of this format.
    #[error("backup log is not valid JSON of format {LOG_FORMAT}: {0}")]
    Corrupt(String),
}

impl BackupLog {
    /// Encrypt to `key`.
    pub fn seal(&self, key: &PublicKey) -> Vec<u8> {
        let json = serde_json::to_vec(self).expect("a backup log always serialises");
        ecies::encrypt(key, &json, &mut rand_core::OsRng)
    }

    /// Decrypt with `key` and parse.
    pub fn open(sealed: &[u8], key: &SecretKey) -> Result<Self, LogError> {
        let json = ecies::decrypt(key, sealed)?;
        let log: Self =
            serde_json::from_slice(&json).map_err(|e| LogError::Corrupt(e.to_string()))?;
        if log.format != LOG_FORMAT {
            return Err(LogError::Corrupt(format!("format {}", log.format)));
        }
        Ok(log)
    }
}
