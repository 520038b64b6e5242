//! `GET /attestations/{lane}?from=N&limit=M`: this operator's signatures of the lane's attested
//! batches that end above nonce `from` (what the other operators' relays and users' `multibridge
//! execute` fetch). Served by every replica from its own store; the registry points at the lane
//! leader's, which is the one that signs.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use multibridge_contracts::Lane;
use serde::{Deserialize, Serialize};

use crate::store::SharedStore;
use crate::store::attestations::OwnAttestation;

/// Most batches one answer carries.
pub const MAX_PAGE: usize = 256;

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

/// The route's state: the store, once the relay opened it (the API serves before).
#[derive(Clone, Default)]
pub struct AttestationSource {
    store: Arc<OnceLock<(SharedStore, alloy::primitives::Address)>>,
}

impl AttestationSource {
    /// Serve from `store`, signatures of `operator`.
    pub fn attach(&self, store: SharedStore, operator: alloy::primitives::Address) {
        let _ = self.store.set((store, operator));
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
    let Some((store, operator)) = source.store.get() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting").into_response();
    };
    let limit = query.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
    match store.lock().attestations_from(lane, query.from, limit) {
        Ok(attestations) => Json(AttestationPage {
            lane: lane.as_str().to_owned(),
            operator: *operator,
            attestations,
        })
        .into_response(),
        Err(e) => {
            tracing::warn!(%lane, error = %e, "cannot read attestations");
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
