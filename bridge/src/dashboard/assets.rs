//! The page's files, embedded in the binary (no CDN, no build step), served with headers that
//! keep the page to itself: a content security policy allowing only this origin's script and
//! style, no framing, no sniffing, no referrer.

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::get;

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/style.css");

/// The content security policy of every dashboard file.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn file(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                HeaderName::from_static("content-security-policy"),
                HeaderValue::from_static(CSP),
            ),
            (
                HeaderName::from_static("x-content-type-options"),
                HeaderValue::from_static("nosniff"),
            ),
            (
                HeaderName::from_static("x-frame-options"),
                HeaderValue::from_static("DENY"),
            ),
            (
                HeaderName::from_static("referrer-policy"),
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        body,
    )
}

async fn index() -> impl IntoResponse {
    file("text/html; charset=utf-8", INDEX)
}

async fn app_js() -> impl IntoResponse {
    file("text/javascript; charset=utf-8", APP_JS)
}

async fn style() -> impl IntoResponse {
    file("text/css; charset=utf-8", STYLE)
}

/// The page at `/` and `/ui/`, its script and style.
pub fn router() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/ui", get(index))
        .route("/ui/", get(index))
        .route("/ui/app.js", get(app_js))
        .route("/ui/style.css", get(style))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for (name, text) in [
            ("index.html", INDEX),
            ("app.js", APP_JS),
            ("style.css", STYLE),
        ] {
            for needle in ["http://", "https://", "//cdn", "@import"] {
                let hits: Vec<&str> = text
                    .lines()
                    .filter(|l| l.contains(needle))
                    // Placeholders and the URL check name schemes without loading anything.
                    .filter(|l| {
                        !l.contains("placeholder=")
                            && !l.contains("https?:")
                            && !l.contains("SVG_NS")
                            && !l.contains("e.g. https")
                    })
                    .collect();
                assert!(hits.is_empty(), "{name} refers to {needle}: {hits:?}");
            }
        }
        assert!(INDEX.contains("/ui/app.js") && INDEX.contains("/ui/style.css"));
        // No inline script or style: the CSP allows neither.
        assert!(!INDEX.contains("<script>") && !INDEX.contains("style="));
        assert!(
            !APP_JS.contains("innerHTML"),
            "values go in with textContent only"
        );
    }
}
