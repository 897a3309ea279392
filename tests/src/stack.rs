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
    Envoy, EnvoyExtras, StackAddrs, local_config_with, with_access_log, with_http_filters,
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
    /// HTTP filters (Envoy YAML) to run right after the Wasm filter.
    pub http_filters: Vec<serde_yaml_ng::Value>,
    /// The router's upstream HTTP filters (the codec filter is added after them).
    pub upstream_http_filters: Vec<serde_yaml_ng::Value>,
    /// Bootstrap node and VM environment for Envoy.
    pub envoy: EnvoyExtras,
    /// When the shim is not running: point the shim cluster at a listener that answers each
    /// export with response headers and part of the body, then resets the connection (Envoy
    /// reports that call-out as a failure with no response at all).
    pub reset_exports: bool,
    /// The access log's format (an Envoy `SubstitutionFormatString`) instead of
    /// `envoy/envoy.yaml`'s.
    pub access_log_format: Option<serde_yaml_ng::Value>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            shim_running: true,
            plugin_config: TEST_PLUGIN_CONFIG.to_owned(),
            http_filters: Vec::new(),
            upstream_http_filters: Vec::new(),
            envoy: EnvoyExtras::default(),
            reset_exports: false,
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
        } else if options.reset_exports {
            (None, resetting_sink().await?)
        } else {
            (None, closed_port()?)
        };
        let addrs = StackAddrs {
            upstream,
            shim: shim_addr,
        };
        let logs = tempfile::tempdir()?;
        let access_log = logs.path().join("access.log");
        let config = local_config_with(&addrs, Some(&options.plugin_config), &options.envoy)?;
        let config = with_access_log(&config, &access_log, options.access_log_format.as_ref())?;
        let config = with_http_filters(
            &config,
            &options.http_filters,
            &options.upstream_http_filters,
        )?;
        let envoy = Envoy::start(&config).await?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            envoy,
            shim,
            upstream,
            client,
            access_log,
            _logs: logs,
        })
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
        let status = response.status().as_u16();
        let response_headers = response.headers().clone();
        let body = serde_json::from_slice(&response.bytes().await?).unwrap_or(Value::Null);
        Ok(Echo {
            status,
            body,
            response_headers,
        })
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
/// 7 bytes of body, then resets the connection.
async fn resetting_sink() -> anyhow::Result<SocketAddr> {
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
fn closed_port() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}
