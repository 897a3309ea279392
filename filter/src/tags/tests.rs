//! One test per source, then types, defaults, the header budget, secrets and validation.

use super::*;
// Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
use crate::host::Nothing;
use std::collections::BTreeMap;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn tags(json: &str) -> Result<Tags, ConfigError> {
    let configs: Vec<TagConfig> = serde_json::from_str(json).unwrap();
    Tags::new(&configs, &["x-internal-token".to_owned()], |key| {
        key == "http.route"
    })
}

fn ok(json: &str) -> Tags {
    tags(json).unwrap_or_else(|e| panic!("{json}: {e}"))
}

fn error(json: &str) -> ConfigError {
    match tags(json) {
        Ok(tags) => panic!("{json} accepted: {tags:?}"),
        Err(e) => e,
    }
}

fn values(evaluated: &Evaluated) -> Vec<(String, Value)> {
    evaluated
        .attributes
        .iter()
        .map(|a| (a.key.to_string(), a.value.clone()))
        .collect()
}

fn s(value: &str) -> Value {
    Value::String(value.to_owned())
}

const BIG: usize = 1 << 20;

#[test]
fn literal_tags_are_typed_at_configuration() {
    let tags = ok(r#"[
        {"name": "env", "literal": "prod"},
        {"name": "shard", "literal": 7, "type": "int"},
        {"name": "ratio", "literal": "0.25", "type": "double"},
        {"name": "canary", "literal": true, "type": "bool"},
        {"name": "as_text", "literal": 3}
    ]"#);
    let evaluated = tags.evaluate_static(&Nothing, &Nothing);
    assert_eq!(
        values(&evaluated),
        vec![
            ("env".into(), s("prod")),
            ("shard".into(), Value::Int(7)),
            ("ratio".into(), Value::Double(0.25)),
            ("canary".into(), Value::Bool(true)),
            ("as_text".into(), s("3")),
        ]
    );
    assert!(tags.has(Phase::Static));
    assert!(!tags.has(Phase::Request) && !tags.has(Phase::Response) && !tags.has(Phase::End));
}

#[test]
fn environment_tags_read_the_vm_environment_with_defaults() {
    let tags = ok(r#"[
        {"name": "pod", "environment": "POD_NAME"},
        {"name": "zone", "environment": "ZONE", "default": "unknown"},
        {"name": "missing", "environment": "NOPE"},
        {"name": "replicas", "environment": "REPLICAS", "type": "int", "default": 1}
    ]"#);
    let env = BTreeMap::from([
        ("POD_NAME".to_owned(), "web-7d9f".to_owned()),
        ("REPLICAS".to_owned(), "three".to_owned()),
    ]);
    let evaluated = tags.evaluate_static(&env, &Nothing);
    assert_eq!(
        values(&evaluated),
        vec![
            ("pod".into(), s("web-7d9f")),
            ("zone".into(), s("unknown")),
            ("replicas".into(), Value::Int(1)),
        ]
    );
    assert_eq!(evaluated.invalid, 1, "`three` is not an int");
}

#[test]
fn request_header_tags_default_to_the_conventions_name_and_array() {
    let tags = ok(r#"[
        {"request_header": "x-tenant"},
        {"name": "tenant", "request_header": "x-tenant"},
        {"name": "retries", "request_header": "x-retry", "type": "int"},
        {"name": "absent", "request_header": "x-none", "default": "-"}
    ]"#);
    let headers = vec![
        (":path", "/"),
        ("X-Tenant", " acme "),
        ("x-tenant", "globex"),
        ("x-retry", "2"),
    ];
    let mut budget = BIG;
    let evaluated = tags.evaluate_request(&headers, &Baggage::default(), &mut budget);
    assert_eq!(
        values(&evaluated),
        vec![
            (
                "http.request.header.x-tenant".into(),
                Value::StringArray(vec!["acme".into(), "globex".into()])
            ),
            ("tenant".into(), s("acme, globex")),
            ("retries".into(), Value::Int(2)),
            ("absent".into(), s("-")),
        ]
    );
    assert_eq!(
        BIG - budget,
        2 * 10 + 1,
        "bytes read: x-tenant twice, x-retry"
    );
}

#[test]
fn response_header_tags() {
    let tags = ok(r#"[
        {"response_header": "content-type"},
        {"name": "cache", "response_header": "x-cache", "default": "MISS"},
        {"name": "hit", "response_header": "x-hit", "type": "bool"}
    ]"#);
    assert!(tags.has(Phase::Response) && !tags.has(Phase::Request));
    let headers = vec![
        (":status", "200"),
        ("content-type", "application/json"),
        ("x-hit", "TRUE"),
    ];
    let evaluated = tags.evaluate_response(&headers, &mut BIG.clone());
    assert_eq!(
        values(&evaluated),
        vec![
            (
                "http.response.header.content-type".into(),
                Value::StringArray(vec!["application/json".into()])
            ),
            ("cache".into(), s("MISS")),
            ("hit".into(), Value::Bool(true)),
        ]
    );
    // Request headers do not feed response tags.
    let evaluated = tags.evaluate_request(&headers, &Baggage::default(), &mut BIG.clone());
    assert!(evaluated.attributes.is_empty());
}

#[test]
fn baggage_tags_read_decoded_values() {
    let tags = ok(
        r#"[{"name": "user.tier", "baggage": "tier"}, {"name": "n", "baggage": "n", "type": "int"}]"#,
    );
    let (baggage, _) = Baggage::parse([&b"tier=gold%20plus,n=4"[..]]);
    let evaluated = tags.evaluate_request(&Vec::<(&str, &str)>::new(), &baggage, &mut 0);
    assert_eq!(
        values(&evaluated),
        vec![
            ("user.tier".into(), s("gold plus")),
            ("n".into(), Value::Int(4))
        ]
    );
}

#[test]
fn property_tags_decode_envoy_encodings() {
    let tags = ok(r#"[
        {"name": "peer", "property": "source.address"},
        {"name": "port", "property": "source.port", "type": "int"},
        {"name": "port_text", "property": "source.port"},
        {"name": "mtls", "property": "connection.mtls", "type": "bool"},
        {"name": "attempts", "property": "upstream.request_attempt_count", "type": "int"},
        {"name": "route", "property": "xds.route_name"},
        {"name": "flag", "property": ["metadata", "filter_metadata", "envoy.lb", "canary"], "type": "bool"}
    ]"#);
    assert!(tags.has(Phase::End) && !tags.has(Phase::Static));
    let host = BTreeMap::from([
        ("source.address".to_owned(), b"10.0.0.7:51234".to_vec()),
        ("source.port".to_owned(), 51234i64.to_le_bytes().to_vec()),
        ("connection.mtls".to_owned(), vec![1]),
        (
            "upstream.request_attempt_count".to_owned(),
            2u64.to_le_bytes().to_vec(),
        ),
        ("xds.route_name".to_owned(), b"users".to_vec()),
        (
            "metadata.filter_metadata.envoy.lb.canary".to_owned(),
            vec![0],
        ),
    ]);
    let evaluated = tags.evaluate_end(&host);
    assert_eq!(
        values(&evaluated),
        vec![
            ("peer".into(), s("10.0.0.7:51234")),
            ("port".into(), Value::Int(51234)),
            ("port_text".into(), s("51234")),
            ("mtls".into(), Value::Bool(true)),
            ("attempts".into(), Value::Int(2)),
            ("route".into(), s("users")),
            ("flag".into(), Value::Bool(false)),
        ]
    );
    assert_eq!(evaluated.invalid, 0);
    // A wrongly sized integer is invalid, not misread.
    let host = BTreeMap::from([("source.port".to_owned(), b"51234".to_vec())]);
    let evaluated = tags.evaluate_end(&host);
    assert_eq!(values(&evaluated), vec![]);
    assert_eq!(evaluated.invalid, 2);
}

#[test]
fn node_metadata_tags_are_static_and_node_is_shorthand_for_xds_node() {
    let tags = ok(r#"[
        {"name": "k8s.namespace.name", "property": "node.metadata.NAMESPACE"},
        {"name": "node", "property": "xds.node.id"},
        {"name": "app", "property": ["node", "metadata", "LABELS", "app.kubernetes.io/name"]},
        {"name": "replicas", "property": "node.metadata.REPLICAS", "type": "int"},
        {"name": "replicas_text", "property": "node.metadata.REPLICAS"}
    ]"#);
    assert!(tags.has(Phase::Static) && !tags.has(Phase::End));
    let host = BTreeMap::from([
        ("xds.node.metadata.NAMESPACE".to_owned(), b"shop".to_vec()),
        (
            "xds.node.id".to_owned(),
            b"sidecar~10.0.0.7~web.shop".to_vec(),
        ),
        (
            "xds.node.metadata.LABELS.app.kubernetes.io/name".to_owned(),
            b"web".to_vec(),
        ),
        // Struct numbers are doubles.
        (
            "xds.node.metadata.REPLICAS".to_owned(),
            3.0f64.to_le_bytes().to_vec(),
        ),
    ]);
    let evaluated = tags.evaluate_static(&Nothing, &host);
    assert_eq!(
        values(&evaluated),
        vec![
            ("k8s.namespace.name".into(), s("shop")),
            ("node".into(), s("sidecar~10.0.0.7~web.shop")),
            ("app".into(), s("web")),
            ("replicas".into(), Value::Int(3)),
            // Read as a string, a Struct number is its raw bytes: declare the type.
            ("replicas_text".into(), Value::lossy(&3.0f64.to_le_bytes())),
        ]
    );
}

#[test]
fn conversions() {
    for (raw, value_type, expected) in [
        (
            Raw::Bytes(b" 42 ".to_vec()),
            ValueType::Int,
            Some(Value::Int(42)),
        ),
        (Raw::Bytes(b"4.2".to_vec()), ValueType::Int, None),
        (
            Raw::Bytes(b"4.5".to_vec()),
            ValueType::Double,
            Some(Value::Double(4.5)),
        ),
        (Raw::Bytes(b"NaN".to_vec()), ValueType::Double, None),
        (
            Raw::Bytes(b"False".to_vec()),
            ValueType::Bool,
            Some(Value::Bool(false)),
        ),
        (Raw::Bytes(b"yes".to_vec()), ValueType::Bool, None),
        (Raw::Int(-3), ValueType::String, Some(s("-3"))),
        (Raw::Uint(u64::MAX), ValueType::Int, None),
        (Raw::Uint(7), ValueType::Double, Some(Value::Double(7.0))),
        (Raw::Double(7.0), ValueType::Int, Some(Value::Int(7))),
        (Raw::Double(7.5), ValueType::Int, None),
        (Raw::Double(7.0), ValueType::String, Some(s("7"))),
        (Raw::Double(0.5), ValueType::String, Some(s("0.5"))),
        (Raw::Int(1), ValueType::Bool, Some(Value::Bool(true))),
        (Raw::Int(2), ValueType::Bool, None),
        (Raw::Bool(true), ValueType::Int, Some(Value::Int(1))),
        (
            Raw::Bytes(b"caf\xe9".to_vec()),
            ValueType::String,
            Some(s("caf\u{fffd}")),
        ),
    ] {
        assert_eq!(
            convert(raw.clone(), value_type),
            expected,
            "{raw:?} as {value_type:?}"
        );
    }
}

#[test]
fn header_tags_past_the_byte_budget_are_dropped_and_counted() {
    let tags = ok(r#"[
        {"name": "a", "request_header": "x-a"},
        {"name": "b", "request_header": "x-b", "default": "none"},
        {"name": "c", "request_header": "x-c"}
    ]"#);
    let headers = vec![("x-a", "12345"), ("x-b", "1234567890"), ("x-c", "123")];
    let mut budget = 9;
    let evaluated = tags.evaluate_request(&headers, &Baggage::default(), &mut budget);
    // x-a fits (5), x-b does not (10 > 4) and is dropped without its default, x-c fits (3).
    assert_eq!(
        values(&evaluated),
        vec![("a".into(), s("12345")), ("c".into(), s("123"))]
    );
    assert_eq!((evaluated.dropped, budget), (1, 1));
    // The budget carries over to the response headers.
    let response = ok(r#"[{"name": "r", "response_header": "x-r"}]"#);
    let evaluated = response.evaluate_response(&vec![("x-r", "xy")], &mut budget);
    assert_eq!(evaluated.dropped, 1);
}

#[test]
fn sensitive_headers_are_refused_unless_a_tag_opts_in() {
    for (json, field) in [
        (
            r#"[{"request_header": "authorization"}]"#,
            "tags[0].request_header",
        ),
        (
            r#"[{"name": "c", "request_header": "cookie"}]"#,
            "tags[0].request_header",
        ),
        (
            r#"[{"response_header": "set-cookie"}]"#,
            "tags[0].response_header",
        ),
        (
            r#"[{"name": "k", "request_header": "x-api-key"}]"#,
            "tags[0].request_header",
        ),
        (
            r#"[{"name": "p", "request_header": "proxy-authorization"}]"#,
            "tags[0].request_header",
        ),
        (
            r#"[{"name": "t", "request_header": "x-internal-token"}]"#,
            "tags[0].request_header",
        ),
        (
            r#"[{"name": "h", "property": "request.headers.authorization"}]"#,
            "tags[0].property",
        ),
        (
            r#"[{"name": "h", "property": "response.headers.set-cookie"}]"#,
            "tags[0].property",
        ),
        (
            r#"[{"name": "q", "property": "request.query"}]"#,
            "tags[0].property",
        ),
        (
            r#"[{"name": "q", "property": "request.path"}]"#,
            "tags[0].property",
        ),
    ] {
        let e = error(json);
        assert_eq!(e.field, field, "{json}");
        assert!(
            e.message.contains("allow_sensitive"),
            "{json}: {}",
            e.message
        );
    }
    // Opted in, the value is recorded.
    let tags = ok(r#"[{"request_header": "authorization", "allow_sensitive": true}]"#);
    let evaluated = tags.evaluate_request(
        &vec![("authorization", "Bearer t")],
        &Baggage::default(),
        &mut BIG.clone(),
    );
    assert_eq!(evaluated.attributes.len(), 1);
    // Other request.* attributes are fine.
    ok(
        r#"[{"name": "path", "property": "request.url_path"}, {"name": "ua", "property": "request.headers.user-agent"}]"#,
    );
}

#[rustfmt::skip]
#[test]
fn invalid_tags_are_refused_naming_the_field() {
    for (json, field, why) in [
        (r#"[{"name": "x"}]"#, "tags[0]", "exactly one source"),
        (r#"[{"name": "x", "literal": "a", "baggage": "b"}]"#, "tags[0]", "exactly one source"),
        (r#"[{"literal": "a"}]"#, "tags[0].name", "required"),
        (r#"[{"name": "", "literal": "a"}]"#, "tags[0].name", "1 to"),
        (r#"[{"name": "a b", "literal": "a"}]"#, "tags[0].name", "whitespace"),
        (r#"[{"name": "x", "literal": "a", "type": "int"}]"#, "tags[0].literal", "not a valid int"),
        (r#"[{"name": "x", "environment": "E", "type": "bool", "default": "maybe"}]"#, "tags[0].default", "not a valid bool"),
        (r#"[{"name": "x", "environment": "A=B"}]"#, "tags[0].environment", "variable name"),
        (r#"[{"request_header": "X-Tenant"}]"#, "tags[0].request_header", "lower-case"),
        (r#"[{"request_header": ":path"}]"#, "tags[0].request_header", "pseudo-headers"),
        (r#"[{"name": "x", "baggage": "a b"}]"#, "tags[0].baggage", "baggage key"),
        (r#"[{"name": "x", "property": "reqeust.id"}]"#, "tags[0].property", "not an Envoy attribute"),
        (r#"[{"name": "x", "property": "request..id"}]"#, "tags[0].property", "non-empty segments"),
        (r#"[{"name": "x", "property": "request.headers"}]"#, "tags[0].property", "map or message"),
        (r#"[{"name": "x", "property": "node.metadata"}]"#, "tags[0].property", "map or message"),
        (r#"[{"name": "x", "property": "xds.node"}]"#, "tags[0].property", "map or message"),
        (r#"[{"name": "http.route", "literal": "a"}]"#, "tags[0].name", "writes itself"),
        (r#"[{"name": "a", "literal": "a"}, {"name": "a", "literal": "b"}]"#, "tags[1].name", "earlier tag"),
        (r#"[{"name": "http.request.header.x", "literal": "a"}]"#, "tags[0].name", "string array"),
        (r#"[{"name": "http.response.header.x", "request_header": "x"}]"#, "tags[0].name", "string array"),
        (r#"[{"request_header": "x", "type": "int"}]"#, "tags[0].name", "string array"),
    ] {
        let e = error(json);
        assert_eq!(e.field, field, "{json}: {e}");
        assert!(e.message.contains(why), "{json}: {}", e.message);
    }
    let many: Vec<String> = (0..=MAX_TAGS).map(|i| format!(r#"{{"name": "t{i}", "literal": "x"}}"#)).collect();
    assert_eq!(error(&format!("[{}]", many.join(","))).field, "tags");
}

#[test]
fn unknown_tag_fields_are_refused_by_serde() {
    let parsed: Result<Vec<TagConfig>, _> =
        serde_json::from_str(r#"[{"name": "x", "literl": "a"}]"#);
    assert!(
        parsed
            .unwrap_err()
            .to_string()
            .contains("unknown field `literl`")
    );
}
