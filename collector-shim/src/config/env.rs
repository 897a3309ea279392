//! The standard OpenTelemetry exporter variables
//! (<https://opentelemetry.io/docs/specs/otel/protocol/exporter/>), read through the [`Env`]
//! trait so tests pass a map instead of mutating the process environment.
//!
//! Signal-specific variables (`OTEL_EXPORTER_OTLP_TRACES_*`) win over the generic ones; an empty
//! variable counts as unset. For OTLP/HTTP, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is used as-is
//! and `OTEL_EXPORTER_OTLP_ENDPOINT` gets `/v1/traces` appended; for gRPC both are used as-is.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use super::{
    Compression, ConfigError, ConfigErrors, DEFAULT_EXPORT_TIMEOUT_MS, ExportConfig, HeaderConfig,
    Protocol, TRACES_PATH, TlsConfig, check_endpoint, check_header,
};

/// Signal-specific traces endpoint.
pub const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// Generic endpoint.
pub const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// Signal-specific headers (`k=v,k2=v2`, values percent-decoded).
pub const OTEL_EXPORTER_OTLP_TRACES_HEADERS: &str = "OTEL_EXPORTER_OTLP_TRACES_HEADERS";
/// Generic headers.
pub const OTEL_EXPORTER_OTLP_HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
/// Signal-specific per-attempt timeout in milliseconds.
pub const OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT";
/// Generic per-attempt timeout in milliseconds.
pub const OTEL_EXPORTER_OTLP_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
/// Signal-specific protocol: `grpc`, `http/protobuf` or `http/json`.
pub const OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
/// Generic protocol.
pub const OTEL_EXPORTER_OTLP_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// Signal-specific compression: `gzip` or `none`.
pub const OTEL_EXPORTER_OTLP_TRACES_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION";
/// Generic compression.
pub const OTEL_EXPORTER_OTLP_COMPRESSION: &str = "OTEL_EXPORTER_OTLP_COMPRESSION";
/// Signal-specific CA certificate file (PEM) for TLS.
pub const OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE";
/// Generic CA certificate file (PEM) for TLS.
pub const OTEL_EXPORTER_OTLP_CERTIFICATE: &str = "OTEL_EXPORTER_OTLP_CERTIFICATE";

/// Source of environment variables.
pub trait Env {
    /// The value of `name`, `Ok(None)` when unset, an error naming `name` when not UTF-8.
    fn var(&self, name: &str) -> Result<Option<String>, ConfigError>;
}

/// The real process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Result<Option<String>, ConfigError> {
        match std::env::var(name) {
            Ok(value) => Ok(Some(value)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(ConfigError::new(name, "is not valid UTF-8"))
            }
        }
    }
}

impl<K, V> Env for HashMap<K, V>
where
    K: std::borrow::Borrow<str> + std::hash::Hash + Eq,
    V: AsRef<str>,
{
    fn var(&self, name: &str) -> Result<Option<String>, ConfigError> {
        Ok(self.get(name).map(|v| v.as_ref().to_owned()))
    }
}

impl<K, V> Env for BTreeMap<K, V>
where
    K: std::borrow::Borrow<str> + Ord,
    V: AsRef<str>,
{
    fn var(&self, name: &str) -> Result<Option<String>, ConfigError> {
        Ok(self.get(name).map(|v| v.as_ref().to_owned()))
    }
}

/// Reads one exporter (named `otlp`) from the standard variables; `Ok(None)` when neither
/// endpoint variable is set. Every malformed variable is reported, by name; header values never
/// appear in errors.
pub fn export_from_env(env: &impl Env) -> Result<Option<ExportConfig>, ConfigErrors> {
    let mut errors = Vec::new();
    let mut read = |names: &[&'static str]| match first_set(env, names) {
        Ok(found) => found,
        Err(error) => {
            errors.push(error);
            None
        }
    };
    let protocol_var = read(&[
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
        OTEL_EXPORTER_OTLP_PROTOCOL,
    ]);
    let compression_var = read(&[
        OTEL_EXPORTER_OTLP_TRACES_COMPRESSION,
        OTEL_EXPORTER_OTLP_COMPRESSION,
    ]);
    let specific_endpoint = read(&[OTEL_EXPORTER_OTLP_TRACES_ENDPOINT]);
    let generic_endpoint = read(&[OTEL_EXPORTER_OTLP_ENDPOINT]);
    let headers_var = read(&[
        OTEL_EXPORTER_OTLP_TRACES_HEADERS,
        OTEL_EXPORTER_OTLP_HEADERS,
    ]);
    let timeout_var = read(&[
        OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
        OTEL_EXPORTER_OTLP_TIMEOUT,
    ]);
    let certificate_var = read(&[
        OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE,
        OTEL_EXPORTER_OTLP_CERTIFICATE,
    ]);

    let protocol = match protocol_var {
        Some((name, value)) => match value.trim() {
            "grpc" => Protocol::Grpc,
            "http/protobuf" => Protocol::HttpProtobuf,
            "http/json" => Protocol::HttpJson,
            other => {
                errors.push(ConfigError::new(
                    name,
                    format!("{other:?} is not one of grpc, http/protobuf, http/json"),
                ));
                Protocol::HttpProtobuf
            }
        },
        None => Protocol::HttpProtobuf,
    };
    let compression = match compression_var {
        Some((name, value)) => match value.trim() {
            "gzip" => Compression::Gzip,
            "none" => Compression::None,
            other => {
                errors.push(ConfigError::new(
                    name,
                    format!("{other:?} is not one of gzip, none"),
                ));
                Compression::None
            }
        },
        None => Compression::None,
    };

    let endpoint = match (specific_endpoint, generic_endpoint) {
        (Some((name, value)), _) => Some((name, value.trim().to_owned())),
        (None, Some((name, value))) if protocol == Protocol::Grpc => {
            Some((name, value.trim().to_owned()))
        }
        (None, Some((name, value))) => {
            let base = value.trim().trim_end_matches('/');
            Some((name, format!("{base}{TRACES_PATH}")))
        }
        (None, None) => None,
    };
    let Some((endpoint_var, endpoint)) = endpoint else {
        return ConfigErrors(errors).into_result().map(|()| None);
    };
    if let Err(message) = check_endpoint(&endpoint) {
        errors.push(ConfigError::new(endpoint_var, message));
    }

    let headers = match headers_var {
        Some((name, value)) => parse_headers(&value).unwrap_or_else(|message| {
            errors.push(ConfigError::new(name, message));
            Vec::new()
        }),
        None => Vec::new(),
    };
    let timeout_ms = match timeout_var {
        Some((name, value)) => match value.trim().parse::<u64>() {
            Ok(0) => {
                errors.push(ConfigError::new(name, "must be > 0 milliseconds"));
                DEFAULT_EXPORT_TIMEOUT_MS
            }
            Ok(ms) => ms,
            Err(e) => {
                errors.push(ConfigError::new(
                    name,
                    format!("{value:?} is not a whole number of milliseconds: {e}"),
                ));
                DEFAULT_EXPORT_TIMEOUT_MS
            }
        },
        None => DEFAULT_EXPORT_TIMEOUT_MS,
    };

    ConfigErrors(errors).into_result()?;
    Ok(Some(ExportConfig {
        protocol,
        endpoint,
        headers: headers
            .into_iter()
            .map(|(name, value)| HeaderConfig::literal(name, value))
            .collect(),
        compression,
        timeout_ms,
        tls: TlsConfig {
            ca_file: certificate_var.map(|(_, path)| PathBuf::from(path.trim())),
        },
        ..ExportConfig::default()
    }))
}

/// The first of `names` set to a non-empty value, with the name it was found under.
fn first_set(
    env: &impl Env,
    names: &[&'static str],
) -> Result<Option<(&'static str, String)>, ConfigError> {
    for &name in names {
        if let Some(value) = env.var(name)?
            && !value.trim().is_empty()
        {
            return Ok(Some((name, value)));
        }
    }
    Ok(None)
}

/// Parses `k=v,k2=v2` (`OTEL_EXPORTER_OTLP_HEADERS`): trimmed, values percent-decoded, empty
/// members skipped. Errors name the member by position and key, never by value.
pub fn parse_headers(raw: &str) -> Result<Vec<(String, String)>, String> {
    let mut headers = Vec::new();
    for (index, member) in raw.split(',').enumerate() {
        let member = member.trim();
        if member.is_empty() {
            continue;
        }
        let position = index + 1;
        let Some((key, value)) = member.split_once('=') else {
            return Err(format!("member {position} has no '=' (expected key=value)"));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("member {position} has an empty key"));
        }
        let value = percent_encoding::percent_decode_str(value.trim())
            .decode_utf8()
            .map_err(|_| {
                format!("the value of header {key:?} is not valid UTF-8 after percent-decoding")
            })?
            .into_owned();
        check_header(key, &value)?;
        headers.push((key.to_owned(), value));
    }
    Ok(headers)
}
