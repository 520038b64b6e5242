//! State versions, encrypted backups to off-chain storage and fast join (DESIGN §7; seed 003's
//! extended BR2K):
//!
//! - [`versions`]: SV, SSV and SSI in etcd, per operator and lane, with membership and liveness;
//! - [`version_up`]: the state-version-up action (Table 1): store copy + etcd state to
//!   [`storage`], the encrypted [`log`] (Table 2) in the registry, compaction, versions;
//! - [`worker`]: the triggers (handled bound, majority of replicas lost, on demand) and what
//!   followers do after a backup;
//! - [`join`]: get the latest state, by which a new or wiped replica starts from the newest
//!   backup instead of replaying the chain;
//! - [`ecies`], [`keys`]: the standard secp256k1 ECIES the log is sealed with, and the backup
//!   key pair; [`settings`]: the `[backup]` config section.

pub mod ecies;
pub mod join;
pub mod keys;
pub mod log;
pub mod state_reads;
pub mod version_up;
pub mod versions;
pub mod worker;

use multibridge_contracts::Lane;

use crate::chain::ChainError;
use crate::chain::submitter::SubmitError;
use crate::leadership::etcd_pool::EtcdUnavailable;
use crate::store::StoreError;

/// Why a backup failed. Nothing is compacted and no version moves unless the log is in the
/// registry; a failed backup is tried again at the next trigger.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Backups need etcd (the versions live there).
    #[error("backups need [etcd]: the state versions live there")]
    NoEtcd,
    /// The lane's service is not in the registry yet (the registry task registers it).
    #[error("{0}'s service is not registered yet; the registry task registers it, retrying")]
    NotRegistered(Lane),
    /// etcd did not answer.
    #[error(transparent)]
    Etcd(#[from] EtcdUnavailable),
    /// Off-chain storage failed.
    #[error("backup storage: {0}")]
    Storage(#[from] crate::storage::StorageError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A chain read failed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The log transaction was not sent.
    #[error("storeBackupLog not sent: {0}")]
    Submit(#[from] SubmitError),
    /// The log did not show in the registry in time.
    #[error("backup log version {version} did not show in the registry in time")]
    LogNotStored {
        /// Version.
        version: u64,
    },
    /// Another attempt stored its log at this version or above first (a leader handover in the
    /// middle of a backup): this attempt compacts nothing; the next trigger backs up anew.
    #[error(
        "backup version {version}: the registry already holds version {stored} from another attempt"
    )]
    Superseded {
        /// This attempt's version.
        version: u64,
        /// What the registry holds.
        stored: u64,
    },
    /// A local temporary file failed.
    #[error("backup: {0}")]
    Io(String),
}

impl BackupError {
    /// Whether the next trigger may succeed without a person.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::NoEtcd | Self::Io(_) => false,
            Self::Storage(e) => e.is_retryable(),
            Self::Store(e) => e.is_retryable(),
            Self::Chain(e) => e.is_retryable(),
            Self::Submit(e) => e.is_retryable(),
            Self::NotRegistered(_)
            | Self::Etcd(_)
            | Self::LogNotStored { .. }
            | Self::Superseded { .. } => true,
        }
    }
}

/// Unix milliseconds.
pub fn millis_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The instant `d` from now (now if that overflows).
pub fn deadline_after(d: std::time::Duration) -> std::time::Instant {
    let now = std::time::Instant::now();
    now.checked_add(d).unwrap_or(now)
}
