//! The demo stack of `make run`, on ephemeral ports: demo upstream and collector shim in this
//! process (the same library code their binaries run), Envoy with the filter as a child process.

use anyhow::{Context, anyhow};
use meshtrace_collector_shim::{Shim, ShimConfig};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tempfile::TempDir;

use crate::envoy::{
    Envoy, EnvoyExtras, StackAddrs, local_config_with, with_access_log, with_ecds,
    with_http_filters, write_ecds,
};
use crate::eventually;
use crate::injected::{Written, contexts};
use crate::w3c::Traceparent;

/// Plugin configuration of test stacks: `envoy/envoy.yaml`'s, with a 100 ms flush so spans
/// reach the shim quickly.
pub const TEST_PLUGIN_CONFIG: &str =
    r#"{"service_name":"meshtrace-test","exporter":{"flush_interval_ms":100,"timeout_ms":1000}}"#;

/// How long a span may take from the request to the shim's store (normally ~100 ms).
pub const SPAN_ARRIVAL_LIMIT: Duration = Duration::from_secs(10);
/// How long an access-log line may take to reach its file (Envoy flushes every 100 ms in tests).
pub const ACCESS_LOG_LIMIT: Duration = Duration::from_secs(10);

/// What to start.
#[derive(Clone, Debug)]
pub struct StackOptions {
    /// Start the shim; when false, the filter's shim cluster points at a closed port.
    pub shim_running: bool,
    /// Plugin configuration JSON.
    pub plugin_config: String,
    /// When the shim is not running: where the shim cluster points (a scripted sink, a
    /// [`resetting_sink`], or a port where the shim starts later); a closed port when `None`.
    pub exporter_addr: Option<SocketAddr>,
    /// Deliver the filter by ECDS from a file in this directory, so that
    /// [`Stack::reconfigure`] can change its configuration while Envoy runs.
    pub ecds_dir: Option<PathBuf>,
    /// HTTP filters (Envoy YAML) to run right after the Wasm filter.
    pub http_filters: Vec<serde_yaml_ng::Value>,
    /// The router's upstream HTTP filters (the codec filter is added after them).
    pub upstream_http_filters: Vec<serde_yaml_ng::Value>,
    /// Bootstrap node and VM environment for Envoy.
    pub envoy: EnvoyExtras,
    /// The access log's format (an Envoy `SubstitutionFormatString`) instead of
    /// `envoy/envoy.yaml`'s.
    pub access_log_format: Option<serde_yaml_ng::Value>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            shim_running: true,
            plugin_config: TEST_PLUGIN_CONFIG.to_owned(),
            exporter_addr: None,
            ecds_dir: None,
            http_filters: Vec::new(),
            upstream_http_filters: Vec::new(),
            envoy: EnvoyExtras::default(),
            access_log_format: None,
        }
    }
}

/// A running stack; everything stops when it is dropped.
#[derive(Debug)]
pub struct Stack {
    /// Envoy with the filter.
    pub envoy: Envoy,
    /// The shim, when running.
    pub shim: Option<Shim>,
    /// The demo upstream.
    pub upstream: SocketAddr,
    client: reqwest::Client,
    /// The ECDS file and the filter's `Wasm` config, when the filter comes by ECDS.
    ecds: Option<(PathBuf, serde_yaml_ng::Value)>,
    /// Envoy's access log: `envoy/envoy.yaml`'s JSON lines, written here instead of stdout.
    access_log: PathBuf,
    _logs: TempDir,
}

/// The demo upstream's answer, as the client got it through Envoy.
#[derive(Clone, Debug)]
pub struct Echo {
    /// HTTP status Envoy returned.
    pub status: u16,
    /// The upstream's JSON echo (`method`, `path`, `headers`), or `Null` if it was not JSON.
    pub body: Value,
    /// The response headers the client got from Envoy.
    pub response_headers: HeaderMap,
}

impl Stack {
    /// Starts upstream, shim (if asked) and Envoy, all on 127.0.0.1 ephemeral ports.
    pub async fn start(options: StackOptions) -> anyhow::Result<Self> {
        let upstream =
            meshtrace_demo_upstream::start(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let (shim, shim_addr) = if options.shim_running {
            let config = ShimConfig {
                otlp_http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                otlp_grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                ..ShimConfig::default()
            };
            let shim = Shim::start(config).await?;
            let addr = shim.otlp_http_addr();
            (Some(shim), addr)
        } else {
            let addr = match options.exporter_addr {
                Some(addr) => addr,
                None => closed_port()?,
            };
            (None, addr)
        };
        let addrs = StackAddrs {
            upstream,
            shim: shim_addr,
        };
        let logs = tempfile::tempdir()?;
        let access_log = logs.path().join("access.log");
        let config = local_config_with(&addrs, Some(&options.plugin_config), &options.envoy)?;
        let config = with_access_log(&config, &access_log, options.access_log_format.as_ref())?;
        let mut config = with_http_filters(
            &config,
            &options.http_filters,
            &options.upstream_http_filters,
        )?;
        let ecds = match &options.ecds_dir {
            Some(dir) => {
                let path = dir.join("meshtrace-filter.yaml");
                let (with, wasm) = with_ecds(&config, &path)?;
                write_ecds(&path, &wasm, &options.plugin_config)?;
                config = with;
                Some((path, wasm))
            }
            None => None,
        };
        let envoy = Envoy::start(&config).await?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            envoy,
            shim,
            upstream,
            client,
            ecds,
            access_log,
            _logs: logs,
        })
    }

    /// Gives the filter (delivered by ECDS) another configuration, as a control plane would.
    pub fn reconfigure(&self, plugin_config: &str) -> anyhow::Result<()> {
        let (path, wasm) = self
            .ecds
            .as_ref()
            .ok_or_else(|| anyhow!("the stack was started without ecds_dir"))?;
        write_ecds(path, wasm, plugin_config)
    }

    /// The complete access-log lines Envoy wrote so far, each parsed as JSON (a line that is
    /// not JSON is an error: the format is JSON).
    pub fn access_log(&self) -> anyhow::Result<Vec<Value>> {
        let text = std::fs::read_to_string(&self.access_log).unwrap_or_default();
        // A line still being written has no newline yet.
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .with_context(|| format!("access-log line is not JSON: {line:?}"))
            })
            .collect()
    }

    /// Waits until the access log holds at least `lines` lines and returns them all.
    pub async fn wait_for_access_log(&self, lines: usize) -> anyhow::Result<Vec<Value>> {
        let found = eventually(ACCESS_LOG_LIMIT, || async {
            let parsed = self.access_log();
            match &parsed {
                Ok(all) if all.len() < lines => None,
                _ => Some(parsed),
            }
        })
        .await;
        match found {
            Some(parsed) => parsed,
            None => Err(anyhow!(
                "fewer than {lines} access-log lines after {ACCESS_LOG_LIMIT:?}: {:?}",
                self.access_log()
            )),
        }
    }

    /// Sends `GET path` through Envoy with `headers` (raw bytes, so non-UTF-8 values go out as
    /// they are) and returns the upstream's echo.
    pub async fn get(&self, path: &str, headers: &[(&str, &[u8])]) -> anyhow::Result<Echo> {
        self.send("GET", path, headers, Vec::new()).await
    }

    /// Sends `method path` with `headers` and `body` through Envoy and returns the upstream's
    /// echo.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &[u8])],
        body: Vec<u8>,
    ) -> anyhow::Result<Echo> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes())?,
                HeaderValue::from_bytes(value)?,
            );
        }
        let url = format!("http://{}{path}", self.envoy.listener);
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let response = self
            .client
            .request(method, url)
            .headers(map)
            .body(body)
            .send()
            .await?;
        Echo::read(response).await
    }

    /// Sends `count` requests `GET {prefix}/{i}` through Envoy, `parallel` at a time, and
    /// returns every answer (in no particular order).
    pub async fn load(
        &self,
        prefix: &str,
        count: usize,
        parallel: usize,
    ) -> anyhow::Result<Vec<Echo>> {
        let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..parallel.max(1) {
            let (client, next) = (self.client.clone(), next.clone());
            let base = format!("http://{}{prefix}", self.envoy.listener);
            workers.spawn(async move {
                let mut echoes = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= count {
                        return anyhow::Ok(echoes);
                    }
                    let response = client.get(format!("{base}/{i}")).send().await?;
                    echoes.push(Echo::read(response).await?);
                }
            });
        }
        let mut all = Vec::with_capacity(count);
        while let Some(done) = workers.join_next().await {
            all.extend(done??);
        }
        Ok(all)
    }

    /// Polls the shim's `/api/traces/{trace_id}` until the span `span_id` is there, and returns
    /// that span's OTLP/JSON object together with its resource.
    pub async fn wait_for_span(&self, trace_id: &str, span_id: &str) -> anyhow::Result<StoredSpan> {
        let shim = self
            .shim
            .as_ref()
            .ok_or_else(|| anyhow!("the shim is not running"))?;
        let url = format!("http://{}/api/traces/{trace_id}", shim.admin_addr());
        let found = eventually(SPAN_ARRIVAL_LIMIT, || {
            let request = self.client.get(&url);
            async move {
                let trace: Value = request.send().await.ok()?.json().await.ok()?;
                StoredSpan::find(&trace, span_id)
            }
        })
        .await;
        found.with_context(|| format!("span {span_id} of trace {trace_id} never reached the shim"))
    }
}

/// One span as the shim returns it (OTLP/JSON), with its resource.
#[derive(Clone, Debug)]
pub struct StoredSpan {
    /// The `span` object.
    pub span: Value,
    /// The `resource` object of its `resourceSpans`.
    pub resource: Value,
    /// Its `scopeSpans` without the spans: `scope` (name, version) and `schemaUrl`.
    pub scope: Value,
}

impl StoredSpan {
    fn find(trace: &Value, span_id: &str) -> Option<Self> {
        for resource_spans in trace["resourceSpans"].as_array()? {
            for scope_spans in resource_spans["scopeSpans"].as_array()? {
                for span in scope_spans["spans"].as_array()? {
                    if span["spanId"] == span_id {
                        let mut scope = scope_spans.clone();
                        if let Some(map) = scope.as_object_mut() {
                            map.remove("spans");
                        }
                        return Some(Self {
                            span: span.clone(),
                            resource: resource_spans["resource"].clone(),
                            scope,
                        });
                    }
                }
            }
        }
        None
    }

    /// A span attribute's value object (`{"stringValue": …}`, `{"intValue": …}`).
    pub fn attribute(&self, key: &str) -> Option<&Value> {
        attribute(&self.span, key)
    }

    /// A resource attribute's value object.
    pub fn resource_attribute(&self, key: &str) -> Option<&Value> {
        attribute(&self.resource, key)
    }
}

fn attribute<'a>(holder: &'a Value, key: &str) -> Option<&'a Value> {
    holder["attributes"]
        .as_array()?
        .iter()
        .find(|kv| kv["key"] == key)
        .map(|kv| &kv["value"])
}

impl Echo {
    async fn read(response: reqwest::Response) -> anyhow::Result<Self> {
        let status = response.status().as_u16();
        let response_headers = response.headers().clone();
        let body = serde_json::from_slice(&response.bytes().await?).unwrap_or(Value::Null);
        Ok(Self {
            status,
            body,
            response_headers,
        })
    }

    /// A header the upstream received (the first one, if repeated).
    pub fn header(&self, name: &str) -> Option<&str> {
        let value = &self.body["headers"][name];
        value.as_str().or_else(|| value[0].as_str())
    }

    /// How many times the upstream received `name`.
    pub fn header_count(&self, name: &str) -> usize {
        match &self.body["headers"][name] {
            Value::Null => 0,
            Value::Array(values) => values.len(),
            _ => 1,
        }
    }

    /// The `traceparent` the upstream received, which must be a well-formed version 00.
    pub fn traceparent(&self) -> anyhow::Result<Traceparent> {
        let value = self
            .header("traceparent")
            .ok_or_else(|| anyhow!("no traceparent upstream: {}", self.body))?;
        Traceparent::parse(value)
            .ok_or_else(|| anyhow!("malformed traceparent upstream: {value:?}"))
    }

    /// Each trace format the upstream received, read by [`crate::injected::contexts`] (never
    /// with the filter's code).
    pub fn spans_received(&self) -> Vec<Written> {
        contexts(|name| self.header(name).map(str::to_owned))
    }
}

/// A listener that reads each request, answers `200` with a `content-length` of 1000 but only
/// 7 bytes of body, then resets the connection (Envoy reports that call-out as a failure with
/// no response at all).
pub async fn resetting_sink() -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = read_request(&stream).await;
                let mut reply = &b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\npartial"[..];
                while !reply.is_empty() && stream.writable().await.is_ok() {
                    match stream.try_write(reply) {
                        Ok(n) => reply = &reply[n..],
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(_) => return,
                    }
                }
                // Dropped with a zero linger: the peer sees a reset, not a clean close.
                let _ = stream.set_zero_linger();
            });
        }
    });
    Ok(addr)
}

/// Reads one HTTP/1.1 request: the head, then `content-length` bytes of body.
async fn read_request(stream: &tokio::net::TcpStream) -> std::io::Result<()> {
    let mut data = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if data.len() >= end + 4 + length {
                return Ok(());
            }
        }
        stream.readable().await?;
        match stream.try_read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
pub fn closed_port() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}
