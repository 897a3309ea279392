//! One test per convention rule: requirement levels, sources in order of precedence, name,
//! status, `error.type`, redaction, bounds.

use super::*;
// Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
use std::collections::BTreeMap;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn settings(kind: Kind) -> Settings {
    Settings {
        kind,
        ..Settings::default()
    }
}

fn request(kind: Kind, headers: &[(&str, &str)]) -> Request {
    Request::from_headers(&headers.to_vec(), &settings(kind))
}

const GET: [(&str, &str); 4] = [
    (":method", "GET"),
    (":path", "/api/v1/users/42?q=1"),
    (":scheme", "http"),
    (":authority", "shop.example:8080"),
];

fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut headers = GET.to_vec();
    headers.extend_from_slice(extra);
    headers
}

/// The attributes as `key → value`, failing on a repeated key.
fn map(attributes: &[Attribute]) -> BTreeMap<String, Value> {
    let mut map = BTreeMap::new();
    for a in attributes {
        assert!(
            map.insert(a.key.to_string(), a.value.clone()).is_none(),
            "{} twice",
            a.key
        );
    }
    map
}

fn s(value: &str) -> Value {
    Value::String(value.to_owned())
}

fn server_end() -> End {
    End {
        peer: Some(("10.0.0.7".into(), Some(51234))),
        protocol: Some("HTTP/1.1".into()),
        ..End::default()
    }
}

#[test]
fn a_server_span_has_required_conditional_and_recommended_attributes() {
    let settings = settings(Kind::Server);
    let headers = with(&[("user-agent", "curl/8.0")]);
    let request = Request::from_headers(&headers, &settings);
    let attributes = settings.attributes(
        &request,
        Some("/api/v1/users/{id}"),
        Some(200),
        &server_end(),
    );
    let expected = BTreeMap::from([
        ("http.request.method".to_owned(), s("GET")),
        ("url.path".to_owned(), s("/api/v1/users/42")),
        ("url.scheme".to_owned(), s("http")),
        ("url.query".to_owned(), s("q=1")),
        ("http.route".to_owned(), s("/api/v1/users/{id}")),
        ("http.response.status_code".to_owned(), Value::Int(200)),
        ("server.address".to_owned(), s("shop.example")),
        ("server.port".to_owned(), Value::Int(8080)),
        ("client.address".to_owned(), s("10.0.0.7")),
        ("network.peer.address".to_owned(), s("10.0.0.7")),
        ("network.peer.port".to_owned(), Value::Int(51234)),
        ("network.protocol.version".to_owned(), s("1.1")),
        ("user_agent.original".to_owned(), s("curl/8.0")),
    ]);
    assert_eq!(map(&attributes), expected);
    // Required ones first: method, path, scheme.
    let keys: Vec<&str> = attributes.iter().map(|a| a.key.as_ref()).collect();
    assert_eq!(keys[..3], ["http.request.method", "url.path", "url.scheme"]);
    assert_eq!(
        settings.span_name("GET", Some("/api/v1/users/{id}")),
        "GET /api/v1/users/{id}"
    );
    assert!(!settings.is_error(Some(200)));
}

#[test]
fn optional_attributes_are_absent_when_their_source_is() {
    let settings = settings(Kind::Server);
    let request = request(
        Kind::Server,
        &[(":method", "GET"), (":path", "/x"), (":scheme", "https")],
    );
    let attributes = map(&settings.attributes(&request, None, None, &End::default()));
    for absent in [
        "url.query",
        "http.route",
        "http.response.status_code",
        "server.address",
        "server.port",
        "client.address",
        "network.peer.address",
        "network.protocol.version",
        "user_agent.original",
    ] {
        assert!(!attributes.contains_key(absent), "{absent}");
    }
    // No status at all: the request ended without a response.
    assert_eq!(attributes["error.type"], s("_OTHER"));
}

#[test]
fn without_a_route_the_name_is_the_method_never_the_path() {
    let settings = settings(Kind::Server);
    assert_eq!(settings.span_name("POST", None), "POST");
    assert_eq!(settings.span_name("BREW", None), "HTTP");
    assert_eq!(
        settings.span_name("BREW", Some("/pot/{id}")),
        "HTTP /pot/{id}"
    );
    assert_eq!(
        settings.span_name("get", None),
        "HTTP",
        "methods are case-sensitive"
    );
}

#[test]
fn unknown_methods_are_other_with_the_original() {
    let settings = settings(Kind::Server);
    for method in ["BREW", "get", "PROPFIND"] {
        let request = request(Kind::Server, &[(":method", method), (":path", "/")]);
        let attributes = map(&settings.attributes(&request, None, Some(200), &End::default()));
        assert_eq!(attributes["http.request.method"], s("_OTHER"), "{method}");
        assert_eq!(attributes["http.request.method_original"], s(method));
    }
    let request = request(Kind::Server, &GET);
    let attributes = map(&settings.attributes(&request, None, Some(200), &End::default()));
    assert!(!attributes.contains_key("http.request.method_original"));
}

#[test]
fn the_known_methods_list_can_be_overridden() {
    let settings = Settings {
        known_methods: vec!["GET".into(), "PROPFIND".into()],
        ..settings(Kind::Server)
    };
    let request = request(Kind::Server, &[(":method", "PROPFIND"), (":path", "/")]);
    let attributes = map(&settings.attributes(&request, None, Some(207), &End::default()));
    assert_eq!(attributes["http.request.method"], s("PROPFIND"));
    assert_eq!(settings.span_name("POST", None), "HTTP", "a full override");
}

#[test]
fn server_status_is_an_error_on_5xx_only() {
    let settings = settings(Kind::Server);
    for (code, error) in [
        (100, false),
        (204, false),
        (302, false),
        (404, false),
        (429, false),
        (500, true),
        (503, true),
        (599, true),
        (600, true),
        (99, true),
    ] {
        assert_eq!(settings.is_error(Some(code)), error, "{code}");
        let request = request(Kind::Server, &GET);
        let attributes = map(&settings.attributes(&request, None, Some(code), &End::default()));
        assert_eq!(
            attributes.get("error.type"),
            error.then(|| s(&code.to_string())).as_ref(),
            "{code}"
        );
        assert_eq!(
            attributes["http.response.status_code"],
            Value::Int(code.into())
        );
    }
}

#[test]
fn client_status_is_an_error_on_4xx_and_5xx() {
    let settings = settings(Kind::Client);
    for (code, error) in [
        (200, false),
        (301, false),
        (400, true),
        (404, true),
        (499, true),
        (500, true),
    ] {
        assert_eq!(settings.is_error(Some(code)), error, "{code}");
    }
}

#[test]
fn error_type_without_a_status_comes_from_envoy_code_details() {
    let settings = settings(Kind::Server);
    let request = request(Kind::Server, &GET);
    for (details, expected) in [
        (
            Some("downstream_remote_disconnect"),
            "downstream_remote_disconnect",
        ),
        (
            Some("upstream_reset_before_response_started{connection_termination}"),
            "upstream_reset_before_response_started",
        ),
        (Some("weird value with spaces"), "_OTHER"),
        (Some(""), "_OTHER"),
        (None, "_OTHER"),
    ] {
        let end = End {
            code_details: details.map(str::to_owned),
            ..End::default()
        };
        let attributes = map(&settings.attributes(&request, None, None, &end));
        assert_eq!(attributes["error.type"], s(expected), "{details:?}");
        assert!(!attributes.contains_key("http.response.status_code"));
    }
    // `response.code` stands in for a `:status` that was not seen.
    let end = End {
        response_code: Some(502),
        ..End::default()
    };
    let attributes = map(&settings.attributes(&request, None, None, &end));
    assert_eq!(attributes["http.response.status_code"], Value::Int(502));
    assert_eq!(attributes["error.type"], s("502"));
}

#[test]
fn query_values_of_sensitive_keys_are_redacted() {
    let keys: Vec<String> = DEFAULT_REDACTED_QUERY_KEYS.map(str::to_owned).to_vec();
    for (query, expected) in [
        ("q=OpenTelemetry", "q=OpenTelemetry"),
        ("color=blue&sig=abc123", "color=blue&sig=REDACTED"),
        (
            "AWSAccessKeyId=AKIA&Signature=x%2By&Expires=1",
            "AWSAccessKeyId=REDACTED&Signature=REDACTED&Expires=1",
        ),
        ("X-Goog-Signature=a&x=1", "X-Goog-Signature=REDACTED&x=1"),
        ("SIG=abc", "SIG=abc"),
        ("%73ig=abc", "%73ig=REDACTED"),
        ("sig", "sig"),
        ("sig=", "sig=REDACTED"),
        ("a=1&&sig=2&", "a=1&&sig=REDACTED&"),
    ] {
        assert_eq!(redact_query(query, &keys), expected, "{query}");
    }
    let custom = vec!["token".to_owned()];
    assert_eq!(
        redact_query("token=t&sig=s", &custom),
        "token=REDACTED&sig=s",
        "a full override"
    );
    assert_eq!(redact_query("sig=s", &[]), "sig=s");
    // Through the request summary.
    let settings = Settings {
        redact_query_keys: vec!["api_key".into()],
        ..settings(Kind::Server)
    };
    let request = Request::from_headers(&vec![(":path", "/p?api_key=secret&page=2")], &settings);
    assert_eq!(request.query.as_deref(), Some("api_key=REDACTED&page=2"));
    assert_eq!(request.path.as_deref(), Some("/p"));
}

#[test]
fn a_query_is_recorded_only_when_one_was_sent() {
    for (path, expected) in [
        ("/p", None),
        ("/p?", None),
        ("/p?a", Some("a")),
        ("/p?a=1?b", Some("a=1?b")),
    ] {
        let request = request(Kind::Server, &[(":path", path)]);
        assert_eq!(request.query.as_deref(), expected, "{path}");
        assert_eq!(request.path.as_deref(), Some("/p"));
    }
}

#[test]
fn forwarded_headers_take_precedence_on_server_spans() {
    // Forwarded first, then X-Forwarded-*, then :authority / :scheme / the peer.
    let first = request(
        Kind::Server,
        &with(&[
            (
                "forwarded",
                "for=\"[2001:db8:cafe::17]:4711\";proto=https;host=api.example.com, for=10.0.0.1",
            ),
            ("x-forwarded-for", "203.0.113.195, 70.41.3.18"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "other.example"),
        ]),
    );
    assert_eq!(first.client_address.as_deref(), Some("2001:db8:cafe::17"));
    assert_eq!(first.client_port, Some(4711));
    assert_eq!(first.scheme.as_deref(), Some("https"));
    assert_eq!(first.server_address.as_deref(), Some("api.example.com"));
    assert_eq!(first.server_port, None);

    let forwarded = request_x_forwarded();
    assert_eq!(forwarded.client_address.as_deref(), Some("203.0.113.195"));
    assert_eq!(forwarded.client_port, None);
    assert_eq!(forwarded.scheme.as_deref(), Some("https"));
    assert_eq!(forwarded.server_address.as_deref(), Some("edge.example"));
    assert_eq!(forwarded.server_port, Some(8443));

    // Obfuscated or unknown `for=` nodes are not addresses: X-Forwarded-For is used.
    let hidden = request(
        Kind::Server,
        &with(&[
            ("forwarded", "for=_hidden;proto=HTTPS"),
            ("x-forwarded-for", "198.51.100.4"),
        ]),
    );
    assert_eq!(hidden.client_address.as_deref(), Some("198.51.100.4"));
    assert_eq!(hidden.scheme.as_deref(), Some("https"), "lower-cased");
    let unknown = request(Kind::Server, &with(&[("forwarded", "for=unknown")]));
    assert_eq!(unknown.client_address, None);
}

fn request_x_forwarded() -> Request {
    request(
        Kind::Server,
        &with(&[
            ("x-forwarded-for", " 203.0.113.195 , 70.41.3.18"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "edge.example:8443"),
        ]),
    )
}

#[test]
fn client_address_falls_back_to_the_peer() {
    let settings = Settings {
        opt_in: vec![OptIn::ClientPort],
        ..settings(Kind::Server)
    };
    let request = request(Kind::Server, &GET);
    let attributes = map(&settings.attributes(&request, None, Some(200), &server_end()));
    assert_eq!(attributes["client.address"], s("10.0.0.7"));
    assert_eq!(attributes["client.port"], Value::Int(51234));
    // With a forwarded client, its port (none here) goes with it, not the peer's.
    let attributes =
        map(&settings.attributes(&request_x_forwarded(), None, Some(200), &server_end()));
    assert_eq!(attributes["client.address"], s("203.0.113.195"));
    assert!(!attributes.contains_key("client.port"));
    assert_eq!(attributes["network.peer.address"], s("10.0.0.7"));
}

#[test]
fn opt_in_attributes_appear_only_when_asked_for() {
    let end = End {
        local: Some(("10.0.0.1".into(), Some(15006))),
        request_body_size: Some(7),
        response_body_size: Some(357),
        request_size: Some(219),
        response_size: Some(493),
        ..server_end()
    };
    let request = request(Kind::Server, &GET);
    let plain = map(&settings(Kind::Server).attributes(&request, None, Some(200), &end));
    let every = Settings {
        opt_in: vec![
            OptIn::ClientPort,
            OptIn::NetworkLocalAddress,
            OptIn::NetworkLocalPort,
            OptIn::NetworkTransport,
            OptIn::RequestBodySize,
            OptIn::ResponseBodySize,
            OptIn::RequestSize,
            OptIn::ResponseSize,
        ],
        ..settings(Kind::Server)
    };
    let all = map(&every.attributes(&request, None, Some(200), &end));
    for (key, value) in [
        ("client.port", Value::Int(51234)),
        ("network.local.address", s("10.0.0.1")),
        ("network.local.port", Value::Int(15006)),
        ("network.transport", s("tcp")),
        ("http.request.body.size", Value::Int(7)),
        ("http.response.body.size", Value::Int(357)),
        ("http.request.size", Value::Int(219)),
        ("http.response.size", Value::Int(493)),
    ] {
        assert!(!plain.contains_key(key), "{key} is opt-in");
        assert_eq!(all.get(key), Some(&value), "{key}");
    }
}

#[test]
fn protocol_versions_and_transport() {
    for (protocol, version, transport) in [
        ("HTTP/1.0", Some("1.0"), "tcp"),
        ("HTTP/1.1", Some("1.1"), "tcp"),
        ("HTTP/2", Some("2"), "tcp"),
        ("HTTP/3", Some("3"), "udp"),
        ("SPDY/3", None, ""),
    ] {
        let settings = Settings {
            opt_in: vec![OptIn::NetworkTransport],
            ..settings(Kind::Server)
        };
        let end = End {
            protocol: Some(protocol.into()),
            ..End::default()
        };
        let attributes =
            map(&settings.attributes(&request(Kind::Server, &GET), None, Some(200), &end));
        assert_eq!(
            attributes.get("network.protocol.version"),
            version.map(s).as_ref(),
            "{protocol}"
        );
        assert_eq!(
            attributes.get("network.transport"),
            version.map(|_| s(transport)).as_ref()
        );
    }
}

#[test]
fn a_client_span_has_url_full_server_address_and_port() {
    let settings = settings(Kind::Client);
    let headers = with(&[
        ("x-forwarded-host", "ignored.example"),
        ("user-agent", "app/1"),
    ]);
    let request = Request::from_headers(&headers, &settings);
    let end = End {
        peer: Some(("10.1.2.3".into(), Some(8080))),
        ..End::default()
    };
    let attributes = settings.attributes(&request, Some("/api/v1/users/{id}"), Some(404), &end);
    let expected = BTreeMap::from([
        ("http.request.method".to_owned(), s("GET")),
        ("server.address".to_owned(), s("shop.example")),
        ("server.port".to_owned(), Value::Int(8080)),
        (
            "url.full".to_owned(),
            s("http://shop.example:8080/api/v1/users/42?q=1"),
        ),
        ("http.response.status_code".to_owned(), Value::Int(404)),
        ("error.type".to_owned(), s("404")),
        ("url.template".to_owned(), s("/api/v1/users/{id}")),
        ("network.peer.address".to_owned(), s("10.1.2.3")),
        ("network.peer.port".to_owned(), Value::Int(8080)),
    ]);
    assert_eq!(map(&attributes), expected);
    let keys: Vec<&str> = attributes.iter().map(|a| a.key.as_ref()).collect();
    assert_eq!(
        keys[..4],
        [
            "http.request.method",
            "server.address",
            "server.port",
            "url.full"
        ]
    );
    let opted = Settings {
        opt_in: vec![OptIn::UrlScheme, OptIn::UserAgent],
        ..settings.clone()
    };
    let attributes = map(&opted.attributes(&request, None, Some(200), &end));
    assert_eq!(attributes["url.scheme"], s("http"));
    assert_eq!(attributes["user_agent.original"], s("app/1"));
}

#[test]
fn a_client_server_port_defaults_from_the_scheme() {
    let settings = settings(Kind::Client);
    for (scheme, authority, port) in [
        ("http", "api", 80),
        ("https", "api", 443),
        ("https", "api:9443", 9443),
    ] {
        let request = request(
            Kind::Client,
            &[
                (":method", "GET"),
                (":path", "/"),
                (":scheme", scheme),
                (":authority", authority),
            ],
        );
        let attributes = map(&settings.attributes(&request, None, Some(200), &End::default()));
        assert_eq!(
            attributes["server.port"],
            Value::Int(port),
            "{scheme} {authority}"
        );
    }
}

#[test]
fn host_port_forms() {
    for (value, expected) in [
        ("example.com", Some(("example.com", None))),
        ("example.com:8080", Some(("example.com", Some(8080)))),
        ("[::1]:9901", Some(("::1", Some(9901)))),
        ("[::1]", Some(("::1", None))),
        ("2001:db8::1", Some(("2001:db8::1", None))),
        ("10.0.0.1:notaport", Some(("10.0.0.1", None))),
        ("10.0.0.1:99999", Some(("10.0.0.1", None))),
        ("", None),
        ("[::1", None),
        ("bad host", None),
        (" spaced.example ", Some(("spaced.example", None))),
    ] {
        let got = host_port(value.as_bytes());
        let got = got.as_ref().map(|(h, p)| (h.as_str(), *p));
        assert_eq!(got, expected, "{value:?}");
    }
}

#[test]
fn values_are_bounded_and_non_utf8_is_replaced() {
    let settings = Settings {
        max_value_len: 32,
        ..settings(Kind::Server)
    };
    let long_path = format!("/{}", "a".repeat(1_000));
    let headers: Vec<(&str, Vec<u8>)> = vec![
        (":method", b"GET".to_vec()),
        (":path", long_path.into_bytes()),
        ("user-agent", b"caf\xe9\xff".to_vec()),
    ];
    let request = Request::from_headers(&headers, &settings);
    assert_eq!(request.path.as_ref().map(String::len), Some(32));
    assert_eq!(request.user_agent.as_deref(), Some("caf\u{fffd}\u{fffd}"));
}

#[test]
fn end_properties_are_read_as_needed() {
    let mut host = BTreeMap::new();
    host.insert("source.address".to_owned(), b"10.0.0.7:51234".to_vec());
    host.insert("destination.address".to_owned(), b"10.0.0.1:15006".to_vec());
    host.insert("upstream.address".to_owned(), b"10.9.9.9:80".to_vec());
    host.insert("request.protocol".to_owned(), b"HTTP/2".to_vec());
    host.insert("request.size".to_owned(), 7i64.to_le_bytes().to_vec());
    host.insert("response.size".to_owned(), 357i64.to_le_bytes().to_vec());
    host.insert("response.code".to_owned(), 503i64.to_le_bytes().to_vec());
    host.insert("response.code_details".to_owned(), b"via_upstream".to_vec());

    let server = settings(Kind::Server);
    assert_eq!(
        server.end_properties().len(),
        2,
        "peer and protocol only by default"
    );
    let end = End::read(&server, &host, true);
    assert_eq!(end.peer, Some(("10.0.0.7".into(), Some(51234))));
    assert_eq!(end.protocol.as_deref(), Some("HTTP/2"));
    assert_eq!(
        (end.local.clone(), end.request_body_size, end.response_code),
        (None, None, None)
    );

    let sizes = Settings {
        opt_in: vec![
            OptIn::RequestBodySize,
            OptIn::ResponseBodySize,
            OptIn::NetworkLocalPort,
        ],
        ..server.clone()
    };
    let end = End::read(&sizes, &host, false);
    assert_eq!(
        (end.request_body_size, end.response_body_size),
        (Some(7), Some(357))
    );
    assert_eq!(end.local, Some(("10.0.0.1".into(), Some(15006))));
    assert_eq!(
        end.response_code,
        Some(503),
        "read because no :status was seen"
    );
    assert_eq!(end.code_details, None, "a code is enough");

    let client = End::read(&settings(Kind::Client), &host, true);
    assert_eq!(client.peer, Some(("10.9.9.9".into(), Some(80))));
    assert_eq!(client.protocol, None);

    // Wrongly sized integers are ignored, not misread.
    host.insert("request.size".to_owned(), b"7".to_vec());
    assert_eq!(End::read(&sizes, &host, true).request_body_size, None);
}
