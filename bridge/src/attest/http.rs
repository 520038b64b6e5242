//! `GET /attestations/{lane}?from=N&limit=M`: this operator's signatures of the lane's attested
//! batches that end above nonce `from` (what the other operators' relays and users' `multibridge
//! execute` fetch). Served by every replica from its own store; the registry points at the lane
//! leader's, which is the one that signs.
//!
//! The route is public by design (peers and users read it), so what visitors do must not cost
//! the relay's own work (audit A3-L3): at most [`AT_ONCE`] answers are made at a time, a request
//! waits at most [`QUEUE_WAIT`] for a turn (else 503), an answer is kept for [`CACHED_FOR`] (a
//! block time: a flood of the same page reads the store once), and the store is read off the
//! async workers. `attestation_page_requests_total{outcome}` counts served, cached and busy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use multibridge_contracts::Lane;
use serde::{Deserialize, Serialize};

use crate::store::SharedStore;
use crate::store::attestations::OwnAttestation;

/// Most batches one answer carries.
pub const MAX_PAGE: usize = 256;
/// Answers made at a time.
pub const AT_ONCE: usize = 4;
/// How long a request waits for a turn.
pub const QUEUE_WAIT: Duration = Duration::from_secs(1);
/// How long an answer is served again as it was.
pub const CACHED_FOR: Duration = Duration::from_secs(1);
/// Answers kept at most (past it the cache starts over).
const CACHED_AT_MOST: usize = 64;

/// What the route answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttestationPage {
    /// The lane.
    pub lane: String,
    /// The operator whose signatures these are.
    pub operator: alloy::primitives::Address,
    /// Its signatures, by first nonce.
    pub attestations: Vec<OwnAttestation>,
}

/// The route's state: the store, once the relay opened it (the API serves before), its turns
/// and its cache.
#[derive(Clone)]
pub struct AttestationSource {
    store: Arc<OnceLock<Attached>>,
    turns: Arc<tokio::sync::Semaphore>,
    cache: Arc<Mutex<PageCache>>,
}

/// Answers by (lane, from, limit), with when they were made.
type PageCache = HashMap<(Lane, u64, usize), (Instant, axum::body::Bytes)>;

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
    let cached = |source: &AttestationSource| {
        source
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .filter(|(at, _)| at.elapsed() < CACHED_FOR)
            .map(|(_, body)| body.clone())
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
            cache.insert(key, (Instant::now(), body.clone()));
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

/// The route.
pub fn router(source: AttestationSource) -> Router {
    Router::new()
        .route("/attestations/{lane}", get(attestations))
        .with_state(source)
}
