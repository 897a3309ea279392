//! Span attributes: typed values, and the limits every span is held to.
//!
//! Limits follow the OpenTelemetry SDK span limits
//! (<https://opentelemetry.io/docs/specs/otel/trace/sdk/#span-limits>): a count limit (attributes
//! past it are dropped and counted in the span's `dropped_attributes_count`) and a value length
//! limit (longer strings are cut at a UTF-8 character boundary). A third limit bounds the header
//! bytes the custom tags may read per request ([`Limits::max_header_bytes`]); a tag past it is
//! dropped and counted like an attribute past the count limit.
//!
//! Defaults are the constants below; the `limits` section of the configuration overrides them
//! within the `*_RANGE` bounds.

use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};
use serde::Deserialize;
use std::borrow::Cow;
use std::ops::RangeInclusive;

/// Default most attributes on one span (`OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`'s default, 128).
pub const DEFAULT_MAX_ATTRIBUTES: u32 = 128;
/// Accepted `limits.max_attributes`: enough for every convention attribute the filter writes.
pub const MAX_ATTRIBUTES_RANGE: RangeInclusive<u32> = 32..=1_024;
/// Default longest string attribute value, in bytes (longer values are cut).
pub const DEFAULT_MAX_ATTRIBUTE_VALUE_LEN: u32 = 4_096;
/// Accepted `limits.max_attribute_value_length`.
pub const MAX_ATTRIBUTE_VALUE_LEN_RANGE: RangeInclusive<u32> = 16..=65_536;
/// Default most header value bytes the custom tags of one request read (request and response
/// together).
pub const DEFAULT_MAX_HEADER_BYTES: u32 = 8_192;
/// Accepted `limits.max_header_bytes` (0: header tags never record anything).
pub const MAX_HEADER_BYTES_RANGE: RangeInclusive<u32> = 0..=65_536;

/// An attribute value, typed as OTLP carries it.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A string (bounded by the value length limit when encoded).
    String(String),
    /// A 64-bit signed integer.
    Int(i64),
    /// A double.
    Double(f64),
    /// A boolean.
    Bool(bool),
    /// An array of strings (`http.request.header.<key>`), each bounded.
    StringArray(Vec<String>),
}

/// One attribute: a key (mostly static) and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Attribute {
    /// The attribute name.
    pub key: Cow<'static, str>,
    /// Its value.
    pub value: Value,
}

/// `limits`: span limits, overridable in the configuration.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Most attributes per span; more are dropped and counted in `dropped_attributes_count`.
    pub max_attributes: u32,
    /// Longest string value, in bytes; longer values are cut at a character boundary.
    pub max_attribute_value_length: u32,
    /// Most header value bytes read by the custom tags of one request.
    pub max_header_bytes: u32,
}

/// Attributes encoded under a [`Limits`], with what the limits cut.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Encoded {
    /// The OTLP attributes, in order, at most `max_attributes`.
    pub attributes: Vec<KeyValue>,
    /// Attributes dropped by the count limit.
    pub dropped: u32,
    /// String values cut by the length limit.
    pub truncated: u32,
}

// === impl Value ===

impl Value {
    /// A string value from header or property bytes (invalid UTF-8 replaced).
    pub fn lossy(bytes: &[u8]) -> Self {
        Value::String(String::from_utf8_lossy(bytes).into_owned())
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Value::String(value.to_owned())
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Value::String(value)
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Value::Int(value)
    }
}

// === impl Attribute ===

impl Attribute {
    /// An attribute with a static key.
    pub fn new(key: &'static str, value: impl Into<Value>) -> Self {
        Self {
            key: Cow::Borrowed(key),
            value: value.into(),
        }
    }
}

// === impl Limits ===

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_attributes: DEFAULT_MAX_ATTRIBUTES,
            max_attribute_value_length: DEFAULT_MAX_ATTRIBUTE_VALUE_LEN,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
        }
    }
}

impl Limits {
    /// Checks each limit against its accepted range; the error names the field.
    pub fn validate(&self) -> Result<(), crate::config::ConfigError> {
        let check = |field: &str, value: u32, range: RangeInclusive<u32>| {
            if range.contains(&value) {
                Ok(())
            } else {
                Err(crate::config::ConfigError::new(
                    format!("limits.{field}"),
                    format!(
                        "must be between {} and {}, got {value}",
                        range.start(),
                        range.end()
                    ),
                ))
            }
        };
        check("max_attributes", self.max_attributes, MAX_ATTRIBUTES_RANGE)?;
        check(
            "max_attribute_value_length",
            self.max_attribute_value_length,
            MAX_ATTRIBUTE_VALUE_LEN_RANGE,
        )?;
        check(
            "max_header_bytes",
            self.max_header_bytes,
            MAX_HEADER_BYTES_RANGE,
        )
    }

    /// The value length limit as a `usize`.
    pub fn value_len(&self) -> usize {
        usize::try_from(self.max_attribute_value_length).unwrap_or(usize::MAX)
    }

    /// Encodes `attributes` in order: the first `max_attributes` are kept, strings cut to the
    /// value length limit.
    pub fn encode<'a>(&self, attributes: impl IntoIterator<Item = &'a Attribute>) -> Encoded {
        let max = usize::try_from(self.max_attributes).unwrap_or(usize::MAX);
        let mut encoded = Encoded::default();
        for attribute in attributes {
            if encoded.attributes.len() >= max {
                encoded.dropped = encoded.dropped.saturating_add(1);
                continue;
            }
            let value = self.bounded(&attribute.value, &mut encoded.truncated);
            encoded.attributes.push(KeyValue {
                key: attribute.key.to_string(),
                value: Some(AnyValue { value: Some(value) }),
                ..Default::default()
            });
        }
        encoded
    }

    fn bounded(&self, value: &Value, truncated: &mut u32) -> any_value::Value {
        let mut string = |s: &str| {
            let cut = truncate(s, self.value_len());
            if cut.len() < s.len() {
                *truncated = truncated.saturating_add(1);
            }
            any_value::Value::StringValue(cut.to_owned())
        };
        match value {
            Value::String(s) => string(s),
            Value::Int(i) => any_value::Value::IntValue(*i),
            Value::Double(d) => any_value::Value::DoubleValue(*d),
            Value::Bool(b) => any_value::Value::BoolValue(*b),
            Value::StringArray(values) => any_value::Value::ArrayValue(ArrayValue {
                values: values
                    .iter()
                    .map(|s| AnyValue {
                        value: Some(string(s)),
                    })
                    .collect(),
            }),
        }
    }
}

/// `text` cut to at most `max` bytes at a character boundary.
pub fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.get(..cut).unwrap_or_default()
}

/// Header or property bytes as a string of at most `max` bytes: cut first (so a huge value
/// costs no more than `max`), then invalid UTF-8 replaced, then cut again at a character
/// boundary (replacement characters are longer than the bytes they replace).
pub fn bounded_lossy(bytes: &[u8], max: usize) -> String {
    let head = bytes.get(..max).unwrap_or(bytes);
    let text = String::from_utf8_lossy(head);
    truncate(&text, max).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    // Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn limits(max_attributes: u32, max_len: u32) -> Limits {
        Limits {
            max_attributes,
            max_attribute_value_length: max_len,
            ..Limits::default()
        }
    }

    fn string(kv: &KeyValue) -> &str {
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => s,
            other => panic!("not a string: {other:?}"),
        }
    }

    #[test]
    fn the_count_limit_keeps_the_first_and_counts_the_rest() {
        let attributes: Vec<Attribute> = (0..5)
            .map(|i| Attribute {
                key: format!("k{i}").into(),
                value: Value::Int(i),
            })
            .collect();
        let encoded = limits(3, 100).encode(&attributes);
        let keys: Vec<&str> = encoded
            .attributes
            .iter()
            .map(|kv| kv.key.as_str())
            .collect();
        assert_eq!(keys, ["k0", "k1", "k2"]);
        assert_eq!((encoded.dropped, encoded.truncated), (2, 0));
    }

    #[test]
    fn long_strings_are_cut_at_a_character_boundary_and_counted() {
        let attributes = [
            Attribute::new("a", "é".repeat(10)),
            Attribute::new("b", "short"),
            Attribute {
                key: "c".into(),
                value: Value::StringArray(vec!["x".repeat(20), "y".into()]),
            },
        ];
        let encoded = limits(10, 7).encode(&attributes);
        assert_eq!(string(&encoded.attributes[0]), "ééé");
        assert_eq!(string(&encoded.attributes[1]), "short");
        let Some(any_value::Value::ArrayValue(array)) = encoded.attributes[2]
            .value
            .as_ref()
            .and_then(|v| v.value.clone())
        else {
            panic!("array expected");
        };
        assert_eq!(array.values.len(), 2);
        assert_eq!(encoded.truncated, 2);
        assert_eq!(encoded.dropped, 0);
    }

    #[test]
    fn bounded_lossy_never_exceeds_the_limit() {
        assert_eq!(bounded_lossy(b"abc", 10), "abc");
        assert_eq!(bounded_lossy(b"abcdef", 4), "abcd");
        // Each invalid byte becomes a 3-byte U+FFFD: the result is cut again.
        let text = bounded_lossy(&[0xff; 10], 7);
        assert_eq!(text, "\u{fffd}\u{fffd}");
        assert!(bounded_lossy("ééé".as_bytes(), 3).len() <= 3);
    }

    #[test]
    fn limits_are_validated_naming_the_field() {
        assert!(Limits::default().validate().is_ok());
        let err = limits(5, 100).validate().unwrap_err();
        assert_eq!(err.field, "limits.max_attributes");
        let err = limits(128, 1).validate().unwrap_err();
        assert_eq!(err.field, "limits.max_attribute_value_length");
        let err = Limits {
            max_header_bytes: 1 << 20,
            ..Limits::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(err.field, "limits.max_header_bytes");
    }
}
