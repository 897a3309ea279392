//! The resource of every span the filter exports: who emitted it.
//!
//! Each attribute takes the first value found, in this order:
//!
//! 1. the configuration (`service_name`, `resource.service_*`, `resource.attributes`);
//! 2. the VM's environment, as the OpenTelemetry SDKs read it: `OTEL_SERVICE_NAME`, then
//!    `OTEL_RESOURCE_ATTRIBUTES` (`key=value,...`, values percent-decoded; a malformed list is
//!    ignored whole, as the SDK specification asks)
//!    (<https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/>);
//! 3. Envoy's node metadata as Istio writes it (`xds.node.metadata.*`): the pod's
//!    `resource.opentelemetry.io/<attribute>` annotations, then the keys below;
//! 4. `service.name` = `unknown_service:envoy`.
//!
//! | attribute | from the node metadata |
//! |---|---|
//! | `service.name` | label `service.istio.io/canonical-name` (Istio's canonical service), `WORKLOAD_NAME`, `NAME` |
//! | `service.namespace` | `NAMESPACE` (the conventions' Kubernetes rule) |
//! | `service.version` | label `service.istio.io/canonical-revision` (unless Istio's placeholder `latest`), `app.kubernetes.io/version`, `version` |
//! | `service.instance.id` | `<NAMESPACE>.<NAME>.<container>` (the pod's one app container, from `APP_CONTAINERS`), else `<NAMESPACE>.<NAME>`; without Istio metadata, Envoy's node id |
//! | `k8s.namespace.name`, `k8s.pod.name`, `k8s.node.name`, `k8s.cluster.name` | `NAMESPACE`, `NAME`, `NODE_NAME`, `CLUSTER_ID` |
//! | `k8s.deployment.name` (or statefulset, daemonset, replicaset, job, cronjob) | `OWNER` (`kubernetes://apis/apps/v1/namespaces/<ns>/deployments/<name>`) |
//!
//! Istio's keys: `istio/istio` `pkg/model/proxy.go` (`NodeMetadata`, `BootstrapNodeMetadata`);
//! the Kubernetes service rules: <https://opentelemetry.io/docs/specs/semconv/non-normative/k8s-attributes/>.
//! `telemetry.sdk.*` always say `meshtrace-filter`, `rust` and this crate's version.

use crate::attributes::{Attribute, Limits, Value};
use crate::config::ConfigError;
use crate::host::{self, Environment, Properties};
use crate::semconv::*;
use opentelemetry_proto::tonic::resource::v1::Resource;
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// `telemetry.sdk.name` of the filter.
pub const SDK_NAME: &str = "meshtrace-filter";
/// `service.name` when nothing else names the service (the SDKs' `unknown_service:<process>`).
pub const UNKNOWN_SERVICE: &str = "unknown_service:envoy";
/// Most entries in `resource.attributes`, and most read from `OTEL_RESOURCE_ATTRIBUTES` or
/// the pod's annotations.
pub const MAX_RESOURCE_ATTRIBUTES: usize = 64;
/// Longest configured resource attribute key.
const MAX_KEY_LEN: usize = 255;
/// Prefix of the pod annotations that name resource attributes.
const ANNOTATION_PREFIX: &str = "resource.opentelemetry.io/";
/// Istio's canonical service label.
const CANONICAL_NAME: &str = "service.istio.io/canonical-name";
/// Istio's canonical revision label.
const CANONICAL_REVISION: &str = "service.istio.io/canonical-revision";

/// `resource`: the resource attributes beyond `service_name`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ResourceConfig {
    /// `service.namespace`.
    pub service_namespace: Option<String>,
    /// `service.version`.
    pub service_version: Option<String>,
    /// `service.instance.id`.
    pub service_instance_id: Option<String>,
    /// Further resource attributes (string values).
    pub attributes: BTreeMap<String, String>,
    /// Read `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES` from the VM's environment.
    pub from_environment: bool,
    /// Read Envoy's node metadata (Istio's pod identity).
    pub from_node_metadata: bool,
}

/// The resource attributes in order of precedence, before the count and length limits.
#[derive(Debug, Default)]
struct Layers {
    attributes: Vec<(String, String)>,
}

// === impl ResourceConfig ===

impl Default for ResourceConfig {
    fn default() -> Self {
        Self {
            service_namespace: None,
            service_version: None,
            service_instance_id: None,
            attributes: BTreeMap::new(),
            from_environment: true,
            from_node_metadata: true,
        }
    }
}

impl ResourceConfig {
    /// Checks keys and values; errors name `resource.<field>`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, value) in [
            ("service_namespace", &self.service_namespace),
            ("service_version", &self.service_version),
            ("service_instance_id", &self.service_instance_id),
        ] {
            if value.as_deref().is_some_and(str::is_empty) {
                return Err(ConfigError::new(
                    format!("resource.{field}"),
                    "must not be empty (leave it out instead)",
                ));
            }
        }
        if self.attributes.len() > MAX_RESOURCE_ATTRIBUTES {
            return Err(ConfigError::new(
                "resource.attributes",
                format!("at most {MAX_RESOURCE_ATTRIBUTES} attributes"),
            ));
        }
        for key in self.attributes.keys() {
            let field = format!("resource.attributes.{key}");
            if key.is_empty() || key.len() > MAX_KEY_LEN || key.bytes().any(|b| b <= b' ') {
                return Err(ConfigError::new(
                    field,
                    format!("a key is 1 to {MAX_KEY_LEN} bytes without whitespace"),
                ));
            }
            if key.starts_with("telemetry.sdk.") {
                return Err(ConfigError::new(
                    field,
                    "telemetry.sdk.* describe the filter",
                ));
            }
            let dedicated = [
                (SERVICE_NAME, "service_name"),
                (SERVICE_NAMESPACE, "resource.service_namespace"),
                (SERVICE_VERSION, "resource.service_version"),
                (SERVICE_INSTANCE_ID, "resource.service_instance_id"),
            ];
            if let Some((_, instead)) = dedicated.iter().find(|(k, _)| k == key) {
                return Err(ConfigError::new(field, format!("set `{instead}` instead")));
            }
        }
        Ok(())
    }

    /// Builds the resource: configuration, environment, node metadata, defaults, under
    /// `limits` (the count limit drops the last ones, counted in `dropped_attributes_count`).
    pub fn build(
        &self,
        service_name: Option<&str>,
        env: &dyn Environment,
        host: &dyn Properties,
        limits: &Limits,
    ) -> Resource {
        let mut layers = Layers::default();
        // 1. Configuration.
        layers.set(SERVICE_NAME, service_name);
        layers.set(SERVICE_NAMESPACE, self.service_namespace.as_deref());
        layers.set(SERVICE_VERSION, self.service_version.as_deref());
        layers.set(SERVICE_INSTANCE_ID, self.service_instance_id.as_deref());
        for (key, value) in &self.attributes {
            layers.set(key, Some(value));
        }
        // 2. Environment.
        if self.from_environment {
            layers.set(
                SERVICE_NAME,
                env.var("OTEL_SERVICE_NAME")
                    .as_deref()
                    .filter(|s| !s.is_empty()),
            );
            let listed = env
                .var("OTEL_RESOURCE_ATTRIBUTES")
                .and_then(|list| parse_resource_attributes(&list));
            let listed = listed.unwrap_or_default();
            for (key, value) in listed
                .iter()
                .filter(|(k, _)| !k.starts_with("telemetry.sdk."))
            {
                layers.set(key, Some(value));
            }
        }
        // 3. Node metadata.
        if self.from_node_metadata {
            node_metadata(host, &mut layers);
        }
        // 4. Defaults.
        layers.set(SERVICE_NAME, Some(UNKNOWN_SERVICE));
        layers.set(TELEMETRY_SDK_NAME, Some(SDK_NAME));
        layers.set(TELEMETRY_SDK_LANGUAGE, Some("rust"));
        layers.set(TELEMETRY_SDK_VERSION, Some(crate::span::VERSION));
        let attributes: Vec<Attribute> = layers
            .attributes
            .into_iter()
            .map(|(key, value)| Attribute {
                key: Cow::Owned(key),
                value: Value::String(value),
            })
            .collect();
        // `service.name` and the SDK attributes are never the ones cut: they go first.
        let (first, rest): (Vec<_>, Vec<_>) = attributes
            .into_iter()
            .partition(|a| a.key == SERVICE_NAME || a.key.starts_with("telemetry.sdk."));
        let encoded = limits.encode(first.iter().chain(&rest));
        Resource {
            attributes: encoded.attributes,
            dropped_attributes_count: encoded.dropped,
            ..Default::default()
        }
    }
}

// === impl Layers ===

impl Layers {
    /// Sets `key` unless an earlier layer did.
    fn set(&mut self, key: &str, value: Option<&str>) {
        if let Some(value) = value
            && !self.attributes.iter().any(|(k, _)| k == key)
        {
            self.attributes.push((key.to_owned(), value.to_owned()));
        }
    }
}

/// `OTEL_RESOURCE_ATTRIBUTES`: `key=value` pairs separated by commas, values percent-decoded.
/// `None` when any pair is malformed (the whole list is then ignored).
pub fn parse_resource_attributes(list: &str) -> Option<Vec<(String, String)>> {
    let mut attributes = Vec::new();
    for pair in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=')?;
        let key = key.trim();
        if key.is_empty() || attributes.len() >= MAX_RESOURCE_ATTRIBUTES {
            return None;
        }
        let value = percent_decode_str(value.trim()).decode_utf8().ok()?;
        attributes.push((key.to_owned(), value.into_owned()));
    }
    Some(attributes)
}

/// Istio's node metadata, mapped as the module documentation says.
fn node_metadata(host: &dyn Properties, layers: &mut Layers) {
    let key = |name: &str| {
        host.property(&["xds", "node", "metadata", name])
            .and_then(|v| String::from_utf8(v).ok())
            .filter(|v| !v.is_empty())
    };
    let map = |name: &str| {
        host.property(&["xds", "node", "metadata", name])
            .and_then(|v| host::decode_pairs(&v, 4 * MAX_RESOURCE_ATTRIBUTES))
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(k, v)| Some((k, String::from_utf8(v).ok()?)))
            .collect::<BTreeMap<String, String>>()
    };
    let annotations = map("ANNOTATIONS");
    let annotated = annotations
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(ANNOTATION_PREFIX)?, v)))
        .filter(|(k, _)| !k.is_empty() && !k.starts_with("telemetry.sdk."))
        .take(MAX_RESOURCE_ATTRIBUTES);
    for (key, value) in annotated {
        layers.set(key, Some(value));
    }
    let labels = map("LABELS");
    let label = |name: &str| labels.get(name).map(String::as_str);
    let namespace = key("NAMESPACE");
    let pod = key("NAME");
    let workload = key("WORKLOAD_NAME");
    layers.set(
        SERVICE_NAME,
        label(CANONICAL_NAME)
            .or(workload.as_deref())
            .or(pod.as_deref()),
    );
    layers.set(SERVICE_NAMESPACE, namespace.as_deref());
    let revision = label(CANONICAL_REVISION).filter(|r| *r != "latest");
    layers.set(
        SERVICE_VERSION,
        revision
            .or(label("app.kubernetes.io/version"))
            .or(label("version")),
    );
    let instance = match (&namespace, &pod) {
        (Some(ns), Some(pod)) => {
            let containers = key("APP_CONTAINERS").unwrap_or_default();
            let mut names = containers.split(',').filter(|c| !c.is_empty());
            Some(match (names.next(), names.next()) {
                (Some(container), None) => format!("{ns}.{pod}.{container}"),
                _ => format!("{ns}.{pod}"),
            })
        }
        _ => host
            .property(&["xds", "node", "id"])
            .and_then(|v| String::from_utf8(v).ok())
            .filter(|id| !id.is_empty()),
    };
    layers.set(SERVICE_INSTANCE_ID, instance.as_deref());
    layers.set(K8S_NAMESPACE_NAME, namespace.as_deref());
    layers.set(K8S_POD_NAME, pod.as_deref());
    layers.set(K8S_NODE_NAME, key("NODE_NAME").as_deref());
    layers.set(K8S_CLUSTER_NAME, key("CLUSTER_ID").as_deref());
    if let Some((attribute, name)) = key("OWNER").as_deref().and_then(owner) {
        layers.set(attribute, Some(name));
    }
}

/// The workload attribute named by an Istio `OWNER`
/// (`kubernetes://apis/apps/v1/namespaces/shop/deployments/web` → `k8s.deployment.name`, `web`).
fn owner(owner: &str) -> Option<(&'static str, &str)> {
    let path = owner.strip_prefix("kubernetes://apis/")?;
    let mut parts = path.rsplit('/');
    let name = parts.next().filter(|n| !n.is_empty())?;
    let attribute = match parts.next()? {
        "deployments" => "k8s.deployment.name",
        "statefulsets" => "k8s.statefulset.name",
        "daemonsets" => "k8s.daemonset.name",
        "replicasets" => "k8s.replicaset.name",
        "jobs" => "k8s.job.name",
        "cronjobs" => "k8s.cronjob.name",
        _ => return None,
    };
    Some((attribute, name))
}

#[cfg(test)]
mod tests;
