use super::*;
// Under wasm-bindgen-test (wasm32, Node.js) the same tests run as `wasm_bindgen_test`s.
use crate::host::Nothing;
use opentelemetry_proto::tonic::common::v1::any_value;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// A proxy-wasm pairs buffer, as Envoy serializes a map attribute.
fn pairs(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut out = u32::try_from(entries.len()).unwrap().to_le_bytes().to_vec();
    for (k, v) in entries {
        out.extend(u32::try_from(k.len()).unwrap().to_le_bytes());
        out.extend(u32::try_from(v.len()).unwrap().to_le_bytes());
    }
    for (k, v) in entries {
        out.extend(k.as_bytes());
        out.push(0);
        out.extend(v.as_bytes());
        out.push(0);
    }
    out
}

/// Node metadata as Istio writes it for a sidecar of deployment `web` in namespace `shop`.
fn istio_node() -> BTreeMap<String, Vec<u8>> {
    let m = |k: &str| format!("xds.node.metadata.{k}");
    BTreeMap::from([
        (
            "xds.node.id".to_owned(),
            b"sidecar~10.0.0.7~web-7d9f-x2.shop~shop.svc.cluster.local".to_vec(),
        ),
        (m("NAME"), b"web-7d9f-x2".to_vec()),
        (m("NAMESPACE"), b"shop".to_vec()),
        (m("WORKLOAD_NAME"), b"web".to_vec()),
        (m("NODE_NAME"), b"node-3".to_vec()),
        (m("CLUSTER_ID"), b"east".to_vec()),
        (m("APP_CONTAINERS"), b"web".to_vec()),
        (
            m("OWNER"),
            b"kubernetes://apis/apps/v1/namespaces/shop/deployments/web".to_vec(),
        ),
        (
            m("LABELS"),
            pairs(&[
                ("app", "web"),
                ("service.istio.io/canonical-name", "web-frontend"),
                ("service.istio.io/canonical-revision", "v2"),
            ]),
        ),
    ])
}

fn attributes(resource: &Resource) -> BTreeMap<String, String> {
    resource
        .attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.clone()) {
                Some(any_value::Value::StringValue(s)) => s,
                other => panic!("{}: {other:?}", kv.key),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

fn build(
    config: &ResourceConfig,
    service: Option<&str>,
    env: &[(&str, &str)],
    host: &dyn Properties,
) -> BTreeMap<String, String> {
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    attributes(&config.build(service, &env, host, &Limits::default()))
}

#[test]
fn nothing_known_gives_unknown_service_and_the_sdk() {
    let got = build(&ResourceConfig::default(), None, &[], &Nothing);
    assert_eq!(
        got,
        BTreeMap::from([
            (
                "service.name".to_owned(),
                "unknown_service:envoy".to_owned()
            ),
            (
                "telemetry.sdk.name".to_owned(),
                "meshtrace-filter".to_owned()
            ),
            ("telemetry.sdk.language".to_owned(), "rust".to_owned()),
            (
                "telemetry.sdk.version".to_owned(),
                crate::span::VERSION.to_owned()
            ),
        ])
    );
}

#[test]
fn istio_node_metadata_names_the_service_and_the_pod() {
    let got = build(&ResourceConfig::default(), None, &[], &istio_node());
    for (key, value) in [
        ("service.name", "web-frontend"),
        ("service.namespace", "shop"),
        ("service.version", "v2"),
        ("service.instance.id", "shop.web-7d9f-x2.web"),
        ("k8s.namespace.name", "shop"),
        ("k8s.pod.name", "web-7d9f-x2"),
        ("k8s.node.name", "node-3"),
        ("k8s.cluster.name", "east"),
        ("k8s.deployment.name", "web"),
    ] {
        assert_eq!(got.get(key).map(String::as_str), Some(value), "{key}");
    }
}

#[test]
fn service_name_precedence_config_environment_node_default() {
    let node = istio_node();
    let env = [
        ("OTEL_SERVICE_NAME", "from-env"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.name=from-list,deployment.environment.name=prod",
        ),
    ];
    let config = ResourceConfig::default();
    assert_eq!(
        build(&config, Some("from-config"), &env, &node)["service.name"],
        "from-config"
    );
    assert_eq!(
        build(&config, None, &env, &node)["service.name"],
        "from-env"
    );
    assert_eq!(
        build(&config, None, &env[1..], &node)["service.name"],
        "from-list"
    );
    assert_eq!(
        build(&config, None, &[], &node)["service.name"],
        "web-frontend"
    );
    let no_label: BTreeMap<String, Vec<u8>> = node
        .iter()
        .filter(|(k, _)| !k.ends_with("LABELS"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(
        build(&config, None, &[], &no_label)["service.name"],
        "web",
        "WORKLOAD_NAME"
    );
    assert_eq!(
        build(&config, None, &env, &node)["deployment.environment.name"],
        "prod"
    );
    // Sources can be turned off.
    let closed = ResourceConfig {
        from_environment: false,
        from_node_metadata: false,
        ..ResourceConfig::default()
    };
    assert_eq!(
        build(&closed, None, &env, &node)["service.name"],
        "unknown_service:envoy"
    );
    assert!(!build(&closed, None, &env, &node).contains_key("k8s.pod.name"));
}

#[test]
fn configured_attributes_win_over_environment_and_node() {
    let config = ResourceConfig {
        service_namespace: Some("payments".into()),
        service_version: Some("1.2.3".into()),
        service_instance_id: Some("i-1".into()),
        attributes: BTreeMap::from([("k8s.cluster.name".to_owned(), "prod-eu".to_owned())]),
        ..ResourceConfig::default()
    };
    let env = [(
        "OTEL_RESOURCE_ATTRIBUTES",
        "service.namespace=env-ns,k8s.cluster.name=env-cluster",
    )];
    let got = build(&config, None, &env, &istio_node());
    assert_eq!(got["service.namespace"], "payments");
    assert_eq!(got["service.version"], "1.2.3");
    assert_eq!(got["service.instance.id"], "i-1");
    assert_eq!(got["k8s.cluster.name"], "prod-eu");
    // The environment wins over the node metadata.
    let got = build(&ResourceConfig::default(), None, &env, &istio_node());
    assert_eq!(
        (
            got["service.namespace"].as_str(),
            got["k8s.cluster.name"].as_str()
        ),
        ("env-ns", "env-cluster")
    );
}

#[test]
fn pod_annotations_name_resource_attributes_first() {
    let mut node = istio_node();
    node.insert(
        "xds.node.metadata.ANNOTATIONS".to_owned(),
        pairs(&[
            ("resource.opentelemetry.io/service.name", "checkout"),
            ("resource.opentelemetry.io/service.version", "7"),
            ("resource.opentelemetry.io/telemetry.sdk.name", "spoofed"),
            ("sidecar.istio.io/status", "{}"),
        ]),
    );
    let got = build(&ResourceConfig::default(), None, &[], &node);
    assert_eq!(got["service.name"], "checkout");
    assert_eq!(got["service.version"], "7");
    assert_eq!(got["telemetry.sdk.name"], "meshtrace-filter");
    assert!(!got.contains_key("sidecar.istio.io/status"));
}

#[test]
fn without_istio_metadata_the_node_id_is_the_instance() {
    let node = BTreeMap::from([("xds.node.id".to_owned(), b"edge-1".to_vec())]);
    let got = build(&ResourceConfig::default(), None, &[], &node);
    assert_eq!(got["service.instance.id"], "edge-1");
    assert!(!got.contains_key("k8s.pod.name"));
    // `latest` is Istio's placeholder for "no version".
    let mut node = istio_node();
    node.insert(
        "xds.node.metadata.LABELS".to_owned(),
        pairs(&[("service.istio.io/canonical-revision", "latest")]),
    );
    node.insert(
        "xds.node.metadata.APP_CONTAINERS".to_owned(),
        b"web,worker".to_vec(),
    );
    let got = build(&ResourceConfig::default(), None, &[], &node);
    assert!(!got.contains_key("service.version"));
    assert_eq!(
        got["service.instance.id"], "shop.web-7d9f-x2",
        "two containers: none named"
    );
}

#[test]
fn owners_name_the_workload_kind() {
    for (owner, expected) in [
        (
            "kubernetes://apis/apps/v1/namespaces/ns/deployments/web",
            Some(("k8s.deployment.name", "web")),
        ),
        (
            "kubernetes://apis/apps/v1/namespaces/ns/statefulsets/db",
            Some(("k8s.statefulset.name", "db")),
        ),
        (
            "kubernetes://apis/apps/v1/namespaces/ns/daemonsets/agent",
            Some(("k8s.daemonset.name", "agent")),
        ),
        (
            "kubernetes://apis/batch/v1/namespaces/ns/jobs/migrate",
            Some(("k8s.job.name", "migrate")),
        ),
        (
            "kubernetes://apis/batch/v1/namespaces/ns/cronjobs/nightly",
            Some(("k8s.cronjob.name", "nightly")),
        ),
        ("kubernetes://apis/v1/namespaces/ns/pods/p", None),
        ("kubernetes://apis/apps/v1/namespaces/ns/deployments/", None),
        ("spiffe://cluster.local/ns/x", None),
    ] {
        assert_eq!(owner_of(owner), expected, "{owner}");
    }
}

fn owner_of(value: &str) -> Option<(&'static str, &str)> {
    owner(value)
}

#[test]
fn otel_resource_attributes_parse_like_the_sdks() {
    assert_eq!(
        parse_resource_attributes("a=1, b = two%20words ,c=x%2Cy"),
        Some(vec![
            ("a".into(), "1".into()),
            ("b".into(), "two words".into()),
            ("c".into(), "x,y".into())
        ])
    );
    assert_eq!(parse_resource_attributes(""), Some(vec![]));
    assert_eq!(
        parse_resource_attributes("a=1,broken"),
        None,
        "a malformed list is ignored whole"
    );
    assert_eq!(parse_resource_attributes("=1"), None);
    assert_eq!(parse_resource_attributes("a=%ff"), None, "not UTF-8");
    let env = [("OTEL_RESOURCE_ATTRIBUTES", "team=core,broken")];
    assert!(!build(&ResourceConfig::default(), None, &env, &Nothing).contains_key("team"));
}

#[test]
fn the_count_limit_keeps_service_name_and_the_sdk() {
    let config = ResourceConfig {
        attributes: (0..40)
            .map(|i| (format!("a{i:02}"), "x".to_owned()))
            .collect(),
        ..ResourceConfig::default()
    };
    let limits = Limits {
        max_attributes: 32,
        ..Limits::default()
    };
    let resource = config.build(
        Some("svc"),
        &BTreeMap::<String, String>::new(),
        &Nothing,
        &limits,
    );
    assert_eq!(resource.attributes.len(), 32);
    assert_eq!(resource.dropped_attributes_count, 12);
    let got = attributes(&resource);
    assert_eq!(got["service.name"], "svc");
    assert_eq!(got["telemetry.sdk.name"], "meshtrace-filter");
}

#[test]
fn invalid_resource_configuration_names_the_field() {
    for (config, field) in [
        (
            ResourceConfig {
                service_version: Some(String::new()),
                ..ResourceConfig::default()
            },
            "resource.service_version",
        ),
        (
            ResourceConfig {
                attributes: BTreeMap::from([("a b".to_owned(), "x".to_owned())]),
                ..ResourceConfig::default()
            },
            "resource.attributes.a b",
        ),
        (
            ResourceConfig {
                attributes: BTreeMap::from([("telemetry.sdk.name".to_owned(), "x".to_owned())]),
                ..ResourceConfig::default()
            },
            "resource.attributes.telemetry.sdk.name",
        ),
        (
            ResourceConfig {
                attributes: BTreeMap::from([("service.name".to_owned(), "x".to_owned())]),
                ..ResourceConfig::default()
            },
            "resource.attributes.service.name",
        ),
    ] {
        assert_eq!(config.validate().unwrap_err().field, field);
    }
    assert!(ResourceConfig::default().validate().is_ok());
}
