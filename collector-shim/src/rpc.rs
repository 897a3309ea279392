//! The `google.rpc.Status` message, the error body OTLP/HTTP servers return
//! (<https://github.com/open-telemetry/opentelemetry-proto/blob/main/docs/specification.md#failures-1>).
//!
//! Defined here with `prost` derive because no dependency we already have ships it; `details`
//! is omitted (decoders skip unknown fields, and we send none).

/// `google.rpc.Status` without `details` (field 3).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Status {
    /// A `google.rpc.Code` value (see [`code`]).
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// English description for developers.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// The `google.rpc.Code` values the shim uses.
pub mod code {
    /// The client sent data that cannot be processed (HTTP 400, 415).
    pub const INVALID_ARGUMENT: i32 = 3;
    /// The request is larger than the server accepts (HTTP 413).
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    /// Transient: the client should retry with backoff (HTTP 503).
    pub const UNAVAILABLE: i32 = 14;
}
