//! The proxy-wasm ABI 0.2.1 as the host sees it: status codes, enum values and the wire format
//! of header pairs. Numbers follow the spec (`proxy-wasm/spec`, `abi-versions/v0.2.1`) and the
//! Rust SDK's `types.rs`, which the filter is built with.

use std::fmt;

/// What a host call answers (`WasmResult` in Envoy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Status {
    /// Success.
    Ok = 0,
    /// The key, map, buffer, queue or metric does not exist (now).
    NotFound = 1,
    /// An argument is invalid, or the map asked for is not available in this phase.
    BadArgument = 2,
    /// A value could not be serialized.
    SerializationFailure = 3,
    /// A value could not be parsed.
    ParseFailure = 4,
    /// A pointer or size in the call is outside the module's memory.
    InvalidMemoryAccess = 6,
    /// The shared queue is empty.
    Empty = 7,
    /// Compare-and-swap failed on shared data.
    CasMismatch = 8,
    /// The host failed for a reason of its own (e.g. a circuit breaker overflow).
    InternalFailure = 10,
    /// The connection of a call-out broke (`proxy_get_status` after a reset).
    BrokenConnection = 11,
    /// The host does not implement this call.
    Unimplemented = 12,
}

impl Status {
    /// The value returned to the module.
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// Header maps (`proxy_*_header_map_*` `map_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MapType {
    /// Request headers of the stream.
    RequestHeaders,
    /// Request trailers of the stream.
    RequestTrailers,
    /// Response headers of the stream.
    ResponseHeaders,
    /// Response trailers of the stream.
    ResponseTrailers,
    /// Initial metadata of a gRPC call-out response.
    GrpcReceiveInitialMetadata,
    /// Trailing metadata of a gRPC call-out response.
    GrpcReceiveTrailingMetadata,
    /// Headers of an HTTP call-out response.
    HttpCallResponseHeaders,
    /// Trailers of an HTTP call-out response.
    HttpCallResponseTrailers,
}

impl MapType {
    /// Decodes the ABI value; `None` is answered `BadArgument`.
    pub fn from_abi(value: i32) -> Option<Self> {
        Some(match value {
            0 => Self::RequestHeaders,
            1 => Self::RequestTrailers,
            2 => Self::ResponseHeaders,
            3 => Self::ResponseTrailers,
            4 => Self::GrpcReceiveInitialMetadata,
            5 => Self::GrpcReceiveTrailingMetadata,
            6 => Self::HttpCallResponseHeaders,
            7 => Self::HttpCallResponseTrailers,
            _ => return None,
        })
    }
}

/// Buffers (`proxy_get_buffer_bytes` `buffer_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BufferType {
    /// The stream's request body (the chunk being delivered, plus what was buffered).
    HttpRequestBody,
    /// The stream's response body.
    HttpResponseBody,
    /// TCP downstream data (not modelled: always `NotFound`).
    DownstreamData,
    /// TCP upstream data (not modelled: always `NotFound`).
    UpstreamData,
    /// Body of the HTTP call-out response being delivered.
    HttpCallResponseBody,
    /// Message of the gRPC call-out being delivered.
    GrpcReceiveBuffer,
    /// `vm_config.configuration`.
    VmConfiguration,
    /// The plugin `configuration` (during `proxy_on_configure` only, as in Envoy).
    PluginConfiguration,
    /// Arguments of a foreign function call (not modelled: always `NotFound`).
    CallData,
}

impl BufferType {
    /// Decodes the ABI value; `None` is answered `BadArgument`.
    pub fn from_abi(value: i32) -> Option<Self> {
        Some(match value {
            0 => Self::HttpRequestBody,
            1 => Self::HttpResponseBody,
            2 => Self::DownstreamData,
            3 => Self::UpstreamData,
            4 => Self::HttpCallResponseBody,
            5 => Self::GrpcReceiveBuffer,
            6 => Self::VmConfiguration,
            7 => Self::PluginConfiguration,
            8 => Self::CallData,
            _ => return None,
        })
    }
}

/// Stream types of `proxy_continue_stream` and `proxy_close_stream`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamType {
    /// The HTTP request.
    Request,
    /// The HTTP response.
    Response,
    /// A TCP downstream connection.
    Downstream,
    /// A TCP upstream connection.
    Upstream,
}

impl StreamType {
    /// Decodes the ABI value; `None` is answered `BadArgument`.
    pub fn from_abi(value: i32) -> Option<Self> {
        Some(match value {
            0 => Self::Request,
            1 => Self::Response,
            2 => Self::Downstream,
            3 => Self::Upstream,
            _ => return None,
        })
    }
}

/// Log levels of `proxy_log` (Envoy's spdlog levels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// `trace`.
    Trace,
    /// `debug`.
    Debug,
    /// `info` (also WASI stdout).
    Info,
    /// `warn`.
    Warn,
    /// `error` (also WASI stderr).
    Error,
    /// `critical` (the filter's panic hook logs here).
    Critical,
}

impl LogLevel {
    /// Decodes the ABI value; `None` is answered `BadArgument`.
    pub fn from_abi(value: i32) -> Option<Self> {
        Some(match value {
            0 => Self::Trace,
            1 => Self::Debug,
            2 => Self::Info,
            3 => Self::Warn,
            4 => Self::Error,
            5 => Self::Critical,
            _ => return None,
        })
    }

    /// The ABI value.
    pub fn to_abi(self) -> i32 {
        self as i32
    }
}

/// What a stream callback asked the host to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Go on with the next filter.
    Continue,
    /// Stop iteration (headers) or stop and buffer (bodies) until `proxy_continue_stream`.
    Pause,
    /// Any other value: Envoy maps it to its own statuses; tests should not see it.
    Other(i32),
}

impl Action {
    /// Decodes a callback's return value.
    pub fn from_abi(value: i32) -> Self {
        match value {
            0 => Self::Continue,
            1 => Self::Pause,
            other => Self::Other(other),
        }
    }
}

/// Kinds of metric (`proxy_define_metric` `metric_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// Only goes up; `increment` by a positive delta only.
    Counter,
    /// Goes up and down; `record` sets it.
    Gauge,
    /// Records samples.
    Histogram,
}

impl MetricKind {
    /// Decodes the ABI value; `None` is answered `BadArgument`.
    pub fn from_abi(value: i32) -> Option<Self> {
        Some(match value {
            0 => Self::Counter,
            1 => Self::Gauge,
            2 => Self::Histogram,
            _ => return None,
        })
    }

    /// The low bits Envoy puts in a metric id to tell its kind.
    pub fn id_tag(self) -> u32 {
        match self {
            Self::Counter => 0,
            Self::Gauge => 1,
            Self::Histogram => 2,
        }
    }
}

impl fmt::Display for MetricKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        };
        f.write_str(name)
    }
}

/// Header pairs as bytes: `(name, value)`.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// Serializes pairs in the ABI wire format: `u32` count, then `u32` name and value lengths per
/// pair, then each name and value followed by a NUL byte (all little-endian).
pub fn encode_pairs(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let data: usize = pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    let mut out = Vec::with_capacity(4 + pairs.len() * 8 + data);
    out.extend_from_slice(&len_u32(pairs.len()).to_le_bytes());
    for (name, value) in pairs {
        out.extend_from_slice(&len_u32(name.len()).to_le_bytes());
        out.extend_from_slice(&len_u32(value.len()).to_le_bytes());
    }
    for (name, value) in pairs {
        out.extend_from_slice(name);
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
    out
}

/// Parses the ABI wire format of pairs; `None` when it is truncated or inconsistent. (Envoy
/// reads a malformed buffer as no pairs; the host reports it as a violation instead.)
pub fn decode_pairs(bytes: &[u8]) -> Option<Pairs> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let count = usize::try_from(read_u32(bytes, 0)?).ok()?;
    let mut sizes = Vec::with_capacity(count.min(1024));
    for i in 0..count {
        let at = 4 + i.checked_mul(8)?;
        sizes.push((read_u32(bytes, at)?, read_u32(bytes, at + 4)?));
    }
    let mut at = 4 + count.checked_mul(8)?;
    let mut pairs = Vec::with_capacity(sizes.len());
    for (name_len, value_len) in sizes {
        let name = take(bytes, &mut at, usize::try_from(name_len).ok()?)?;
        let value = take(bytes, &mut at, usize::try_from(value_len).ok()?)?;
        pairs.push((name, value));
    }
    Some(pairs)
}

fn take(bytes: &[u8], at: &mut usize, len: usize) -> Option<Vec<u8>> {
    let end = at.checked_add(len)?;
    let value = bytes.get(*at..end)?.to_vec();
    // Each string is followed by a NUL byte.
    (*bytes.get(end)? == 0).then_some(())?;
    *at = end + 1;
    Some(value)
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(raw))
}

/// A length as the ABI's `u32` (the module is 32-bit: nothing it sends can be longer).
pub(crate) fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_round_trip_with_binary_values() {
        let pairs: Pairs = vec![
            (b":status".to_vec(), b"200".to_vec()),
            (b"x-bin".to_vec(), vec![0xff, 0, 0xfe]),
            (Vec::new(), Vec::new()),
        ];
        assert_eq!(decode_pairs(&encode_pairs(&pairs)), Some(pairs));
        assert_eq!(decode_pairs(&[]), Some(Vec::new()));
    }

    #[test]
    fn truncated_pairs_are_rejected() {
        let bytes = encode_pairs(&[(b"a".to_vec(), b"b".to_vec())]);
        for cut in 1..bytes.len() {
            assert_eq!(decode_pairs(&bytes[..cut]), None, "cut at {cut}");
        }
        assert_eq!(decode_pairs(&[255, 255, 255, 255]), None);
    }
}
