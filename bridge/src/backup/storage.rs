//! Off-chain storage for snapshots, behind the `object_store` crate: a local directory (the
//! embedded default) or any S3-compatible object store. Every object is written with its
//! SHA-256 and read back verified against the digest the backup log names.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::StorageSettings;

/// Why storage failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The store could not be set up (bad settings, missing credentials, unwritable directory).
    #[error("backup storage cannot be opened: {0}")]
    Setup(String),
    /// The object is not there.
    #[error("backup object {0} is missing from storage")]
    Missing(String),
    /// The storage did not answer or refused (network, permissions): retryable.
    #[error("backup storage failed on {path}: {detail}")]
    Io {
        /// Object.
        path: String,
        /// What the storage said.
        detail: String,
    },
    /// The object is larger than a join reads.
    #[error(
        "backup object {path} has {size} bytes, more than the {max} a join reads (backup.max_restore_mib)"
    )]
    TooLarge {
        /// Object.
        path: String,
        /// Its size.
        size: u64,
        /// The bound.
        max: u64,
    },
    /// The object's content is not what the log says.
    #[error("backup object {path} has digest {found}, the backup log says {expected}")]
    DigestMismatch {
        /// Object.
        path: String,
        /// Expected SHA-256 (hex).
        expected: String,
        /// Found SHA-256 (hex).
        found: String,
    },
}

impl StorageError {
    /// Whether trying again may help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Io { .. })
    }
}

/// What the backup log records about one stored object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// Path inside the storage.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256 of the content, hex.
    pub sha256: String,
    /// What it is (`sqlite`, `etcd-prefix-json`, `etcd-snapshot`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Unix seconds when it was written.
    pub created_at: u64,
    /// Who wrote it (operator address and replica).
    pub owner: String,
}

/// Where backups are and how to reach them, as the log records it: locations and the *names*
/// of the credentials' environment variables, never the credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageMeta {
    /// `local` or `s3`.
    pub kind: String,
    /// Directory, or `s3://bucket/prefix`.
    pub location: String,
    /// The S3 endpoint, when not AWS's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The S3 region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// How to authenticate, by reference (`env:AWS_ACCESS_KEY_ID,env:AWS_SECRET_ACCESS_KEY`).
    pub authentication: String,
    /// How objects are saved.
    pub saved_form: String,
}

/// A storage error's text without URL credentials (it reaches logs and etcd).
fn redact(e: &object_store::Error) -> String {
    multibridge_monitoring::redact_urls(&e.to_string()).into_owned()
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    alloy::hex::encode(Sha256::digest(bytes))
}

/// A configured storage.
#[derive(Debug, Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    meta: StorageMeta,
}

impl Storage {
    /// Open the storage the settings name (reading S3 credentials from their variables).
    pub fn open(settings: &StorageSettings) -> Result<Self, StorageError> {
        match settings {
            StorageSettings::Local { path } => {
                std::fs::create_dir_all(path).map_err(|e| {
                    StorageError::Setup(format!("cannot create {}: {e}", path.display()))
                })?;
                let store = LocalFileSystem::new_with_prefix(path)
                    .map_err(|e| StorageError::Setup(e.to_string()))?;
                Ok(Self {
                    store: Arc::new(store),
                    prefix: String::new(),
                    meta: StorageMeta {
                        kind: "local".into(),
                        location: path.display().to_string(),
                        endpoint: None,
                        region: None,
                        authentication: "file system permissions".into(),
                        saved_form: "raw objects, SHA-256 in the log".into(),
                    },
                })
            }
            StorageSettings::S3 {
                bucket,
                endpoint,
                region,
                prefix,
                access_key_id_env,
                secret_access_key_env,
                allow_http,
            } => {
                let var = |name: &str| {
                    std::env::var(name).map_err(|_| {
                        StorageError::Setup(format!(
                            "environment variable {name} (S3 credentials) is not set"
                        ))
                    })
                };
                let mut builder = AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(region)
                    .with_access_key_id(var(access_key_id_env)?)
                    .with_secret_access_key(var(secret_access_key_env)?)
                    .with_retry(object_store::RetryConfig {
                        max_retries: 3,
                        retry_timeout: Duration::from_secs(30),
                        ..Default::default()
                    })
                    // allow_http lives in the client options: set with them, not before them.
                    .with_client_options(
                        object_store::ClientOptions::new()
                            .with_allow_http(*allow_http)
                            .with_timeout(Duration::from_secs(30))
                            .with_connect_timeout(Duration::from_secs(5)),
                    );
                if let Some(endpoint) = endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                let store = builder
                    .build()
                    .map_err(|e| StorageError::Setup(e.to_string()))?;
                Ok(Self {
                    store: Arc::new(store),
                    prefix: prefix.trim_matches('/').to_owned(),
                    meta: StorageMeta {
                        kind: "s3".into(),
                        location: format!("s3://{bucket}/{}", prefix.trim_matches('/')),
                        endpoint: endpoint
                            .as_deref()
                            .map(|e| multibridge_monitoring::redact_urls(e).into_owned()),
                        region: Some(region.clone()),
                        authentication: format!(
                            "env:{access_key_id_env},env:{secret_access_key_env}"
                        ),
                        saved_form: "raw objects, SHA-256 in the log".into(),
                    },
                })
            }
        }
    }

    /// What the log records about this storage.
    pub fn meta(&self) -> &StorageMeta {
        &self.meta
    }

    fn full(&self, path: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(path)
        } else {
            ObjectPath::from(format!("{}/{path}", self.prefix))
        }
    }

    /// Write `bytes` at `path` (relative to the storage's prefix); returns its meta.
    pub async fn put(
        &self,
        path: &str,
        kind: &str,
        owner: &str,
        bytes: Vec<u8>,
    ) -> Result<ObjectMeta, StorageError> {
        let meta = ObjectMeta {
            path: path.to_owned(),
            size: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
            sha256: sha256_hex(&bytes),
            kind: kind.to_owned(),
            created_at: crate::store::unix_now(),
            owner: owner.to_owned(),
        };
        self.store
            .put(&self.full(path), PutPayload::from(bytes))
            .await
            .map_err(|e| StorageError::Io {
                path: path.to_owned(),
                detail: redact(&e),
            })?;
        Ok(meta)
    }

    /// Read the object `meta` names and check its digest. An object larger than `max_bytes`
    /// (or than the log says) is refused before it is read into memory (audit NEW-L3: a log may
    /// name any object).
    pub async fn fetch(&self, meta: &ObjectMeta, max_bytes: u64) -> Result<Vec<u8>, StorageError> {
        if meta.size > max_bytes {
            return Err(StorageError::TooLarge {
                path: meta.path.clone(),
                size: meta.size,
                max: max_bytes,
            });
        }
        let got = match self.store.get(&self.full(&meta.path)).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StorageError::Missing(meta.path.clone()));
            }
            Err(e) => {
                return Err(StorageError::Io {
                    path: meta.path.clone(),
                    detail: redact(&e),
                });
            }
        };
        if got.meta.size != meta.size {
            return Err(StorageError::DigestMismatch {
                path: meta.path.clone(),
                expected: format!("{} bytes ({})", meta.size, meta.sha256),
                found: format!("{} bytes", got.meta.size),
            });
        }
        let bytes = got.bytes().await.map_err(|e| StorageError::Io {
            path: meta.path.clone(),
            detail: redact(&e),
        })?;
        let found = sha256_hex(&bytes);
        if found != meta.sha256 {
            return Err(StorageError::DigestMismatch {
                path: meta.path.clone(),
                expected: meta.sha256.clone(),
                found,
            });
        }
        Ok(bytes.to_vec())
    }
}
