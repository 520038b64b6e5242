//! The relay's HTTP API: `/metrics` (Prometheus text), `/healthz` (the process serves).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::Metrics;

/// What the HTTP handlers read.
#[derive(Clone)]
pub struct HttpState {
    /// The metrics to export.
    pub metrics: Arc<Metrics>,
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Bind `listen` and serve until `shutdown` resolves. Binding errors are returned at once.
pub async fn serve(
    listen: SocketAddr,
    state: HttpState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(state);
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    }))
}
