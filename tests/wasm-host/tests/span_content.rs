//! Span content from the real filter `.wasm` under the wasmtime host, where the host injects
//! what Envoy would hold: the VM's environment (`vm_config.environment_variables`), the
//! bootstrap node's metadata (`xds.node.*`, as Istio's agent writes it) and per-stream Envoy
//! attributes (`source.address`, `xds.route_name`, `upstream.request_attempt_count`,
//! `connection.mtls`). Each tag source, the resource from the environment and the node, the
//! limits and their counters, and the refusal of a tag on a credential.

mod common;

use common::{filter, get, m, spans};
use meshtrace_wasm_host::abi::encode_pairs;
use meshtrace_wasm_host::{Host, HostError, HostOptions, filter_module};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use std::time::Duration;

const TRACEPARENT: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const SECRET: &str = "s3cr3t-value";

/// One tag per source, with types and defaults.
const CONFIG: &str = r#"{
  "exporter": {"flush_interval_ms": 100},
  "routes": ["/users/{id}"],
  "tags": [
    {"name": "t.literal", "literal": 3, "type": "int"},
    {"name": "t.env", "environment": "REGION"},
    {"name": "t.env_missing", "environment": "ZONE", "default": "none"},
    {"name": "t.node", "property": "node.metadata.WORKLOAD_NAME"},
    {"name": "t.label", "property": ["node", "metadata", "LABELS", "app"]},
    {"name": "t.node_number", "property": "node.metadata.REPLICAS", "type": "int"},
    {"name": "t.route_name", "property": "xds.route_name"},
    {"name": "t.attempts", "property": "upstream.request_attempt_count", "type": "int"},
    {"name": "t.mtls", "property": "connection.mtls", "type": "bool"},
    {"name": "t.absent", "property": "request.id", "default": "no-id"},
    {"request_header": "x-tenant"},
    {"name": "t.retries", "request_header": "x-retries", "type": "int", "default": 0},
    {"name": "t.cache", "response_header": "x-cache", "default": "MISS"},
    {"name": "t.tier", "baggage": "tier"}
  ]
}"#;

/// Proxy-wasm pairs, as Envoy serializes a map attribute (`LABELS`).
fn pairs(entries: &[(&str, &str)]) -> Vec<u8> {
    let entries: Vec<(Vec<u8>, Vec<u8>)> = entries
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
    encode_pairs(&entries)
}

/// The options of a sidecar's VM: its environment and Istio's node metadata.
fn sidecar(config: &str) -> HostOptions {
    let mut options = HostOptions::default().config(config);
    options.env = vec![
        ("REGION".into(), "eu-west-1".into()),
        (
            "OTEL_RESOURCE_ATTRIBUTES".into(),
            "deployment.environment.name=prod,service.version=v9".into(),
        ),
    ];
    let node = |key: &str| format!("xds\0node\0{key}").into_bytes();
    for (key, value) in [
        (
            "id",
            b"sidecar~10.0.0.7~web-7d9f-x2.shop~shop.svc.cluster.local".to_vec(),
        ),
        ("metadata\0NAME", b"web-7d9f-x2".to_vec()),
        ("metadata\0NAMESPACE", b"shop".to_vec()),
        ("metadata\0WORKLOAD_NAME", b"web".to_vec()),
        ("metadata\0CLUSTER_ID", b"Kubernetes".to_vec()),
        (
            "metadata\0OWNER",
            b"kubernetes://apis/apps/v1/namespaces/shop/deployments/web".to_vec(),
        ),
        // A Struct number: the 8 bytes of a double, as Envoy 1.40 answers.
        ("metadata\0REPLICAS", 3.0f64.to_le_bytes().to_vec()),
        ("metadata\0LABELS\0app", b"web-app".to_vec()),
        (
            "metadata\0LABELS",
            pairs(&[
                ("app", "web-app"),
                ("service.istio.io/canonical-name", "web-frontend"),
                ("service.istio.io/canonical-revision", "v2"),
            ]),
        ),
    ] {
        options.properties.insert(node(key), value);
    }
    options
}

fn start(options: HostOptions) -> Host {
    let module = filter_module().unwrap_or_else(|e| panic!("{e}"));
    Host::start(&module, options).unwrap_or_else(|e| panic!("{e}"))
}

/// One sampled request with tenant, baggage and credentials, answered `status` with a cache
/// header and a cookie; the stream's Envoy attributes set as Envoy would hold them at the end.
fn one_request(host: &mut Host, status: u16) -> (Span, Resource) {
    let stream = host.open_stream().unwrap();
    for (path, value) in [
        (&["source", "address"][..], b"10.0.0.9:51000".to_vec()),
        (&["request", "protocol"][..], b"HTTP/1.1".to_vec()),
        (&["xds", "route_name"][..], b"users".to_vec()),
        (
            &["upstream", "request_attempt_count"][..],
            2u64.to_le_bytes().to_vec(),
        ),
        (&["connection", "mtls"][..], vec![1]),
    ] {
        host.set_stream_property(stream, path, value).unwrap();
    }
    let mut headers = get(&[
        ("traceparent", TRACEPARENT),
        ("x-tenant", b"acme"),
        ("x-retries", b"4"),
        ("baggage", b"tier=gold,other=1"),
        ("authorization", b"Bearer s3cr3t-value"),
        ("cookie", b"session=s3cr3t-value"),
    ]);
    headers[1].1 = b"/users/42?sig=s3cr3t-value".to_vec();
    host.request_headers(stream, headers, true).unwrap();
    let status = status.to_string();
    let response = [
        (":status", status.as_bytes()),
        ("x-cache", b"HIT"),
        ("set-cookie", b"id=s3cr3t-value"),
    ];
    host.response_headers(stream, response, true).unwrap();
    host.end_stream(stream).unwrap();
    host.advance(Duration::from_millis(100)).unwrap();
    let call = host.pending_calls().pop().expect("an export call");
    let request = call.export_request().unwrap();
    let text = format!("{request:?}");
    assert!(!text.contains(SECRET), "a credential was exported: {text}");
    let resource = request.resource_spans[0].resource.clone().unwrap();
    let span = spans(&call).pop().unwrap();
    (span, resource)
}

fn value(attributes: &[KeyValue], key: &str) -> Option<Value> {
    let found = attributes.iter().find(|kv| kv.key == key)?;
    found.value.clone()?.value
}

fn string(s: &str) -> Option<Value> {
    Some(Value::StringValue(s.to_owned()))
}

#[test]
fn every_tag_source_reads_what_the_host_holds() {
    let mut host = start(sidecar(CONFIG));
    let (span, _) = one_request(&mut host, 200);
    let attrs = &span.attributes;
    assert_eq!(span.name, "GET /users/{id}");
    for (key, expected) in [
        ("t.literal", Some(Value::IntValue(3))),
        ("t.env", string("eu-west-1")),
        ("t.env_missing", string("none")),
        ("t.node", string("web")),
        ("t.label", string("web-app")),
        ("t.node_number", Some(Value::IntValue(3))),
        ("t.route_name", string("users")),
        ("t.attempts", Some(Value::IntValue(2))),
        ("t.mtls", Some(Value::BoolValue(true))),
        ("t.absent", string("no-id")),
        ("t.retries", Some(Value::IntValue(4))),
        ("t.cache", string("HIT")),
        ("t.tier", string("gold")),
        ("client.address", string("10.0.0.9")),
        ("network.peer.address", string("10.0.0.9")),
        ("network.peer.port", Some(Value::IntValue(51000))),
        ("network.protocol.version", string("1.1")),
        ("url.query", string("sig=REDACTED")),
    ] {
        assert_eq!(value(attrs, key), expected, "{key}");
    }
    let tenant = value(attrs, "http.request.header.x-tenant");
    let Some(Value::ArrayValue(tenant)) = tenant else {
        panic!("x-tenant: {tenant:?}")
    };
    assert_eq!(
        tenant.values,
        [AnyValue {
            value: string("acme")
        }]
    );
    assert_eq!(span.dropped_attributes_count, 0);
    assert_eq!(m(&host, "meshtrace_tag_values_invalid_total"), 0);
}

#[test]
fn the_resource_comes_from_the_environment_then_the_node_metadata() {
    let mut host = start(sidecar(CONFIG));
    let (_, resource) = one_request(&mut host, 200);
    let attrs = &resource.attributes;
    for (key, expected) in [
        ("service.name", "web-frontend"),
        // OTEL_RESOURCE_ATTRIBUTES wins over the node's canonical revision.
        ("service.version", "v9"),
        ("deployment.environment.name", "prod"),
        ("service.namespace", "shop"),
        ("k8s.namespace.name", "shop"),
        ("k8s.pod.name", "web-7d9f-x2"),
        ("k8s.cluster.name", "Kubernetes"),
        ("k8s.deployment.name", "web"),
        ("telemetry.sdk.name", "meshtrace-filter"),
        ("telemetry.sdk.language", "rust"),
    ] {
        assert_eq!(value(attrs, key), string(expected), "{key}");
    }
    // A configured service name wins over everything.
    let named = CONFIG.replacen('{', r#"{"service_name": "checkout","#, 1);
    let mut host = start(sidecar(&named));
    let (_, resource) = one_request(&mut host, 200);
    assert_eq!(
        value(&resource.attributes, "service.name"),
        string("checkout")
    );
    // Without environment or node: Envoy's VM sees nothing, the SDKs' fallback name.
    let mut bare = start(HostOptions::default().config(CONFIG));
    let (span, resource) = one_request(&mut bare, 200);
    assert_eq!(
        value(&resource.attributes, "service.name"),
        string("unknown_service:envoy")
    );
    assert_eq!(
        value(&span.attributes, "t.node"),
        None,
        "no node, no default"
    );
    assert_eq!(value(&span.attributes, "t.env"), None);
}

#[test]
fn values_that_do_not_convert_take_the_default_and_are_counted() {
    let mut options = sidecar(CONFIG);
    // A string where an int is declared (node metadata), a non-number header.
    options
        .properties
        .insert(b"xds\0node\0metadata\0REPLICAS".to_vec(), b"three".to_vec());
    let mut host = start(options);
    let stream = host.open_stream().unwrap();
    let headers = get(&[("traceparent", TRACEPARENT), ("x-retries", b"many")]);
    host.request_headers(stream, headers, true).unwrap();
    host.response_headers(stream, [(":status", "200")], true)
        .unwrap();
    host.end_stream(stream).unwrap();
    host.advance(Duration::from_millis(100)).unwrap();
    let span = spans(&host.pending_calls()[0]).pop().unwrap();
    assert_eq!(
        value(&span.attributes, "t.retries"),
        Some(Value::IntValue(0))
    );
    assert_eq!(value(&span.attributes, "t.node_number"), None);
    // The node value is read (and counted) once, at configuration; the header per span.
    assert_eq!(m(&host, "meshtrace_tag_values_invalid_total"), 2);
}

#[test]
fn the_attribute_limits_cut_and_count() {
    // 40 literal tags under a 32-attribute limit, values over a 16-byte length limit.
    let tags: Vec<String> = (0..40)
        .map(|i| format!(r#"{{"name": "t.{i:02}", "literal": "{}"}}"#, "x".repeat(40)))
        .collect();
    let config = format!(
        r#"{{"exporter": {{"flush_interval_ms": 100}}, "limits": {{"max_attributes": 32, "max_attribute_value_length": 16}}, "tags": [{}]}}"#,
        tags.join(",")
    );
    let mut host = filter(&config);
    let stream = host.open_stream().unwrap();
    host.request_headers(stream, get(&[("traceparent", TRACEPARENT)]), true)
        .unwrap();
    host.response_headers(stream, [(":status", "200")], true)
        .unwrap();
    host.end_stream(stream).unwrap();
    host.advance(Duration::from_millis(100)).unwrap();
    let span = spans(&host.pending_calls()[0]).pop().unwrap();
    assert_eq!(span.attributes.len(), 32);
    assert!(span.dropped_attributes_count > 0);
    assert_eq!(
        m(&host, "meshtrace_span_attributes_dropped_total"),
        i128::from(span.dropped_attributes_count)
    );
    // The conventions come first: the required ones survive the cut.
    assert_eq!(
        value(&span.attributes, "http.request.method"),
        string("GET")
    );
    let cut = span
        .attributes
        .iter()
        .filter_map(|kv| match kv.value.clone()?.value? {
            Value::StringValue(s) if kv.key.starts_with("t.") => Some(s),
            _ => None,
        });
    let cut: Vec<String> = cut.collect();
    assert!(
        !cut.is_empty() && cut.iter().all(|s| s == &"x".repeat(16)),
        "{cut:?}"
    );
    assert_eq!(
        m(&host, "meshtrace_span_attribute_values_truncated_total"),
        i128::try_from(cut.len()).unwrap()
    );
}

#[test]
fn a_tag_on_a_credential_is_refused_naming_the_field_unless_it_opts_in() {
    let module = filter_module().unwrap();
    for (tags, field) in [
        (r#"[{"request_header": "authorization"}]"#, "tags[0]"),
        (
            r#"[{"literal": "x", "name": "a"}, {"response_header": "set-cookie"}]"#,
            "tags[1]",
        ),
        (
            r#"[{"name": "k", "property": "request.headers.x-api-key"}]"#,
            "tags[0]",
        ),
        (r#"[{"name": "e", "environment": ""}]"#, "tags[0]"),
        (r#"[{"name": "p", "property": "xds.node"}]"#, "tags[0]"),
    ] {
        let config = format!(r#"{{"tags": {tags}}}"#);
        match Host::start(&module, HostOptions::default().config(config.as_str())) {
            Err(HostError::Refused { log, .. }) => {
                let line = log
                    .iter()
                    .find(|l| l.contains("invalid plugin configuration"));
                let line = line.unwrap_or_else(|| panic!("{tags}: nothing logged: {log:?}"));
                assert!(line.contains(field), "{tags}: {line}");
            }
            other => panic!("{tags} should be refused, got {other:?}"),
        }
    }
    let config = r#"{"exporter": {"flush_interval_ms": 100},
        "tags": [{"request_header": "authorization", "allow_sensitive": true}]}"#;
    let mut host = filter(config);
    let stream = host.open_stream().unwrap();
    let headers = get(&[
        ("traceparent", TRACEPARENT),
        ("authorization", b"Bearer opted-in"),
    ]);
    host.request_headers(stream, headers, true).unwrap();
    host.response_headers(stream, [(":status", "200")], true)
        .unwrap();
    host.end_stream(stream).unwrap();
    host.advance(Duration::from_millis(100)).unwrap();
    let span = spans(&host.pending_calls()[0]).pop().unwrap();
    let Some(Value::ArrayValue(values)) =
        value(&span.attributes, "http.request.header.authorization")
    else {
        panic!("the opted-in tag is recorded: {:?}", span.attributes)
    };
    assert_eq!(values.values[0].value, string("Bearer opted-in"));
}
