//! OpenTelemetry semantic convention keys the filter writes.
//!
//! HTTP attributes follow the stable HTTP semantic conventions (stable since semantic
//! conventions v1.23.0; names checked against v1.37.0):
//! <https://opentelemetry.io/docs/specs/semconv/http/http-spans/>.

/// `service.name` resource attribute.
pub const SERVICE_NAME: &str = "service.name";
/// `telemetry.sdk.name` resource attribute.
pub const TELEMETRY_SDK_NAME: &str = "telemetry.sdk.name";
/// `telemetry.sdk.language` resource attribute.
pub const TELEMETRY_SDK_LANGUAGE: &str = "telemetry.sdk.language";
/// `telemetry.sdk.version` resource attribute.
pub const TELEMETRY_SDK_VERSION: &str = "telemetry.sdk.version";
/// HTTP request method, upper case.
pub const HTTP_REQUEST_METHOD: &str = "http.request.method";
/// URI path component, without the query.
pub const URL_PATH: &str = "url.path";
/// HTTP response status code (int).
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";
/// Class of error the operation ended with (for HTTP server spans: the 5xx status code).
pub const ERROR_TYPE: &str = "error.type";
