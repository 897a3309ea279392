//! OpenTelemetry semantic conventions the filter follows: attribute keys, and in [`http`] the
//! HTTP span conventions computed from a request's summary.
//!
//! Version: semantic conventions **v1.45.0** ([`SCHEMA_URL`]), the current release when this
//! was written; HTTP spans are stable since v1.23.0. Keys marked *development* are not stable
//! in that release (the body sizes, `url.template`, the `k8s.*` workload names).
//! <https://opentelemetry.io/docs/specs/semconv/http/http-spans/>.

pub mod http;

/// The semantic conventions release the filter's attribute names follow.
pub const VERSION: &str = "1.45.0";
/// Its schema URL, written on every scope of exported spans.
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.45.0";

// Resource (<https://opentelemetry.io/docs/specs/semconv/resource/>).
/// `service.name`.
pub const SERVICE_NAME: &str = "service.name";
/// `service.namespace`.
pub const SERVICE_NAMESPACE: &str = "service.namespace";
/// `service.version`.
pub const SERVICE_VERSION: &str = "service.version";
/// `service.instance.id`.
pub const SERVICE_INSTANCE_ID: &str = "service.instance.id";
/// `telemetry.sdk.name`.
pub const TELEMETRY_SDK_NAME: &str = "telemetry.sdk.name";
/// `telemetry.sdk.language`.
pub const TELEMETRY_SDK_LANGUAGE: &str = "telemetry.sdk.language";
/// `telemetry.sdk.version`.
pub const TELEMETRY_SDK_VERSION: &str = "telemetry.sdk.version";
/// `k8s.namespace.name`.
pub const K8S_NAMESPACE_NAME: &str = "k8s.namespace.name";
/// `k8s.pod.name`.
pub const K8S_POD_NAME: &str = "k8s.pod.name";
/// `k8s.node.name`.
pub const K8S_NODE_NAME: &str = "k8s.node.name";
/// `k8s.cluster.name`.
pub const K8S_CLUSTER_NAME: &str = "k8s.cluster.name";

// HTTP spans (stable unless noted).
/// HTTP request method (`_OTHER` when unknown).
pub const HTTP_REQUEST_METHOD: &str = "http.request.method";
/// The method as received, when `http.request.method` is `_OTHER`.
pub const HTTP_REQUEST_METHOD_ORIGINAL: &str = "http.request.method_original";
/// HTTP response status code (int).
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
/// The matched route template (SERVER spans).
pub const HTTP_ROUTE: &str = "http.route";
/// Class of error the request ended with.
pub const ERROR_TYPE: &str = "error.type";
/// URI path, without the query.
pub const URL_PATH: &str = "url.path";
/// URI query, sensitive values redacted.
pub const URL_QUERY: &str = "url.query";
/// URI scheme.
pub const URL_SCHEME: &str = "url.scheme";
/// Absolute URL (CLIENT spans).
pub const URL_FULL: &str = "url.full";
/// Low-cardinality path template (CLIENT spans; development).
pub const URL_TEMPLATE: &str = "url.template";
/// Host the request was sent to.
pub const SERVER_ADDRESS: &str = "server.address";
/// Port the request was sent to.
pub const SERVER_PORT: &str = "server.port";
/// The original client's address.
pub const CLIENT_ADDRESS: &str = "client.address";
/// The original client's port (opt-in).
pub const CLIENT_PORT: &str = "client.port";
/// The connection's peer address.
pub const NETWORK_PEER_ADDRESS: &str = "network.peer.address";
/// The connection's peer port.
pub const NETWORK_PEER_PORT: &str = "network.peer.port";
/// The connection's local address (opt-in).
pub const NETWORK_LOCAL_ADDRESS: &str = "network.local.address";
/// The connection's local port (opt-in).
pub const NETWORK_LOCAL_PORT: &str = "network.local.port";
/// HTTP version (`1.1`, `2`, `3`).
pub const NETWORK_PROTOCOL_VERSION: &str = "network.protocol.version";
/// `tcp` or `udp` (opt-in).
pub const NETWORK_TRANSPORT: &str = "network.transport";
/// The `User-Agent` header.
pub const USER_AGENT_ORIGINAL: &str = "user_agent.original";
/// Request body size in bytes (opt-in; development).
pub const HTTP_REQUEST_BODY_SIZE: &str = "http.request.body.size";
/// Response body size in bytes (opt-in; development).
pub const HTTP_RESPONSE_BODY_SIZE: &str = "http.response.body.size";
/// Request size in bytes, headers included (opt-in; development).
pub const HTTP_REQUEST_SIZE: &str = "http.request.size";
/// Response size in bytes, headers included (opt-in; development).
pub const HTTP_RESPONSE_SIZE: &str = "http.response.size";
/// Prefix of request header attributes (`http.request.header.<key>`, opt-in).
pub const HTTP_REQUEST_HEADER_PREFIX: &str = "http.request.header.";
/// Prefix of response header attributes (`http.response.header.<key>`, opt-in).
pub const HTTP_RESPONSE_HEADER_PREFIX: &str = "http.response.header.";
