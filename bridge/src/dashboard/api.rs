//! The dashboard's routes: the page and its assets, and the JSON API under `/ui/api/`. Every
//! answer is JSON with a status code a person can act on (400 bad input, 401/403 refused,
//! 404 not found, 503 a chain or the relay not ready) and a message; nothing panics into a 500.

use std::sync::Arc;

use alloy::primitives::B256;
use axum::Json;
use axum::Router;
use axum::extract::{Extension, Query, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use multibridge_contracts::Lane;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{AuthError, SESSION_COOKIE};
use super::guard::ClientIp;
use super::tracker::{TrackError, TrackParams};
use super::writer::{RegistryWrite, WriteError};
use super::{Dashboard, DashboardError, DashboardHandle};

/// Longest service name accepted.
const MAX_NAME: usize = 64;
/// Longest location accepted.
const MAX_LOCATION: usize = 256;

/// An API failure: a status, a label for the metric, and the message the page shows.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    outcome: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, outcome: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            outcome,
            message: message.into(),
        }
    }

    fn bad_input(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_input", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = multibridge_monitoring::redact_urls(&self.message).into_owned();
        (self.status, Json(json!({ "error": message }))).into_response()
    }
}

impl From<DashboardError> for ApiError {
    fn from(e: DashboardError) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("cannot read it right now ({e}); the page retries by itself"),
        )
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let status = match e {
            AuthError::BadToken | AuthError::NotLoggedIn => StatusCode::UNAUTHORIZED,
            AuthError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::FORBIDDEN,
        };
        Self::new(status, "refused", e.to_string())
    }
}

/// Count a throttled login or bearer token with the guard's refusals.
fn note_throttled(h: &DashboardHandle, e: &AuthError) {
    if matches!(e, AuthError::Throttled(_)) {
        h.metrics.dashboard.refused("throttled");
    }
}

impl From<TrackError> for ApiError {
    fn from(e: TrackError) -> Self {
        match e {
            TrackError::BadInput(m) => Self::bad_input(m),
            TrackError::NotFound(m) => Self::new(StatusCode::NOT_FOUND, "not_found", m),
            TrackError::Unavailable(e) => e.into(),
        }
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        let status = match e {
            WriteError::NotSending(_) => StatusCode::CONFLICT,
            WriteError::Refused(_) | WriteError::Reverted(_) => StatusCode::UNPROCESSABLE_ENTITY,
            WriteError::NotMined(..) | WriteError::Send(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self::new(status, "refused", e.to_string())
    }
}

type Shared = Arc<DashboardHandle>;
type ApiResult = Result<Json<Value>, ApiError>;

/// The running relay's side, or 503 naming what the relay still waits for.
fn running(h: &DashboardHandle) -> Result<Arc<Dashboard>, ApiError> {
    h.running.get().cloned().ok_or_else(|| {
        let report = h.readiness.report();
        let waiting: Vec<String> = report
            .components
            .iter()
            .filter(|(_, c)| !c.ready)
            .map(|(name, c)| match &c.error {
                Some(e) => format!("{name} ({e})"),
                None => name.clone(),
            })
            .collect();
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!(
                "the relay is starting; waiting for: {}",
                if waiting.is_empty() {
                    "its checks".to_owned()
                } else {
                    waiting.join(", ")
                }
            ),
        )
    })
}

/// A turn to read the chains, or 503 when the dashboard is busy.
async fn chain_turn(h: &DashboardHandle) -> Result<tokio::sync::SemaphorePermit<'_>, ApiError> {
    match tokio::time::timeout(super::CHAIN_READ_QUEUE, h.chain_reads.acquire()).await {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the dashboard is busy with other lookups: try again in a few seconds",
        )),
    }
}

/// Count the outcome of an API call.
fn counted(h: &DashboardHandle, endpoint: &str, result: ApiResult) -> ApiResult {
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.outcome,
    };
    h.metrics.dashboard.request(endpoint, outcome);
    result
}

/// The overview, computed at most once per [`super::OVERVIEW_FRESH_FOR`] however many visitors
/// ask (it reads etcd per operator and the destinations' operators): concurrent requests wait
/// for one computation and share it.
async fn overview(State(h): State<Shared>) -> ApiResult {
    let result = async {
        let d = running(&h)?;
        let mut cached = h.overview_cache.lock().await;
        if let Some((at, value)) = cached.as_ref()
            && at.elapsed() < super::OVERVIEW_FRESH_FOR
        {
            return Ok(Json(value.clone()));
        }
        let _turn = chain_turn(&h).await?;
        let value = super::overview::overview(&h, &d).await;
        *cached = Some((std::time::Instant::now(), value.clone()));
        Ok(Json(value))
    }
    .await;
    counted(&h, "overview", result)
}

/// The registry's services, read at most once per [`super::SERVICES_FRESH_FOR`] (two calls
/// per registered id, and anyone may register ids).
async fn services(State(h): State<Shared>) -> ApiResult {
    let result = async {
        let d = running(&h)?;
        let mut cached = h.services_cache.lock().await;
        if let Some((at, value)) = cached.as_ref()
            && at.elapsed() < super::SERVICES_FRESH_FOR
        {
            return Ok(Json(value.clone()));
        }
        let _turn = chain_turn(&h).await?;
        let view = super::services::services(&d).await?;
        let value = serde_json::to_value(view).unwrap_or_default();
        *cached = Some((std::time::Instant::now(), value.clone()));
        Ok(Json(value))
    }
    .await;
    counted(&h, "services", result)
}

/// Paging of the claims list.
#[derive(Debug, Deserialize)]
pub struct Page {
    #[serde(default)]
    limit: Option<String>,
    #[serde(default)]
    offset: Option<String>,
}

fn number(text: Option<&str>, default: usize, max: usize, what: &str) -> Result<usize, ApiError> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(default),
        Some(t) => t
            .parse::<usize>()
            .map(|n| n.min(max))
            .map_err(|_| ApiError::bad_input(format!("{what} `{t}` is not a whole number"))),
    }
}

/// Deepest page of the claims list (older claims stay in the store and in the registry's events).
const MAX_CLAIMS_OFFSET: usize = 100_000;

/// The claims history, read through the dashboard's own read-only connection to the store (WAL:
/// it never waits for, nor holds up, the relay's writes), along the claims' block index.
async fn claims(State(h): State<Shared>, Query(page): Query<Page>) -> ApiResult {
    let result = async {
        let d = running(&h)?;
        let limit = number(page.limit.as_deref(), 100, 500, "limit")?;
        let offset = number(page.offset.as_deref(), 0, MAX_CLAIMS_OFFSET, "offset")?;
        let reader = d.claims.clone();
        let read = tokio::task::spawn_blocking(move || reader.page(limit, offset))
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!("the claims read stopped: {e}"),
                )
            })?
            .map_err(DashboardError::from)?;
        let crate::store::claims::ClaimsPage {
            claims: list,
            all,
            open,
            next_block,
        } = read;
        Ok(Json(json!({
            "claims": list,
            "total": all,
            "open": open,
            "scanned_to_block": next_block.map(|n| n.saturating_sub(1)),
        })))
    }
    .await;
    counted(&h, "claims", result)
}

async fn track(State(h): State<Shared>, Query(params): Query<TrackParams>) -> ApiResult {
    let result = async {
        let query = super::tracker::parse(&params)?;
        let d = running(&h)?;
        let _turn = chain_turn(&h).await?;
        let answer =
            super::tracker::track(&super::tracker::TrackContext::from(d.as_ref()), query).await?;
        Ok(Json(serde_json::to_value(answer).unwrap_or_default()))
    }
    .await;
    counted(&h, "track", result)
}

async fn session(State(h): State<Shared>, headers: HeaderMap) -> ApiResult {
    let csrf = h.auth.session_csrf(&headers);
    let writer = h.running.get().and_then(|d| d.writer.as_ref());
    counted(
        &h,
        "session",
        Ok(Json(json!({
            "writable": h.auth.writable(),
            "logged_in": csrf.is_some(),
            "csrf": csrf,
            "manager": writer.map(super::writer::Writer::from),
            "can_send": writer.is_some_and(super::writer::Writer::can_send),
        }))),
    )
}

/// The login form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
}

async fn login(
    State(h): State<Shared>,
    Extension(ClientIp(client)): Extension<ClientIp>,
    headers: HeaderMap,
    form: Result<Json<LoginForm>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let result = async {
        let Json(form) = form.map_err(|e| ApiError::bad_input(e.body_text()))?;
        let login = h
            .auth
            .login(form.token.trim(), &headers, client)
            .inspect_err(|e| note_throttled(&h, e))?;
        Ok::<_, ApiError>(login)
    }
    .await;
    match result {
        Ok(login) => {
            h.metrics.dashboard.request("login", "ok");
            let secure = h.secure_cookie.unwrap_or_else(|| {
                headers
                    .get("x-forwarded-proto")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|p| p.eq_ignore_ascii_case("https"))
            });
            let cookie = format!(
                "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
                login.session,
                login.max_age.as_secs(),
                if secure { "; Secure" } else { "" }
            );
            let mut response = Json(json!({ "csrf": login.csrf })).into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(SET_COOKIE, value);
            }
            response
        }
        Err(e) => {
            h.metrics.dashboard.request("login", e.outcome);
            e.into_response()
        }
    }
}

async fn logout(State(h): State<Shared>, headers: HeaderMap) -> Response {
    h.auth.logout(&headers);
    let mut response = Json(json!({ "logged_in": false })).into_response();
    response.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_static("mb_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

fn check_location(location: &str) -> Result<String, ApiError> {
    let location = location.trim();
    if location.is_empty() {
        return Err(ApiError::bad_input(
            "give a location (the URL the service is served at)",
        ));
    }
    if location.len() > MAX_LOCATION {
        return Err(ApiError::bad_input(format!(
            "the location has {} characters: at most {MAX_LOCATION}",
            location.len()
        )));
    }
    if !(location.starts_with("http://") || location.starts_with("https://"))
        || location
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(ApiError::bad_input(format!(
            "`{location}` is not an http(s) URL (e.g. https://relay.example.org:9464)"
        )));
    }
    Ok(location.to_owned())
}

/// The register form.
#[derive(Debug, Deserialize)]
pub struct RegisterForm {
    lane: String,
    name: String,
    location: String,
}

/// Authorize, then build the write from the form (so a refused request learns nothing about
/// its body), send it and wait for the receipt.
async fn write(
    h: &DashboardHandle,
    headers: &HeaderMap,
    client: Option<std::net::IpAddr>,
    action: &'static str,
    build: impl FnOnce(&Dashboard) -> Result<RegistryWrite, ApiError>,
) -> ApiResult {
    let result = async {
        h.auth
            .authorize_write(headers, client)
            .inspect_err(|e| note_throttled(h, e))?;
        let d = running(h)?;
        let writer = d.writer.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "refused",
                "this relay has no [registry] configured: nothing to write to",
            )
        })?;
        let request = build(&d)?;
        match writer.write(&request).await {
            Ok(written) => {
                h.metrics.dashboard.write(action, "mined");
                tracing::info!(action, tx = %written.tx, block = written.block, manager = %writer.from(), "registry written from the dashboard");
                Ok(Json(json!({ "tx": written.tx, "block": written.block })))
            }
            Err(e) => {
                h.metrics.dashboard.write(action, e.result());
                tracing::warn!(action, error = %e, "registry write from the dashboard failed");
                Err(e.into())
            }
        }
    }
    .await;
    counted(h, action, result)
}

async fn register(
    State(h): State<Shared>,
    Extension(ClientIp(client)): Extension<ClientIp>,
    headers: HeaderMap,
    form: Result<Json<RegisterForm>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    write(&h, &headers, client, "register", |d| {
        let Json(form) = form.map_err(|e| ApiError::bad_input(e.body_text()))?;
        let lane: Lane = form.lane.trim().parse().map_err(|_| {
            ApiError::bad_input(format!(
                "unknown lane `{}`: use main-to-service or service-to-main",
                form.lane.trim()
            ))
        })?;
        let name = form.name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control)
        {
            return Err(ApiError::bad_input(format!(
                "give a name of 1 to {MAX_NAME} printable characters"
            )));
        }
        let src = d.config.chains.get(lane.source());
        let dst = d.config.chains.get(lane.destination());
        Ok(RegistryWrite::RegisterLane {
            src_chain_id: src.chain_id,
            src_bridge: src.bridge,
            dst_chain_id: dst.chain_id,
            dst_bridge: dst.bridge,
            name: name.to_owned(),
            location: check_location(&form.location)?,
        })
    })
    .await
}

/// The update-location form.
#[derive(Debug, Deserialize)]
pub struct LocationForm {
    id: String,
    location: String,
}

async fn update_location(
    State(h): State<Shared>,
    Extension(ClientIp(client)): Extension<ClientIp>,
    headers: HeaderMap,
    form: Result<Json<LocationForm>, axum::extract::rejection::JsonRejection>,
) -> ApiResult {
    write(&h, &headers, client, "update_location", |_| {
        let Json(form) = form.map_err(|e| ApiError::bad_input(e.body_text()))?;
        let id: B256 = form.id.trim().parse().map_err(|_| {
            ApiError::bad_input(format!(
                "`{}` is not a service id (0x and 64 hex digits)",
                form.id.trim()
            ))
        })?;
        Ok(RegistryWrite::UpdateLocation {
            id,
            location: check_location(&form.location)?,
        })
    })
    .await
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such dashboard API")
}

/// The dashboard's routes (the page at `/` and `/ui/`, its API under `/ui/api/`), every one
/// behind the guard ([`super::guard`]).
pub fn router(handle: Arc<DashboardHandle>) -> Router {
    let guard = handle.guard.clone();
    let api = Router::new()
        .route("/overview", get(overview))
        .route("/services", get(services).post(register))
        .route("/services/location", post(update_location))
        .route("/claims", get(claims))
        .route("/track", get(track))
        .route("/session", get(session))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .fallback(not_found)
        .with_state(handle);
    Router::new()
        .nest("/ui/api", api)
        .merge(super::assets::router())
        .layer(axum::middleware::from_fn_with_state(
            guard,
            super::guard::guard,
        ))
}
