//! How an operator serves its attested signatures: its HTTP route
//! (`GET /attestations/{lane}?from=N&limit=M`) and, for an operator who does not expose HTTP
//! (`voting.attestation_store`), the writer of its signature pages to an object store (one
//! object per [`PAGE_NONCES`] nonces, the same JSON as the route), which the registry publishes
//! as the location of its lane service: `file:///dir` for a directory the others can read (a
//! shared volume), `s3://bucket/prefix?region=…&endpoint=…` for a bucket whose `attestations/`
//! prefix anyone may read.
//!
//! The route answers this operator's signatures of the lane's attested
//! batches that end above nonce `from` (what the other operators' relays and users' `multibridge
//! execute` fetch). Served by every replica from its own store, and every replica signs, leading
//! or not: the registry lists every replica's URL (`registry.replica_urls`), or the lane
//! leader's when the operator runs one replica.
//!
//! The route is public by design (peers and users read it), so what visitors do must not cost
//! the relay's own work (audit A3-L3): at most [`AT_ONCE`] answers are made at a time, a request
//! waits at most [`QUEUE_WAIT`] for a turn (else 503), an answer is kept for [`CACHED_FOR`] (a
//! block time: a flood of the same page reads the store once) while this relay signs nothing
//! new (a kept answer never hides a signature from a peer: that cost a batch a block), and the
//! store is read off the async workers. `attestation_page_requests_total{outcome}` counts
//! served, cached and busy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use multibridge_contracts::Lane;
use serde::Deserialize;

use std::collections::BTreeSet;

use alloy::primitives::{Address, B256};
use tokio::sync::mpsc;

use super::page::{AttestationPage, MAX_PAGE, PAGE_NONCES, page_path};
use crate::storage::Storage;
use crate::store::SharedStore;
use crate::store::attestations::OwnAttestation;
use crate::task::{Next, Stepper};

/// Answers made at a time.
pub const AT_ONCE: usize = 4;
/// How long a request waits for a turn.
pub const QUEUE_WAIT: Duration = Duration::from_secs(1);
/// How long an answer is served again as it was.
pub const CACHED_FOR: Duration = Duration::from_secs(1);
/// Answers kept at most (past it the cache starts over).
const CACHED_AT_MOST: usize = 64;

/// The route's state: the store, once the relay opened it (the API serves before), its turns
/// and its cache.
#[derive(Clone)]
pub struct AttestationSource {
    store: Arc<OnceLock<Attached>>,
    turns: Arc<tokio::sync::Semaphore>,
    cache: Arc<Mutex<PageCache>>,
}

/// Answers by (lane, from, limit), with when they were made and the store's
/// [`attestations_version`](SharedStore::attestations_version) they were read at.
type PageCache = HashMap<(Lane, u64, usize), (Instant, u64, axum::body::Bytes)>;

/// What the relay attaches once its store is open.
struct Attached {
    store: SharedStore,
    operator: alloy::primitives::Address,
    metrics: multibridge_monitoring::AttestMetrics,
}

impl Default for AttestationSource {
    fn default() -> Self {
        Self {
            store: Arc::default(),
            turns: Arc::new(tokio::sync::Semaphore::new(AT_ONCE)),
            cache: Arc::default(),
        }
    }
}

impl AttestationSource {
    /// Serve from `store`, signatures of `operator`, counting in `metrics`.
    pub fn attach(
        &self,
        store: SharedStore,
        operator: alloy::primitives::Address,
        metrics: multibridge_monitoring::AttestMetrics,
    ) {
        let _ = self.store.set(Attached {
            store,
            operator,
            metrics,
        });
    }
}

#[derive(Deserialize)]
struct PageQuery {
    #[serde(default)]
    from: u64,
    limit: Option<usize>,
}

async fn attestations(
    State(source): State<AttestationSource>,
    Path(lane): Path<String>,
    Query(query): Query<PageQuery>,
) -> axum::response::Response {
    let Ok(lane) = lane.parse::<Lane>() else {
        return (StatusCode::NOT_FOUND, "no such lane").into_response();
    };
    let Some(attached) = source.store.get() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting").into_response();
    };
    let limit = query.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
    let key = (lane, query.from, limit);
    let json = |body: axum::body::Bytes| {
        (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    };
    // An answer is kept only while nothing was signed after it was read.
    let cached = |source: &AttestationSource| {
        let version = attached.store.attestations_version();
        source
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .filter(|(at, read_at, _)| at.elapsed() < CACHED_FOR && *read_at == version)
            .map(|(_, _, body)| body.clone())
    };
    if let Some(body) = cached(&source) {
        attached.metrics.page_request("cached");
        return json(body);
    }
    let Ok(Ok(_turn)) = tokio::time::timeout(QUEUE_WAIT, source.turns.acquire()).await else {
        attached.metrics.page_request("busy");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "busy: try again in a second",
        )
            .into_response();
    };
    // Another request may have made it while this one waited for its turn.
    if let Some(body) = cached(&source) {
        attached.metrics.page_request("cached");
        return json(body);
    }
    let (store, operator) = (attached.store.clone(), attached.operator);
    // Read before the store: a signature stored during the read makes the answer stale.
    let version = store.attestations_version();
    let read = tokio::task::spawn_blocking(move || {
        store
            .lock()
            .attestations_from(lane, query.from, limit)
            .map(|attestations| {
                serde_json::to_vec(&AttestationPage {
                    lane: lane.as_str().to_owned(),
                    operator,
                    attestations,
                })
            })
    })
    .await;
    match read {
        Ok(Ok(Ok(body))) => {
            let body = axum::body::Bytes::from(body);
            let mut cache = source.cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= CACHED_AT_MOST {
                cache.clear();
            }
            cache.insert(key, (Instant::now(), version, body.clone()));
            drop(cache);
            attached.metrics.page_request("served");
            json(body)
        }
        Ok(Ok(Err(e))) => {
            tracing::warn!(%lane, error = %e, "cannot encode attestations");
            (StatusCode::INTERNAL_SERVER_ERROR, "encoding error").into_response()
        }
        Ok(Err(e)) => {
            tracing::warn!(%lane, error = %e, "cannot read attestations");
            (StatusCode::INTERNAL_SERVER_ERROR, "store error").into_response()
        }
        Err(e) => {
            tracing::warn!(%lane, error = %e, "the attestations read failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "store error").into_response()
        }
    }
}

/// This operator's refund signatures of `lane` from nonce `from` (issue 53): what the other
/// operators' refund senders and users' `multibridge refund` fetch. Under the same turns as the
/// attestation pages.
async fn refunds(
    State(source): State<AttestationSource>,
    Path(lane): Path<String>,
    Query(query): Query<PageQuery>,
) -> axum::response::Response {
    let Ok(lane) = lane.parse::<Lane>() else {
        return (StatusCode::NOT_FOUND, "no such lane").into_response();
    };
    let Some(attached) = source.store.get() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting").into_response();
    };
    let Ok(Ok(_turn)) = tokio::time::timeout(QUEUE_WAIT, source.turns.acquire()).await else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "busy: try again in a second",
        )
            .into_response();
    };
    let limit = query
        .limit
        .unwrap_or(crate::refund::MAX_REFUND_PAGE)
        .clamp(1, crate::refund::MAX_REFUND_PAGE);
    let (store, operator) = (attached.store.clone(), attached.operator);
    let read = tokio::task::spawn_blocking(move || {
        store.lock().refund_signatures(lane, query.from, limit)
    })
    .await;
    match read {
        Ok(Ok(rows)) => axum::Json(crate::refund::RefundPage {
            lane: lane.as_str().to_owned(),
            operator,
            refunds: rows
                .into_iter()
                .filter_map(|row| {
                    row.signature.map(|s| crate::refund::SignedRefund {
                        nonce: row.nonce,
                        signature: s.to_vec().into(),
                    })
                })
                .collect(),
        })
        .into_response(),
        Ok(Err(e)) => {
            tracing::warn!(%lane, error = %e, "cannot read refund signatures");
            (StatusCode::INTERNAL_SERVER_ERROR, "store error").into_response()
        }
        Err(e) => {
            tracing::warn!(%lane, error = %e, "the refund signatures read failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "store error").into_response()
        }
    }
}

/// The routes: attestation pages and refund signatures.
pub fn router(source: AttestationSource) -> Router {
    Router::new()
        .route("/attestations/{lane}", get(attestations))
        .route("/refunds/{lane}", get(refunds))
        .with_state(source)
}

/// How long the writer gathers pages before writing them (a page is rewritten as its batches
/// are signed; this bounds how often).
const WRITE_EVERY: Duration = Duration::from_millis(200);

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
    #[error("attestation store: {0}")]
    Storage(#[from] crate::storage::StorageError),
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
    use crate::attest::collect::{PageReader, PeerError};
    use crate::attest::page::page_path;
    use crate::storage::public_location;
    use multibridge_config::StorageSettings;
    use std::time::Duration;

    fn attestation(first: u64, count: u64) -> OwnAttestation {
        OwnAttestation {
            first_nonce: first,
            count,
            digest: B256::repeat_byte(u8::try_from(first % 251).expect("below 251")),
            signature: alloy::primitives::Bytes::from(vec![7u8; 65]),
        }
    }

    /// The page `from` of `lane` as the route answers it: the first nonces of its batches.
    async fn served(source: &AttestationSource, lane: Lane, from: u64) -> Vec<u64> {
        let response = attestations(
            State(source.clone()),
            Path(lane.as_str().to_owned()),
            Query(PageQuery { from, limit: None }),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let page: super::super::page::AttestationPage =
            serde_json::from_slice(&body).expect("a page");
        page.attestations.iter().map(|a| a.first_nonce).collect()
    }

    fn page_requests(registry: &prometheus::Registry, outcome: &str) -> f64 {
        registry
            .gather()
            .iter()
            .filter(|f| f.name() == "multibridge_attestation_page_requests_total")
            .flat_map(|f| f.get_metric().iter())
            .filter(|m| m.get_label().iter().any(|l| l.value() == outcome))
            .map(|m| m.get_counter().get_value())
            .sum()
    }

    /// A peer asks for the same page every 250 ms while it waits for a batch's signature. The
    /// route keeps its answer for a block time against floods, but an answer kept from before
    /// this relay signed hid the new signature for up to that second: the batch missed a block
    /// (attested latency 2.9 s against the votes' 2.0 s at one confirmation).
    #[tokio::test]
    async fn a_kept_answer_serves_floods_but_never_hides_a_new_signature() {
        let lane = Lane::MainToService;
        let store =
            SharedStore::new(crate::store::Store::open_in_memory("route test").expect("store"));
        let registry = prometheus::Registry::new();
        let metrics =
            multibridge_monitoring::attest_metrics::AttestMetrics::register(&registry, &[lane])
                .expect("metrics");
        let source = AttestationSource::default();
        source.attach(store.clone(), Address::repeat_byte(0x42), metrics);
        store
            .record_attestation(lane, &attestation(0, 4))
            .expect("put");
        assert_eq!(served(&source, lane, 0).await, vec![0]);
        assert_eq!(served(&source, lane, 0).await, vec![0]);
        assert_eq!(page_requests(&registry, "served"), 1.0);
        assert_eq!(page_requests(&registry, "cached"), 1.0, "a repeat is kept");
        // Signed within the second the answer is kept for: the next ask sees it.
        store
            .record_attestation(lane, &attestation(4, 2))
            .expect("put");
        assert_eq!(served(&source, lane, 0).await, vec![0, 4]);
        assert_eq!(page_requests(&registry, "served"), 2.0);
        assert_eq!(served(&source, lane, 0).await, vec![0, 4]);
        assert_eq!(page_requests(&registry, "cached"), 2.0);
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
