//! What the store indexes of one span: the columns the queries filter and sort on, taken from
//! the OTLP span and its resource. Pure; the encoded span itself is kept beside these columns so
//! the OTLP data is returned exactly as received.

use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use super::TraceId;

/// The resource attribute naming the service
/// (<https://opentelemetry.io/docs/specs/semconv/resource/#service>).
pub const SERVICE_NAME: &str = "service.name";
/// The service of spans whose resource has no `service.name`, as OpenTelemetry SDKs name it.
pub const UNKNOWN_SERVICE: &str = "unknown_service";
/// Fixed bytes charged per stored span for its integer columns (sequence number, receive time,
/// kind, status, start, end, resource and scope references: eight 64-bit integers).
pub const FIXED_COLUMN_BYTES: usize = 8 * 8;

/// One span's indexed columns plus its encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpanRow {
    /// The 16-byte trace id.
    pub trace_id: TraceId,
    /// The span id as sent (8 bytes when valid; stored whatever it is).
    pub span_id: Vec<u8>,
    /// The parent span id; `None` for a root span (empty in OTLP).
    pub parent_span_id: Option<Vec<u8>>,
    /// `service.name` of the resource, or [`UNKNOWN_SERVICE`].
    pub service: String,
    /// The span name.
    pub name: String,
    /// `Span.kind` (OTLP enum number).
    pub kind: i32,
    /// `Span.status.code` (0 unset, 1 ok, 2 error).
    pub status_code: i32,
    /// Start, Unix nanoseconds (clamped to `i64::MAX`).
    pub start_ns: i64,
    /// End, Unix nanoseconds (clamped to `i64::MAX`).
    pub end_ns: i64,
    /// The span, protobuf-encoded.
    pub encoded: Vec<u8>,
}

impl SpanRow {
    /// The row of `span`, or `None` when its trace id is not 16 bytes (such a span cannot be
    /// looked up; OTLP calls it invalid).
    pub fn new(span: &Span, service: &str) -> Option<Self> {
        let trace_id = TraceId::try_from(span.trace_id.as_slice()).ok()?;
        Some(Self {
            trace_id,
            span_id: span.span_id.clone(),
            parent_span_id: (!span.parent_span_id.is_empty()).then(|| span.parent_span_id.clone()),
            service: service.to_owned(),
            name: span.name.clone(),
            kind: span.kind,
            status_code: span.status.as_ref().map_or(0, |status| status.code),
            start_ns: clamp_nanos(span.start_time_unix_nano),
            end_ns: clamp_nanos(span.end_time_unix_nano),
            encoded: span.encode_to_vec(),
        })
    }

    /// Bytes this row is charged: the encoded span, the indexed copies of its ids, service and
    /// name, and [`FIXED_COLUMN_BYTES`].
    pub fn charged_bytes(&self) -> usize {
        self.encoded.len()
            + self.trace_id.len()
            + self.span_id.len()
            + self.parent_span_id.as_ref().map_or(0, Vec::len)
            + self.service.len()
            + self.name.len()
            + FIXED_COLUMN_BYTES
    }
}

/// The `service.name` string attribute of `resource`, or [`UNKNOWN_SERVICE`] when it is
/// missing, empty or not a string.
pub fn service_name(resource: Option<&Resource>) -> &str {
    resource
        .into_iter()
        .flat_map(|resource| &resource.attributes)
        .find(|kv| kv.key == SERVICE_NAME)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|value| match &value.value {
            Some(any_value::Value::StringValue(name)) if !name.is_empty() => Some(name.as_str()),
            _ => None,
        })
        .unwrap_or(UNKNOWN_SERVICE)
}

fn clamp_nanos(nanos: u64) -> i64 {
    i64::try_from(nanos).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
    use opentelemetry_proto::tonic::trace::v1::{Status, status};

    fn resource(attributes: Vec<(&str, any_value::Value)>) -> Resource {
        Resource {
            attributes: attributes
                .into_iter()
                .map(|(key, value)| KeyValue {
                    key: key.to_owned(),
                    value: Some(AnyValue { value: Some(value) }),
                    ..KeyValue::default()
                })
                .collect(),
            ..Resource::default()
        }
    }

    #[test]
    fn service_name_falls_back_to_unknown_service() {
        let named = resource(vec![(
            SERVICE_NAME,
            any_value::Value::StringValue("checkout".to_owned()),
        )]);
        assert_eq!(service_name(Some(&named)), "checkout");
        for odd in [
            resource(vec![]),
            resource(vec![(
                SERVICE_NAME,
                any_value::Value::StringValue(String::new()),
            )]),
            resource(vec![(SERVICE_NAME, any_value::Value::IntValue(7))]),
        ] {
            assert_eq!(service_name(Some(&odd)), UNKNOWN_SERVICE, "{odd:?}");
        }
        assert_eq!(service_name(None), UNKNOWN_SERVICE);
    }

    #[test]
    fn row_takes_the_indexed_fields() {
        let span = Span {
            trace_id: vec![7; 16],
            span_id: vec![1; 8],
            parent_span_id: vec![2; 8],
            name: "GET".to_owned(),
            kind: 2,
            start_time_unix_nano: 10,
            end_time_unix_nano: u64::MAX,
            status: Some(Status {
                code: status::StatusCode::Error as i32,
                message: "boom".to_owned(),
            }),
            ..Span::default()
        };
        let row = SpanRow::new(&span, "svc").unwrap();
        assert_eq!(row.trace_id, [7; 16]);
        assert_eq!(row.parent_span_id, Some(vec![2; 8]));
        assert_eq!((row.kind, row.status_code), (2, 2));
        assert_eq!((row.start_ns, row.end_ns), (10, i64::MAX));
        assert_eq!(Span::decode(row.encoded.as_slice()).unwrap(), span);
        assert_eq!(
            row.charged_bytes(),
            span.encoded_len() + 16 + 8 + 8 + "svc".len() + "GET".len() + FIXED_COLUMN_BYTES
        );
    }

    #[test]
    fn root_spans_have_no_parent_and_bad_trace_ids_no_row() {
        let root = Span {
            trace_id: vec![7; 16],
            ..Span::default()
        };
        assert_eq!(SpanRow::new(&root, "s").unwrap().parent_span_id, None);
        for bad in [vec![], vec![1; 8], vec![1; 17]] {
            let span = Span {
                trace_id: bad,
                ..Span::default()
            };
            assert_eq!(SpanRow::new(&span, "s"), None);
        }
    }
}
