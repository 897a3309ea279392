//! OTLP/HTTP transport (protobuf or JSON body, optional gzip) on `reqwest` with rustls.

use std::time::{Duration, SystemTime};

use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use bytes::{Bytes, BytesMut};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;

use super::retry::{self, AttemptOutcome, Classification};
use super::{
    Attempt, ExportError, MAX_ERROR_BODY_BYTES, MAX_RESPONSE_BODY_BYTES, ReadyBatch, error_chain,
    tls, truncate,
};
use crate::config::{Compression, ExportConfig, Protocol};
use crate::otlp::{Format, JSON_CONTENT_TYPE, PROTOBUF_CONTENT_TYPE};
use crate::rpc;

/// An OTLP/HTTP endpoint with its client and fixed headers.
#[derive(Debug)]
pub struct HttpTransport {
    client: reqwest::Client,
    endpoint: reqwest::Url,
    headers: HeaderMap,
    protocol: Protocol,
    compression: Compression,
}

impl HttpTransport {
    /// A client with the per-attempt timeout, TLS roots and `headers` (marked sensitive).
    pub fn new(config: &ExportConfig, headers: &[(String, String)]) -> Result<Self, ExportError> {
        let client_error = |message: String| ExportError::Client {
            exporter: config.name.clone(),
            message,
        };
        let endpoint = reqwest::Url::parse(&config.endpoint)
            .map_err(|e| client_error(format!("endpoint is not a valid URL: {e}")))?;
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let invalid = || client_error(format!("header {name:?} has an invalid name or value"));
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
            let mut value = HeaderValue::from_str(value).map_err(|_| invalid())?;
            value.set_sensitive(true);
            map.append(name, value);
        }
        let content_type = match config.protocol {
            Protocol::HttpJson => JSON_CONTENT_TYPE,
            _ => PROTOBUF_CONTENT_TYPE,
        };
        map.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        if config.compression == Compression::Gzip {
            map.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        tls::install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            // The backend is addressed directly, whatever HTTP(S)_PROXY says.
            .no_proxy();
        if let Some(ca_file) = &config.tls.ca_file {
            let pem = tls::read_ca_file(ca_file).map_err(|message| ExportError::Tls {
                exporter: config.name.clone(),
                message,
            })?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ExportError::Tls {
                    exporter: config.name.clone(),
                    message: format!("{}: not a PEM certificate bundle: {e}", ca_file.display()),
                })?;
            builder = builder.tls_certs_merge(certs);
        }
        let client = builder.build().map_err(|e| {
            client_error(format!(
                "cannot create the HTTP client: {}",
                error_chain(&e)
            ))
        })?;
        Ok(Self {
            client,
            endpoint,
            headers: map,
            protocol: config.protocol,
            compression: config.compression,
        })
    }

    /// One POST.
    pub async fn attempt(&self, batch: &ReadyBatch) -> Attempt {
        let sent = self
            .client
            .post(self.endpoint.clone())
            .headers(self.headers.clone())
            .body(batch.body(self.protocol, self.compression))
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                let outcome = if error.is_builder() {
                    AttemptOutcome::InvalidRequest
                } else {
                    AttemptOutcome::Transport
                };
                return Attempt {
                    classification: retry::classify(outcome, SystemTime::now()),
                    // without_url(): the URL may carry credentials.
                    detail: format!("request failed: {}", error_chain(&error.without_url())),
                    rejected: 0,
                };
            }
        };
        let status = response.status();
        let retry_after = header_text(response.headers(), RETRY_AFTER);
        let format = header_text(response.headers(), CONTENT_TYPE)
            .and_then(|ct| Format::from_content_type(&ct));
        let classification = retry::classify(
            AttemptOutcome::Response {
                status: status.as_u16(),
                retry_after: retry_after.as_deref(),
            },
            SystemTime::now(),
        );
        let success = classification == Classification::Success;
        let limit = if success {
            MAX_RESPONSE_BODY_BYTES
        } else {
            MAX_ERROR_BODY_BYTES
        };
        let body = read_limited(response, limit).await;
        if success {
            let (rejected, message) = partial_success(&body, format);
            Attempt {
                classification,
                detail: format!("status {status}: {message}"),
                rejected,
            }
        } else {
            Attempt {
                classification,
                detail: format!("status {status}: {}", describe_error_body(&body, format)),
                rejected: 0,
            }
        }
    }
}

fn header_text(headers: &HeaderMap, name: HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Reads at most `limit` bytes of the body (the truncated prefix past it; empty on error).
async fn read_limited(mut response: reqwest::Response, limit: usize) -> Bytes {
    let mut body = BytesMut::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit.saturating_sub(body.len());
                if chunk.len() > room {
                    body.extend_from_slice(chunk.get(..room).unwrap_or_default());
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(_) => return Bytes::new(),
        }
    }
    body.freeze()
}

/// The partial-success report of a 2xx body: `(rejected spans, message)`. A body that is empty,
/// undecodable or in an unexpected format means full success.
pub fn partial_success(body: &[u8], format: Option<Format>) -> (u64, String) {
    if format == Some(Format::Json) {
        // Read by hand: int64 may be a string or a number in OTLP/JSON.
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
            return (0, String::new());
        };
        let partial = value.get("partialSuccess");
        let field = |name: &str| partial.and_then(|p| p.get(name));
        let rejected = match field("rejectedSpans") {
            Some(serde_json::Value::String(text)) => text.parse::<u64>().unwrap_or(0),
            Some(other) => other.as_u64().unwrap_or(0),
            None => 0,
        };
        let message = field("errorMessage")
            .and_then(|m| m.as_str())
            .unwrap_or_default();
        return (rejected, truncate(message));
    }
    match ExportTraceServiceResponse::decode(body)
        .ok()
        .and_then(|r| r.partial_success)
    {
        Some(partial) => (
            u64::try_from(partial.rejected_spans).unwrap_or(0),
            truncate(&partial.error_message),
        ),
        None => (0, String::new()),
    }
}

/// A short description of an error body: the `google.rpc.Status` message when it is one
/// (protobuf or JSON), else the text, truncated.
pub fn describe_error_body(body: &[u8], format: Option<Format>) -> String {
    match format {
        Some(Format::Protobuf) => {
            if let Ok(status) = rpc::Status::decode(body) {
                return truncate(&status.message);
            }
        }
        Some(Format::Json) => {
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body)
                && let Some(message) = value.get("message").and_then(|m| m.as_str())
            {
                return truncate(message);
            }
        }
        None => {}
    }
    truncate(&String::from_utf8_lossy(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTracePartialSuccess;

    #[test]
    fn partial_success_in_protobuf_and_json() {
        let response = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: 2,
                error_message: "bad spans".to_owned(),
            }),
        };
        let proto = response.encode_to_vec();
        assert_eq!(
            partial_success(&proto, Some(Format::Protobuf)),
            (2, "bad spans".to_owned())
        );
        assert_eq!(partial_success(&proto, None).0, 2);
        let json = br#"{"partialSuccess":{"rejectedSpans":"3","errorMessage":"m"}}"#;
        assert_eq!(
            partial_success(json, Some(Format::Json)),
            (3, "m".to_owned())
        );
        assert_eq!(partial_success(b"", Some(Format::Protobuf)).0, 0);
        assert_eq!(partial_success(b"{}", Some(Format::Json)).0, 0);
        assert_eq!(partial_success(b"<html>", Some(Format::Json)).0, 0);
        let negative = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: -1,
                error_message: String::new(),
            }),
        };
        assert_eq!(partial_success(&negative.encode_to_vec(), None).0, 0);
    }

    #[test]
    fn error_bodies_are_described_briefly() {
        let status = rpc::Status {
            code: rpc::code::INVALID_ARGUMENT,
            message: "bad trace".to_owned(),
        }
        .encode_to_vec();
        assert_eq!(
            describe_error_body(&status, Some(Format::Protobuf)),
            "bad trace"
        );
        assert_eq!(
            describe_error_body(br#"{"code":3,"message":"bad json"}"#, Some(Format::Json)),
            "bad json"
        );
        assert_eq!(describe_error_body(b"plain text", None), "plain text");
        assert_eq!(describe_error_body(&[b'x'; 1000], None).len(), 256);
    }
}
