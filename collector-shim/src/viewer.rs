//! The web viewer, served by the admin listener: `GET /` (the page), `/viewer.js`,
//! `/viewer.css`, `/favicon.svg`. Plain HTML, CSS and JavaScript compiled into the binary
//! (`collector-shim/viewer/`), with no build step and nothing loaded from elsewhere: the
//! Content-Security-Policy only allows this origin, so a span name can never run as script
//! and the page works offline.

use axum::Router;
use axum::http::HeaderValue;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderName, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS,
};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::AppState;

/// The policy every viewer response carries: this origin only, no inline script or style, no
/// framing.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("../viewer/index.html");
const VIEWER_JS: &str = include_str!("../viewer/viewer.js");
const VIEWER_CSS: &str = include_str!("../viewer/viewer.css");
const FAVICON_SVG: &str = include_str!("../viewer/favicon.svg");

/// Path, content type and body of every asset.
const ASSETS: [(&str, &str, &str); 4] = [
    ("/", "text/html; charset=utf-8", INDEX_HTML),
    ("/viewer.js", "text/javascript; charset=utf-8", VIEWER_JS),
    ("/viewer.css", "text/css; charset=utf-8", VIEWER_CSS),
    ("/favicon.svg", "image/svg+xml", FAVICON_SVG),
];

/// The viewer routes (state: [`AppState`]).
pub fn routes() -> Router<AppState> {
    ASSETS
        .into_iter()
        .fold(Router::new(), |router, (path, content_type, body)| {
            router.route(path, get(move || async move { asset(content_type, body) }))
        })
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let headers: [(HeaderName, HeaderValue); 5] = [
        (CONTENT_TYPE, HeaderValue::from_static(content_type)),
        // Assets change with the binary: revalidate rather than cache stale copies.
        (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
        ),
        (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
    ];
    (headers, body).into_response()
}
