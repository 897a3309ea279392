//! The filter's span of one HTTP request (SERVER or CLIENT), and its OTLP encoding.
//!
//! An [`HttpSpan`] is recorded as the request goes through the filter: its context at the
//! request headers, then (sampled spans only, see [`crate::content`]) what the conventions and
//! the tags need. [`HttpSpan::finish`] turns it into an OTLP `Span` under the span limits;
//! [`encode_export_request`] wraps a batch in one `ExportTraceServiceRequest` with the
//! filter's resource and scope, ready for `POST /v1/traces`.

use crate::attributes::{Attribute, Limits, Value};
use crate::semconv::http::{End, Request, Settings};
use crate::semconv::{self};
use crate::tags::Evaluated;
use crate::trace::{SpanContext, SpanId};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, status};
use prost::Message;
use std::borrow::Cow;

/// Instrumentation scope name of every span.
pub const SCOPE_NAME: &str = "meshtrace-filter";
/// This crate's version, reported as the scope and SDK version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The span the filter records for one HTTP request.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpSpan {
    /// Our span's identity (the one written on the upstream request).
    pub context: SpanContext,
    /// The remote parent's span id, when the request carried a valid context.
    pub parent_span_id: Option<SpanId>,
    /// Start, in nanoseconds since the Unix epoch (host clock).
    pub start_unix_nanos: u64,
    /// End, in nanoseconds since the Unix epoch (host clock).
    pub end_unix_nanos: u64,
    /// What the request headers said (sampled spans).
    pub request: Request,
    /// The matched route template.
    pub route: Option<String>,
    /// The response status, when one was sent.
    pub status_code: Option<u16>,
    /// What Envoy knew at the end of the stream (sampled spans).
    pub end: End,
    /// The sampling reason (and rule) attributes.
    pub extra_attributes: Vec<(&'static str, String)>,
    /// Custom tags read for this request, in phase order.
    pub tags: Vec<Attribute>,
    /// Tags dropped before the span finished (header byte budget).
    pub dropped_tags: u32,
    /// Tag values that did not convert to their type.
    pub invalid_tags: u32,
    /// Header bytes the tags may still read.
    pub header_budget: usize,
}

/// A finished span and what the limits cut, for the metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct Finished {
    /// The OTLP span.
    pub span: Span,
    /// Attributes dropped (count limit and header byte budget): its `dropped_attributes_count`.
    pub dropped: u32,
    /// String values cut by the length limit.
    pub truncated: u32,
    /// Tag values that did not convert to their type.
    pub invalid: u32,
}

// === impl HttpSpan ===

impl HttpSpan {
    /// A span with its context, started at `start_unix_nanos`.
    pub fn new(
        context: SpanContext,
        parent_span_id: Option<SpanId>,
        start_unix_nanos: u64,
    ) -> Self {
        Self {
            context,
            parent_span_id,
            start_unix_nanos,
            end_unix_nanos: start_unix_nanos,
            request: Request::default(),
            route: None,
            status_code: None,
            end: End::default(),
            extra_attributes: Vec::new(),
            tags: Vec::new(),
            dropped_tags: 0,
            invalid_tags: 0,
            header_budget: 0,
        }
    }

    /// Adds what a tag evaluation produced.
    pub fn add_tags(&mut self, evaluated: Evaluated) {
        self.tags.extend(evaluated.attributes);
        self.dropped_tags = self.dropped_tags.saturating_add(evaluated.dropped);
        self.invalid_tags = self.invalid_tags.saturating_add(evaluated.invalid);
    }

    /// The OTLP span: name, kind and status by the HTTP conventions; attributes in order of
    /// importance (conventions, sampling, tags read once, tags of this request), the last ones
    /// dropped past the count limit.
    pub fn finish(
        self,
        settings: &Settings,
        static_tags: &[Attribute],
        limits: &Limits,
    ) -> Finished {
        let status_code = self.status_code.or(self.end.response_code);
        let conventions = settings.attributes(
            &self.request,
            self.route.as_deref(),
            self.status_code,
            &self.end,
        );
        let sampling: Vec<Attribute> = self
            .extra_attributes
            .iter()
            .map(|(key, value)| Attribute {
                key: Cow::Borrowed(*key),
                value: Value::String(value.clone()),
            })
            .collect();
        let encoded = limits.encode(
            conventions
                .iter()
                .chain(&sampling)
                .chain(static_tags)
                .chain(&self.tags),
        );
        let dropped = encoded.dropped.saturating_add(self.dropped_tags);
        let status = settings.is_error(status_code).then(|| Status {
            code: status::StatusCode::Error as i32,
            ..Default::default()
        });
        let span = Span {
            trace_id: self.context.trace_id.to_bytes().to_vec(),
            span_id: self.context.span_id.to_bytes().to_vec(),
            parent_span_id: self
                .parent_span_id
                .map(|id| id.to_bytes().to_vec())
                .unwrap_or_default(),
            flags: u32::from(self.context.flags.to_wire()) | span_flags(self.parent_span_id),
            name: settings.span_name(&self.request.method, self.route.as_deref()),
            kind: settings.kind.to_otlp() as i32,
            start_time_unix_nano: self.start_unix_nanos,
            end_time_unix_nano: self.end_unix_nanos.max(self.start_unix_nanos),
            attributes: encoded.attributes,
            dropped_attributes_count: dropped,
            status,
            ..Default::default()
        };
        Finished {
            span,
            dropped,
            truncated: encoded.truncated,
            invalid: self.invalid_tags,
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

/// Encodes one `ExportTraceServiceRequest` holding `spans` under one resource and scope (the
/// scope's schema URL names the semantic conventions release the attributes follow).
pub fn encode_export_request(resource: &Resource, spans: &[Span]) -> Vec<u8> {
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: SCOPE_NAME.to_owned(),
                    version: VERSION.to_owned(),
                    ..Default::default()
                }),
                spans: spans.to_vec(),
                schema_url: semconv::SCHEMA_URL.to_owned(),
            }],
            ..Default::default()
        }],
    };
    request.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::semconv::http::Kind;
    use crate::trace::{TraceFlags, TraceId};
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
    // Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn span(status_code: Option<u16>, parent: bool) -> HttpSpan {
        let mut span = HttpSpan::new(
            SpanContext {
                trace_id: TraceId::from_bytes([7; 16]).unwrap(),
                span_id: SpanId::from_bytes([8; 8]).unwrap(),
                flags: TraceFlags::from_wire(1),
                debug: false,
            },
            parent.then(|| SpanId::from_bytes([9; 8]).unwrap()),
            1_000,
        );
        span.end_unix_nanos = 2_000;
        span.status_code = status_code;
        span.request = Request::from_headers(
            &vec![
                (":method", "GET"),
                (":path", "/api/users/7?sig=secret"),
                (":scheme", "http"),
            ],
            &Settings::default(),
        );
        span.extra_attributes = vec![("meshtrace.sampling.reason", "root".to_owned())];
        span
    }

    fn finish(span: HttpSpan, kind: Kind) -> Finished {
        let settings = Settings {
            kind,
            ..Settings::default()
        };
        span.finish(&settings, &[], &Limits::default())
    }

    fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a any_value::Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.as_ref())
            .and_then(|v| v.value.as_ref())
    }

    fn string(s: &str) -> Option<any_value::Value> {
        Some(any_value::Value::StringValue(s.to_owned()))
    }

    #[test]
    fn a_finished_span_has_ids_times_kind_and_the_conventions() {
        let otlp = finish(span(Some(200), true), Kind::Server).span;
        assert_eq!(otlp.kind, SpanKind::Server as i32);
        assert_eq!(otlp.name, "GET");
        assert_eq!(otlp.trace_id, vec![7; 16]);
        assert_eq!(otlp.span_id, vec![8; 8]);
        assert_eq!(otlp.parent_span_id, vec![9; 8]);
        assert_eq!(otlp.flags, 0x301);
        assert_eq!(
            (otlp.start_time_unix_nano, otlp.end_time_unix_nano),
            (1_000, 2_000)
        );
        assert_eq!(
            attribute(&otlp, "http.request.method").cloned(),
            string("GET")
        );
        assert_eq!(
            attribute(&otlp, "url.path").cloned(),
            string("/api/users/7")
        );
        assert_eq!(
            attribute(&otlp, "url.query").cloned(),
            string("sig=REDACTED")
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
        assert_eq!(otlp.dropped_attributes_count, 0);
    }

    #[test]
    fn a_route_names_the_span_and_kind_decides_the_status() {
        let mut s = span(Some(404), false);
        s.route = Some("/api/users/{id}".into());
        let server = finish(s.clone(), Kind::Server).span;
        assert_eq!(server.name, "GET /api/users/{id}");
        assert_eq!(server.flags, 0x101);
        assert!(server.parent_span_id.is_empty());
        assert_eq!(server.status, None, "4xx is not a server error");
        let client = finish(s, Kind::Client).span;
        assert_eq!(client.kind, SpanKind::Client as i32);
        assert_eq!(
            client.status.as_ref().map(|s| s.code),
            Some(status::StatusCode::Error as i32)
        );
        assert_eq!(
            attribute(&client, "url.template").cloned(),
            string("/api/users/{id}")
        );
        let error = finish(span(Some(503), false), Kind::Server).span;
        assert_eq!(
            error.status.as_ref().map(|s| s.code),
            Some(status::StatusCode::Error as i32)
        );
        assert_eq!(attribute(&error, "error.type").cloned(), string("503"));
    }

    #[test]
    fn limits_cut_the_tags_last_and_count_what_they_cut() {
        let mut s = span(Some(200), false);
        s.tags = (0..50)
            .map(|i| Attribute {
                key: format!("tag{i}").into(),
                value: Value::String("v".repeat(100)),
            })
            .collect();
        s.dropped_tags = 2;
        s.invalid_tags = 1;
        let limits = Limits {
            max_attributes: 32,
            max_attribute_value_length: 16,
            ..Limits::default()
        };
        let static_tags = [Attribute::new("env", "prod")];
        let finished = s.finish(&Settings::default(), &static_tags, &limits);
        let otlp = &finished.span;
        assert_eq!(otlp.attributes.len(), 32);
        assert_eq!(otlp.attributes[0].key, "http.request.method");
        assert!(
            attribute(otlp, "env").is_some(),
            "tags read once come before per-request tags"
        );
        let kept_tags = otlp
            .attributes
            .iter()
            .filter(|kv| kv.key.starts_with("tag"))
            .count();
        assert_eq!(
            otlp.dropped_attributes_count,
            u32::try_from(50 - kept_tags).unwrap() + 2
        );
        assert_eq!(finished.dropped, otlp.dropped_attributes_count);
        assert_eq!(finished.truncated, u32::try_from(kept_tags).unwrap());
        assert_eq!(finished.invalid, 1);
    }

    #[test]
    fn export_request_decodes_with_resource_scope_and_schema() {
        let resource = Resource {
            attributes: vec![KeyValue {
                key: "service.name".into(),
                value: Some(AnyValue {
                    value: string("edge"),
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let spans = [
            finish(span(Some(200), false), Kind::Server).span,
            finish(span(Some(404), true), Kind::Server).span,
        ];
        let bytes = encode_export_request(&resource, &spans);
        let decoded = ExportTraceServiceRequest::decode(bytes.as_slice()).unwrap();
        let [resource_spans] = decoded.resource_spans.as_slice() else {
            panic!("one resource expected");
        };
        assert_eq!(resource_spans.resource.as_ref(), Some(&resource));
        let scope_spans = &resource_spans.scope_spans[0];
        assert_eq!(
            scope_spans.scope.as_ref().map(|s| s.name.as_str()),
            Some(SCOPE_NAME)
        );
        assert_eq!(
            scope_spans.schema_url,
            "https://opentelemetry.io/schemas/1.45.0"
        );
        assert_eq!(scope_spans.spans, spans);
    }
}
