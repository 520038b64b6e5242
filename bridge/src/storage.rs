//! Off-chain storage, behind the `object_store` crate: a local directory (the embedded default)
//! or any S3-compatible object store. Two users stand on it: state backups ([`crate::backup`]:
//! every object written with its SHA-256 and read back verified against the digest the backup
//! log names) and attested signatures ([`crate::attest`]: an operator's pages in its own
//! store, and anonymous reads of another operator's published location).

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
    #[error("storage cannot be opened: {0}")]
    Setup(String),
    /// The object is not there.
    #[error("object {0} is missing from storage")]
    Missing(String),
    /// The storage did not answer or refused (network, permissions): retryable.
    #[error("storage failed on {path}: {detail}")]
    Io {
        /// Object.
        path: String,
        /// What the storage said.
        detail: String,
    },
    /// The object is larger than the read takes (a join's bound is `backup.max_restore_mib`).
    #[error(
        "object {path} has {size} bytes, more than the {max} this read takes (a join's bound is backup.max_restore_mib)"
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
    #[error("object {path} has digest {found}, the backup log says {expected}")]
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

/// S3's smallest part of a multipart upload (all but the last).
const S3_MIN_PART: usize = 5 * 1024 * 1024;

/// The part size of streamed uploads to a local directory: two are in memory during an upload
/// (issue 54: at 1 MiB the backup's 2.1 MB was the largest single share of the lane leader's
/// heap peak at 100,000 pending, heaptrack; a local write gains nothing from larger parts).
const LOCAL_PART: usize = 256 * 1024;

/// Up to `part` bytes from `reader` (fewer only at its end), in a buffer of their own.
async fn read_part(
    reader: &mut (impl tokio::io::AsyncRead + Unpin),
    part: usize,
) -> std::io::Result<bytes::Bytes> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::with_capacity(part);
    (&mut *reader)
        .take(u64::try_from(part).unwrap_or(u64::MAX))
        .read_to_end(&mut buf)
        .await?;
    Ok(bytes::Bytes::from(buf))
}

/// How long an S3 client waits and how often it retries.
#[derive(Debug, Clone, Copy)]
struct S3Timing {
    timeout: Duration,
    connect_timeout: Duration,
    max_retries: usize,
}

/// The backups' and signature pages' writer: patient (a snapshot may take a while).
const S3_WRITER: S3Timing = S3Timing {
    timeout: Duration::from_secs(30),
    connect_timeout: Duration::from_secs(5),
    max_retries: 3,
};

/// An S3 client of `bucket` without credentials yet.
fn s3_builder(
    bucket: &str,
    region: &str,
    endpoint: Option<&str>,
    allow_http: bool,
    timing: S3Timing,
) -> AmazonS3Builder {
    let builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(region)
        .with_retry(object_store::RetryConfig {
            max_retries: timing.max_retries,
            retry_timeout: timing.timeout,
            ..Default::default()
        })
        // allow_http lives in the client options: set with them, not before them.
        .with_client_options(
            object_store::ClientOptions::new()
                .with_allow_http(allow_http)
                .with_timeout(timing.timeout)
                .with_connect_timeout(timing.connect_timeout),
        );
    match endpoint {
        Some(endpoint) => builder.with_endpoint(endpoint),
        None => builder,
    }
}

/// Where others read a storage without credentials, as the service registry publishes it:
/// `file:///dir`, or `s3://bucket/prefix?region=…[&endpoint=…][&allow_http=true]` — what a
/// reader needs and nothing secret. [`Storage::open_public`] opens it.
pub fn public_location(settings: &StorageSettings) -> String {
    match settings {
        StorageSettings::Local { path } => format!("file://{}", path.display()),
        StorageSettings::S3 {
            bucket,
            endpoint,
            region,
            prefix,
            allow_http,
            ..
        } => {
            let mut url = format!("s3://{bucket}/{}?region={region}", prefix.trim_matches('/'));
            if let Some(endpoint) = endpoint {
                url.push_str("&endpoint=");
                url.push_str(&multibridge_monitoring::redact_urls(endpoint));
            }
            if *allow_http {
                url.push_str("&allow_http=true");
            }
            url
        }
    }
}

/// A configured storage.
#[derive(Debug, Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    meta: StorageMeta,
    /// The part size of streamed uploads: 1 MiB for a local directory, S3's smallest part
    /// for S3 (every part but the last must be at least 5 MiB).
    part_size: usize,
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
                    part_size: LOCAL_PART,
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
                let store = s3_builder(bucket, region, endpoint.as_deref(), *allow_http, S3_WRITER)
                    .with_access_key_id(var(access_key_id_env)?)
                    .with_secret_access_key(var(secret_access_key_env)?)
                    .build()
                    .map_err(|e| StorageError::Setup(e.to_string()))?;
                Ok(Self {
                    store: Arc::new(store),
                    part_size: S3_MIN_PART,
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

    /// Another party's storage at its [`public_location`], read without credentials (an S3
    /// bucket must allow anonymous `GetObject` on what is read); each request bounded by
    /// `timeout` and retried once.
    pub fn open_public(location: &str, timeout: Duration) -> Result<Self, StorageError> {
        let unusable = |why: String| StorageError::Setup(format!("location {location}: {why}"));
        let meta = |kind: &str| StorageMeta {
            kind: kind.into(),
            location: location.to_owned(),
            endpoint: None,
            region: None,
            authentication: "none (public reads)".into(),
            saved_form: "read only".into(),
        };
        if let Some(dir) = location.strip_prefix("file://") {
            let store =
                LocalFileSystem::new_with_prefix(dir).map_err(|e| unusable(e.to_string()))?;
            return Ok(Self {
                store: Arc::new(store),
                prefix: String::new(),
                meta: meta("local"),
                part_size: LOCAL_PART,
            });
        }
        let Some(rest) = location.strip_prefix("s3://") else {
            return Err(unusable("neither file:// nor s3://".into()));
        };
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
        if bucket.is_empty() {
            return Err(unusable("no bucket".into()));
        }
        let (mut region, mut endpoint, mut allow_http) = ("us-east-1", None, false);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("region", value)) => region = value,
                Some(("endpoint", value)) => endpoint = Some(value),
                Some(("allow_http", value)) => allow_http = value == "true",
                _ => return Err(unusable(format!("unknown parameter {pair:?}"))),
            }
        }
        let timing = S3Timing {
            timeout,
            connect_timeout: timeout,
            max_retries: 1,
        };
        let store = s3_builder(bucket, region, endpoint, allow_http, timing)
            .with_skip_signature(true)
            .build()
            .map_err(|e| unusable(e.to_string()))?;
        Ok(Self {
            store: Arc::new(store),
            prefix: prefix.trim_matches('/').to_owned(),
            meta: meta("s3"),
            part_size: S3_MIN_PART,
        })
    }

    /// The object at `path` (`None`: not there), refused above `max_bytes` before its content
    /// is read.
    pub async fn get_bounded(
        &self,
        path: &str,
        max_bytes: u64,
    ) -> Result<Option<bytes::Bytes>, StorageError> {
        let io = |e: object_store::Error| StorageError::Io {
            path: path.to_owned(),
            detail: redact(&e),
        };
        let got = match self.store.get(&self.full(path)).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        if got.meta.size > max_bytes {
            return Err(StorageError::TooLarge {
                path: path.to_owned(),
                size: got.meta.size,
                max: max_bytes,
            });
        }
        got.bytes().await.map(Some).map_err(io)
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

    /// Write the file at `file` to `path`, streamed: at most two parts of [`Self::part_size`]
    /// bytes are in memory at once (one uploading, one filling), whatever the file's size —
    /// the store archive grows with the history (618 MiB at 1M requests) and was read whole.
    /// The digest is computed on the way.
    pub async fn put_file(
        &self,
        path: &str,
        kind: &str,
        owner: &str,
        file: &std::path::Path,
    ) -> Result<ObjectMeta, StorageError> {
        let io = |e: std::io::Error| StorageError::Io {
            path: path.to_owned(),
            detail: format!("reading {}: {e}", file.display()),
        };
        let stored = |e: object_store::Error| StorageError::Io {
            path: path.to_owned(),
            detail: redact(&e),
        };
        let mut reader = tokio::fs::File::open(file).await.map_err(io)?;
        let part = self.part_size();
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let first = read_part(&mut reader, part).await.map_err(io)?;
        if first.len() < part {
            // The whole file fits one part: one plain put.
            hasher.update(&first);
            size = u64::try_from(first.len()).unwrap_or(u64::MAX);
            self.store
                .put(&self.full(path), PutPayload::from(first))
                .await
                .map_err(stored)?;
        } else {
            let upload = self
                .store
                .put_multipart(&self.full(path))
                .await
                .map_err(stored)?;
            let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload, part);
            let mut next = Some(first);
            while let Some(chunk) = next.take().filter(|c| !c.is_empty()) {
                hasher.update(&chunk);
                size = size.saturating_add(u64::try_from(chunk.len()).unwrap_or(u64::MAX));
                // Back-pressure: the previous part is uploaded before this one is handed over.
                if let Err(e) = writer.wait_for_capacity(1).await {
                    let _ = writer.abort().await;
                    return Err(stored(e));
                }
                writer.put(chunk);
                match read_part(&mut reader, part).await {
                    Ok(more) => next = Some(more),
                    Err(e) => {
                        let _ = writer.abort().await;
                        return Err(io(e));
                    }
                }
            }
            writer.finish().await.map_err(stored)?;
        }
        Ok(ObjectMeta {
            path: path.to_owned(),
            size,
            sha256: alloy::hex::encode(hasher.finalize()),
            kind: kind.to_owned(),
            created_at: crate::store::unix_now(),
            owner: owner.to_owned(),
        })
    }

    /// The part size of streamed uploads.
    pub fn part_size(&self) -> usize {
        self.part_size
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

#[cfg(test)]
mod tests {
    use super::*;

    fn local(dir: &std::path::Path) -> Storage {
        Storage::open(&StorageSettings::Local {
            path: dir.join("objects"),
        })
        .expect("a local storage opens")
    }

    /// Bytes that differ from part to part (a shifted part would change the digest).
    fn content(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| u8::try_from((i * 7 + i / 4093) % 251).expect("below 251"))
            .collect()
    }

    #[tokio::test]
    async fn a_file_larger_than_a_part_is_streamed_whole_with_its_digest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = local(dir.path());
        let part = storage.part_size();
        for len in [0, 10, part - 1, part, 3 * part + 17] {
            let bytes = content(len);
            let file = dir.path().join(format!("f{len}"));
            std::fs::write(&file, &bytes).expect("write");
            let meta = storage
                .put_file(&format!("o/{len}"), "sqlite", "me", &file)
                .await
                .expect("put_file");
            assert_eq!(meta.size, len as u64, "size of {len}");
            assert_eq!(meta.sha256, sha256_hex(&bytes), "digest of {len}");
            let back = storage
                .fetch(&meta, u64::MAX)
                .await
                .expect("fetch verifies the digest");
            assert_eq!(back, bytes, "content of {len}");
        }
    }

    #[tokio::test]
    async fn an_upload_reads_at_most_one_part_at_a_time() {
        // The bound that keeps a backup's memory flat: whatever the file, a read gives at most
        // `part` bytes (the archive was read whole: +7 MiB at 10k requests, growing with them).
        let data = content(5 * 1000 + 3);
        let mut reader = std::io::Cursor::new(data.clone());
        let mut seen = Vec::new();
        loop {
            let chunk = read_part(&mut reader, 1000).await.expect("read");
            assert!(chunk.len() <= 1000, "a part of {} bytes", chunk.len());
            if chunk.is_empty() {
                break;
            }
            seen.extend_from_slice(&chunk);
        }
        assert_eq!(seen, data);
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(local(dir.path()).part_size(), LOCAL_PART);
    }
}
