//! Signatures through an object store, for an operator who does not expose HTTP
//! (`voting.attestation_store`): the lane leader writes its signatures in pages (one object per
//! [`PAGE_NONCES`] nonces, the same JSON as `GET /attestations/{lane}`), and the registry
//! publishes the storage as the location of its lane service: `file:///dir` for a directory
//! the others can read (a shared volume), `s3://bucket/prefix?region=…&endpoint=…` for a
//! bucket whose `attestations/` prefix anyone may read. The other operators and users'
//! `multibridge execute` read the page that holds the nonce they need, without credentials,
//! and check every signature as they check an HTTP answer.

use std::collections::BTreeSet;
use std::time::Duration;

use alloy::primitives::{Address, B256};
use multibridge_contracts::Lane;
use tokio::sync::mpsc;

use super::http::AttestationPage;
use super::peers::PeerError;
use crate::backup::storage::{Storage, StorageError};
use crate::store::SharedStore;
use crate::store::attestations::OwnAttestation;
use crate::task::{Next, Stepper};

/// Nonces per page object: 32 attested windows. A page holds at most one batch per nonce, so
/// at most this many signatures (~256 KiB of JSON when every batch is a single request).
pub const PAGE_NONCES: u64 = 1024;

/// Largest page a reader takes (a page of single-request batches is ~256 KiB).
const MAX_PAGE_BYTES: u64 = 1024 * 1024;

/// How long the writer gathers pages before writing them (a page is rewritten as its batches
/// are signed; this bounds how often).
const WRITE_EVERY: Duration = Duration::from_millis(200);

/// The page `nonce` belongs to.
pub fn page_of(nonce: u64) -> u64 {
    nonce.checked_div(PAGE_NONCES).unwrap_or(0)
}

/// The object of page `page` of the lane service `service_id`, under the storage's prefix.
pub fn page_path(service_id: B256, page: u64) -> String {
    format!("attestations/{service_id:x}/{page:020}.json")
}

/// Whether a published location names an object store (not an HTTP API).
pub fn is_object_location(location: &str) -> bool {
    location.starts_with("file://") || location.starts_with("s3://")
}

/// A read-only view of another operator's signature pages.
pub struct PageReader {
    storage: Storage,
}

impl PageReader {
    /// The reader of `location` (a [`public_location`](crate::backup::storage::public_location)); requests bounded by `timeout`.
    pub fn open(location: &str, timeout: Duration) -> Result<Self, PeerError> {
        Storage::open_public(location, timeout)
            .map(|storage| Self { storage })
            .map_err(|e| PeerError::Unreachable(e.to_string()))
    }

    /// Page `page` of `service_id` (`None`: not written, nothing signed there yet).
    pub async fn page(
        &self,
        service_id: B256,
        page: u64,
    ) -> Result<Option<AttestationPage>, PeerError> {
        let path = page_path(service_id, page);
        let bytes = match self.storage.get_bounded(&path, MAX_PAGE_BYTES).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(None),
            Err(StorageError::TooLarge { size, .. }) => {
                return Err(PeerError::Garbage(format!(
                    "page {path} has {size} bytes, more than the {MAX_PAGE_BYTES} a page can need"
                )));
            }
            Err(e) => return Err(PeerError::Unreachable(e.to_string())),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| PeerError::Garbage(format!("page {path}: {e}")))
    }
}

/// What the writer is told: pages whose signatures changed.
pub type PageSender = mpsc::UnboundedSender<u64>;

/// The writer of one lane's signature pages (a task of the lane leader).
pub struct PageWriter {
    lane: Lane,
    operator: Address,
    service_id: B256,
    storage: Storage,
    store: SharedStore,
    pages: mpsc::UnboundedReceiver<u64>,
    /// Pages to write (changed, or whose write failed).
    due: BTreeSet<u64>,
    metrics: multibridge_monitoring::attest_metrics::AttestMetrics,
}

/// Why a page could not be written (retried: the pages stay due).
#[derive(Debug, thiserror::Error)]
pub enum PageWriteError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The object store refused or did not answer.
    #[error(transparent)]
    Storage(#[from] crate::backup::storage::StorageError),
}

impl crate::task::Retryable for PageWriteError {
    fn is_retryable(&self) -> bool {
        // A page is written again as long as the relay runs; a storage that cannot be opened is
        // refused at start, so what fails here is the storage's answer or the disk.
        true
    }
}

impl PageWriter {
    /// The writer of `lane`'s pages of `operator` (lane service `service_id`) to `storage`, told
    /// of changed pages through the returned sender.
    pub fn new(
        lane: Lane,
        operator: Address,
        service_id: B256,
        storage: Storage,
        store: SharedStore,
        metrics: multibridge_monitoring::attest_metrics::AttestMetrics,
    ) -> (Self, PageSender) {
        let (tx, pages) = mpsc::unbounded_channel();
        (
            Self {
                lane,
                operator,
                service_id,
                storage,
                store,
                pages,
                due: BTreeSet::new(),
                metrics,
            },
            tx,
        )
    }

    /// The page `page` as stored now.
    fn render(&self, page: u64) -> Result<Vec<u8>, crate::store::StoreError> {
        let start = page.saturating_mul(PAGE_NONCES);
        let end = start.saturating_add(PAGE_NONCES);
        let limit = usize::try_from(PAGE_NONCES).unwrap_or(usize::MAX);
        let attestations: Vec<OwnAttestation> = self
            .store
            .lock()
            .attestations_from(self.lane, start, limit)?
            .into_iter()
            .filter(|a| a.first_nonce >= start && a.first_nonce < end)
            .collect();
        let page = AttestationPage {
            lane: self.lane.as_str().to_owned(),
            operator: self.operator,
            attestations,
        };
        Ok(serde_json::to_vec(&page).expect("a page of addresses, numbers and bytes serializes"))
    }
}

impl Stepper for PageWriter {
    type Error = PageWriteError;

    async fn step(&mut self) -> Result<Next, PageWriteError> {
        if self.due.is_empty() {
            match self.pages.recv().await {
                Some(page) => {
                    self.due.insert(page);
                }
                // The attestor is gone (the lane stopped): nothing more to write.
                None => return Ok(Next::After(Duration::from_secs(3600))),
            }
            // Gather what the same step and the next few sign.
            tokio::time::sleep(WRITE_EVERY).await;
        }
        while let Ok(page) = self.pages.try_recv() {
            self.due.insert(page);
        }
        let owner = self.operator.to_string();
        while let Some(&page) = self.due.first() {
            let bytes = self.render(page)?;
            let written = self
                .storage
                .put(
                    &page_path(self.service_id, page),
                    "attestations",
                    &owner,
                    bytes,
                )
                .await;
            self.metrics
                .page_written(self.lane, if written.is_ok() { "ok" } else { "failed" });
            written?;
            self.due.remove(&page);
        }
        Ok(Next::Now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::storage::public_location;
    use multibridge_config::StorageSettings;

    #[test]
    fn locations_name_what_a_reader_needs_and_no_secret() {
        assert_eq!(
            public_location(&StorageSettings::Local {
                path: "/var/lib/multibridge/sigs".into()
            }),
            "file:///var/lib/multibridge/sigs"
        );
        let s3 = public_location(&StorageSettings::S3 {
            bucket: "sigs".into(),
            endpoint: Some("http://user:secret@127.0.0.1:9000".into()),
            region: "eu-west-1".into(),
            prefix: "/op1/".into(),
            access_key_id_env: "AWS_ACCESS_KEY_ID".into(),
            secret_access_key_env: "AWS_SECRET_ACCESS_KEY".into(),
            allow_http: true,
        });
        assert!(
            s3.starts_with("s3://sigs/op1?region=eu-west-1&endpoint=http://"),
            "{s3}"
        );
        assert!(s3.ends_with("&allow_http=true"), "{s3}");
        assert!(
            !s3.contains("secret"),
            "credentials in a published location: {s3}"
        );
        assert!(is_object_location(&s3));
        assert!(!is_object_location("http://127.0.0.1:9465"));
        assert!(PageReader::open("s3://?region=x", Duration::from_secs(1)).is_err());
        assert!(PageReader::open("s3://b/p?color=red", Duration::from_secs(1)).is_err());
        assert!(PageReader::open(&s3, Duration::from_secs(1)).is_ok());
        assert_eq!(page_of(1023), 0);
        assert_eq!(page_of(1024), 1);
    }

    fn attestation(first: u64, count: u64) -> OwnAttestation {
        OwnAttestation {
            first_nonce: first,
            count,
            digest: B256::repeat_byte(u8::try_from(first % 251).expect("below 251")),
            signature: alloy::primitives::Bytes::from(vec![7u8; 65]),
        }
    }

    #[tokio::test]
    async fn the_writer_pages_what_is_signed_and_a_reader_finds_it_by_nonce() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = std::path::absolute(dir.path().join("sigs")).expect("absolute");
        let settings = StorageSettings::Local { path: root };
        let lane = Lane::MainToService;
        let operator = Address::repeat_byte(0x42);
        let service = B256::repeat_byte(0x5e);
        let store =
            SharedStore::new(crate::store::Store::open_in_memory("pages test").expect("store"));
        // Page 0: two batches; page 1: one batch at its start; page 2: none.
        for (first, count) in [(0, 32), (32, 3), (1024, 5)] {
            store
                .lock()
                .put_attestation(lane, &attestation(first, count))
                .expect("put");
        }
        let registry = prometheus::Registry::new();
        let metrics =
            multibridge_monitoring::attest_metrics::AttestMetrics::register(&registry, &[lane])
                .expect("metrics");
        let (mut writer, pages) = PageWriter::new(
            lane,
            operator,
            service,
            Storage::open(&settings).expect("storage"),
            store.clone(),
            metrics,
        );
        pages.send(0).expect("send");
        pages.send(1).expect("send");
        pages.send(0).expect("send");
        writer.step().await.expect("written");
        assert!(writer.due.is_empty(), "every page told of is written");

        let reader =
            PageReader::open(&public_location(&settings), Duration::from_secs(5)).expect("open");
        let first = reader
            .page(service, 0)
            .await
            .expect("read")
            .expect("page 0");
        assert_eq!(first.operator, operator);
        assert_eq!(first.lane, lane.as_str());
        let firsts: Vec<u64> = first.attestations.iter().map(|a| a.first_nonce).collect();
        assert_eq!(
            firsts,
            vec![0, 32],
            "page 0 holds the batches starting below 1024"
        );
        assert_eq!(first.attestations[1], attestation(32, 3));
        let second = reader
            .page(service, 1)
            .await
            .expect("read")
            .expect("page 1");
        assert_eq!(second.attestations, vec![attestation(1024, 5)]);
        assert!(reader.page(service, 2).await.expect("read").is_none());
        assert!(
            reader
                .page(B256::repeat_byte(1), 0)
                .await
                .expect("read")
                .is_none(),
            "another service's pages are elsewhere"
        );

        // A batch signed later in page 0 is there after the next write.
        store
            .lock()
            .put_attestation(lane, &attestation(64, 1))
            .expect("put");
        pages.send(0).expect("send");
        writer.step().await.expect("written");
        let again = reader
            .page(service, 0)
            .await
            .expect("read")
            .expect("page 0");
        assert_eq!(again.attestations.len(), 3);

        // A page that is not JSON of a page is garbage, not an outage.
        let path = dir.path().join("sigs").join(page_path(service, 5));
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, b"<html>").expect("write");
        assert!(matches!(
            reader.page(service, 5).await,
            Err(PeerError::Garbage(_))
        ));
    }
}
