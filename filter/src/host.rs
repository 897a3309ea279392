//! What the pure modules read from the host, as traits the glue implements: Envoy attributes
//! (proxy-wasm `get_property`) and the VM's environment variables.
//!
//! Envoy attributes (<https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/advanced/attributes>)
//! come back serialized by type: strings and bytes as they are, `int`/`uint`/durations/timestamps
//! as 8 little-endian bytes, `bool` as one byte, `double` as 8 little-endian bytes, maps as
//! proxy-wasm pairs, messages as protobuf binary. The consumer must know the type, so
//! [`Encoding::of`] holds the table for the attributes Envoy documents. Values inside a
//! `google.protobuf.Struct` (node metadata, dynamic metadata) are CEL values: strings, doubles
//! for numbers, bools. Checked in Envoy 1.40: `xds.node.metadata.NUM` (7) read as the 8 bytes of
//! `7.0f64`, `source.port` as 8 bytes of an int64, `connection.mtls` as one byte, and the node
//! is only reachable as `xds.node` (`node.*` answers "not found").
//!
//! The VM's environment is what Envoy's `vm_config.environment_variables` (`host_env_keys`,
//! `key_values`) or Istio's `WasmPlugin.spec.vmConfig.env` expose through WASI `environ_get`;
//! `std::env::var` reads it (checked in Envoy 1.40, V8).

use std::collections::BTreeMap;

/// Envoy attributes (`get_property`).
pub trait Properties {
    /// The serialized value at `path` (`["source", "address"]`), or `None` when absent or
    /// unavailable in the current phase.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
}

/// The VM's environment variables.
pub trait Environment {
    /// The value of variable `name`, if set and valid UTF-8.
    fn var(&self, name: &str) -> Option<String>;
}

/// How the bytes of one attribute are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8 (or arbitrary) bytes.
    String,
    /// 8 bytes, little-endian `int64` (also durations and timestamps, in nanoseconds).
    Int,
    /// 8 bytes, little-endian `uint64`.
    Uint,
    /// One byte, 0 or 1.
    Bool,
    /// A `google.protobuf.Value`: string bytes, a little-endian `double`, or a bool byte; which
    /// one is up to the reader (the tag's declared type).
    StructValue,
    /// Not documented by Envoy (filter state): the reader's declared type decides.
    Declared,
    /// A map or message: not a single value.
    Composite,
}

/// A decoded attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum Raw {
    /// Bytes, normally UTF-8.
    Bytes(Vec<u8>),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    Uint(u64),
    /// A double.
    Double(f64),
    /// A boolean.
    Bool(bool),
}

/// What a reader expects a [`Encoding::StructValue`] or [`Encoding::Declared`] value to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// A string.
    String,
    /// An integer.
    Int,
    /// A double.
    Double,
    /// A boolean.
    Bool,
}

/// Top-level attributes Envoy answers to that are maps/messages (`request`): reading them whole
/// gives pairs or protobuf binary, not a value.
const ROOT_MAPS: [&str; 10] = [
    "request",
    "response",
    "connection",
    "upstream",
    "source",
    "destination",
    "metadata",
    "filter_state",
    "upstream_filter_state",
    "xds",
];

/// Top-level attributes Envoy answers to that are values (`plugin_name`).
const ROOT_VALUES: [&str; 4] = [
    "plugin_name",
    "plugin_root_id",
    "plugin_vm_id",
    "connection_id",
];

const INT_ATTRIBUTES: [&str; 17] = [
    "request.headers_bytes",
    "request.size",
    "request.total_size",
    "request.time",
    "request.duration",
    "response.code",
    "response.flags",
    "response.grpc_status",
    "response.headers_bytes",
    "response.size",
    "response.total_size",
    "response.backend_latency",
    "source.port",
    "destination.port",
    "upstream.port",
    "upstream.cx_pool_ready_duration",
    "xds.listener_direction",
];

const UINT_ATTRIBUTES: [&str; 4] = [
    "connection.id",
    "connection_id",
    "upstream.request_attempt_count",
    "upstream.num_endpoints",
];

/// Maps and messages below the top level (besides [`ROOT_MAPS`]).
const NESTED_COMPOSITES: [&str; 5] = [
    "request.headers",
    "response.headers",
    "response.trailers",
    "xds.node",
    "upstream.locality",
];

/// `google.protobuf.Struct`s, and how deep a path must go to name one of their values:
/// `xds.node.metadata.<KEY>`, `metadata.filter_metadata.<FILTER>.<KEY>`, ...
const STRUCTS: [(&[&str], usize); 8] = [
    (&["xds", "node", "metadata"], 4),
    (&["metadata", "filter_metadata"], 4),
    (&["xds", "cluster_metadata", "filter_metadata"], 5),
    (&["xds", "listener_metadata", "filter_metadata"], 5),
    (&["xds", "route_metadata", "filter_metadata"], 5),
    (&["xds", "virtual_host_metadata", "filter_metadata"], 5),
    (&["xds", "upstream_host_metadata", "filter_metadata"], 5),
    (
        &["xds", "upstream_host_locality_metadata", "filter_metadata"],
        5,
    ),
];

// === impl Encoding ===

impl Encoding {
    /// The encoding of the attribute at `path`.
    pub fn of(path: &[&str]) -> Self {
        let dotted = path.join(".");
        if INT_ATTRIBUTES.contains(&dotted.as_str()) {
            return Encoding::Int;
        }
        if UINT_ATTRIBUTES.contains(&dotted.as_str()) {
            return Encoding::Uint;
        }
        if dotted == "connection.mtls" {
            return Encoding::Bool;
        }
        if ROOT_MAPS.contains(&dotted.as_str()) || NESTED_COMPOSITES.contains(&dotted.as_str()) {
            return Encoding::Composite;
        }
        if let Some((_, depth)) = STRUCTS.iter().find(|(prefix, _)| path.starts_with(prefix)) {
            return if path.len() >= *depth {
                Encoding::StructValue
            } else {
                Encoding::Composite
            };
        }
        let metadata = |p: &&str| p.ends_with("_metadata") || *p == "locality";
        match path {
            ["filter_state" | "upstream_filter_state", ..] => Encoding::Declared,
            ["metadata", ..] => Encoding::Composite,
            ["xds", second, ..] if metadata(second) => Encoding::Composite,
            ["xds", "node", third, ..] if metadata(third) => Encoding::Composite,
            _ => Encoding::String,
        }
    }

    /// Decodes `bytes`; `expect` resolves [`Encoding::StructValue`] and [`Encoding::Declared`].
    /// `None` when the bytes do not have the expected size.
    pub fn decode(self, bytes: &[u8], expect: Expect) -> Option<Raw> {
        let eight = || -> Option<[u8; 8]> { bytes.try_into().ok() };
        match self {
            Encoding::String | Encoding::Composite => Some(Raw::Bytes(bytes.to_vec())),
            Encoding::Int => Some(Raw::Int(i64::from_le_bytes(eight()?))),
            Encoding::Uint => Some(Raw::Uint(u64::from_le_bytes(eight()?))),
            Encoding::Bool => bool_byte(bytes),
            Encoding::StructValue | Encoding::Declared => match expect {
                Expect::String => Some(Raw::Bytes(bytes.to_vec())),
                Expect::Bool => bool_byte(bytes),
                Expect::Double => Some(Raw::Double(f64::from_le_bytes(eight()?))),
                Expect::Int if self == Encoding::StructValue => {
                    Some(Raw::Double(f64::from_le_bytes(eight()?)))
                }
                Expect::Int => Some(Raw::Int(i64::from_le_bytes(eight()?))),
            },
        }
    }
}

fn bool_byte(bytes: &[u8]) -> Option<Raw> {
    match bytes {
        [0] => Some(Raw::Bool(false)),
        [1] => Some(Raw::Bool(true)),
        _ => None,
    }
}

/// Whether Envoy answers to a path starting with `root`.
pub fn is_known_root(root: &str) -> bool {
    ROOT_MAPS.contains(&root) || ROOT_VALUES.contains(&root)
}

/// Decodes a proxy-wasm pairs buffer (how Envoy serializes a map attribute such as
/// `xds.node.metadata.LABELS`): a little-endian `u32` count, `count` pairs of `u32` lengths,
/// then each key and value followed by a NUL. `None` if the buffer is not well formed. At most
/// `max_pairs` pairs are read.
pub fn decode_pairs(bytes: &[u8], max_pairs: usize) -> Option<Vec<(String, Vec<u8>)>> {
    let word = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    };
    let count = word(0)?;
    // Each pair takes at least 10 bytes (two lengths, two NULs): a larger count is a lie.
    if count > max_pairs || count > bytes.len() / 10 {
        return None;
    }
    let mut sizes = Vec::with_capacity(count);
    for i in 0..count {
        sizes.push((word(4 + 8 * i)?, word(8 + 8 * i)?));
    }
    let mut at = 4 + 8 * count;
    let mut pairs = Vec::with_capacity(count);
    for (key_len, value_len) in sizes {
        let key = bytes.get(at..at.checked_add(key_len)?)?;
        at += key_len;
        (bytes.get(at) == Some(&0)).then_some(())?;
        at += 1;
        let value = bytes.get(at..at.checked_add(value_len)?)?;
        at += value_len;
        (bytes.get(at) == Some(&0)).then_some(())?;
        at += 1;
        pairs.push((String::from_utf8(key.to_vec()).ok()?, value.to_vec()));
    }
    Some(pairs)
}

/// Properties from a map of dotted paths (`"source.address"`): the test and benchmark host.
impl Properties for BTreeMap<String, Vec<u8>> {
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.get(&path.join(".")).cloned()
    }
}

/// An environment from a map: the test and benchmark host.
impl Environment for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Reads nothing: a host without attributes or environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct Nothing;

impl Properties for Nothing {
    fn property(&self, _path: &[&str]) -> Option<Vec<u8>> {
        None
    }
}

impl Environment for Nothing {
    fn var(&self, _name: &str) -> Option<String> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    // Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn encoding(dotted: &str) -> Encoding {
        Encoding::of(&dotted.split('.').collect::<Vec<_>>())
    }

    #[test]
    fn documented_attributes_have_their_types() {
        for (path, expected) in [
            ("source.address", Encoding::String),
            ("source.port", Encoding::Int),
            ("response.code", Encoding::Int),
            ("request.duration", Encoding::Int),
            ("connection.id", Encoding::Uint),
            ("upstream.request_attempt_count", Encoding::Uint),
            ("connection.mtls", Encoding::Bool),
            ("request.id", Encoding::String),
            ("request.headers.x-tenant", Encoding::String),
            ("request.headers", Encoding::Composite),
            ("xds.node.id", Encoding::String),
            ("xds.node", Encoding::Composite),
            ("xds.node.metadata", Encoding::Composite),
            ("xds.node.metadata.NAME", Encoding::StructValue),
            ("xds.node.metadata.LABELS.app", Encoding::StructValue),
            ("xds.route_metadata", Encoding::Composite),
            ("xds.route_metadata.filter_metadata.f", Encoding::Composite),
            (
                "xds.route_metadata.filter_metadata.f.key",
                Encoding::StructValue,
            ),
            ("xds.route_name", Encoding::String),
            ("metadata", Encoding::Composite),
            ("metadata.filter_metadata.f.key", Encoding::StructValue),
            ("filter_state.wasm.x", Encoding::Declared),
            ("plugin_name", Encoding::String),
        ] {
            assert_eq!(encoding(path), expected, "{path}");
        }
    }

    #[test]
    fn values_decode_as_envoy_serializes_them() {
        // Bytes seen in Envoy 1.40 (see the module documentation).
        let port = 0xc1ce_i64.to_le_bytes();
        assert_eq!(
            Encoding::Int.decode(&port, Expect::String),
            Some(Raw::Int(0xc1ce))
        );
        assert_eq!(Encoding::Int.decode(b"short", Expect::Int), None);
        assert_eq!(
            Encoding::Bool.decode(&[0], Expect::String),
            Some(Raw::Bool(false))
        );
        assert_eq!(Encoding::Bool.decode(&[2], Expect::Bool), None);
        let seven = 7.0f64.to_le_bytes();
        assert_eq!(
            Encoding::StructValue.decode(&seven, Expect::Int),
            Some(Raw::Double(7.0))
        );
        assert_eq!(
            Encoding::StructValue.decode(b"pod-1", Expect::String),
            Some(Raw::Bytes(b"pod-1".to_vec()))
        );
        assert_eq!(
            Encoding::Declared.decode(&5i64.to_le_bytes(), Expect::Int),
            Some(Raw::Int(5))
        );
        assert_eq!(
            Encoding::Uint.decode(&u64::MAX.to_le_bytes(), Expect::Int),
            Some(Raw::Uint(u64::MAX))
        );
    }

    #[test]
    fn pairs_decode_like_envoy_writes_them() {
        // `xds.node.metadata.LABELS` of `{app: foo, app.kubernetes.io/name: bar}`, as Envoy
        // 1.40 returned it.
        let bytes = hex::decode(
            "020000000300000003000000160000000300000061707000666f6f006170702e6b756265726e657465\
             732e696f2f6e616d650062617200",
        )
        .unwrap();
        let pairs = decode_pairs(&bytes, 16).unwrap();
        assert_eq!(
            pairs,
            vec![
                ("app".to_owned(), b"foo".to_vec()),
                ("app.kubernetes.io/name".to_owned(), b"bar".to_vec())
            ]
        );
        assert_eq!(decode_pairs(&bytes, 1), None, "more pairs than allowed");
        for cut in 0..bytes.len() {
            assert_eq!(decode_pairs(&bytes[..cut], 16), None, "cut at {cut}");
        }
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] = b'x';
        assert_eq!(decode_pairs(&bad, 16), None);
        assert_eq!(decode_pairs(&[0, 0, 0, 0], 16), Some(vec![]));
        // A count that would overflow the buffer is refused before allocating.
        assert_eq!(decode_pairs(&[0xff, 0xff, 0xff, 0x7f], usize::MAX), None);
    }

    #[test]
    fn roots() {
        assert!(is_known_root("xds"));
        assert!(is_known_root("source"));
        assert!(!is_known_root("node"));
        assert!(!is_known_root("reqeust"));
    }
}
