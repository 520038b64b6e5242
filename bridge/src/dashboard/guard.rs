//! What stands between the Internet and the relay on the dashboard's routes (audit NEW-L1 of
//! 2026-11-23). The registry publishes each relay's URL for users, so the page is exposed by
//! design; whatever visitors do, the relay's own work (votes, leadership, the store) must not
//! wait for them.
//!
//! - **Host allow-list** against DNS rebinding: a request is served only when its `Host` is an
//!   IP address, `localhost`, the host of the relay's advertised URL, or a name in
//!   `dashboard.allowed_hosts` (a rebinding page always arrives under its own domain name).
//! - **One limit on API requests in flight**, with a short queue: past it a request is told to
//!   retry (503) instead of piling up; the chain-reading ones also share a smaller limit
//!   ([`super::CHAIN_READS_AT_ONCE`]), and the costly reads are cached (overview, services).
//! - **A deadline per request**: a read gets [`READ_DEADLINE`], a registry write
//!   [`WRITE_DEADLINE`] (it waits for its receipt).
//! - **A throttle on failed logins and bearer tokens**, per client address and overall: past
//!   it every login is refused (429) for a while, so a 16-character token is not guessed at line
//!   rate.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, StatusCode, header::HOST};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// API requests served at once (each may wait [`QUEUE_WAIT`] for a turn).
pub const REQUESTS_AT_ONCE: usize = 16;
/// How long a request waits for a turn before it is told to retry.
pub const QUEUE_WAIT: Duration = Duration::from_secs(2);
/// Deadline of a read.
pub const READ_DEADLINE: Duration = Duration::from_secs(20);
/// Deadline of a write (a registry transaction waits for its receipt).
pub const WRITE_DEADLINE: Duration = Duration::from_secs(120);
/// Failed logins or bearer tokens one client address may make per [`FAILURE_WINDOW`].
pub const FAILURES_PER_CLIENT: u32 = 5;
/// Failed logins or bearer tokens from all addresses together per [`FAILURE_WINDOW`].
pub const FAILURES_OVERALL: u32 = 30;
/// The window of the failure counts (and how long a throttled address waits at most).
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Client addresses remembered at most (past it, the oldest windows are forgotten).
const CLIENTS_REMEMBERED: usize = 4096;

/// Which hosts the dashboard answers to.
#[derive(Debug, Clone, Default)]
pub struct HostAllowList {
    names: Vec<String>,
}

impl HostAllowList {
    /// `localhost`, the host of `advertised` (the relay's URL in the registry) and `extra`.
    pub fn new(advertised: &str, extra: &[String]) -> Self {
        let mut names = vec!["localhost".to_owned()];
        if let Some(host) = url_host(advertised) {
            names.push(host);
        }
        names.extend(extra.iter().map(|h| h.trim().to_ascii_lowercase()));
        names.retain(|n| !n.is_empty());
        Self { names }
    }

    /// Whether a request with `host` (the `Host` header, with or without a port) is served.
    pub fn allows(&self, host: Option<&str>) -> bool {
        // HTTP/1.0 clients may omit it; a browser never does.
        let Some(host) = host else { return true };
        let name = strip_port(host).to_ascii_lowercase();
        name.trim_matches(['[', ']']).parse::<IpAddr>().is_ok() || self.names.contains(&name)
    }
}

/// The host of `url` (`http://name:port/…` → `name`), lowercased.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let host = strip_port(authority);
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// `host` without its `:port` (an IPv6 literal keeps its brackets).
fn strip_port(host: &str) -> &str {
    if let Some(end) = host.find(']') {
        return &host[..=end];
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// Failed logins and bearer tokens, per client address and overall.
#[derive(Debug, Default)]
pub struct Throttle {
    inner: Mutex<Failures>,
}

#[derive(Debug, Default)]
struct Failures {
    clients: HashMap<IpAddr, Window>,
    overall: Window,
}

#[derive(Debug, Clone, Copy, Default)]
struct Window {
    started: Option<Instant>,
    failures: u32,
}

impl Window {
    /// The count in the current window (a window older than [`FAILURE_WINDOW`] starts over).
    fn current(&mut self, now: Instant) -> &mut u32 {
        if self
            .started
            .is_none_or(|s| now.duration_since(s) >= FAILURE_WINDOW)
        {
            self.started = Some(now);
            self.failures = 0;
        }
        &mut self.failures
    }

    fn retry_after(&self, now: Instant) -> Duration {
        self.started.map_or(Duration::ZERO, |s| {
            FAILURE_WINDOW.saturating_sub(now.duration_since(s))
        })
    }
}

impl Throttle {
    /// `Err(seconds to wait)` while `client` (or everyone) failed too often recently.
    pub fn check(&self, client: Option<IpAddr>) -> Result<(), Duration> {
        let now = Instant::now();
        let mut f = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if *f.overall.current(now) >= FAILURES_OVERALL {
            return Err(f.overall.retry_after(now));
        }
        if let Some(ip) = client
            && let Some(w) = f.clients.get_mut(&ip)
            && *w.current(now) >= FAILURES_PER_CLIENT
        {
            return Err(w.retry_after(now));
        }
        Ok(())
    }

    /// Count a failed login or bearer token from `client`.
    pub fn failed(&self, client: Option<IpAddr>) {
        let now = Instant::now();
        let mut f = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let overall = f.overall.current(now);
        *overall = overall.saturating_add(1);
        let Some(ip) = client else { return };
        if f.clients.len() >= CLIENTS_REMEMBERED && !f.clients.contains_key(&ip) {
            f.clients.retain(|_, w| {
                w.started
                    .is_some_and(|s| now.duration_since(s) < FAILURE_WINDOW)
            });
            if f.clients.len() >= CLIENTS_REMEMBERED {
                f.clients.clear();
            }
        }
        let count = f.clients.entry(ip).or_default().current(now);
        *count = count.saturating_add(1);
    }
}

/// The client address of a request (`None` when the server was started without it).
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

/// The guard's shared state.
pub struct Guard {
    /// Which hosts are served.
    pub hosts: HostAllowList,
    /// API requests in flight.
    pub in_flight: tokio::sync::Semaphore,
    /// Metrics of what was refused.
    pub metrics: Arc<multibridge_monitoring::Metrics>,
}

impl Guard {
    /// A guard serving `hosts`.
    pub fn new(hosts: HostAllowList, metrics: Arc<multibridge_monitoring::Metrics>) -> Self {
        Self {
            hosts,
            in_flight: tokio::sync::Semaphore::new(REQUESTS_AT_ONCE),
            metrics,
        }
    }
}

fn refused(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

/// The middleware of every dashboard route: host check, client address, then (for the API)
/// a turn among [`REQUESTS_AT_ONCE`] and a deadline.
pub async fn guard(State(guard): State<Arc<Guard>>, mut request: Request, next: Next) -> Response {
    let host = request.headers().get(HOST).and_then(|v| v.to_str().ok());
    if !guard.hosts.allows(host) {
        guard.metrics.dashboard.refused("bad_host");
        return refused(
            StatusCode::MISDIRECTED_REQUEST,
            "this host name is not served here (add it to dashboard.allowed_hosts)",
        );
    }
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    request.extensions_mut().insert(ClientIp(ip));
    if !request.uri().path().starts_with("/ui/api/") {
        return next.run(request).await;
    }
    let Ok(Ok(_turn)) = tokio::time::timeout(QUEUE_WAIT, guard.in_flight.acquire()).await else {
        guard.metrics.dashboard.refused("busy");
        return refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "the dashboard is busy: try again in a few seconds",
        );
    };
    let deadline = if request.method() == Method::GET {
        READ_DEADLINE
    } else {
        WRITE_DEADLINE
    };
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            guard.metrics.dashboard.refused("timeout");
            refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "the request took too long: try again in a few seconds",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebinding_names_are_refused_addresses_and_known_names_served() {
        let hosts =
            HostAllowList::new("https://relay-a.example.org:9464", &["Ops.Internal".into()]);
        for ok in [
            "127.0.0.1:9464",
            "10.1.2.3",
            "[::1]:9464",
            "localhost:9464",
            "relay-a.example.org",
            "RELAY-A.example.org:443",
            "ops.internal:80",
        ] {
            assert!(hosts.allows(Some(ok)), "{ok}");
        }
        for bad in [
            "attacker.example",
            "relay-a.example.org.attacker.example",
            "127.0.0.1.nip.io:9464",
        ] {
            assert!(!hosts.allows(Some(bad)), "{bad}");
        }
        assert!(hosts.allows(None));
        assert_eq!(url_host("http://[::1]:80/x").as_deref(), Some("[::1]"));
    }

    #[test]
    fn failures_are_throttled_per_client_and_overall() {
        let t = Throttle::default();
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        for _ in 0..FAILURES_PER_CLIENT {
            assert!(t.check(a).is_ok());
            t.failed(a);
        }
        let wait = t.check(a).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= FAILURE_WINDOW);
        assert!(t.check(b).is_ok(), "another client is not held up by a");
        // Many addresses together hit the overall bound.
        for i in 0..FAILURES_OVERALL {
            t.failed(Some(IpAddr::from([
                10,
                1,
                (i / 256) as u8,
                (i % 256) as u8,
            ])));
        }
        assert!(t.check(b).is_err(), "overall bound reached");
    }
}
