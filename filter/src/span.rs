//! Building the filter's SERVER span and encoding finished spans as OTLP protobuf.
//!
//! A [`ServerSpan`] is recorded as the request goes through the filter; when the stream ends it
//! becomes an OTLP `Span`. [`encode_export_request`] wraps a batch in one
//! `ExportTraceServiceRequest` with the filter's resource and scope, ready for `POST /v1/traces`.

use crate::semconv;
use crate::trace::{SpanContext, SpanId};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use prost::Message;

/// Instrumentation scope name of every span.
pub const SCOPE_NAME: &str = "meshtrace-filter";
/// This crate's version, reported as the scope and SDK version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Longest method or path recorded; longer values are cut at a character boundary.
pub const MAX_ATTRIBUTE_LEN: usize = 4_096;

/// HTTP methods the semantic conventions know; any other is recorded as `_OTHER`.
const KNOWN_METHODS: [&str; 9] = [
    "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE",
];

/// The span the filter records for one HTTP request it serves.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerSpan {
    /// Our span's identity (the one written on the upstream request).
    pub context: SpanContext,
    /// The remote parent's span id, when the request carried a valid context.
    pub parent_span_id: Option<SpanId>,
    /// Start, in nanoseconds since the Unix epoch (host clock).
    pub start_unix_nanos: u64,
    /// End, in nanoseconds since the Unix epoch (host clock).
    pub end_unix_nanos: u64,
    /// `:method`, as received (possibly empty).
    pub method: String,
    /// `:path` without the query string.
    pub path: String,
    /// The response status, when one was sent.
    pub status_code: Option<u16>,
    /// Further string attributes (e.g. the sampling reason), added after the HTTP ones.
    pub extra_attributes: Vec<(&'static str, String)>,
}

/// Resource identity of the spans one filter instance emits.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanResource {
    /// `service.name`.
    pub service_name: String,
}

// === impl ServerSpan ===

impl ServerSpan {
    /// Records the request line: method and path (query stripped), both bounded.
    pub fn set_request(&mut self, method: &[u8], path: &[u8]) {
        self.method = bounded_lossy(method);
        let path = path.split(|&b| b == b'?').next().unwrap_or_default();
        self.path = bounded_lossy(path);
    }

    /// The OTLP span. Name and attributes follow the HTTP server span conventions: the name is
    /// the method (no route is known yet), 5xx sets status ERROR and `error.type`.
    pub fn to_otlp(&self) -> Span {
        let known = KNOWN_METHODS.contains(&self.method.as_str());
        let method = if known {
            self.method.as_str()
        } else {
            "_OTHER"
        };
        let mut attributes = vec![
            string_attribute(semconv::HTTP_REQUEST_METHOD, method),
            string_attribute(semconv::URL_PATH, &self.path),
        ];
        let mut status = None;
        attributes.extend(
            self.extra_attributes
                .iter()
                .map(|(key, value)| string_attribute(key, value)),
        );
        if let Some(code) = self.status_code {
            attributes.push(int_attribute(
                semconv::HTTP_RESPONSE_STATUS_CODE,
                code.into(),
            ));
            if code >= 500 {
                attributes.push(string_attribute(semconv::ERROR_TYPE, &code.to_string()));
                status = Some(Status {
                    code: status::StatusCode::Error as i32,
                    ..Default::default()
                });
            }
        }
        Span {
            trace_id: self.context.trace_id.to_bytes().to_vec(),
            span_id: self.context.span_id.to_bytes().to_vec(),
            parent_span_id: self
                .parent_span_id
                .map(|id| id.to_bytes().to_vec())
                .unwrap_or_default(),
            flags: u32::from(self.context.flags.to_wire()) | span_flags(self.parent_span_id),
            name: if known {
                method.to_owned()
            } else {
                "HTTP".to_owned()
            },
            kind: span::SpanKind::Server as i32,
            start_time_unix_nano: self.start_unix_nanos,
            end_time_unix_nano: self.end_unix_nanos.max(self.start_unix_nanos),
            attributes,
            status,
            ..Default::default()
        }
    }
}

/// OTLP `SpanFlags` bits 8 and 9: "has-is-remote" is known, and the parent is remote (our
/// parent, when we have one, always comes from the request headers).
fn span_flags(parent: Option<SpanId>) -> u32 {
    const HAS_IS_REMOTE: u32 = 0x100;
    const IS_REMOTE: u32 = 0x200;
    if parent.is_some() {
        HAS_IS_REMOTE | IS_REMOTE
    } else {
        HAS_IS_REMOTE
    }
}

// === impl SpanResource ===

impl SpanResource {
    fn to_otlp(&self) -> Resource {
        Resource {
            attributes: vec![
                string_attribute(semconv::SERVICE_NAME, &self.service_name),
                string_attribute(semconv::TELEMETRY_SDK_NAME, SCOPE_NAME),
                string_attribute(semconv::TELEMETRY_SDK_LANGUAGE, "rust"),
                string_attribute(semconv::TELEMETRY_SDK_VERSION, VERSION),
            ],
            ..Default::default()
        }
    }
}

/// Encodes one `ExportTraceServiceRequest` holding `spans` under one resource and scope.
pub fn encode_export_request(resource: &SpanResource, spans: &[ServerSpan]) -> Vec<u8> {
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource.to_otlp()),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: SCOPE_NAME.to_owned(),
                    version: VERSION.to_owned(),
                    ..Default::default()
                }),
                spans: spans.iter().map(ServerSpan::to_otlp).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    request.encode_to_vec()
}

fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

fn int_attribute(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

/// Header bytes as a string: invalid UTF-8 replaced, cut to [`MAX_ATTRIBUTE_LEN`] bytes at a
/// character boundary.
fn bounded_lossy(bytes: &[u8]) -> String {
    let mut text =
        String::from_utf8_lossy(bytes.get(..MAX_ATTRIBUTE_LEN).unwrap_or(bytes)).into_owned();
    if text.len() > MAX_ATTRIBUTE_LEN {
        let mut cut = MAX_ATTRIBUTE_LEN;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{TraceFlags, TraceId};
    // Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn span(status_code: Option<u16>, parent: bool) -> ServerSpan {
        let mut span = ServerSpan {
            context: SpanContext {
                trace_id: TraceId::from_bytes([7; 16]).unwrap(),
                span_id: SpanId::from_bytes([8; 8]).unwrap(),
                flags: TraceFlags::from_wire(1),
                debug: false,
            },
            parent_span_id: parent.then(|| SpanId::from_bytes([9; 8]).unwrap()),
            start_unix_nanos: 1_000,
            end_unix_nanos: 2_000,
            method: String::new(),
            path: String::new(),
            status_code,
            extra_attributes: vec![("meshtrace.sampling.reason", "root".to_owned())],
        };
        span.set_request(b"GET", b"/api/users/7?token=secret");
        span
    }

    fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a any_value::Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    #[test]
    fn server_span_has_the_http_conventions() {
        let otlp = span(Some(200), true).to_otlp();
        assert_eq!(otlp.kind, span::SpanKind::Server as i32);
        assert_eq!(otlp.name, "GET");
        assert_eq!(otlp.trace_id, vec![7; 16]);
        assert_eq!(otlp.span_id, vec![8; 8]);
        assert_eq!(otlp.parent_span_id, vec![9; 8]);
        assert_eq!(otlp.flags, 0x301);
        assert_eq!(
            (otlp.start_time_unix_nano, otlp.end_time_unix_nano),
            (1_000, 2_000)
        );
        let string = |s: &str| Some(any_value::Value::StringValue(s.to_owned()));
        assert_eq!(
            attribute(&otlp, "http.request.method").cloned(),
            string("GET")
        );
        assert_eq!(
            attribute(&otlp, "url.path").cloned(),
            string("/api/users/7")
        );
        assert_eq!(
            attribute(&otlp, "http.response.status_code").cloned(),
            Some(any_value::Value::IntValue(200))
        );
        assert_eq!(otlp.status, None);
        assert_eq!(attribute(&otlp, "error.type"), None);
        assert_eq!(
            attribute(&otlp, "meshtrace.sampling.reason").cloned(),
            string("root")
        );
    }

    #[test]
    fn root_span_has_no_parent_and_5xx_is_an_error() {
        let otlp = span(Some(503), false).to_otlp();
        assert!(otlp.parent_span_id.is_empty());
        assert_eq!(otlp.flags, 0x101);
        assert_eq!(
            otlp.status.as_ref().map(|s| s.code),
            Some(status::StatusCode::Error as i32)
        );
        assert_eq!(
            attribute(&otlp, "error.type").cloned(),
            Some(any_value::Value::StringValue("503".to_owned()))
        );
    }

    #[test]
    fn unknown_methods_are_other_and_values_are_bounded() {
        let mut s = span(None, false);
        s.set_request(b"BREW\xff", &[b'/'; 10_000]);
        let otlp = s.to_otlp();
        assert_eq!(otlp.name, "HTTP");
        assert_eq!(
            attribute(&otlp, "http.request.method").cloned(),
            Some(any_value::Value::StringValue("_OTHER".to_owned()))
        );
        assert_eq!(s.path.len(), MAX_ATTRIBUTE_LEN);
        s.set_request(b"GET", "/é".repeat(3_000).as_bytes());
        assert!(s.path.len() <= MAX_ATTRIBUTE_LEN);
    }

    #[test]
    fn export_request_decodes_with_resource_and_scope() {
        let bytes = encode_export_request(
            &SpanResource {
                service_name: "edge".to_owned(),
            },
            &[span(Some(200), false), span(Some(404), true)],
        );
        let decoded = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
        let [resource_spans] = decoded.resource_spans.as_slice() else {
            panic!("one resource expected");
        };
        let service = resource_spans
            .resource
            .as_ref()
            .map(|r| r.attributes[0].clone());
        assert_eq!(service, Some(string_attribute("service.name", "edge")));
        let scope_spans = &resource_spans.scope_spans[0];
        assert_eq!(
            scope_spans.scope.as_ref().map(|s| s.name.as_str()),
            Some(SCOPE_NAME)
        );
        assert_eq!(scope_spans.spans.len(), 2);
    }
}
