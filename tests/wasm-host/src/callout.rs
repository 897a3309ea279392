//! HTTP call-outs (`proxy_http_call`) as the test sees them, and the answers it can script.
//!
//! Envoy answers every accepted call exactly once, on the root context that made it, through
//! `proxy_on_http_call_response`: with the upstream's response, with a local reply of its own
//! (503 when the cluster cannot be reached, 504 at the call's timeout) or, when the stream is
//! reset after the response began, with no response at all (`num_headers == 0` and no header
//! map: reading `:status` then answers `BadArgument`). See `envoy-wasm-notes.md` and Envoy's
//! `Context::onHttpCallSuccess`/`onHttpCallFailure`.

use crate::headers::HeaderMap;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use std::time::Duration;

/// Body of Envoy's local reply when the cluster cannot be reached (observed with Envoy 1.40).
pub const CONNECT_FAILURE_BODY: &str = "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure";
/// Body of Envoy's local reply at a call's timeout.
pub const TIMEOUT_BODY: &str = "upstream request timeout";

/// One `proxy_http_call` the module made.
#[derive(Clone, Debug)]
pub struct CallOut {
    /// Token returned to the module.
    pub token: u32,
    /// Cluster name.
    pub cluster: String,
    /// Request headers (`:method`, `:path`, `:authority`, ...).
    pub headers: HeaderMap,
    /// Request body.
    pub body: Vec<u8>,
    /// Request trailers.
    pub trailers: HeaderMap,
    /// Timeout the module asked for (`None`: no timeout, as Envoy reads 0).
    pub timeout: Option<Duration>,
    /// Host clock when it was dispatched, in ns since the Unix epoch.
    pub dispatched_at: u64,
    /// Context that made it (Envoy delivers the answer to the root context regardless).
    pub context_id: u32,
}

impl CallOut {
    /// The body decoded as an OTLP `ExportTraceServiceRequest` (protobuf).
    pub fn export_request(&self) -> Result<ExportTraceServiceRequest, prost::DecodeError> {
        ExportTraceServiceRequest::decode(self.body.as_slice())
    }

    /// Number of spans in the decoded body (0 when it does not decode).
    pub fn span_count(&self) -> usize {
        self.export_request()
            .map(|r| {
                r.resource_spans
                    .iter()
                    .flat_map(|rs| &rs.scope_spans)
                    .map(|ss| ss.spans.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

/// How the host answers a call-out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// A response from the upstream (or a local reply of Envoy's).
    Response {
        /// `:status`.
        status: u16,
        /// Other headers.
        headers: Vec<(String, Vec<u8>)>,
        /// Body.
        body: Vec<u8>,
        /// Trailers.
        trailers: Vec<(String, Vec<u8>)>,
    },
    /// What Envoy answers when the cluster refuses the connection: 503 and its text.
    ConnectFailure,
    /// What Envoy answers at the call's timeout: 504 and its text.
    Timeout,
    /// The stream was reset after the response began, or the response exceeded the buffer
    /// limit: Envoy calls back with no headers, body or trailers.
    Reset,
    /// Deliberately never answered (only for tests of what stays in flight).
    Never,
}

impl Reply {
    /// A response with `status` and an empty body.
    pub fn status(status: u16) -> Self {
        Self::Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            trailers: Vec::new(),
        }
    }

    /// `200 OK` with an empty body (what the shim answers an accepted export).
    pub fn ok() -> Self {
        Self::status(200)
    }

    /// The header map, body and trailers delivered for this reply; `None` for a reset.
    pub(crate) fn materialize(&self) -> Option<(HeaderMap, Vec<u8>, HeaderMap)> {
        let local = |status: u16, body: &str| {
            let headers = HeaderMap::from_pairs([
                (":status".to_owned(), status.to_string()),
                ("content-length".to_owned(), body.len().to_string()),
                ("content-type".to_owned(), "text/plain".to_owned()),
            ]);
            Some((headers, body.as_bytes().to_vec(), HeaderMap::default()))
        };
        match self {
            Self::Response {
                status,
                headers,
                body,
                trailers,
            } => {
                let mut map = HeaderMap::from_pairs([(":status", status.to_string())]);
                for (k, v) in headers {
                    map.add(k.as_bytes(), v);
                }
                let trailers = HeaderMap::from_pairs(trailers.iter().map(|(k, v)| (k, v)));
                Some((map, body.clone(), trailers))
            }
            Self::ConnectFailure => local(503, CONNECT_FAILURE_BODY),
            Self::Timeout => local(504, TIMEOUT_BODY),
            Self::Reset | Self::Never => None,
        }
    }
}

/// A reply scheduled for a token at a host time.
#[derive(Clone, Debug)]
pub(crate) struct Scheduled {
    pub at: u64,
    pub token: u32,
    pub reply: Reply,
}

/// Decides the answer to each new call-out: the reply and its delay. Installed with
/// [`Host::auto_reply`](crate::Host::auto_reply).
pub type Responder = Box<dyn FnMut(&CallOut) -> (Duration, Reply)>;
