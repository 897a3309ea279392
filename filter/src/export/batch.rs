//! OTLP bodies built from spans encoded one at a time.
//!
//! Each finished span is encoded once, when it ends, as the `spans` field of a `ScopeSpans`
//! (tag, length, `Span` bytes): that is what the buffer stores and counts. A batch's body is
//! then the resource and scope, encoded once per configuration, wrapped around a byte copy of
//! its spans' fields. The result decodes to what [`crate::span::encode_export_request`] produces
//! for the same spans (protobuf parsers accept fields in any order, so the spans may follow a
//! `schema_url`).

use crate::span::encode_export_request;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

/// Field numbers: `ExportTraceServiceRequest.resource_spans`, `ResourceSpans.scope_spans`,
/// `ScopeSpans.spans`.
const RESOURCE_SPANS: u32 = 1;
const SCOPE_SPANS: u32 = 2;
const SPANS: u32 = 2;
/// One-byte keys (field number < 16, wire type LEN).
const KEY_LEN: usize = 1;

/// The encoded `spans` field of one finished span: what the buffer stores.
pub fn span_field(span: &Span) -> Vec<u8> {
    let len = span.encoded_len();
    let mut field = Vec::with_capacity(KEY_LEN + encoded_len_varint(len as u64) + len);
    prost::encoding::message::encode(SPANS, span, &mut field);
    field
}

/// The parts of a body that do not depend on the spans: the `ResourceSpans` fields but its
/// scopes, and the `ScopeSpans` fields but its spans, as the span module encodes them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchTemplate {
    resource_fields: Vec<u8>,
    scope_fields: Vec<u8>,
}

impl BatchTemplate {
    /// The template for spans of `resource`, taken from the span module's own encoding of an
    /// empty request, so that resource and scope stay what that module writes.
    pub fn new(resource: &Resource) -> Self {
        let empty = encode_export_request(resource, &[]);
        let Ok(request) = ExportTraceServiceRequest::decode(empty.as_slice()) else {
            return Self::default();
        };
        let Some(mut resource_spans) = request.resource_spans.into_iter().next() else {
            return Self::default();
        };
        let scope = resource_spans.scope_spans.pop().unwrap_or_default();
        resource_spans.scope_spans.clear();
        Self {
            resource_fields: resource_spans.encode_to_vec(),
            scope_fields: scope.encode_to_vec(),
        }
    }

    /// Length of the body holding span fields of `span_bytes` bytes in total.
    pub fn body_len(&self, span_bytes: usize) -> usize {
        let scope = self.scope_fields.len() + span_bytes;
        let resource = self.resource_fields.len() + delimited_len(scope);
        delimited_len(resource)
    }

    /// The `ExportTraceServiceRequest` holding the concatenated span fields `spans`.
    pub fn encode(&self, spans: &[u8]) -> Vec<u8> {
        let scope = self.scope_fields.len() + spans.len();
        let resource = self.resource_fields.len() + delimited_len(scope);
        let mut body = Vec::with_capacity(delimited_len(resource));
        encode_key(RESOURCE_SPANS, WireType::LengthDelimited, &mut body);
        encode_varint(resource as u64, &mut body);
        body.extend_from_slice(&self.resource_fields);
        encode_key(SCOPE_SPANS, WireType::LengthDelimited, &mut body);
        encode_varint(scope as u64, &mut body);
        body.extend_from_slice(&self.scope_fields);
        body.extend_from_slice(spans);
        body
    }
}

/// Bytes of a length-delimited field with a one-byte key and a `len`-byte payload.
fn delimited_len(len: usize) -> usize {
    KEY_LEN + encoded_len_varint(len as u64) + len
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::tests::span;
    // Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn body_is_the_span_modules_encoding_of_the_same_spans() {
        let resource = crate::export::tests::resource("edge");
        let template = BatchTemplate::new(&resource);
        // Sizes around the one- and two-byte varint boundaries of every length.
        for (count, path_len) in [(0, 1), (1, 1), (1, 60), (3, 70), (40, 2), (200, 100)] {
            let spans: Vec<Span> = (0..count).map(|n| span(n as u8, 2 * path_len)).collect();
            let fields: Vec<u8> = spans.iter().flat_map(span_field).collect();
            let body = template.encode(&fields);
            let decode = |b: &[u8]| ExportTraceServiceRequest::decode(b).unwrap();
            let expected = encode_export_request(&resource, &spans);
            assert_eq!(decode(&body), decode(&expected), "{count} × {path_len}");
            assert_eq!(template.body_len(fields.len()), body.len());
        }
    }

    #[test]
    fn a_span_field_is_the_span_message_behind_tag_and_length() {
        let span = span(3, 10);
        let field = span_field(&span);
        assert_eq!(field[0], 0x12, "field 2, wire type LEN");
        let otlp = span.encode_to_vec();
        assert_eq!(&field[field.len() - otlp.len()..], otlp.as_slice());
    }
}
