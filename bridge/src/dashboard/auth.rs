//! Who may write through the dashboard: an admin token from the config (compared in constant
//! time), exchanged at login for a session cookie (`HttpOnly`, `SameSite=Strict`) and a CSRF
//! token the page sends back in a header with every write; a write whose `Origin` is not this
//! host is refused even with both. Scripts may send the token itself as `Authorization: Bearer`
//! (no cookie, so nothing a foreign page could ride on). Failed tokens are throttled per client
//! address and overall ([`super::guard::Throttle`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, COOKIE, HOST, ORIGIN};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

use super::guard::Throttle;
use crate::config::Secret;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "mb_session";
/// The header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Sessions kept at most (the oldest goes first).
const MAX_SESSIONS: usize = 64;
/// The shortest admin token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// Why a write (or a login) is refused. Each names what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No admin token is configured: the page is read-only.
    #[error(
        "this dashboard is read-only: its relay has no admin token (dashboard.admin_token_env or admin_token_file)"
    )]
    ReadOnly,
    /// The token given at login (or as a bearer) is wrong.
    #[error("wrong admin token")]
    BadToken,
    /// No valid session: log in first.
    #[error("not logged in (or the session expired): log in with the admin token")]
    NotLoggedIn,
    /// The CSRF header is missing or does not match the session.
    #[error("the request did not carry this session's CSRF token: reload the page and try again")]
    CsrfMismatch,
    /// The request came from a page of another origin.
    #[error("cross-site request refused: origin {origin} is not this dashboard ({host})")]
    CrossOrigin {
        /// The `Origin` header.
        origin: String,
        /// This host.
        host: String,
    },
    /// Too many wrong tokens from this address (or from everyone) recently.
    #[error("too many wrong admin tokens recently: try again in {0} s")]
    Throttled(u64),
}

/// A logged-in session.
#[derive(Debug, Clone)]
struct Session {
    csrf: String,
    expires: Instant,
}

/// A new login: the cookie value and the CSRF token for the page.
#[derive(Debug, Clone)]
pub struct Login {
    /// Session id (the cookie's value).
    pub session: String,
    /// CSRF token (sent back by the page in [`CSRF_HEADER`]).
    pub csrf: String,
    /// Lifetime.
    pub max_age: Duration,
}

/// The dashboard's gatekeeper.
pub struct Auth {
    token: Option<Secret>,
    lifetime: Duration,
    sessions: Mutex<HashMap<String, Session>>,
    throttle: Throttle,
}

fn digest(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// Equality of two strings in time independent of where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    digest(a)
        .iter()
        .zip(digest(b).iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    alloy::hex::encode(bytes)
}

/// The value of cookie `name` in `headers`.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl Auth {
    /// A gatekeeper for `token` (`None`: read-only) with sessions lasting `lifetime`.
    pub fn new(token: Option<Secret>, lifetime: Duration) -> Self {
        Self {
            token,
            lifetime,
            sessions: Mutex::new(HashMap::new()),
            throttle: Throttle::default(),
        }
    }

    /// Whether writes are possible at all.
    pub fn writable(&self) -> bool {
        self.token.is_some()
    }

    /// Compare `given` with the admin token, unless `client` (or everyone) failed too often
    /// recently; a wrong one counts against `client`.
    fn check_token(&self, given: &str, client: Option<IpAddr>) -> Result<(), AuthError> {
        let token = self.token.as_ref().ok_or(AuthError::ReadOnly)?;
        self.throttle
            .check(client)
            .map_err(|wait| AuthError::Throttled(wait.as_secs().max(1)))?;
        if same_secret(token.expose(), given) {
            Ok(())
        } else {
            self.throttle.failed(client);
            Err(AuthError::BadToken)
        }
    }

    /// Log in with `token` from `client`: a new session.
    pub fn login(
        &self,
        token: &str,
        headers: &HeaderMap,
        client: Option<IpAddr>,
    ) -> Result<Login, AuthError> {
        same_origin(headers)?;
        self.check_token(token, client)?;
        let login = Login {
            session: random_hex(),
            csrf: random_hex(),
            max_age: self.lifetime,
        };
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            login.session.clone(),
            Session {
                csrf: login.csrf.clone(),
                expires: now.checked_add(self.lifetime).unwrap_or(now),
            },
        );
        Ok(login)
    }

    /// End the session of `headers` (if any).
    pub fn logout(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, SESSION_COOKIE) {
            self.sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(id);
        }
    }

    /// The CSRF token of the valid session `headers` carry (what the page needs to write).
    pub fn session_csrf(&self, headers: &HeaderMap) -> Option<String> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions
            .get(id)
            .filter(|s| s.expires > Instant::now())
            .map(|s| s.csrf.clone())
    }

    /// May the request with `headers` from `client` write? A bearer token, or a session cookie
    /// with its CSRF token, from this origin.
    pub fn authorize_write(
        &self,
        headers: &HeaderMap,
        client: Option<IpAddr>,
    ) -> Result<(), AuthError> {
        if self.token.is_none() {
            return Err(AuthError::ReadOnly);
        }
        same_origin(headers)?;
        if let Some(bearer) = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            return self.check_token(bearer.trim(), client);
        }
        let csrf = self.session_csrf(headers).ok_or(AuthError::NotLoggedIn)?;
        let given = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if same_secret(&csrf, given) {
            Ok(())
        } else {
            Err(AuthError::CsrfMismatch)
        }
    }
}

/// A request with an `Origin` must come from this host (browsers send it on every POST).
fn same_origin(headers: &HeaderMap) -> Result<(), AuthError> {
    let Some(origin) = headers.get(ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let host = headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or_default();
    if !host.is_empty() && origin_host == host {
        Ok(())
    } else {
        Err(AuthError::CrossOrigin {
            origin: origin.to_owned(),
            host: host.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_static("127.0.0.1:9464"));
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn auth() -> Auth {
        Auth::new(
            Some(Secret::new("correct horse battery staple")),
            Duration::from_secs(60),
        )
    }

    #[test]
    fn without_a_token_everything_is_read_only() {
        let a = Auth::new(None, Duration::from_secs(60));
        assert_eq!(
            a.authorize_write(&headers(&[]), None),
            Err(AuthError::ReadOnly)
        );
        assert_eq!(
            a.login("anything", &headers(&[]), None).unwrap_err(),
            AuthError::ReadOnly
        );
    }

    #[test]
    fn a_session_writes_only_with_its_csrf_token_from_its_own_origin() {
        let a = auth();
        assert_eq!(
            a.login("wrong", &headers(&[]), None).unwrap_err(),
            AuthError::BadToken
        );
        let login = a
            .login("correct horse battery staple", &headers(&[]), None)
            .unwrap();
        let cookie = format!("other=1; {SESSION_COOKIE}={}", login.session);
        // No session at all.
        assert_eq!(
            a.authorize_write(&headers(&[]), None),
            Err(AuthError::NotLoggedIn)
        );
        // The cookie alone (what a foreign page's form would carry) is not enough.
        assert_eq!(
            a.authorize_write(&headers(&[("cookie", &cookie)]), None),
            Err(AuthError::CsrfMismatch)
        );
        assert_eq!(
            a.authorize_write(&headers(&[("cookie", &cookie), (CSRF_HEADER, "00")]), None),
            Err(AuthError::CsrfMismatch)
        );
        assert!(matches!(
            a.authorize_write(
                &headers(&[
                    ("cookie", &cookie),
                    (CSRF_HEADER, &login.csrf),
                    ("origin", "http://evil.example")
                ]),
                None
            ),
            Err(AuthError::CrossOrigin { .. })
        ));
        assert_eq!(
            a.authorize_write(
                &headers(&[
                    ("cookie", &cookie),
                    (CSRF_HEADER, &login.csrf),
                    ("origin", "http://127.0.0.1:9464")
                ]),
                None
            ),
            Ok(())
        );
        a.logout(&headers(&[("cookie", &cookie)]));
        assert_eq!(
            a.authorize_write(
                &headers(&[("cookie", &cookie), (CSRF_HEADER, &login.csrf)]),
                None
            ),
            Err(AuthError::NotLoggedIn)
        );
    }

    #[test]
    fn a_bearer_token_writes_without_a_session() {
        let a = auth();
        assert_eq!(
            a.authorize_write(
                &headers(&[("authorization", "Bearer correct horse battery staple")]),
                None
            ),
            Ok(())
        );
        assert_eq!(
            a.authorize_write(&headers(&[("authorization", "Bearer nope")]), None),
            Err(AuthError::BadToken)
        );
    }

    #[test]
    fn wrong_tokens_are_throttled_per_client_even_the_right_one_after() {
        let a = auth();
        let me = Some(IpAddr::from([192, 0, 2, 7]));
        for _ in 0..super::super::guard::FAILURES_PER_CLIENT {
            assert_eq!(
                a.login("guess", &headers(&[]), me).unwrap_err(),
                AuthError::BadToken
            );
        }
        assert!(matches!(
            a.login("correct horse battery staple", &headers(&[]), me),
            Err(AuthError::Throttled(_))
        ));
        assert!(matches!(
            a.authorize_write(&headers(&[("authorization", "Bearer guess")]), me),
            Err(AuthError::Throttled(_))
        ));
        assert!(
            a.login(
                "correct horse battery staple",
                &headers(&[]),
                Some(IpAddr::from([192, 0, 2, 8]))
            )
            .is_ok(),
            "another address logs in"
        );
    }

    #[test]
    fn sessions_expire_and_are_bounded() {
        let a = Auth::new(Some(Secret::new("x".repeat(16))), Duration::ZERO);
        let login = a.login(&"x".repeat(16), &headers(&[]), None).unwrap();
        let cookie = format!("{SESSION_COOKIE}={}", login.session);
        assert_eq!(a.session_csrf(&headers(&[("cookie", &cookie)])), None);
        let a = auth();
        for _ in 0..(MAX_SESSIONS + 10) {
            a.login("correct horse battery staple", &headers(&[]), None)
                .unwrap();
        }
        assert!(a.sessions.lock().unwrap().len() <= MAX_SESSIONS);
    }
}
