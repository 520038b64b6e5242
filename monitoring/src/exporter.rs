//! The relay's HTTP API: `/metrics` (Prometheus text), `/healthz` (the process serves),
//! `/readyz` (every dependency answered recently: 200 or 503, JSON body naming each component)
//! and `/status` (JSON of the lanes, chains and readiness).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::{Metrics, Readiness, StatusBoard};

/// What the HTTP handlers read.
#[derive(Clone)]
pub struct HttpState {
    /// The metrics to export.
    pub metrics: Arc<Metrics>,
    /// Readiness of the relay's dependencies.
    pub readiness: Arc<Readiness>,
    /// What `/status` serves.
    pub status: Arc<StatusBoard>,
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

async fn readyz(State(state): State<HttpState>) -> impl IntoResponse {
    let report = state.readiness.report();
    let code = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, redacted_json(&report))
}

/// A JSON body with every URL in it redacted (a stored error text may quote an RPC URL).
fn redacted_json<T: serde::Serialize>(value: &T) -> impl IntoResponse + use<T> {
    let text = serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned());
    (
        [(CONTENT_TYPE, "application/json")],
        crate::redact::redact_urls(&text).into_owned(),
    )
}

async fn status(State(state): State<HttpState>) -> impl IntoResponse {
    let mut snapshot = state.status.snapshot();
    if let serde_json::Value::Object(map) = &mut snapshot {
        map.insert(
            "readiness".to_owned(),
            serde_json::to_value(state.readiness.report()).unwrap_or_default(),
        );
    }
    redacted_json(&snapshot)
}

/// The routes, without binding (tests drive it directly).
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .with_state(state)
}

/// Bind `listen` and serve the API and `extra` (more routes, e.g. the dashboard) until
/// `shutdown` resolves. Binding errors are returned at once.
pub async fn serve(
    listen: SocketAddr,
    state: HttpState,
    extra: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let app = router(state).merge(extra);
    Ok(tokio::spawn(async move {
        // The client address reaches the handlers (the dashboard throttles failed logins per
        // address).
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let code = out[9..12].parse().unwrap();
        let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
        (code, body)
    }

    #[tokio::test]
    async fn readyz_follows_components_and_status_carries_sections() {
        let state = HttpState {
            metrics: Arc::new(Metrics::new(&multibridge_contracts::Lane::ALL, 1).unwrap()),
            readiness: Arc::new(Readiness::new(Duration::from_secs(30))),
            status: Arc::new(StatusBoard::new()),
        };
        state.readiness.register("chain:main");
        state
            .status
            .set("operator", serde_json::Value::from("0x01"));
        let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = serve(addr, state.clone(), Router::new(), async move {
            let _ = stopped.await;
        })
        .await
        .unwrap();
        let (code, body) = get(addr, "/readyz").await;
        assert_eq!(code, 503, "{body}");
        assert!(body.contains("\"chain:main\""), "{body}");
        state.readiness.ok("chain:main");
        let (code, _) = get(addr, "/readyz").await;
        assert_eq!(code, 200);
        let (code, body) = get(addr, "/status").await;
        assert_eq!(code, 200);
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["operator"], "0x01");
        assert_eq!(json["readiness"]["ready"], true);
        let (code, body) = get(addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(body.contains("multibridge_build_info"));
        let _ = stop.send(());
        server.await.unwrap();
    }
}
