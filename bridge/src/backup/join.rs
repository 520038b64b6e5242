//! Get the latest state (seed 003, §3.3): a replica whose store holds nothing of a lane reads
//! the newest backup log from the registry, decrypts it, fetches and verifies the store copy,
//! restores the lane and its SSV, and then indexes only the tail. Any failure is a named
//! [`JoinError`]; the caller then replays the chain, so nothing is lost either way.

use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256};
use k256::SecretKey;
use multibridge_contracts::Lane;

use super::keys::BackupKeyError;
use super::log::{BackupLog, LogError};
use crate::chain::{ChainClient, ChainError};
use crate::config::Config;
use crate::storage::{Storage, StorageError};
use crate::store::{SharedStore, StoreError};

/// Why a replica could not join from a backup (it replays the chain instead).
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The registry holds no backup log for the lane's service.
    #[error("no backup log in the registry for {0}")]
    NoBackup(Lane),
    /// The backup private key is not available or wrong.
    #[error(transparent)]
    Key(#[from] BackupKeyError),
    /// The log does not open or parse.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The log is for another pair, lane or operator.
    #[error("backup log is for {found}, this replica serves {expected}")]
    WrongService {
        /// What the log says.
        found: String,
        /// What this replica is.
        expected: String,
    },
    /// The store copy is missing, unreadable or not what the log's digest says.
    #[error("backup storage: {0}")]
    Storage(#[from] StorageError),
    /// The copy could not be restored.
    #[error("backup store copy cannot be restored: {0}")]
    Restore(#[from] StoreError),
    /// The registry could not be read.
    #[error("registry unreadable: {0}")]
    Registry(#[from] ChainError),
    /// A local file could not be written.
    #[error("backup restore: {0}")]
    Io(String),
}

impl JoinError {
    /// The stable name of the reason (metric label, status).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoBackup(_) => "no-backup",
            Self::Key(_) => "no-key",
            Self::Log(LogError::Undecryptable(_)) => "undecryptable",
            Self::Log(LogError::Corrupt(_)) => "corrupt-log",
            Self::WrongService { .. } => "wrong-service",
            Self::Storage(StorageError::Missing(_)) => "missing",
            Self::Storage(StorageError::DigestMismatch { .. }) => "digest-mismatch",
            Self::Storage(StorageError::TooLarge { .. }) => "too-large",
            Self::Storage(_) => "storage",
            Self::Restore(_) => "restore",
            Self::Registry(_) => "registry",
            Self::Io(_) => "io",
        }
    }
}

/// A lane restored from a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The lane.
    pub lane: Lane,
    /// The backup's state version (this replica's SSV is one more).
    pub version: u64,
    /// Rows restored.
    pub rows: u64,
    /// The cursor the indexer continues from.
    pub cursor: Option<u64>,
    /// Requests below were compacted.
    pub compacted_below: u64,
    /// How long the restore took.
    pub took: Duration,
}

/// `latestBackupLog(id)`: (version, encrypted log, stored at).
pub async fn latest_log(
    main: &ChainClient,
    registry: Address,
    id: B256,
) -> Result<(u64, Vec<u8>, u64), ChainError> {
    let got = main
        .registry_call(registry, "latestBackupLog", |r| async move {
            r.latestBackupLog(id).call().await
        })
        .await?;
    Ok((got.version, got.encryptedLog.to_vec(), got.storedAt))
}

/// Read and open the newest backup log of `lane`'s service.
pub async fn newest_log(
    config: &Config,
    main: &ChainClient,
    registry: Address,
    lane: Lane,
    key: &SecretKey,
) -> Result<BackupLog, JoinError> {
    let service = crate::registry::lane_services(config)
        .into_iter()
        .find(|s| s.lane == lane)
        .ok_or(JoinError::NoBackup(lane))?;
    let exists = crate::registry::registered_location(main, registry, service.id).await?;
    if exists.is_none() {
        return Err(JoinError::NoBackup(lane));
    }
    let (version, sealed, _) = latest_log(main, registry, service.id).await?;
    if version == 0 {
        return Err(JoinError::NoBackup(lane));
    }
    let log = BackupLog::open(&sealed, key)?;
    let pair = crate::leadership::pair_name(config);
    let expected = format!("{pair} {lane} {}", config.operator.address);
    let found = format!(
        "{} {} {}",
        log.pair, log.state_data_meta.lane, log.subject.operator
    );
    if found != expected || log.version != version {
        return Err(JoinError::WrongService { found, expected });
    }
    Ok(log)
}

/// Restore `lane` into `store` from the newest backup.
pub async fn join_lane(
    config: &Config,
    main: &ChainClient,
    registry: Address,
    storage: &Storage,
    store: &SharedStore,
    lane: Lane,
    key: &SecretKey,
) -> Result<Joined, JoinError> {
    let started = Instant::now();
    let log = newest_log(config, main, registry, lane, key).await?;
    let max_bytes = config
        .backup
        .as_ref()
        .map_or(2_048, |b| b.max_restore_mib)
        .saturating_mul(1024 * 1024);
    let bytes = storage
        .fetch(&log.state_data_meta.object, max_bytes)
        .await?;
    let dir = tempfile::tempdir().map_err(|e| JoinError::Io(e.to_string()))?;
    let path = dir.path().join("store.sqlite");
    std::fs::write(&path, &bytes).map_err(|e| JoinError::Io(e.to_string()))?;
    let restored = store.lock().restore_lane(
        &path,
        lane,
        log.state_data_meta.compacted_below,
        log.version,
    )?;
    Ok(Joined {
        lane,
        version: log.version,
        rows: restored.rows,
        cursor: restored.cursor,
        compacted_below: restored.below,
        took: started.elapsed(),
    })
}
