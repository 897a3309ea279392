//! Helpers for the collector shim's end-to-end tests with real clients (the OpenTelemetry
//! Python SDK exporters from `.venv`, Envoy's OpenTelemetry tracer) and a real backend
//! (Arize Phoenix, via the scripts in `shared/anchors/backend/`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use meshtrace_collector_shim::Metrics;
use meshtrace_collector_shim::config::{BatchConfig, ExportConfig, ShimConfig};
use meshtrace_collector_shim::testing::metric_value;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use crate::{eventually, repo_root};

/// The project virtualenv's Python, with the pinned OpenTelemetry SDK exporters (`make pydeps`).
pub fn venv_python() -> PathBuf {
    let path = repo_root().join(".venv/bin/python");
    let ok = path.is_file()
        && Command::new(&path)
            .args(["-c", "import opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http"])
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} lacks the OpenTelemetry SDK exporters: run `make pydeps` \
         (pip install -r tests/requirements.txt into .venv)",
        path.display()
    );
    path
}

/// A shim config on ephemeral ports forwarding to `exporters`, with a short batch timeout.
pub fn shim_config(exporters: Vec<ExportConfig>) -> ShimConfig {
    ShimConfig {
        otlp_http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        otlp_grpc_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        admin_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        batch: BatchConfig {
            timeout_ms: 20,
            ..BatchConfig::default()
        },
        exporters,
        ..ShimConfig::default()
    }
}

/// What `send_otlp.py` reported, and the request it says it sent (the SDK's own encoding).
#[derive(Debug)]
pub struct Sent {
    /// Number of spans.
    pub spans: u64,
    /// Hex trace ids.
    pub trace_ids: Vec<String>,
    /// The spans as the SDK encoded them.
    pub request: ExportTraceServiceRequest,
}

/// Runs `collector-shim/tests/clients/send_otlp.py` (the real SDK exporter) against `endpoint`.
pub async fn send_with_python_sdk(
    endpoint: &str,
    protocol: &str,
    compression: &str,
) -> anyhow::Result<Sent> {
    let python = venv_python();
    let script = repo_root().join("collector-shim/tests/clients/send_otlp.py");
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("sent.pb");
    let mut command = Command::new(python);
    command
        .arg(&script)
        .args([
            "--endpoint",
            endpoint,
            "--protocol",
            protocol,
            "--compression",
            compression,
        ])
        .arg("--out")
        .arg(&out)
        // The SDK must not pick up a proxy or any OTEL_* of the environment running the tests.
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_HEADERS")
        .env("NO_PROXY", "127.0.0.1")
        .env("no_proxy", "127.0.0.1");
    let output = tokio::task::spawn_blocking(move || command.output()).await??;
    if !output.status.success() {
        bail!(
            "send_otlp.py failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .with_context(|| String::from_utf8_lossy(&output.stdout).into_owned())?;
    let request = ExportTraceServiceRequest::decode(std::fs::read(&out)?.as_slice())?;
    Ok(Sent {
        spans: report["spans"]
            .as_u64()
            .ok_or_else(|| anyhow!("no span count: {report}"))?,
        trace_ids: report["trace_ids"]
            .as_array()
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| id.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        request,
    })
}

/// Waits until `series` on the shim's metrics reaches at least `expected`.
pub async fn wait_for_metric(
    metrics: &Metrics,
    series: &str,
    expected: u64,
    limit: Duration,
) -> anyhow::Result<String> {
    eventually(limit, || async {
        let text = metrics.encode().ok()?;
        (metric_value(&text, series)? >= expected).then_some(text)
    })
    .await
    .ok_or_else(|| {
        anyhow!(
            "{series} did not reach {expected} within {limit:?}:\n{}",
            metrics.encode().unwrap_or_default()
        )
    })
}

/// The backend scripts of `shared/anchors/backend/`: `$MESHTRACE_BACKEND_SCRIPTS`, else
/// `../shared/anchors/backend` beside the repository (CI), else `/work/shared/anchors/backend`.
pub fn backend_scripts() -> PathBuf {
    let candidates = [
        std::env::var_os("MESHTRACE_BACKEND_SCRIPTS").map(PathBuf::from),
        repo_root()
            .parent()
            .map(|p| p.join("shared/anchors/backend")),
        Some(PathBuf::from("/work/shared/anchors/backend")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|dir| dir.join("start_backend.sh").is_file())
        .unwrap_or_else(|| {
            panic!(
                "backend scripts not found: set MESHTRACE_BACKEND_SCRIPTS to shared/anchors/backend"
            )
        })
}

/// A free port on 127.0.0.1 (bound, then released).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A real Arize Phoenix started by `start_backend.sh`; stopped (process group) on drop.
#[derive(Debug)]
pub struct Phoenix {
    /// Base URL of its REST API.
    pub query_url: String,
    /// OTLP/HTTP traces URL.
    pub otlp_http_url: String,
    /// OTLP/gRPC endpoint.
    pub otlp_grpc_url: String,
    scripts: PathBuf,
    data: tempfile::TempDir,
}

impl Phoenix {
    /// Installs (first time, into `~/.cache/meshtrace-backend`) and starts Phoenix with
    /// `max_spans_queue` as `PHOENIX_MAX_SPANS_QUEUE_SIZE`.
    pub async fn start(max_spans_queue: u32) -> anyhow::Result<Self> {
        let scripts = backend_scripts();
        let data = tempfile::tempdir()?;
        let (http, grpc) = (free_port()?, free_port()?);
        let mut command = Command::new("bash");
        command
            .arg(scripts.join("start_backend.sh"))
            .args(["phoenix"])
            .arg(data.path())
            .args([http.to_string(), grpc.to_string()])
            .env("PHOENIX_MAX_SPANS_QUEUE_SIZE", max_spans_queue.to_string());
        let output = tokio::task::spawn_blocking(move || command.output()).await??;
        let phoenix = Self {
            query_url: format!("http://127.0.0.1:{http}"),
            otlp_http_url: format!("http://127.0.0.1:{http}/v1/traces"),
            otlp_grpc_url: format!("http://127.0.0.1:{grpc}"),
            scripts,
            data,
        };
        if !output.status.success() {
            bail!(
                "start_backend.sh phoenix failed ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(phoenix)
    }

    /// Spans of `trace_id` as `query_spans.py` normalises them, once at least `expect` are
    /// visible (Phoenix stores asynchronously).
    pub async fn query(
        &self,
        trace_id: &str,
        expect: usize,
        timeout: Duration,
    ) -> anyhow::Result<serde_json::Value> {
        let mut command = Command::new("python3");
        command
            .arg(self.scripts.join("query_spans.py"))
            .args([
                "--backend",
                "phoenix",
                "--url",
                &self.query_url,
                "--trace-id",
                trace_id,
            ])
            .args([
                "--expect",
                &expect.to_string(),
                "--timeout",
                &timeout.as_secs().to_string(),
            ]);
        let output = tokio::task::spawn_blocking(move || command.output()).await??;
        let json: serde_json::Value =
            serde_json::from_slice(&output.stdout).with_context(|| {
                format!(
                    "query_spans.py: {}",
                    String::from_utf8_lossy(&output.stderr)
                )
            })?;
        if !output.status.success() {
            bail!(
                "only {} of {expect} spans of {trace_id} visible in Phoenix: {json}",
                json["count"]
            );
        }
        Ok(json)
    }

    fn data_dir(&self) -> &Path {
        self.data.path()
    }
}

impl Drop for Phoenix {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(self.scripts.join("stop_backend.sh"))
            .arg(self.data_dir())
            .output();
    }
}
