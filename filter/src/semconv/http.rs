//! The HTTP span conventions (semantic conventions v1.45.0, stable HTTP spans): which
//! attributes a SERVER or CLIENT span carries at which requirement level, its name and its
//! status, computed from a summary of the request ([`Request`], read from the request headers),
//! the response status, the matched route template and what Envoy knows at the end of the
//! stream ([`End`], read from attributes).
//! <https://opentelemetry.io/docs/specs/semconv/http/http-spans/>
//!
//! | attribute | SERVER | CLIENT | source |
//! |---|---|---|---|
//! | `http.request.method` (+ `_original`) | required | required | `:method`, `_OTHER` if not a known method |
//! | `url.path`, `url.query` | required, if present | in `url.full` | `:path`; query values of sensitive keys `REDACTED` |
//! | `url.scheme` | required | opt-in | `Forwarded: proto=`, `X-Forwarded-Proto`, `:scheme` (CLIENT: `:scheme`) |
//! | `url.full` | – | required | `{scheme}://{:authority}{path}[?{query}]` |
//! | `http.route` / `url.template` | if a template matched | if a template matched | `routes` |
//! | `http.response.status_code` | if a response was sent | same | `:status`, else `response.code` |
//! | `error.type` | 5xx, or no response | 4xx, 5xx, or no response | the code, else `response.code_details` |
//! | `server.address`, `server.port` | recommended / if available | required | `Forwarded: host=`, `X-Forwarded-Host`, `:authority` (CLIENT: `:authority`, port defaulted from the scheme) |
//! | `client.address` | recommended | – | `Forwarded: for=`, `X-Forwarded-For`, else the peer |
//! | `network.peer.address`, `.port` | recommended | recommended | `source.address` (CLIENT: `upstream.address`) |
//! | `network.protocol.version` | recommended | – (upstream version unknown) | `request.protocol` |
//! | `user_agent.original` | recommended | opt-in | `User-Agent` |
//! | `client.port`, `network.local.*`, `network.transport` | opt-in | – | peer, `destination.address`, `request.protocol` |
//! | `http.{request,response}.body.size`, `.size` | opt-in | opt-in | `request.size`, `response.size`, `*.total_size` |
//!
//! Span name: `{method} {target}` with the route template as target, else `{method}`; `HTTP`
//! stands for an `_OTHER` method. Status: unset for 1xx–3xx; 4xx is an error on CLIENT spans
//! only; 5xx, codes outside 100–599 and requests that ended without a response are errors.
//! `error.type` values: the status code as a string; else Envoy's response code details up to
//! the first `{` (`downstream_remote_disconnect`, `upstream_reset_before_response_started`, ...);
//! else `_OTHER`.

use super::*;
use crate::attributes::{Attribute, Value, bounded_lossy};
use crate::host::{Encoding, Expect, Properties, Raw};
use crate::propagation::Headers;
use percent_encoding::percent_decode;
use serde::Deserialize;
use std::borrow::Cow;

/// The methods the conventions know (RFC 9110 plus PATCH); others are `_OTHER`.
pub const DEFAULT_KNOWN_METHODS: [&str; 9] = [
    "CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE",
];
/// Query keys whose values are replaced by `REDACTED` by default (the conventions' list,
/// matched case-sensitively).
pub const DEFAULT_REDACTED_QUERY_KEYS: [&str; 4] =
    ["AWSAccessKeyId", "Signature", "sig", "X-Goog-Signature"];
/// What a redacted query value becomes.
pub const REDACTED: &str = "REDACTED";
/// `error.type` when no better class is known.
pub const OTHER_ERROR: &str = "_OTHER";
/// `http.request.method` of a method outside the known list.
pub const OTHER_METHOD: &str = "_OTHER";
/// Longest `error.type` taken from Envoy's response code details.
const MAX_ERROR_TYPE_LEN: usize = 64;
/// Bytes of a `Forwarded` header scanned for its first element.
const MAX_FORWARDED_SCAN: usize = 1_024;

/// The span kind: SERVER for inbound (sidecar inbound, gateways), CLIENT for outbound.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The proxy receives the request on behalf of the service.
    #[default]
    Server,
    /// The proxy sends the request on behalf of the service.
    Client,
}

/// Opt-in attributes an operator may turn on (`span.opt_in`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub enum OptIn {
    /// `client.port` (SERVER).
    #[serde(rename = "client.port")]
    ClientPort,
    /// `network.local.address` (SERVER).
    #[serde(rename = "network.local.address")]
    NetworkLocalAddress,
    /// `network.local.port` (SERVER).
    #[serde(rename = "network.local.port")]
    NetworkLocalPort,
    /// `network.transport` (SERVER).
    #[serde(rename = "network.transport")]
    NetworkTransport,
    /// `url.scheme` (CLIENT; always on SERVER spans).
    #[serde(rename = "url.scheme")]
    UrlScheme,
    /// `user_agent.original` (CLIENT; always on SERVER spans).
    #[serde(rename = "user_agent.original")]
    UserAgent,
    /// `http.request.body.size`.
    #[serde(rename = "http.request.body.size")]
    RequestBodySize,
    /// `http.response.body.size`.
    #[serde(rename = "http.response.body.size")]
    ResponseBodySize,
    /// `http.request.size`.
    #[serde(rename = "http.request.size")]
    RequestSize,
    /// `http.response.size`.
    #[serde(rename = "http.response.size")]
    ResponseSize,
}

/// How the conventions are applied: kind, opt-ins, known methods, redacted query keys.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// SERVER or CLIENT.
    pub kind: Kind,
    /// Opt-in attributes turned on (each valid for `kind`).
    pub opt_in: Vec<OptIn>,
    /// Methods recorded as they are (case-sensitive).
    pub known_methods: Vec<String>,
    /// Query keys whose values are redacted (case-sensitive, compared percent-decoded).
    pub redact_query_keys: Vec<String>,
    /// Longest string kept in a [`Request`] or [`End`].
    pub max_value_len: usize,
}

/// What the request headers say, bounded to [`Settings::max_value_len`] per value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Request {
    /// `:method` as received.
    pub method: String,
    /// `:path` up to the `?`.
    pub path: Option<String>,
    /// The query (after the `?`), sensitive values redacted; `None` without a query.
    pub query: Option<String>,
    /// The scheme (lower case).
    pub scheme: Option<String>,
    /// `:authority` as received (CLIENT `url.full`).
    pub authority: Option<String>,
    /// `server.address`.
    pub server_address: Option<String>,
    /// `server.port`, when the header named one.
    pub server_port: Option<u16>,
    /// `client.address` from `Forwarded`/`X-Forwarded-For` (SERVER).
    pub client_address: Option<String>,
    /// The port that came with it.
    pub client_port: Option<u16>,
    /// `User-Agent`.
    pub user_agent: Option<String>,
}

/// What Envoy knows when the stream ends (attributes read in `on_log`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct End {
    /// The connection peer: `source.address` (SERVER) or `upstream.address` (CLIENT).
    pub peer: Option<(String, Option<u16>)>,
    /// The local side of the downstream connection (`destination.address`).
    pub local: Option<(String, Option<u16>)>,
    /// `request.protocol` (`HTTP/1.1`, `HTTP/2`, `HTTP/3`).
    pub protocol: Option<String>,
    /// `request.size`.
    pub request_body_size: Option<i64>,
    /// `response.size`.
    pub response_body_size: Option<i64>,
    /// `request.total_size`.
    pub request_size: Option<i64>,
    /// `response.total_size`.
    pub response_size: Option<i64>,
    /// `response.code`, read when no `:status` was seen.
    pub response_code: Option<u16>,
    /// `response.code_details`, read when there is no status code at all.
    pub code_details: Option<String>,
}

/// The headers [`Request::from_headers`] reads, first values, trimmed.
#[derive(Default)]
struct Seen<'a> {
    method: Option<&'a [u8]>,
    path: Option<&'a [u8]>,
    scheme: Option<&'a [u8]>,
    authority: Option<&'a [u8]>,
    host: Option<&'a [u8]>,
    user_agent: Option<&'a [u8]>,
    forwarded: Option<&'a [u8]>,
    forwarded_for: Option<&'a [u8]>,
    forwarded_proto: Option<&'a [u8]>,
    forwarded_host: Option<&'a [u8]>,
}

/// The parameters of the first `Forwarded` element (RFC 7239).
#[derive(Debug, Default, PartialEq)]
struct Forwarded {
    for_: Option<String>,
    proto: Option<String>,
    host: Option<String>,
}

/// Whether the filter writes attribute `key` itself (a convention attribute of either kind or
/// one of its own `meshtrace.*`): custom tags may not use these names.
pub fn is_written(key: &str) -> bool {
    const WRITTEN: [&str; 27] = [
        HTTP_REQUEST_METHOD,
        HTTP_REQUEST_METHOD_ORIGINAL,
        HTTP_RESPONSE_STATUS_CODE,
        HTTP_ROUTE,
        ERROR_TYPE,
        URL_PATH,
        URL_QUERY,
        URL_SCHEME,
        URL_FULL,
        URL_TEMPLATE,
        SERVER_ADDRESS,
        SERVER_PORT,
        CLIENT_ADDRESS,
        CLIENT_PORT,
        NETWORK_PEER_ADDRESS,
        NETWORK_PEER_PORT,
        NETWORK_LOCAL_ADDRESS,
        NETWORK_LOCAL_PORT,
        NETWORK_PROTOCOL_VERSION,
        NETWORK_TRANSPORT,
        USER_AGENT_ORIGINAL,
        HTTP_REQUEST_BODY_SIZE,
        HTTP_RESPONSE_BODY_SIZE,
        HTTP_REQUEST_SIZE,
        HTTP_RESPONSE_SIZE,
        "network.protocol.name",
        "http.request.resend_count",
    ];
    WRITTEN.contains(&key) || key.starts_with("meshtrace.")
}

// === impl Seen ===

impl<'a> Seen<'a> {
    /// Where the first value of header `name` goes, if it is one of ours.
    fn slot(&mut self, name: &str) -> Option<&mut Option<&'a [u8]>> {
        let slots = [
            (":method", &mut self.method),
            (":path", &mut self.path),
            (":scheme", &mut self.scheme),
            (":authority", &mut self.authority),
            ("host", &mut self.host),
            ("user-agent", &mut self.user_agent),
            ("forwarded", &mut self.forwarded),
            ("x-forwarded-for", &mut self.forwarded_for),
            ("x-forwarded-proto", &mut self.forwarded_proto),
            ("x-forwarded-host", &mut self.forwarded_host),
        ];
        slots
            .into_iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
            .map(|(_, slot)| slot)
    }
}

// === impl Kind ===

impl Kind {
    /// The OTLP span kind.
    pub fn to_otlp(self) -> opentelemetry_proto::tonic::trace::v1::span::SpanKind {
        use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
        match self {
            Kind::Server => SpanKind::Server,
            Kind::Client => SpanKind::Client,
        }
    }
}

// === impl OptIn ===

impl OptIn {
    /// The attribute name.
    pub fn key(self) -> &'static str {
        match self {
            OptIn::ClientPort => CLIENT_PORT,
            OptIn::NetworkLocalAddress => NETWORK_LOCAL_ADDRESS,
            OptIn::NetworkLocalPort => NETWORK_LOCAL_PORT,
            OptIn::NetworkTransport => NETWORK_TRANSPORT,
            OptIn::UrlScheme => URL_SCHEME,
            OptIn::UserAgent => USER_AGENT_ORIGINAL,
            OptIn::RequestBodySize => HTTP_REQUEST_BODY_SIZE,
            OptIn::ResponseBodySize => HTTP_RESPONSE_BODY_SIZE,
            OptIn::RequestSize => HTTP_REQUEST_SIZE,
            OptIn::ResponseSize => HTTP_RESPONSE_SIZE,
        }
    }

    /// Whether the attribute is opt-in on spans of `kind` (the others are either always on or
    /// do not apply).
    pub fn applies_to(self, kind: Kind) -> bool {
        match self {
            OptIn::ClientPort
            | OptIn::NetworkLocalAddress
            | OptIn::NetworkLocalPort
            | OptIn::NetworkTransport => kind == Kind::Server,
            OptIn::UrlScheme | OptIn::UserAgent => kind == Kind::Client,
            OptIn::RequestBodySize
            | OptIn::ResponseBodySize
            | OptIn::RequestSize
            | OptIn::ResponseSize => true,
        }
    }
}

// === impl Settings ===

impl Default for Settings {
    fn default() -> Self {
        Self {
            kind: Kind::Server,
            opt_in: Vec::new(),
            known_methods: DEFAULT_KNOWN_METHODS.map(str::to_owned).to_vec(),
            redact_query_keys: DEFAULT_REDACTED_QUERY_KEYS.map(str::to_owned).to_vec(),
            max_value_len: usize::try_from(crate::attributes::DEFAULT_MAX_ATTRIBUTE_VALUE_LEN)
                .unwrap_or(usize::MAX),
        }
    }
}

impl Settings {
    fn wants(&self, opt_in: OptIn) -> bool {
        self.opt_in.contains(&opt_in)
    }

    fn is_known(&self, method: &str) -> bool {
        self.known_methods.iter().any(|m| m == method)
    }

    /// The attribute paths [`End::read`] will ask for, so that the caller knows whether the
    /// end of the stream needs any host call.
    pub fn end_properties(&self) -> Vec<&'static [&'static str]> {
        let mut paths: Vec<&'static [&'static str]> = Vec::new();
        match self.kind {
            Kind::Server => {
                paths.push(&["source", "address"]);
                paths.push(&["request", "protocol"]);
                if self.wants(OptIn::NetworkLocalAddress) || self.wants(OptIn::NetworkLocalPort) {
                    paths.push(&["destination", "address"]);
                }
            }
            Kind::Client => paths.push(&["upstream", "address"]),
        }
        for (opt_in, path) in [
            (OptIn::RequestBodySize, &["request", "size"]),
            (OptIn::ResponseBodySize, &["response", "size"]),
            (OptIn::RequestSize, &["request", "total_size"]),
            (OptIn::ResponseSize, &["response", "total_size"]),
        ] {
            if self.wants(opt_in) {
                paths.push(path);
            }
        }
        paths
    }

    /// The span name: `{method} {route}`, or `{method}` without a route; `HTTP` for a method
    /// outside the known list.
    pub fn span_name(&self, method: &str, route: Option<&str>) -> String {
        let method = if self.is_known(method) {
            method
        } else {
            "HTTP"
        };
        match route {
            Some(route) => format!("{method} {route}"),
            None => method.to_owned(),
        }
    }

    /// Whether the span's status is Error: 5xx, a code outside 100–599, no response at all,
    /// and on CLIENT spans 4xx.
    pub fn is_error(&self, status: Option<u16>) -> bool {
        match status {
            None => true,
            Some(code) if !(100..=599).contains(&code) => true,
            Some(code) => code >= 500 || (code >= 400 && self.kind == Kind::Client),
        }
    }

    /// The convention attributes, required first, then conditionally required, recommended
    /// and opt-in (so that the count limit cuts the least important ones).
    pub fn attributes(
        &self,
        request: &Request,
        route: Option<&str>,
        status: Option<u16>,
        end: &End,
    ) -> Vec<Attribute> {
        let mut out = Vec::with_capacity(20);
        let status = status.or(end.response_code);
        let known = self.is_known(&request.method);
        let method = if known {
            request.method.as_str()
        } else {
            OTHER_METHOD
        };
        out.push(Attribute::new(HTTP_REQUEST_METHOD, method));
        if !known {
            out.push(Attribute::new(
                HTTP_REQUEST_METHOD_ORIGINAL,
                request.method.as_str(),
            ));
        }
        match self.kind {
            Kind::Server => self.server_attributes(request, route, status, end, &mut out),
            Kind::Client => self.client_attributes(request, route, status, end, &mut out),
        }
        for (opt_in, value) in [
            (OptIn::RequestBodySize, end.request_body_size),
            (OptIn::ResponseBodySize, end.response_body_size),
            (OptIn::RequestSize, end.request_size),
            (OptIn::ResponseSize, end.response_size),
        ] {
            if let Some(value) = value.filter(|_| self.wants(opt_in)) {
                out.push(Attribute::new(opt_in.key(), value));
            }
        }
        out
    }

    fn server_attributes(
        &self,
        request: &Request,
        route: Option<&str>,
        status: Option<u16>,
        end: &End,
        out: &mut Vec<Attribute>,
    ) {
        let mut push = |key: &'static str, value: Option<Value>| push_some(out, key, value);
        let string = |s: &Option<String>| s.clone().map(Value::String);
        push(URL_PATH, string(&request.path));
        push(URL_SCHEME, string(&request.scheme));
        push(URL_QUERY, string(&request.query));
        push(HTTP_ROUTE, route.map(Value::from));
        self.status_attributes(status, end, &mut push);
        push(SERVER_ADDRESS, string(&request.server_address));
        let server_port = request.server_address.as_ref().and(request.server_port);
        push(SERVER_PORT, server_port.map(|p| Value::Int(p.into())));
        let (client_address, client_port) = match &request.client_address {
            Some(address) => (Some(address.clone()), request.client_port),
            None => end.peer.clone().map_or((None, None), |(a, p)| (Some(a), p)),
        };
        push(CLIENT_ADDRESS, client_address.clone().map(Value::String));
        let peer = end.peer.as_ref();
        push(
            NETWORK_PEER_ADDRESS,
            peer.map(|(a, _)| Value::from(a.as_str())),
        );
        push(NETWORK_PEER_PORT, peer.and_then(|(_, p)| port_value(*p)));
        push(
            NETWORK_PROTOCOL_VERSION,
            end.protocol
                .as_deref()
                .and_then(protocol_version)
                .map(Value::from),
        );
        push(USER_AGENT_ORIGINAL, string(&request.user_agent));
        if self.wants(OptIn::ClientPort) {
            push(
                CLIENT_PORT,
                client_address
                    .and(client_port)
                    .and_then(|p| port_value(Some(p))),
            );
        }
        let local = end.local.as_ref();
        if self.wants(OptIn::NetworkLocalAddress) {
            push(
                NETWORK_LOCAL_ADDRESS,
                local.map(|(a, _)| Value::from(a.as_str())),
            );
        }
        if self.wants(OptIn::NetworkLocalPort) {
            push(NETWORK_LOCAL_PORT, local.and_then(|(_, p)| port_value(*p)));
        }
        if self.wants(OptIn::NetworkTransport) {
            let transport = end
                .protocol
                .as_deref()
                .and_then(protocol_version)
                .map(|v| if v == "3" { "udp" } else { "tcp" });
            push(NETWORK_TRANSPORT, transport.map(Value::from));
        }
    }

    fn client_attributes(
        &self,
        request: &Request,
        route: Option<&str>,
        status: Option<u16>,
        end: &End,
        out: &mut Vec<Attribute>,
    ) {
        let mut push = |key: &'static str, value: Option<Value>| push_some(out, key, value);
        push(
            SERVER_ADDRESS,
            request.server_address.clone().map(Value::String),
        );
        let default_port = match request.scheme.as_deref() {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        };
        push(
            SERVER_PORT,
            request
                .server_address
                .as_ref()
                .and(request.server_port.or(default_port))
                .map(|p| Value::Int(p.into())),
        );
        push(URL_FULL, full_url(request).map(Value::String));
        self.status_attributes(status, end, &mut push);
        push(URL_TEMPLATE, route.map(Value::from));
        let peer = end.peer.as_ref();
        push(
            NETWORK_PEER_ADDRESS,
            peer.map(|(a, _)| Value::from(a.as_str())),
        );
        push(NETWORK_PEER_PORT, peer.and_then(|(_, p)| port_value(*p)));
        if self.wants(OptIn::UrlScheme) {
            push(URL_SCHEME, request.scheme.clone().map(Value::String));
        }
        if self.wants(OptIn::UserAgent) {
            push(
                USER_AGENT_ORIGINAL,
                request.user_agent.clone().map(Value::String),
            );
        }
    }

    fn status_attributes(
        &self,
        status: Option<u16>,
        end: &End,
        push: &mut impl FnMut(&'static str, Option<Value>),
    ) {
        push(
            HTTP_RESPONSE_STATUS_CODE,
            status.map(|code| Value::Int(code.into())),
        );
        if self.is_error(status) {
            let error = match status {
                Some(code) => code.to_string(),
                None => end
                    .code_details
                    .as_deref()
                    .and_then(error_class)
                    .unwrap_or(OTHER_ERROR)
                    .to_owned(),
            };
            push(ERROR_TYPE, Some(Value::String(error)));
        }
    }
}

// === impl Request ===

impl Request {
    /// Reads the request line and the forwarding headers in one pass over `headers`.
    pub fn from_headers<H: Headers + ?Sized>(headers: &H, settings: &Settings) -> Self {
        let mut seen = Seen::default();
        for (name, value) in headers.pairs() {
            if let Some(slot) = seen.slot(name).filter(|slot| slot.is_none()) {
                *slot = Some(trim(value));
            }
        }
        let max = settings.max_value_len;
        let text = |bytes: Option<&[u8]>| {
            bytes
                .filter(|b| !b.is_empty())
                .map(|b| bounded_lossy(b, max))
        };
        let target = seen.path.unwrap_or_default();
        let (path, query) = match target.iter().position(|&b| b == b'?') {
            Some(at) => (
                target.get(..at).unwrap_or_default(),
                target.get(at + 1..).filter(|q| !q.is_empty()),
            ),
            None => (target, None),
        };
        let query = query.map(|q| {
            let q = String::from_utf8_lossy(q);
            bounded_lossy(
                redact_query(&q, &settings.redact_query_keys).as_bytes(),
                max,
            )
        });
        let authority = text(seen.authority.or(seen.host));
        let mut request = Request {
            method: text(seen.method).unwrap_or_default(),
            path: text(Some(path)),
            query,
            scheme: seen.scheme.and_then(scheme),
            authority: authority.clone(),
            user_agent: text(seen.user_agent),
            ..Request::default()
        };
        let (host, port) = match settings.kind {
            Kind::Server => {
                let forwarded = seen
                    .forwarded
                    .map(|f| parse_forwarded(f.get(..MAX_FORWARDED_SCAN).unwrap_or(f)))
                    .unwrap_or_default();
                let proto = forwarded
                    .proto
                    .as_deref()
                    .map(str::as_bytes)
                    .or(seen.forwarded_proto.map(first_element));
                if let Some(scheme) = proto.and_then(scheme) {
                    request.scheme = Some(scheme);
                }
                let client = forwarded
                    .for_
                    .as_deref()
                    .and_then(|f| host_port(f.as_bytes()))
                    .or_else(|| seen.forwarded_for.map(first_element).and_then(host_port));
                if let Some((address, port)) = client {
                    request.client_address = Some(bounded_lossy(address.as_bytes(), max));
                    request.client_port = port;
                }
                forwarded
                    .host
                    .as_deref()
                    .map(str::as_bytes)
                    .or(seen.forwarded_host.map(first_element))
                    .and_then(host_port)
                    .or_else(|| authority.as_deref().map(str::as_bytes).and_then(host_port))
                    .unwrap_or_default()
            }
            Kind::Client => authority
                .as_deref()
                .map(str::as_bytes)
                .and_then(host_port)
                .unwrap_or_default(),
        };
        if !host.is_empty() {
            request.server_address = Some(bounded_lossy(host.as_bytes(), max));
            request.server_port = port;
        }
        request
    }
}

// === impl End ===

impl End {
    /// Reads the end-of-stream attributes `settings` need; `status_seen` says whether a
    /// `:status` was read, so the fallbacks are only read when needed.
    pub fn read(settings: &Settings, host: &dyn Properties, status_seen: bool) -> Self {
        let max = settings.max_value_len;
        let int = |path: &[&str]| match Encoding::Int.decode(&host.property(path)?, Expect::Int)? {
            Raw::Int(i) => Some(i),
            _ => None,
        };
        let address = |path: &[&str]| {
            let bytes = host.property(path)?;
            let (address, port) = host_port(&bytes)?;
            Some((bounded_lossy(address.as_bytes(), max), port))
        };
        let mut end = End::default();
        for path in settings.end_properties() {
            match path {
                ["source" | "upstream", "address"] => end.peer = address(path),
                ["destination", "address"] => end.local = address(path),
                ["request", "protocol"] => {
                    end.protocol = host.property(path).map(|p| bounded_lossy(&p, 16));
                }
                ["request", "size"] => end.request_body_size = int(path),
                ["response", "size"] => end.response_body_size = int(path),
                ["request", "total_size"] => end.request_size = int(path),
                ["response", "total_size"] => end.response_size = int(path),
                _ => {}
            }
        }
        if !status_seen {
            end.response_code = int(&["response", "code"])
                .and_then(|c| u16::try_from(c).ok())
                .filter(|&c| c != 0);
            if end.response_code.is_none() {
                end.code_details = host
                    .property(&["response", "code_details"])
                    .map(|d| bounded_lossy(&d, MAX_ERROR_TYPE_LEN * 4));
            }
        }
        end
    }
}

/// `{scheme}://{authority}{path}[?{query}]`, when scheme and authority are known.
fn full_url(request: &Request) -> Option<String> {
    let scheme = request.scheme.as_deref()?;
    let authority = request.authority.as_deref()?;
    let path = request.path.as_deref().unwrap_or_default();
    Some(match &request.query {
        Some(query) => format!("{scheme}://{authority}{path}?{query}"),
        None => format!("{scheme}://{authority}{path}"),
    })
}

/// Appends `key` = `value` when there is a value (attributes below their level are absent).
fn push_some(out: &mut Vec<Attribute>, key: &'static str, value: Option<Value>) {
    if let Some(value) = value {
        out.push(Attribute {
            key: Cow::Borrowed(key),
            value,
        });
    }
}

/// The query with the values of `keys` replaced by [`REDACTED`] (keys kept). Keys are
/// compared percent-decoded and case-sensitively, as the conventions ask.
pub fn redact_query<'a>(query: &'a str, keys: &[String]) -> Cow<'a, str> {
    let sensitive = |pair: &str| {
        let Some((key, _)) = pair.split_once('=') else {
            return false;
        };
        let decoded = percent_decode(key.as_bytes()).decode_utf8_lossy();
        keys.iter().any(|k| *k == decoded)
    };
    if keys.is_empty() || !query.split('&').any(sensitive) {
        return Cow::Borrowed(query);
    }
    let pairs: Vec<Cow<'_, str>> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if sensitive(pair) => Cow::Owned(format!("{key}={REDACTED}")),
            _ => Cow::Borrowed(pair),
        })
        .collect();
    Cow::Owned(pairs.join("&"))
}

/// `network.protocol.version` from `request.protocol`.
fn protocol_version(protocol: &str) -> Option<&'static str> {
    match protocol {
        "HTTP/1.0" => Some("1.0"),
        "HTTP/1.1" => Some("1.1"),
        "HTTP/2" => Some("2"),
        "HTTP/3" => Some("3"),
        _ => None,
    }
}

/// An `error.type` from Envoy's response code details: the part before any `{`, if it is a
/// plain identifier.
fn error_class(details: &str) -> Option<&str> {
    let class = details.split('{').next().unwrap_or_default().trim();
    let plain = !class.is_empty()
        && class.len() <= MAX_ERROR_TYPE_LEN
        && class
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    plain.then_some(class)
}

fn port_value(port: Option<u16>) -> Option<Value> {
    port.map(|p| Value::Int(p.into()))
}

/// A scheme, lower-cased, if it has the RFC 3986 shape.
fn scheme(bytes: &[u8]) -> Option<String> {
    let valid = bytes.first().is_some_and(u8::is_ascii_alphabetic)
        && bytes.len() <= 32
        && bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    valid.then(|| String::from_utf8_lossy(bytes).to_ascii_lowercase())
}

/// The first comma-separated element of a list header, trimmed.
fn first_element(value: &[u8]) -> &[u8] {
    trim(value.split(|&b| b == b',').next().unwrap_or_default())
}

fn trim(value: &[u8]) -> &[u8] {
    value.trim_ascii()
}

/// Splits `host`, `host:port`, `[v6]:port` or a bare IPv6 address; brackets are removed.
/// `None` for an empty host or one with whitespace or control characters.
pub fn host_port(value: &[u8]) -> Option<(String, Option<u16>)> {
    let value = trim(value);
    let (host, port) = if let Some(rest) = value.strip_prefix(b"[") {
        let close = rest.iter().position(|&b| b == b']')?;
        let host = rest.get(..close)?;
        let after = rest.get(close + 1..).unwrap_or_default();
        (host, after.strip_prefix(b":"))
    } else {
        match value.iter().filter(|&&b| b == b':').count() {
            1 => {
                let colon = value.iter().position(|&b| b == b':')?;
                (value.get(..colon)?, value.get(colon + 1..))
            }
            _ => (value, None),
        }
    };
    if host.is_empty() || host.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return None;
    }
    let port = port
        .and_then(|p| std::str::from_utf8(p).ok())
        .and_then(|p| p.parse().ok());
    Some((String::from_utf8_lossy(host).into_owned(), port))
}

/// The first element of a `Forwarded` header: its `for`, `proto` and `host` parameters.
/// Obfuscated (`_x`) and `unknown` nodes are not addresses and are ignored.
fn parse_forwarded(value: &[u8]) -> Forwarded {
    let mut forwarded = Forwarded::default();
    let text = String::from_utf8_lossy(value);
    let mut element = String::new();
    let mut quoted = false;
    let mut escaped = false;
    let mut pairs: Vec<String> = Vec::new();
    for c in text.chars() {
        if escaped {
            element.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => pairs.push(std::mem::take(&mut element)),
            ',' if !quoted => break,
            _ => element.push(c),
        }
    }
    pairs.push(element);
    for pair in pairs {
        let Some((name, value)) = pair.split_once('=') else {
            continue;
        };
        let value = value.trim().to_owned();
        let slot = match name.trim().to_ascii_lowercase().as_str() {
            "for" if value != "unknown" && !value.starts_with('_') => &mut forwarded.for_,
            "proto" => &mut forwarded.proto,
            "host" => &mut forwarded.host,
            _ => continue,
        };
        if slot.is_none() && !value.is_empty() {
            *slot = Some(value);
        }
    }
    forwarded
}

#[cfg(test)]
mod tests;
