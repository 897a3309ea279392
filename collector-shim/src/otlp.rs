//! OTLP wire formats, pure: request body decoding (protobuf or OTLP/JSON, identity, gzip or
//! deflate, size-limited while decompressing) and response encoding in the request's format.
//!
//! Rules from the OTLP specification (<https://opentelemetry.io/docs/specs/otlp/>):
//! - binary protobuf (`application/x-protobuf`) and JSON (`application/json`) on the same path,
//!   the response in the request's content type;
//! - servers MUST support `gzip` (we also take `deflate`, zlib-wrapped or raw);
//! - the size limit applies after decompression: the decoder stops as soon as the output would
//!   pass the limit, so a gzip bomb never allocates more than the limit;
//! - OTLP/JSON differs from proto3 JSON: ids are case-insensitive hex, enums are integers only,
//!   keys are lowerCamelCase only, 64-bit integers are strings or numbers, unknown fields are
//!   ignored. `opentelemetry-proto`'s `with-serde` implements most of that; [`decode_json`]
//!   closes the gaps the table tests below found (`null` for a message or scalar field).

use std::io::{self, Read};

use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prost::Message;

/// `Content-Type` of OTLP/HTTP protobuf.
pub const PROTOBUF_CONTENT_TYPE: &str = "application/x-protobuf";
/// `Content-Type` of OTLP/HTTP JSON.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// How a request (or response) body is serialized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Binary protobuf.
    Protobuf,
    /// OTLP/JSON.
    Json,
}

/// How a request body is compressed (`Content-Encoding` / `grpc-encoding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Not compressed.
    Identity,
    /// gzip (RFC 1952).
    Gzip,
    /// HTTP `deflate`: zlib (RFC 1950); raw deflate (RFC 1951) is accepted as well.
    Deflate,
}

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The (decompressed) body is larger than the limit.
    #[error("request exceeds the limit of {limit} bytes after decompression")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The body is not valid gzip/deflate data.
    #[error("request body is not valid {encoding} data: {source}")]
    Decompress {
        /// `gzip` or `deflate`.
        encoding: &'static str,
        /// The decoder's error.
        #[source]
        source: io::Error,
    },
    /// Not a valid protobuf `ExportTraceServiceRequest`.
    #[error("request body is not a valid protobuf ExportTraceServiceRequest: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// Not a valid OTLP/JSON `ExportTraceServiceRequest`.
    #[error("request body is not a valid OTLP/JSON ExportTraceServiceRequest: {0}")]
    Json(#[from] serde_json::Error),
}

// === impl Format ===

impl Format {
    /// The format named by a `Content-Type` value (case-insensitive, parameters ignored), or
    /// `None` when it is neither OTLP media type.
    pub fn from_content_type(value: &str) -> Option<Self> {
        let media_type = value.split(';').next().unwrap_or_default().trim();
        if media_type.eq_ignore_ascii_case(PROTOBUF_CONTENT_TYPE) {
            Some(Self::Protobuf)
        } else if media_type.eq_ignore_ascii_case(JSON_CONTENT_TYPE) {
            Some(Self::Json)
        } else {
            None
        }
    }

    /// The `Content-Type` to answer with.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Protobuf => PROTOBUF_CONTENT_TYPE,
            Self::Json => JSON_CONTENT_TYPE,
        }
    }
}

// === impl Encoding ===

impl Encoding {
    /// The encoding named by a `Content-Encoding` value (absent or empty means identity), or
    /// `None` when unsupported. Case-insensitive.
    pub fn from_header(value: Option<&str>) -> Option<Self> {
        let value = value.unwrap_or_default().trim();
        if value.is_empty() || value.eq_ignore_ascii_case("identity") {
            Some(Self::Identity)
        } else if value.eq_ignore_ascii_case("gzip") || value.eq_ignore_ascii_case("x-gzip") {
            Some(Self::Gzip)
        } else if value.eq_ignore_ascii_case("deflate") {
            Some(Self::Deflate)
        } else {
            None
        }
    }
}

/// Decompresses `body` into at most `limit` bytes. The output buffer grows in steps and never
/// past `limit + 1` bytes, whatever the compression ratio.
pub fn decompress(body: &[u8], encoding: Encoding, limit: usize) -> Result<Vec<u8>, DecodeError> {
    match encoding {
        Encoding::Identity => {
            if body.len() > limit {
                return Err(DecodeError::TooLarge { limit });
            }
            Ok(body.to_vec())
        }
        Encoding::Gzip => bounded_read(flate2::read::MultiGzDecoder::new(body), limit, "gzip"),
        Encoding::Deflate => {
            // Clients disagree on what HTTP "deflate" means; zlib is what RFC 9110 says.
            match bounded_read(flate2::read::ZlibDecoder::new(body), limit, "deflate") {
                Err(DecodeError::Decompress { .. }) => {
                    bounded_read(flate2::read::DeflateDecoder::new(body), limit, "deflate")
                }
                other => other,
            }
        }
    }
}

fn bounded_read(
    mut reader: impl Read,
    limit: usize,
    encoding: &'static str,
) -> Result<Vec<u8>, DecodeError> {
    const STEP: usize = 64 * 1024;
    let cap = limit.saturating_add(1);
    let mut out = Vec::new();
    loop {
        if out.len() == out.capacity() {
            let grow = out.capacity().clamp(STEP, 8 * 1024 * 1024);
            let target = out.capacity().saturating_add(grow).min(cap);
            if target <= out.len() {
                return Err(DecodeError::TooLarge { limit });
            }
            out.reserve_exact(target - out.len());
        }
        let start = out.len();
        let room = out.capacity().min(cap) - start;
        out.resize(start + room, 0);
        let read = match reader.read(out.get_mut(start..).unwrap_or_default()) {
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => 0,
            Err(source) => return Err(DecodeError::Decompress { encoding, source }),
        };
        out.truncate(start + read);
        if read == 0 && room > 0 {
            return Ok(out);
        }
        if out.len() > limit {
            return Err(DecodeError::TooLarge { limit });
        }
    }
}

/// Decodes a decompressed body. An empty body is an empty request (success by the spec).
pub fn decode_request(
    body: &[u8],
    format: Format,
) -> Result<ExportTraceServiceRequest, DecodeError> {
    if body.is_empty() {
        return Ok(ExportTraceServiceRequest::default());
    }
    match format {
        Format::Protobuf => Ok(ExportTraceServiceRequest::decode(body)?),
        Format::Json => decode_json(body),
    }
}

/// Decodes OTLP/JSON. `null` stands for "field not set" (proto3 JSON), which the generated serde
/// code rejects for most fields, so nulls are removed first.
pub fn decode_json(body: &[u8]) -> Result<ExportTraceServiceRequest, DecodeError> {
    let mut value: serde_json::Value = serde_json::from_slice(body)?;
    if !value.is_object() {
        // serde's derive would also take an array for a struct.
        return Err(DecodeError::Json(serde::de::Error::custom(
            "expected a JSON object",
        )));
    }
    strip_nulls(&mut value);
    Ok(serde_json::from_value(value)?)
}

fn strip_nulls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// A success response (`partial_success` unset) in `format`.
pub fn encode_success(format: Format) -> Vec<u8> {
    let response = ExportTraceServiceResponse::default();
    match format {
        Format::Protobuf => response.encode_to_vec(),
        // The empty message (serde would write `"partialSuccess":null`).
        Format::Json => b"{}".to_vec(),
    }
}

/// Heap and inline bytes a decoded request holds (capacities, not lengths), walked through
/// every field: what queueing it costs in memory, typically 2-3x its encoded size. Used to
/// charge the memory budget in real bytes rather than wire bytes.
pub fn memory_size(request: &ExportTraceServiceRequest) -> usize {
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, InstrumentationScope, KeyValue, any_value,
    };
    use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Span, span};
    use std::mem::size_of;

    fn vec<T>(items: &Vec<T>, each: impl Fn(&T) -> usize) -> usize {
        items.capacity() * size_of::<T>() + items.iter().map(each).sum::<usize>()
    }
    fn any(value: &AnyValue) -> usize {
        match &value.value {
            Some(any_value::Value::StringValue(s)) => s.capacity(),
            Some(any_value::Value::BytesValue(b)) => b.capacity(),
            Some(any_value::Value::ArrayValue(a)) => vec(&a.values, any),
            Some(any_value::Value::KvlistValue(l)) => vec(&l.values, kv),
            _ => 0,
        }
    }
    fn kv(kv: &KeyValue) -> usize {
        kv.key.capacity()
            + kv.value
                .as_ref()
                .map_or(0, |v| size_of::<AnyValue>() + any(v))
    }
    fn scope(scope: &InstrumentationScope) -> usize {
        scope.name.capacity() + scope.version.capacity() + vec(&scope.attributes, kv)
    }
    fn link(link: &span::Link) -> usize {
        link.trace_id.capacity()
            + link.span_id.capacity()
            + link.trace_state.capacity()
            + vec(&link.attributes, kv)
    }
    fn event(event: &span::Event) -> usize {
        event.name.capacity() + vec(&event.attributes, kv)
    }
    fn one_span(span: &Span) -> usize {
        span.trace_id.capacity()
            + span.span_id.capacity()
            + span.parent_span_id.capacity()
            + span.trace_state.capacity()
            + span.name.capacity()
            + vec(&span.attributes, kv)
            + vec(&span.events, event)
            + vec(&span.links, link)
            + span.status.as_ref().map_or(0, |s| s.message.capacity())
    }
    fn scope_spans(ss: &ScopeSpans) -> usize {
        ss.scope
            .as_ref()
            .map_or(0, |s| size_of::<InstrumentationScope>() + scope(s))
            + vec(&ss.spans, one_span)
            + ss.schema_url.capacity()
    }
    fn resource_spans(rs: &ResourceSpans) -> usize {
        rs.resource.as_ref().map_or(0, |r| {
            size_of::<opentelemetry_proto::tonic::resource::v1::Resource>() + vec(&r.attributes, kv)
        }) + vec(&rs.scope_spans, scope_spans)
            + rs.schema_url.capacity()
    }
    size_of::<ExportTraceServiceRequest>() + vec(&request.resource_spans, resource_spans)
}

/// Number of spans in a request.
pub fn count_spans(request: &ExportTraceServiceRequest) -> u64 {
    count_resource_spans(&request.resource_spans)
}

/// Number of spans in `resource_spans`.
pub fn count_resource_spans(resource_spans: &[ResourceSpans]) -> u64 {
    resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len() as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn content_types_and_encodings() {
        assert_eq!(
            Format::from_content_type("application/x-protobuf"),
            Some(Format::Protobuf)
        );
        assert_eq!(
            Format::from_content_type("Application/JSON; charset=utf-8"),
            Some(Format::Json)
        );
        assert_eq!(Format::from_content_type("text/plain"), None);
        assert_eq!(Format::from_content_type(""), None);
        assert_eq!(Encoding::from_header(None), Some(Encoding::Identity));
        assert_eq!(Encoding::from_header(Some("GZIP")), Some(Encoding::Gzip));
        assert_eq!(
            Encoding::from_header(Some("deflate")),
            Some(Encoding::Deflate)
        );
        assert_eq!(Encoding::from_header(Some("br")), None);
        assert_eq!(Encoding::from_header(Some("gzip, br")), None);
    }

    #[test]
    fn gzip_and_both_deflates_round_trip() {
        let data = b"hello otlp".repeat(100);
        assert_eq!(
            decompress(&gzip(&data), Encoding::Gzip, 10_000).unwrap(),
            data
        );
        let mut zlib = ZlibEncoder::new(Vec::new(), Compression::default());
        zlib.write_all(&data).unwrap();
        assert_eq!(
            decompress(&zlib.finish().unwrap(), Encoding::Deflate, 10_000).unwrap(),
            data
        );
        let mut raw = DeflateEncoder::new(Vec::new(), Compression::default());
        raw.write_all(&data).unwrap();
        assert_eq!(
            decompress(&raw.finish().unwrap(), Encoding::Deflate, 10_000).unwrap(),
            data
        );
        // Exactly at the limit is fine, one byte over is not.
        assert_eq!(
            decompress(&gzip(&data), Encoding::Gzip, data.len())
                .unwrap()
                .len(),
            data.len()
        );
        assert!(matches!(
            decompress(&gzip(&data), Encoding::Gzip, data.len() - 1),
            Err(DecodeError::TooLarge { .. })
        ));
        assert!(matches!(
            decompress(b"not gzip", Encoding::Gzip, 100),
            Err(DecodeError::Decompress {
                encoding: "gzip",
                ..
            })
        ));
        assert!(matches!(
            decompress(&[0u8; 11], Encoding::Identity, 10),
            Err(DecodeError::TooLarge { limit: 10 })
        ));
    }

    #[test]
    fn gzip_bomb_stops_at_the_limit_without_allocating_past_it() {
        // 256 MiB of zeros compress to about 2.5 MiB at the fastest level: smaller than the limit.
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..256 {
            encoder.write_all(&chunk).unwrap();
        }
        let bomb = encoder.finish().unwrap();
        let limit = 4 << 20;
        assert!(bomb.len() < limit, "bomb is {} bytes", bomb.len());
        match decompress(&bomb, Encoding::Gzip, limit) {
            Err(DecodeError::TooLarge { limit: l }) => assert_eq!(l, limit),
            other => panic!("expected TooLarge, got {:?}", other.map(|v| v.len())),
        }
        // The growth rule never reserves past limit + 1.
        let mut reader = flate2::read::GzDecoder::new(bomb.as_slice());
        let mut probe = Vec::new();
        let _ = (&mut reader)
            .take((limit + 1) as u64)
            .read_to_end(&mut probe);
        assert_eq!(probe.len(), limit + 1);
    }

    /// OTLP/JSON table: (input, what must hold after decoding, or None when it must fail).
    #[test]
    fn otlp_json_rules() {
        let span = |fields: &str| {
            format!(
                r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"svc"}}}}]}},
                   "scopeSpans":[{{"scope":{{"name":"s","version":"1"}},"spans":[{{{fields}}}]}}]}}]}}"#
            )
        };
        let ok =
            |json: String| decode_json(json.as_bytes()).unwrap_or_else(|e| panic!("{e}: {json}"));
        let first =
            |r: &ExportTraceServiceRequest| r.resource_spans[0].scope_spans[0].spans[0].clone();

        // Ids: hex in either case.
        let r = ok(span(
            r#""traceId":"4BF92F3577B34DA6A3CE929D0E0E4736","spanId":"00f067aa0ba902b7""#,
        ));
        assert_eq!(
            hex::encode(first(&r).trace_id),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        // Enums as integers; int64 as strings or numbers.
        let r = ok(span(
            r#""kind":2,"startTimeUnixNano":"1760000000000000000","endTimeUnixNano":1760000000000000001,
               "attributes":[{"key":"a","value":{"intValue":"200"}},{"key":"b","value":{"intValue":7}}],
               "status":{"code":2,"message":"boom"}"#,
        ));
        let s = first(&r);
        assert_eq!(s.kind, SpanKind::Server as i32);
        assert_eq!(s.start_time_unix_nano, 1_760_000_000_000_000_000);
        assert_eq!(s.end_time_unix_nano, 1_760_000_000_000_000_001);
        assert_eq!(
            s.attributes[0].value.as_ref().unwrap().value,
            Some(Value::IntValue(200))
        );
        assert_eq!(
            s.attributes[1].value.as_ref().unwrap().value,
            Some(Value::IntValue(7))
        );
        assert_eq!(s.status.unwrap().code, 2);
        // Unknown fields are ignored, at every level.
        let r = ok(span(r#""name":"x","someFutureField":{"a":[1,2]},"kind":1"#));
        assert_eq!(first(&r).name, "x");
        // null means unset.
        let r = ok(span(
            r#""name":"n","status":null,"parentSpanId":null,"attributes":null"#,
        ));
        assert_eq!(first(&r).name, "n");
        // Events, links, dropped counts, flags.
        let r = ok(span(
            r#""events":[{"timeUnixNano":"5","name":"e","attributes":[]}],
               "links":[{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7","flags":256}],
               "droppedAttributesCount":3,"flags":769,"traceState":"k=v""#,
        ));
        let s = first(&r);
        assert_eq!(s.events[0].time_unix_nano, 5);
        assert_eq!(s.links[0].flags, 256);
        assert_eq!(
            (s.dropped_attributes_count, s.flags, s.trace_state.as_str()),
            (3, 769, "k=v")
        );
        // Empty object is an empty request.
        assert_eq!(count_spans(&ok("{}".to_owned())), 0);

        // Rejected: enum names (OTLP/JSON allows integers only), base64 ids, bad JSON.
        for bad in [
            span(r#""kind":"SPAN_KIND_SERVER""#),
            span(r#""traceId":"S/kvNXezTaajzpKdDg5HNg==""#),
            "{".to_owned(),
            "[]".to_owned(),
            span(r#""startTimeUnixNano":"soon""#),
        ] {
            assert!(decode_json(bad.as_bytes()).is_err(), "accepted {bad}");
        }
    }

    #[test]
    fn empty_body_is_an_empty_request_in_both_formats() {
        assert_eq!(
            count_spans(&decode_request(b"", Format::Protobuf).unwrap()),
            0
        );
        assert_eq!(count_spans(&decode_request(b"", Format::Json).unwrap()), 0);
        assert!(decode_request(b"\xff\xff", Format::Protobuf).is_err());
    }

    #[test]
    fn memory_size_counts_decoded_structures() {
        let empty = ExportTraceServiceRequest::default();
        assert_eq!(
            memory_size(&empty),
            std::mem::size_of::<ExportTraceServiceRequest>()
        );
        let json = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},
            "scopeSpans":[{"scope":{"name":"s"},"spans":[{"traceId":"4bf92f3577b34da6a3ce929d0e0e4736",
            "spanId":"00f067aa0ba902b7","name":"GET /users","attributes":[{"key":"a","value":{"arrayValue":{"values":[{"stringValue":"x"}]}}}]}]}]}]}"#;
        let request = decode_json(json.as_bytes()).unwrap();
        let size = memory_size(&request);
        let span = std::mem::size_of::<opentelemetry_proto::tonic::trace::v1::Span>();
        // At least the span struct, its ids and strings; more than the wire size.
        assert!(size > span + 16 + 8 + "GET /users".len(), "{size}");
        assert!(
            size > request.encoded_len(),
            "{size} vs {}",
            request.encoded_len()
        );
    }

    #[test]
    fn success_responses_are_empty_messages() {
        assert!(encode_success(Format::Protobuf).is_empty());
        assert_eq!(encode_success(Format::Json), b"{}");
    }
}
