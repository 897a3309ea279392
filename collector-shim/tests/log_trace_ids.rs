//! The `meshtrace-shim` binary's JSON logs name the trace ids of the batches they report on: at
//! debug level every id of an exported batch, and in the warn line about a dropped batch the
//! first few ids and the count (see `src/trace_ids.rs`).

mod fixtures;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use meshtrace_collector_shim::testing::{Reply, Sink, post_protobuf};
use meshtrace_collector_shim::trace_ids::WARN_TRACE_IDS;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use serde_json::Value;

use fixtures::*;

const LIMIT: Duration = Duration::from_secs(30);
/// Distinct traces in the batch, more than a warn line names.
const TRACES: u8 = 8;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The shim with two exporters, `accepting` (200) and `refusing` (400: dropped, not retried),
/// logging JSON at `rust_log` to `log`.
fn start(dir: &Path, accepting: &str, refusing: &str, rust_log: &str, log: &Path) -> (Child, u16) {
    let http = free_port();
    let config = dir.join("shim.yaml");
    let yaml = format!(
        r#"
otlp_http_addr: 127.0.0.1:{http}
otlp_grpc_addr: 127.0.0.1:{grpc}
admin_addr: 127.0.0.1:{admin}
batch: {{ timeout_ms: 20 }}
exporters:
  - name: accepting
    endpoint: http://{accepting}/v1/traces
  - name: refusing
    endpoint: http://{refusing}/v1/traces
"#,
        grpc = free_port(),
        admin = free_port(),
    );
    std::fs::write(&config, yaml).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_meshtrace-shim"))
        .arg("--config")
        .arg(&config)
        .args(["--log-format", "json"])
        .env("RUST_LOG", rust_log)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (child, http)
}

/// One request holding one span of each of [`TRACES`] traces, ids `01…01` to `08…08`.
fn batch() -> (ExportTraceServiceRequest, Vec<String>) {
    let ids: Vec<[u8; 16]> = (1..=TRACES).map(|n| [n; 16]).collect();
    let mut merged = ExportTraceServiceRequest::default();
    for id in &ids {
        merged
            .resource_spans
            .extend(request("checkout", id, 1).resource_spans);
    }
    (merged, ids.iter().map(hex::encode).collect())
}

/// The log's JSON lines whose message is `message`.
fn lines(log: &Path, message: &str) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["fields"]["message"].as_str() == Some(message))
        .collect()
}

async fn wait_for_line(log: &Path, message: &str, exporter: &str) -> Value {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let found = lines(log, message)
            .into_iter()
            .find(|line| line["fields"]["exporter"] == exporter);
        if let Some(line) = found {
            return line;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {message:?} line for {exporter}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn run(rust_log: &str) -> (Value, Option<Value>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("shim.log");
    let accepting = Sink::new(vec![], Reply::Status(200));
    let refusing = Sink::new(vec![], Reply::Status(400));
    let (shim, http) = start(
        dir.path(),
        &accepting.serve_http().await.to_string(),
        &refusing.serve_http().await.to_string(),
        rust_log,
        &log,
    );
    let shim = KillOnDrop(shim);
    let (request, ids) = batch();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], http));
    let deadline = tokio::time::Instant::now() + LIMIT;
    // The shim is listening once a connection succeeds.
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the shim never listened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(post_protobuf(addr, &request).await, 200);
    let dropped = wait_for_line(
        &log,
        "dropped spans that could not be exported (further drops are logged at most once a \
         minute; see meshtrace_shim_dropped_spans_total)",
        "refusing",
    )
    .await;
    let exported = if rust_log.contains("debug") {
        Some(wait_for_line(&log, "exported spans", "accepting").await)
    } else {
        None
    };
    drop(shim);
    (dropped, exported, ids)
}

/// The shim process, killed (and reaped) however the test ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_dropped_batch_warns_with_its_first_trace_ids_and_their_count() {
    let (dropped, exported, ids) = run("info").await;
    assert_eq!(dropped["level"], "WARN", "{dropped}");
    let fields = &dropped["fields"];
    assert_eq!(fields["traces"], u64::from(TRACES), "{dropped}");
    assert_eq!(fields["spans"], u64::from(TRACES), "{dropped}");
    assert_eq!(
        fields["trace_ids"],
        ids[..WARN_TRACE_IDS].join(","),
        "the first few, in order: {dropped}"
    );
    assert!(exported.is_none());
}

#[tokio::test]
async fn at_debug_an_exported_batch_names_every_trace() {
    let (_, exported, ids) = run("meshtrace_collector_shim=debug").await;
    let exported = exported.unwrap();
    assert_eq!(exported["level"], "DEBUG", "{exported}");
    let fields = &exported["fields"];
    assert_eq!(fields["traces"], u64::from(TRACES), "{exported}");
    assert_eq!(fields["trace_ids"], ids.join(","), "{exported}");
}
