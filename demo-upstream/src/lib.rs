//! The demo upstream: answers every request, whatever its method and path, with a JSON echo of
//! what it received, so a user sees exactly what the filter wrote.
//!
//! ```json
//! {"method":"GET","path":"/hello","headers":{"traceparent":"00-…","x-dup":["a","b"]}}
//! ```
//! A header received once is a string; a repeated header is an array in arrival order. Values
//! that are not UTF-8 are echoed with U+FFFD replacements.
//!
//! The status is `200`, unless the request asks for another with [`STATUS_HEADER`]
//! (`x-demo-status: 503`, any code from 200 to 599), so the demo and the tests can show error
//! spans.

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::serve::ListenerExt;
use serde_json::{Map, Value, json};
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// Default listen address (the local contract's demo upstream).
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";
/// Request header naming the status of the answer.
pub const STATUS_HEADER: &str = "x-demo-status";

/// The service: every route echoes.
pub fn app() -> Router {
    Router::new().fallback(echo)
}

/// Binds `addr` (port 0 allowed) and serves [`app`] until the runtime stops. Returns the bound
/// address once the listener is up.
pub async fn start(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    // Without TCP_NODELAY small responses can wait for a delayed ACK (tens of ms).
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    tokio::spawn(async move { axum::serve(listener, app()).await });
    Ok(bound)
}

async fn echo(request: Request) -> (StatusCode, axum::Json<Value>) {
    let status = request
        .headers()
        .get(STATUS_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u16>().ok())
        .filter(|code| (200..=599).contains(code))
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or(StatusCode::OK);
    let mut headers = Map::new();
    for (name, value) in request.headers() {
        let value = Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned());
        match headers.get_mut(name.as_str()) {
            None => {
                headers.insert(name.as_str().to_owned(), value);
            }
            Some(Value::Array(values)) => values.push(value),
            Some(first) => *first = Value::Array(vec![first.take(), value]),
        }
    }
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let body = json!({
        "method": request.method().as_str(),
        "path": path,
        "headers": headers,
    });
    (status, axum::Json(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    #[tokio::test]
    async fn echoes_method_path_and_headers() {
        let request = Request::post("/a/b?c=d")
            .header("traceparent", "00-x")
            .header("x-dup", "1")
            .header("x-dup", "2")
            .header("x-bin", &b"caf\xe9"[..])
            .body(Body::empty())
            .unwrap();
        let response = app().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let echoed: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(echoed["method"], "POST");
        assert_eq!(echoed["path"], "/a/b?c=d");
        assert_eq!(echoed["headers"]["traceparent"], "00-x");
        assert_eq!(echoed["headers"]["x-dup"], json!(["1", "2"]));
        assert_eq!(echoed["headers"]["x-bin"], "caf\u{fffd}");
    }

    #[tokio::test]
    async fn the_status_header_sets_the_status() {
        for (asked, answered) in [
            ("503", 503),
            ("404", 404),
            (" 201 ", 201),
            ("99", 200),
            ("600", 200),
            ("x", 200),
        ] {
            let request = Request::get("/")
                .header(STATUS_HEADER, asked)
                .body(Body::empty())
                .unwrap();
            let response = app().oneshot(request).await.unwrap();
            assert_eq!(response.status(), answered, "{asked}");
        }
    }
}
