//! Custom tags: span attributes an operator configures, each from one source, with an
//! optional default and a type (string, int, double, bool).
//!
//! | source | read | example |
//! |---|---|---|
//! | `literal` | once, at configuration | `{"name": "deployment.environment.name", "literal": "prod"}` |
//! | `environment` | once (the VM's environment) | `{"name": "k8s.pod.uid", "environment": "POD_UID"}` |
//! | `request_header` | request headers | `{"request_header": "x-tenant"}` → `http.request.header.x-tenant` |
//! | `response_header` | response headers | `{"name": "cache", "response_header": "x-cache"}` |
//! | `property` | Envoy attribute: `xds.node.*` once, others at the end of the stream | `{"name": "peer", "property": "source.address"}` |
//! | `baggage` | the request's W3C baggage | `{"name": "tenant", "baggage": "tenant.id"}` |
//!
//! A header tag without a `name` is the semantic conventions' `http.request.header.<key>` /
//! `http.response.header.<key>`, a string array of every value. `node.<...>` is shorthand for
//! `xds.node.<...>` (Envoy answers only the latter), so `node.metadata.NAMESPACE` works.
//! A value that is absent takes the `default`; a value that does not convert to the type
//! takes the default too, and is counted (`meshtrace_tag_values_invalid_total`).
//!
//! Secrets never leave: the headers in [`SENSITIVE_HEADERS`], the configured
//! `span.sensitive_headers`, and the attributes that expose them or the unredacted query
//! (`request.headers.<sensitive>`, `request.path`, `request.query`) are refused at
//! configuration unless the tag sets `"allow_sensitive": true`.

use crate::attributes::{Attribute, Value};
use crate::config::ConfigError;
use crate::host::{self, Encoding, Environment, Expect, Properties, Raw};
use crate::propagation::Headers;
use crate::propagation::baggage::Baggage;
use crate::semconv::{HTTP_REQUEST_HEADER_PREFIX, HTTP_RESPONSE_HEADER_PREFIX};
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// Headers that carry credentials: never tagged unless a tag opts in.
pub const SENSITIVE_HEADERS: [&str; 5] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
];
/// Most entries in `tags`.
pub const MAX_TAGS: usize = 64;
/// Longest tag (attribute) name.
pub const MAX_TAG_NAME_LEN: usize = 255;
/// Most segments in a property path.
const MAX_PROPERTY_SEGMENTS: usize = 16;
/// Longest property path segment.
const MAX_PROPERTY_SEGMENT_LEN: usize = 256;
/// Longest header name or environment variable name.
const MAX_NAME_LEN: usize = 256;

/// One entry of `tags`, as configured: a name, exactly one source, a default and a type.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TagConfig {
    /// Attribute name; optional for header sources.
    pub name: Option<String>,
    /// A fixed value.
    pub literal: Option<Scalar>,
    /// An environment variable of the VM.
    pub environment: Option<String>,
    /// A request header (lower case).
    pub request_header: Option<String>,
    /// A response header (lower case).
    pub response_header: Option<String>,
    /// An Envoy attribute: `source.address` or `["xds", "node", "metadata", "LABELS", "app"]`.
    pub property: Option<PropertyConfig>,
    /// A W3C baggage key.
    pub baggage: Option<String>,
    /// The value when the source has none (or one that does not convert).
    pub default: Option<Scalar>,
    /// The attribute type.
    #[serde(rename = "type")]
    pub value_type: ValueType,
    /// Record a sensitive header or attribute anyway.
    pub allow_sensitive: bool,
}

/// A literal or default as written in the JSON: a string, a number or a boolean.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    /// `true` / `false`.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// Any other number.
    Double(f64),
    /// A string.
    String(String),
}

/// A property path: dotted, or as explicit segments (for keys that contain dots).
#[derive(Clone, Debug, PartialEq)]
pub enum PropertyConfig {
    /// `"source.address"`.
    Dotted(String),
    /// `["xds", "node", "metadata", "LABELS", "app.kubernetes.io/name"]`.
    Segments(Vec<String>),
}

/// The type of a tag's attribute.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ValueType {
    /// A string (the default).
    #[default]
    String,
    /// A 64-bit integer.
    Int,
    /// A double.
    Double,
    /// A boolean.
    Bool,
}

/// When a tag's source can be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Once per configuration: literals, environment, node attributes.
    Static,
    /// On the request headers: request headers, baggage.
    Request,
    /// On the response headers.
    Response,
    /// When the stream ends: Envoy attributes.
    End,
}

/// The compiled `tags`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tags {
    tags: Vec<Tag>,
}

/// What one evaluation produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evaluated {
    /// The attributes, in configuration order.
    pub attributes: Vec<Attribute>,
    /// Header tags dropped because the header byte budget was spent.
    pub dropped: u32,
    /// Values that did not convert to the tag's type.
    pub invalid: u32,
}

#[derive(Clone, Debug, PartialEq)]
struct Tag {
    key: String,
    source: Source,
    default: Option<Value>,
    value_type: ValueType,
    /// `http.{request,response}.header.<key>`: a string array of every value.
    array: bool,
}

#[derive(Clone, Debug, PartialEq)]
enum Source {
    Literal(Value),
    Environment(String),
    RequestHeader(String),
    ResponseHeader(String),
    Property(Vec<String>, Encoding),
    Baggage(String),
}

/// What a source gave for one tag.
enum Read {
    /// Nothing: the default applies.
    Absent,
    /// A literal, already typed.
    Value(Value),
    /// A value to convert to the tag's type.
    Raw(Raw),
    /// Header values, to charge to the header byte budget.
    Lines(Vec<Vec<u8>>),
    /// Bytes that cannot be the attribute's type.
    Invalid,
}

// === impl Tags ===

impl Tags {
    /// Compiles `tags`. `sensitive` are the headers never tagged without `allow_sensitive`;
    /// `reserved` says which names the filter writes itself. Errors name `tags[i].<field>`.
    pub fn new(
        configs: &[TagConfig],
        sensitive: &[String],
        reserved: impl Fn(&str) -> bool,
    ) -> Result<Self, ConfigError> {
        if configs.len() > MAX_TAGS {
            return Err(ConfigError::new("tags", format!("at most {MAX_TAGS} tags")));
        }
        let mut tags: Vec<Tag> = Vec::with_capacity(configs.len());
        for (i, config) in configs.iter().enumerate() {
            let tag = config.build(&format!("tags[{i}]"), sensitive)?;
            if reserved(&tag.key) {
                return Err(ConfigError::new(
                    format!("tags[{i}].name"),
                    format!("`{}` is an attribute the filter writes itself", tag.key),
                ));
            }
            if tags.iter().any(|t| t.key == tag.key) {
                return Err(ConfigError::new(
                    format!("tags[{i}].name"),
                    format!("`{}` is already the name of an earlier tag", tag.key),
                ));
            }
            tags.push(tag);
        }
        Ok(Self { tags })
    }

    /// Whether any tag is read in `phase`.
    pub fn has(&self, phase: Phase) -> bool {
        self.tags.iter().any(|t| t.source.phase() == phase)
    }

    /// The literal, environment and node attribute tags.
    pub fn evaluate_static(&self, env: &dyn Environment, host: &dyn Properties) -> Evaluated {
        self.evaluate(Phase::Static, &mut 0, |tag| match &tag.source {
            Source::Literal(value) => Read::Value(value.clone()),
            Source::Environment(name) => Read::found(env.var(name).map(String::into_bytes)),
            Source::Property(path, encoding) => property(host, tag, path, *encoding),
            _ => Read::Absent,
        })
    }

    /// The request header and baggage tags. `budget` is the header bytes left to read.
    pub fn evaluate_request<H: Headers + ?Sized>(
        &self,
        headers: &H,
        baggage: &Baggage,
        budget: &mut usize,
    ) -> Evaluated {
        self.evaluate(Phase::Request, budget, |tag| match &tag.source {
            Source::RequestHeader(name) => header_values(headers, name),
            Source::Baggage(key) => Read::found(baggage.get(key).map(|m| m.value().into_bytes())),
            _ => Read::Absent,
        })
    }

    /// The response header tags. `budget` is the header bytes left to read.
    pub fn evaluate_response<H: Headers + ?Sized>(
        &self,
        headers: &H,
        budget: &mut usize,
    ) -> Evaluated {
        self.evaluate(Phase::Response, budget, |tag| match &tag.source {
            Source::ResponseHeader(name) => header_values(headers, name),
            _ => Read::Absent,
        })
    }

    /// The Envoy attribute tags read when the stream ends.
    pub fn evaluate_end(&self, host: &dyn Properties) -> Evaluated {
        self.evaluate(Phase::End, &mut 0, |tag| match &tag.source {
            Source::Property(path, encoding) => property(host, tag, path, *encoding),
            _ => Read::Absent,
        })
    }

    /// Evaluates the tags of `phase` with what `read` finds for each; header values are
    /// charged to `budget` (header bytes left to read).
    fn evaluate(&self, phase: Phase, budget: &mut usize, read: impl Fn(&Tag) -> Read) -> Evaluated {
        let mut out = Evaluated::default();
        for tag in self.tags.iter().filter(|t| t.source.phase() == phase) {
            let value = match read(tag) {
                Read::Absent => None,
                Read::Invalid => {
                    out.invalid += 1;
                    None
                }
                Read::Value(value) => Some(value),
                Read::Raw(raw) => converted(&mut out, raw, tag.value_type),
                Read::Lines(lines) => {
                    let cost: usize = lines.iter().map(Vec::len).sum();
                    if cost > *budget {
                        out.dropped += 1;
                        continue;
                    }
                    *budget -= cost;
                    if tag.array {
                        Some(Value::StringArray(
                            lines
                                .iter()
                                .map(|v| String::from_utf8_lossy(v).into_owned())
                                .collect(),
                        ))
                    } else {
                        converted(&mut out, Raw::Bytes(lines.join(&b", "[..])), tag.value_type)
                    }
                }
            };
            if let Some(value) = value.or_else(|| tag.default.clone()) {
                out.attributes.push(tag.attribute(value));
            }
        }
        out
    }
}

// === impl Read ===

impl Read {
    fn found(bytes: Option<Vec<u8>>) -> Self {
        bytes.map_or(Read::Absent, |b| Read::Raw(Raw::Bytes(b)))
    }
}

fn converted(out: &mut Evaluated, raw: Raw, value_type: ValueType) -> Option<Value> {
    let value = convert(raw, value_type);
    if value.is_none() {
        out.invalid += 1;
    }
    value
}

/// Every value of header `name` (trimmed), or absent.
fn header_values<H: Headers + ?Sized>(headers: &H, name: &str) -> Read {
    let lines: Vec<Vec<u8>> = headers
        .pairs()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.trim_ascii().to_vec())
        .collect();
    if lines.is_empty() {
        Read::Absent
    } else {
        Read::Lines(lines)
    }
}

/// An Envoy attribute, decoded by its documented type, or by the tag's type for Struct and
/// undocumented values. Bytes of the wrong size read as absent-and-invalid.
fn property(host: &dyn Properties, tag: &Tag, path: &[String], encoding: Encoding) -> Read {
    let segments: Vec<&str> = path.iter().map(String::as_str).collect();
    let Some(bytes) = host.property(&segments) else {
        return Read::Absent;
    };
    let expect = match tag.value_type {
        ValueType::String => Expect::String,
        ValueType::Int => Expect::Int,
        ValueType::Double => Expect::Double,
        ValueType::Bool => Expect::Bool,
    };
    match encoding.decode(&bytes, expect) {
        Some(raw) => Read::Raw(raw),
        // Not the size the type says: counted, the default applies.
        None => Read::Invalid,
    }
}

/// Converts a raw value to the tag's type; `None` if it does not convert.
pub fn convert(raw: Raw, value_type: ValueType) -> Option<Value> {
    let text = |raw: &Raw| -> Option<String> {
        match raw {
            Raw::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Raw::Int(i) => Some(i.to_string()),
            Raw::Uint(u) => Some(u.to_string()),
            Raw::Double(d) => Some(format_double(*d)),
            Raw::Bool(b) => Some(b.to_string()),
        }
    };
    match value_type {
        ValueType::String => text(&raw).map(Value::String),
        ValueType::Int => match raw {
            Raw::Int(i) => Some(i),
            Raw::Uint(u) => i64::try_from(u).ok(),
            Raw::Double(d) => whole(d),
            Raw::Bool(b) => Some(i64::from(b)),
            Raw::Bytes(b) => std::str::from_utf8(&b).ok()?.trim().parse().ok(),
        }
        .map(Value::Int),
        ValueType::Double => match raw {
            Raw::Int(i) => Some(i as f64),
            Raw::Uint(u) => Some(u as f64),
            Raw::Double(d) => Some(d),
            Raw::Bool(b) => Some(if b { 1.0 } else { 0.0 }),
            Raw::Bytes(b) => std::str::from_utf8(&b).ok()?.trim().parse().ok(),
        }
        .filter(|d: &f64| d.is_finite())
        .map(Value::Double),
        ValueType::Bool => match raw {
            Raw::Bool(b) => Some(b),
            Raw::Int(i) => (i == 0 || i == 1).then_some(i == 1),
            Raw::Uint(u) => (u == 0 || u == 1).then_some(u == 1),
            Raw::Double(d) => (d == 0.0 || d == 1.0).then_some(d == 1.0),
            Raw::Bytes(b) => match std::str::from_utf8(&b).ok()?.trim() {
                t if t.eq_ignore_ascii_case("true") => Some(true),
                t if t.eq_ignore_ascii_case("false") => Some(false),
                _ => None,
            },
        }
        .map(Value::Bool),
    }
}

/// A double as a tag string: whole values without a fraction (`7`, as node metadata numbers
/// are written), others as Rust prints them.
fn format_double(d: f64) -> String {
    whole(d).map_or_else(|| d.to_string(), |i| i.to_string())
}

fn whole(d: f64) -> Option<i64> {
    // Exactly representable whole numbers within ±2^53 only.
    const LIMIT: f64 = 9_007_199_254_740_992.0;
    #[allow(clippy::cast_possible_truncation)] // whole and within ±2^53
    (d.fract() == 0.0 && d.abs() <= LIMIT).then_some(d as i64)
}

// === impl Tag ===

impl Tag {
    fn attribute(&self, value: Value) -> Attribute {
        Attribute {
            key: Cow::Owned(self.key.clone()),
            value,
        }
    }
}

// === impl Source ===

impl Source {
    fn phase(&self) -> Phase {
        match self {
            Source::Literal(_) | Source::Environment(_) => Phase::Static,
            Source::RequestHeader(_) | Source::Baggage(_) => Phase::Request,
            Source::ResponseHeader(_) => Phase::Response,
            Source::Property(path, _) => {
                let root = path.first().map(String::as_str);
                let node = root == Some("xds") && path.get(1).is_some_and(|s| s == "node");
                if node || root.is_some_and(|r| r.starts_with("plugin_")) {
                    Phase::Static
                } else {
                    Phase::End
                }
            }
        }
    }
}

// === impl TagConfig ===

impl TagConfig {
    fn build(&self, at: &str, sensitive: &[String]) -> Result<Tag, ConfigError> {
        let field = |name: &str| format!("{at}.{name}");
        let sources = [
            self.literal.is_some(),
            self.environment.is_some(),
            self.request_header.is_some(),
            self.response_header.is_some(),
            self.property.is_some(),
            self.baggage.is_some(),
        ];
        if sources.iter().filter(|&&s| s).count() != 1 {
            return Err(ConfigError::new(
                at,
                "set exactly one source: literal, environment, request_header, \
                 response_header, property or baggage",
            ));
        }
        let (source, default_key) = if let Some(literal) = &self.literal {
            let value = scalar(literal, self.value_type)
                .ok_or_else(|| mistyped(&field("literal"), literal, self.value_type))?;
            (Source::Literal(value), None)
        } else if let Some(name) = &self.environment {
            if name.is_empty() || name.len() > MAX_NAME_LEN || name.contains(['=', '\0']) {
                return Err(ConfigError::new(
                    field("environment"),
                    format!("not a variable name (1 to {MAX_NAME_LEN} bytes, no `=`)"),
                ));
            }
            (Source::Environment(name.clone()), None)
        } else if let Some(name) = &self.request_header {
            let at = field("request_header");
            self.check_header(&at, name, sensitive)?;
            let key = format!("{HTTP_REQUEST_HEADER_PREFIX}{name}");
            (Source::RequestHeader(name.clone()), Some(key))
        } else if let Some(name) = &self.response_header {
            let at = field("response_header");
            self.check_header(&at, name, sensitive)?;
            let key = format!("{HTTP_RESPONSE_HEADER_PREFIX}{name}");
            (Source::ResponseHeader(name.clone()), Some(key))
        } else if let Some(key) = &self.baggage {
            if !crate::propagation::is_token(key.as_bytes()) || key.len() > MAX_NAME_LEN {
                return Err(ConfigError::new(
                    field("baggage"),
                    format!("`{key}` is not a baggage key (a token of 1 to {MAX_NAME_LEN} bytes)"),
                ));
            }
            (Source::Baggage(key.clone()), None)
        } else if let Some(property) = &self.property {
            let path = property_path(&field("property"), property)?;
            if !self.allow_sensitive {
                check_property_secrets(&field("property"), &path, sensitive)?;
            }
            let encoding = Encoding::of(&path.iter().map(String::as_str).collect::<Vec<_>>());
            (Source::Property(path, encoding), None)
        } else {
            return Err(ConfigError::new(at, "no source"));
        };
        let key = match (&self.name, default_key) {
            (Some(name), _) => name.clone(),
            (None, Some(key)) => key,
            (None, None) => {
                return Err(ConfigError::new(
                    field("name"),
                    "required for this source (only header tags have a default name)",
                ));
            }
        };
        if key.is_empty()
            || key.len() > MAX_TAG_NAME_LEN
            || key.bytes().any(|b| b <= b' ' || b == 0x7f)
        {
            return Err(ConfigError::new(
                field("name"),
                format!("1 to {MAX_TAG_NAME_LEN} bytes, no whitespace or control characters"),
            ));
        }
        let array = key.starts_with(HTTP_REQUEST_HEADER_PREFIX)
            || key.starts_with(HTTP_RESPONSE_HEADER_PREFIX);
        let same_direction = match &source {
            Source::RequestHeader(_) => key.starts_with(HTTP_REQUEST_HEADER_PREFIX),
            Source::ResponseHeader(_) => key.starts_with(HTTP_RESPONSE_HEADER_PREFIX),
            _ => false,
        };
        if array && (!same_direction || self.value_type != ValueType::String) {
            return Err(ConfigError::new(
                field("name"),
                format!(
                    "`{key}` is the conventions' header attribute: a string array, only from a \
                     header of the same direction"
                ),
            ));
        }
        let default = self
            .default
            .as_ref()
            .map(|d| {
                let value = scalar(d, self.value_type)
                    .ok_or_else(|| mistyped(&field("default"), d, self.value_type))?;
                Ok(match value {
                    Value::String(s) if array => Value::StringArray(vec![s]),
                    value => value,
                })
            })
            .transpose()?;
        Ok(Tag {
            key,
            source,
            default,
            value_type: self.value_type,
            array,
        })
    }

    fn check_header(&self, at: &str, name: &str, sensitive: &[String]) -> Result<(), ConfigError> {
        let valid = name.len() <= MAX_NAME_LEN
            && crate::propagation::is_token(name.as_bytes())
            && !name.bytes().any(|b| b.is_ascii_uppercase());
        if !valid {
            return Err(ConfigError::new(
                at,
                format!(
                    "`{name}` is not a lower-case header name (pseudo-headers such as `:path` \
                     are recorded by the conventions already)"
                ),
            ));
        }
        if !self.allow_sensitive && is_sensitive(name, sensitive) {
            return Err(sensitive_error(at, name));
        }
        Ok(())
    }
}

/// Whether header `name` carries secrets.
pub fn is_sensitive(name: &str, configured: &[String]) -> bool {
    SENSITIVE_HEADERS
        .iter()
        .any(|s| s.eq_ignore_ascii_case(name))
        || configured.iter().any(|s| s.eq_ignore_ascii_case(name))
}

fn sensitive_error(at: &str, what: &str) -> ConfigError {
    ConfigError::new(
        at,
        format!(
            "`{what}` carries credentials and is never recorded; set \"allow_sensitive\": true \
             on this tag to record it anyway"
        ),
    )
}

fn check_property_secrets(
    at: &str,
    path: &[String],
    sensitive: &[String],
) -> Result<(), ConfigError> {
    let segments: Vec<&str> = path.iter().map(String::as_str).collect();
    match segments.as_slice() {
        ["request", "headers", name] | ["response", "headers" | "trailers", name]
            if is_sensitive(name, sensitive) =>
        {
            Err(sensitive_error(at, &path.join(".")))
        }
        // The raw path and query bypass the query redaction.
        ["request", "path" | "query"] => Err(sensitive_error(at, &path.join("."))),
        _ => Ok(()),
    }
}

fn property_path(at: &str, property: &PropertyConfig) -> Result<Vec<String>, ConfigError> {
    let mut path: Vec<String> = match property {
        PropertyConfig::Dotted(dotted) => dotted.split('.').map(str::to_owned).collect(),
        PropertyConfig::Segments(segments) => segments.clone(),
    };
    if path.first().is_some_and(|root| root == "node") {
        path.insert(0, "xds".to_owned());
    }
    let valid_segments = !path.is_empty()
        && path.len() <= MAX_PROPERTY_SEGMENTS
        && path
            .iter()
            .all(|s| !s.is_empty() && s.len() <= MAX_PROPERTY_SEGMENT_LEN && !s.contains('\0'));
    if !valid_segments {
        return Err(ConfigError::new(
            at,
            format!(
                "1 to {MAX_PROPERTY_SEGMENTS} non-empty segments of at most \
                 {MAX_PROPERTY_SEGMENT_LEN} bytes"
            ),
        ));
    }
    let root = path.first().map(String::as_str).unwrap_or_default();
    if !host::is_known_root(root) {
        return Err(ConfigError::new(
            at,
            format!(
                "`{root}` is not an Envoy attribute (request, response, connection, upstream, \
                 source, destination, metadata, filter_state, xds, node, plugin_name, ...)"
            ),
        ));
    }
    let segments: Vec<&str> = path.iter().map(String::as_str).collect();
    if Encoding::of(&segments) == Encoding::Composite {
        return Err(ConfigError::new(
            at,
            format!(
                "`{}` is a map or message, not a value: name one of its fields or keys",
                path.join(".")
            ),
        ));
    }
    Ok(path)
}

fn scalar(scalar: &Scalar, value_type: ValueType) -> Option<Value> {
    let raw = match scalar {
        Scalar::Bool(b) => Raw::Bool(*b),
        Scalar::Int(i) => Raw::Int(*i),
        Scalar::Double(d) => Raw::Double(*d),
        Scalar::String(s) => Raw::Bytes(s.clone().into_bytes()),
    };
    convert(raw, value_type)
}

fn mistyped(at: &str, scalar: &Scalar, value_type: ValueType) -> ConfigError {
    let shown = match scalar {
        Scalar::Bool(b) => b.to_string(),
        Scalar::Int(i) => i.to_string(),
        Scalar::Double(d) => d.to_string(),
        Scalar::String(s) => format!("\"{s}\""),
    };
    let expected = match value_type {
        ValueType::String => "string",
        ValueType::Int => "int",
        ValueType::Double => "double",
        ValueType::Bool => "bool",
    };
    ConfigError::new(at, format!("{shown} is not a valid {expected}"))
}

// === impl Scalar, PropertyConfig ===

// Hand-written rather than `#[serde(untagged)]`: the derived form buffers through serde's
// generic content type, which costs the module tens of kilobytes.
impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, a number or a boolean")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(i64::try_from(v).map_or(Scalar::Double(v as f64), Scalar::Int))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Double(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::String(v.to_owned()))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

impl<'de> Deserialize<'de> for PropertyConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PathVisitor;
        impl<'de> Visitor<'de> for PathVisitor {
            type Value = PropertyConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a dotted attribute name or a list of path segments")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PropertyConfig, E> {
                Ok(PropertyConfig::Dotted(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PropertyConfig, A::Error> {
                let mut segments = Vec::new();
                while let Some(segment) = seq.next_element::<String>()? {
                    if segments.len() >= MAX_PROPERTY_SEGMENTS {
                        return Err(de::Error::custom(format!(
                            "at most {MAX_PROPERTY_SEGMENTS} segments"
                        )));
                    }
                    segments.push(segment);
                }
                Ok(PropertyConfig::Segments(segments))
            }
        }
        deserializer.deserialize_any(PathVisitor)
    }
}

#[cfg(test)]
mod tests;
