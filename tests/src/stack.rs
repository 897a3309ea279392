//! The demo stack of `make run`, on ephemeral ports: demo upstream and collector shim in this
//! process (the same library code their binaries run), Envoy with the filter as a child process.

use anyhow::{Context, anyhow};
use meshtrace_collector_shim::{Shim, ShimConfig};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

use crate::envoy::{Envoy, EnvoyExtras, StackAddrs, local_config_with};
use crate::eventually;
use crate::w3c::Traceparent;

/// Plugin configuration of test stacks: `envoy/envoy.yaml`'s, with a 100 ms flush so spans
/// reach the shim quickly.
pub const TEST_PLUGIN_CONFIG: &str =
    r#"{"service_name":"meshtrace-test","exporter":{"flush_interval_ms":100,"timeout_ms":1000}}"#;

/// How long a span may take from the request to the shim's store (normally ~100 ms).
pub const SPAN_ARRIVAL_LIMIT: Duration = Duration::from_secs(10);

/// What to start.
#[derive(Clone, Debug)]
pub struct StackOptions {
    /// Start the shim; when false, the filter's shim cluster points at a closed port.
    pub shim_running: bool,
    /// Plugin configuration JSON.
    pub plugin_config: String,
    /// Bootstrap node and VM environment for Envoy.
    pub envoy: EnvoyExtras,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            shim_running: true,
            plugin_config: TEST_PLUGIN_CONFIG.to_owned(),
            envoy: EnvoyExtras::default(),
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
            (None, closed_port()?)
        };
        let addrs = StackAddrs {
            upstream,
            shim: shim_addr,
        };
        let config = local_config_with(&addrs, Some(&options.plugin_config), &options.envoy)?;
        let envoy = Envoy::start(&config).await?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            envoy,
            shim,
            upstream,
            client,
        })
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
}

impl StoredSpan {
    fn find(trace: &Value, span_id: &str) -> Option<Self> {
        for resource_spans in trace["resourceSpans"].as_array()? {
            for scope_spans in resource_spans["scopeSpans"].as_array()? {
                for span in scope_spans["spans"].as_array()? {
                    if span["spanId"] == span_id {
                        return Some(Self {
                            span: span.clone(),
                            resource: resource_spans["resource"].clone(),
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

    /// (header, trace id, span id, sampling field) of each trace format the upstream
    /// received, split by hand (never with the filter's code): `traceparent` flags (`01`),
    /// `b3` state (`1`, `0`, `d`), `x-b3-*` (`d` for `X-B3-Flags: 1`, else `X-B3-Sampled`, `?`
    /// for neither), `uber-trace-id` flags (`03`). Ids are padded to 32 hex digits.
    pub fn spans_received(&self) -> Vec<(&'static str, String, String, String)> {
        let mut out = Vec::new();
        if let Some(tp) = self.header("traceparent") {
            let f: Vec<&str> = tp.split('-').collect();
            out.push((
                "traceparent",
                f[1].to_owned(),
                f[2].to_owned(),
                f[3].to_owned(),
            ));
        }
        if let Some(b3) = self.header("b3") {
            let f: Vec<&str> = b3.split('-').collect();
            out.push(("b3", pad32(f[0]), f[1].to_owned(), f[2].to_owned()));
        }
        if let (Some(t), Some(s)) = (self.header("x-b3-traceid"), self.header("x-b3-spanid")) {
            let state = match (self.header("x-b3-sampled"), self.header("x-b3-flags")) {
                (_, Some("1")) => "d",
                (Some(s), None) => s,
                _ => "?",
            };
            out.push(("x-b3-*", pad32(t), s.to_owned(), state.to_owned()));
        }
        if let Some(uber) = self.header("uber-trace-id") {
            let f: Vec<&str> = uber.split(':').collect();
            out.push((
                "uber-trace-id",
                pad32(f[0]),
                f[1].to_owned(),
                f[3].to_owned(),
            ));
        }
        out
    }
}

fn pad32(id: &str) -> String {
    format!("{id:0>32}")
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
fn closed_port() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}
