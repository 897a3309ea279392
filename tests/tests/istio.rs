//! The Istio manifests under `istio/` against the code that will read them: every WasmPlugin and
//! TrafficExtension `pluginConfig` goes through the filter's own parser
//! ([`FilterConfig::parse`]) exactly as Istio hands it over, and the shim's ConfigMap and
//! Deployment environment go through the shim's own flag parser. Schema checks of the same
//! files are in `istio/tests` (Python).
//!
//! Istio turns `pluginConfig` (a `google.protobuf.Struct`) into JSON with protojson and passes
//! it as the plugin configuration, a `StringValue` (istio/istio `pilot/pkg/model/extensions.go`,
//! `protomarshal.ToJSON`). A Struct holds every number as a double, and protojson prints whole
//! doubles below 1e21 without a fraction, so YAML `1000` and `1000.0` both arrive as `1000`.

use clap::CommandFactory as _;
use meshtrace_collector_shim::config::env as otel;
use meshtrace_collector_shim::config::{self as shim, Cli};
use meshtrace_collector_shim::store::MAX_PENDING_SPANS;
use meshtrace_filter::config::{ConfigError, FilterConfig};
use meshtrace_tests::repo_root;
use serde::Deserialize as _;
use serde_json::{Map, Number, Value as Json};
use serde_yaml_ng::Value as Yaml;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

const MIB: u64 = 1024 * 1024;

/// One YAML document of a manifest file.
struct Doc {
    file: PathBuf,
    value: Yaml,
}

impl Doc {
    fn kind(&self) -> &str {
        self.value["kind"].as_str().unwrap_or_default()
    }

    fn id(&self) -> String {
        let name = self.value["metadata"]["name"].as_str().unwrap_or_default();
        format!("{} {}/{name}", self.file.display(), self.kind())
    }

    /// The `pluginConfig` of a WasmPlugin (`spec`) or TrafficExtension (`spec.wasm`).
    fn plugin_config(&self) -> Option<&Yaml> {
        match self.kind() {
            "WasmPlugin" => self.value["spec"].get("pluginConfig"),
            "TrafficExtension" => self.value["spec"]["wasm"].get("pluginConfig"),
            _ => None,
        }
    }
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() && path.file_name().is_some_and(|name| name != "tests") {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "yaml") {
            out.push(path);
        }
    }
}

/// Every document of every manifest under `istio/`, examples included.
fn manifests() -> Vec<Doc> {
    let root = repo_root();
    let mut files = Vec::new();
    yaml_files(&root.join("istio"), &mut files);
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = Yaml::deserialize(document).unwrap();
            if !value.is_null() {
                let file = file.strip_prefix(&root).unwrap().to_path_buf();
                docs.push(Doc { file, value });
            }
        }
    }
    docs
}

fn one<'a>(docs: &'a [Doc], kind: &str, file: &str) -> &'a Doc {
    let found: Vec<&Doc> = docs
        .iter()
        .filter(|doc| doc.kind() == kind && doc.file == Path::new(file))
        .collect();
    assert_eq!(found.len(), 1, "one {kind} in {file}");
    found[0]
}

// === pluginConfig, the way Istio delivers it ===

/// `value` as the JSON Istio gives the filter: through a Struct (numbers are doubles) and
/// protojson. An empty Struct means no configuration at all.
fn istio_plugin_configuration(value: &Yaml) -> Option<Vec<u8>> {
    let json = struct_json(value);
    if json.as_object().is_some_and(Map::is_empty) {
        return None;
    }
    Some(serde_json::to_vec(&json).unwrap())
}

fn struct_json(value: &Yaml) -> Json {
    match value {
        Yaml::Null => Json::Null,
        Yaml::Bool(b) => Json::Bool(*b),
        Yaml::Number(n) => protojson_number(n.as_f64().unwrap_or(f64::NAN)),
        Yaml::String(s) => Json::String(s.clone()),
        Yaml::Sequence(items) => Json::Array(items.iter().map(struct_json).collect()),
        Yaml::Mapping(map) => Json::Object(
            map.iter()
                .map(|(key, value)| (yaml_key(key), struct_json(value)))
                .collect(),
        ),
        Yaml::Tagged(tagged) => struct_json(&tagged.value),
    }
}

/// A Struct number as protojson prints it: whole values below 1e21 without a fraction,
/// non-finite ones as strings.
fn protojson_number(value: f64) -> Json {
    if !value.is_finite() {
        let text = if value.is_nan() {
            "NaN"
        } else if value > 0.0 {
            "Infinity"
        } else {
            "-Infinity"
        };
        return Json::String(text.to_owned());
    }
    if value.fract() == 0.0 && value.abs() < 1e21 {
        #[allow(clippy::cast_possible_truncation)] // whole and below 1e21: fits an i128
        let whole = value as i128;
        if let Ok(n) = i64::try_from(whole) {
            return Json::Number(n.into());
        }
    }
    Number::from_f64(value).map_or(Json::Null, Json::Number)
}

/// Mapping keys as Kubernetes' YAML-to-JSON conversion makes them: strings.
fn yaml_key(key: &Yaml) -> String {
    match key {
        Yaml::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other).unwrap().trim().to_owned(),
    }
}

fn parse_as_istio(config: &Yaml) -> Result<FilterConfig, ConfigError> {
    FilterConfig::parse(istio_plugin_configuration(config).as_deref())
}

#[test]
fn every_plugin_config_is_accepted_by_the_filter() {
    let docs = manifests();
    let mut checked = 0;
    for doc in &docs {
        let Some(config) = doc.plugin_config() else {
            assert!(
                !matches!(doc.kind(), "WasmPlugin" | "TrafficExtension"),
                "{}: no pluginConfig, so the filter would export to a cluster Istio does not have",
                doc.id()
            );
            continue;
        };
        let parsed = parse_as_istio(config).unwrap_or_else(|e| panic!("{}: {e}", doc.id()));
        assert!(
            parsed.exporter.cluster.starts_with("outbound|"),
            "{}: {} is not an Istio cluster name",
            doc.id(),
            parsed.exporter.cluster
        );
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} plugin configurations found");
}

#[test]
fn a_wrong_field_fails_naming_the_field() {
    let docs = manifests();
    let base = one(&docs, "WasmPlugin", "istio/wasmplugin.yaml")
        .plugin_config()
        .unwrap();
    #[rustfmt::skip]
    let cases: [(&str, &str, &str); 6] = [
        ("exporter", "timout_ms: 500", "exporter.timout_ms"),
        ("exporter", "timeout_ms: 1s", "exporter.timeout_ms"),
        ("exporter", "max_batch_spans: 512.5", "exporter.max_batch_spans"),
        ("exporter", "max_batch_spans: 1e6", "exporter.max_batch_spans"),
        ("exporter", "cluster: ''", "exporter.cluster"),
        ("", "servce_name: checkout", "servce_name"),
    ];
    for (section, patch, field) in cases {
        let mut config = base.clone();
        let patch: Yaml = serde_yaml_ng::from_str(patch).unwrap();
        let target = if section.is_empty() {
            &mut config
        } else {
            &mut config[section]
        };
        for (key, value) in patch.as_mapping().unwrap() {
            target
                .as_mapping_mut()
                .unwrap()
                .insert(key.clone(), value.clone());
        }
        let error = parse_as_istio(&config).expect_err(&format!("{patch:?} is accepted"));
        assert_eq!(error.field, field, "{error}");
        assert!(error.to_string().contains(field), "{error}");
    }
}

#[test]
fn numbers_arrive_as_istio_prints_them() {
    let yaml: Yaml =
        serde_yaml_ng::from_str("{a: 1000, b: 1000.0, c: 0.5, d: -3, e: 1e21, f: .nan, g: x}")
            .unwrap();
    let json = String::from_utf8(istio_plugin_configuration(&yaml).unwrap()).unwrap();
    assert_eq!(
        json,
        r#"{"a":1000,"b":1000,"c":0.5,"d":-3,"e":1e+21,"f":"NaN","g":"x"}"#
    );
    assert_eq!(
        istio_plugin_configuration(&serde_yaml_ng::from_str("{}").unwrap()),
        None
    );
}

// === The shim's environment, through the shim's own flag parser ===

/// The environment the shim container gets: the ConfigMap (`envFrom`) and literal `env`
/// entries. Entries from Secrets are returned by name only, with no value.
fn shim_environment(docs: &[Doc]) -> (BTreeMap<String, String>, Vec<String>) {
    let deployment = one(docs, "Deployment", "istio/shim-deployment.yaml");
    let configmap = one(docs, "ConfigMap", "istio/shim-configmap.yaml");
    let container = &deployment.value["spec"]["template"]["spec"]["containers"][0];
    let mut env = BTreeMap::new();
    let mut from_secrets = Vec::new();
    for source in container["envFrom"].as_sequence().unwrap() {
        assert_eq!(
            source["configMapRef"]["name"],
            configmap.value["metadata"]["name"]
        );
        for (key, value) in configmap.value["data"].as_mapping().unwrap() {
            env.insert(yaml_key(key), value.as_str().unwrap().to_owned());
        }
    }
    for entry in container["env"].as_sequence().into_iter().flatten() {
        let name = entry["name"].as_str().unwrap().to_owned();
        match entry.get("value") {
            Some(value) => {
                env.insert(name, value.as_str().unwrap().to_owned());
            }
            None => from_secrets.push(name),
        }
    }
    (env, from_secrets)
}

/// The variables the shim reads besides its flags' `MESHTRACE_SHIM_*` forms.
const OTHER_SHIM_VARIABLES: [&str; 13] = [
    otel::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    otel::OTEL_EXPORTER_OTLP_ENDPOINT,
    otel::OTEL_EXPORTER_OTLP_TRACES_HEADERS,
    otel::OTEL_EXPORTER_OTLP_HEADERS,
    otel::OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
    otel::OTEL_EXPORTER_OTLP_TIMEOUT,
    otel::OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    otel::OTEL_EXPORTER_OTLP_PROTOCOL,
    otel::OTEL_EXPORTER_OTLP_TRACES_COMPRESSION,
    otel::OTEL_EXPORTER_OTLP_COMPRESSION,
    otel::OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE,
    otel::OTEL_EXPORTER_OTLP_CERTIFICATE,
    "RUST_LOG",
];

/// Parses `env` the way `meshtrace-shim` does: each `MESHTRACE_SHIM_*` variable becomes the
/// flag clap reads it for, the `OTEL_EXPORTER_OTLP_*` ones go to the exporter. A variable the
/// shim does not read is an error (it would be silently ignored in the pod).
fn shim_config(env: &BTreeMap<String, String>) -> Result<shim::ShimConfig, String> {
    let command = Cli::command();
    let mut args = vec!["meshtrace-shim".to_owned()];
    let mut otel = BTreeMap::new();
    for (name, value) in env {
        let flag = command
            .get_arguments()
            .find(|arg| arg.get_env().is_some_and(|env| env == name.as_str()))
            .and_then(|arg| arg.get_long());
        match flag {
            Some(long) => args.push(format!("--{long}={value}")),
            None if name == "RUST_LOG" => {
                tracing_subscriber::EnvFilter::try_new(value)
                    .map_err(|e| format!("RUST_LOG: {e}"))?;
            }
            None if OTHER_SHIM_VARIABLES.contains(&name.as_str()) => {
                otel.insert(name.clone(), value.clone());
            }
            None => return Err(format!("{name}: the shim reads no such variable")),
        }
    }
    let cli = <Cli as clap::Parser>::try_parse_from(&args).map_err(|e| e.to_string())?;
    cli.to_config(&otel).map_err(|e| e.to_string())
}

#[test]
fn the_shim_accepts_its_configmap_and_listens_on_the_pod_ip() {
    let docs = manifests();
    let (env, from_secrets) = shim_environment(&docs);
    for name in &from_secrets {
        assert!(
            OTHER_SHIM_VARIABLES.contains(&name.as_str()),
            "{name}: not read by the shim"
        );
    }
    let config = shim_config(&env).unwrap();
    let ports: BTreeMap<&str, u64> = one(&docs, "Deployment", "istio/shim-deployment.yaml").value
        ["spec"]["template"]["spec"]["containers"][0]["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["containerPort"].as_u64().unwrap()))
        .collect();
    let pod_ip = |port: u64| SocketAddr::from(([0, 0, 0, 0], u16::try_from(port).unwrap()));
    assert_eq!(config.otlp_http_addr, pod_ip(ports["otlp-http"]));
    assert_eq!(config.otlp_grpc_addr, pod_ip(ports["otlp-grpc"]));
    assert_eq!(config.admin_addr, pod_ip(ports["admin"]));
    assert!(
        !config.exporters.is_empty(),
        "no backend configured: spans would only stay in the trace store"
    );
}

#[test]
fn a_wrong_shim_setting_is_refused() {
    let docs = manifests();
    let (env, _) = shim_environment(&docs);
    #[rustfmt::skip]
    let cases = [
        ("MESHTRACE_SHIM_STORE_MAX_BYTE", "1024", "MESHTRACE_SHIM_STORE_MAX_BYTE"),
        ("MESHTRACE_SHIM_STORE_MAX_SPANS", "lots", "--store-max-spans"),
        ("MESHTRACE_SHIM_STORE_MAX_SPANS", "0", "store.max_spans"),
        ("MESHTRACE_SHIM_ADMIN_ADDR", "0.0.0.0", "--admin-addr"),
        ("OTEL_EXPORTER_OTLP_ENDPIONT", "http://collector:4318", "OTEL_EXPORTER_OTLP_ENDPIONT"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift", "OTEL_EXPORTER_OTLP_PROTOCOL"),
        ("MESHTRACE_SHIM_EXPORT_QUEUE_CAPACITY", "32", "MESHTRACE_SHIM_EXPORT_QUEUE_CAPACITY"),
        ("MESHTRACE_SHIM_QUEUE_MAX_BYTES", "0", "queue.max_bytes"),
        ("RUST_LOG", "info,[", "RUST_LOG"),
    ];
    for (name, value, named) in cases {
        let mut env = env.clone();
        env.insert(name.to_owned(), value.to_owned());
        let error = shim_config(&env).expect_err(&format!("{name}={value} is accepted"));
        assert!(error.contains(named), "{name}={value}: {error}");
    }
}

// === Memory ===

/// Heap the shim needs beyond what its settings bound exactly (docs/istio.md, "Sizing"),
/// measured with `scripts/shim_memory.py` and `make bench-shim` (docs/shim.md): about 10 MiB
/// idle; a full in-memory trace store 2.3 to 3.8 times the bytes it charges, 1.4 to 2.4 KiB per
/// span of ten attributes (earlier in-memory store: up to 5 times, 2.8 KiB); a decoded span
/// about 2.1 KiB, 2 to 3 times its wire size. Rounded up here.
const IDLE_HEAP: u64 = 16 * MIB;
const STORE_HEAP_PER_CHARGED_BYTE: u64 = 5;
const STORE_HEAP_PER_SPAN: u64 = 3 * 1024;
const DECODED_SPAN: u64 = 3 * 1024;
/// Decoded requests take this many times their wire size.
const DECODED_PER_WIRE_BYTE: u64 = 3;
/// OTLP listeners (HTTP and gRPC), each decoding up to `max_concurrent_requests` at once.
const LISTENERS: u64 = 2;

fn quantity_bytes(text: &str) -> u64 {
    let units = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("K", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
    ];
    for (suffix, factor) in units {
        if let Some(number) = text.strip_suffix(suffix) {
            return number.parse::<u64>().unwrap() * factor;
        }
    }
    text.parse().unwrap()
}

#[test]
fn the_memory_limit_covers_the_shim_budget() {
    let docs = manifests();
    let config = shim_config(&shim_environment(&docs).0).unwrap();
    let resources = &one(&docs, "Deployment", "istio/shim-deployment.yaml").value["spec"]["template"]
        ["spec"]["containers"][0]["resources"];
    let limit = quantity_bytes(resources["limits"]["memory"].as_str().unwrap());
    let request = quantity_bytes(resources["requests"]["memory"].as_str().unwrap());
    let bytes = |n: usize| u64::try_from(n).unwrap();

    // The one budget: queued, batched, in-flight and retrying spans, charged decoded.
    let budget = bytes(config.queue.max_bytes);
    // Each request being received: its body, the inflated copy and the decoded request.
    let body = bytes(config.max_request_body_bytes);
    let receiving =
        LISTENERS * bytes(config.max_concurrent_requests) * body * (2 + DECODED_PER_WIRE_BYTE);
    // Each export attempt encodes its batch (and compresses it).
    let exporting: u64 = config
        .exporters
        .iter()
        .map(|e| bytes(e.max_in_flight) * bytes(config.batch.max_bytes) * 2)
        .sum();
    // The trace store, when it keeps spans: the database, the spans queued for it (decoded) and
    // the copy of each request being received.
    let store_kept = config.exporters.is_empty() || config.store.while_forwarding;
    let (store_heap, store_queue) = if store_kept {
        let heap = (bytes(config.store.max_bytes) * STORE_HEAP_PER_CHARGED_BYTE)
            .min(bytes(config.store.max_spans) * STORE_HEAP_PER_SPAN);
        let copies = LISTENERS * bytes(config.max_concurrent_requests) * body;
        (
            heap,
            MAX_PENDING_SPANS * DECODED_SPAN + copies * DECODED_PER_WIRE_BYTE,
        )
    } else {
        (0, 0)
    };
    let worst = IDLE_HEAP + budget + receiving + exporting + store_heap + store_queue;
    assert!(
        worst <= limit,
        "worst case {} MiB (budget {}, receiving {}, exporting {}, store {} + its queue {}) \
         exceeds the limit {} MiB",
        worst / MIB,
        budget / MIB,
        receiving / MIB,
        exporting / MIB,
        store_heap / MIB,
        store_queue / MIB,
        limit / MIB
    );
    // The steady state (a full store if kept, an empty queue) fits the request, so the
    // scheduler places the pod where it can live.
    let steady = IDLE_HEAP + store_heap;
    assert!(
        steady <= request,
        "the steady state needs {} MiB",
        steady / MIB
    );
}
