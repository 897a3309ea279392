//! The `meshtrace-shim` binary with a spool, killed with SIGKILL while its backend refuses
//! everything, then restarted against a working backend: every acknowledged span is delivered
//! (at least once; the replays whose export had begun are counted as possible duplicates).
//! Then SIGTERM: a graceful exit within the shutdown deadline, the undelivered spans retained
//! in the spool for the next start.

mod fixtures;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use meshtrace_collector_shim::testing::{Reply, Sink, post_protobuf};

use fixtures::*;

const LIMIT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Ports {
    http: u16,
    grpc: u16,
    admin: u16,
}

impl Ports {
    fn http_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.http))
    }
}

fn write_config(path: &Path, ports: &Ports, sink: SocketAddr, spool: &Path) {
    let yaml = format!(
        r#"
otlp_http_addr: 127.0.0.1:{http}
otlp_grpc_addr: 127.0.0.1:{grpc}
admin_addr: 127.0.0.1:{admin}
shutdown_timeout_ms: 500
batch: {{ timeout_ms: 20 }}
exporters:
  - name: backend
    endpoint: http://{sink}/v1/traces
    retry: {{ max_attempts: 100000, initial_backoff_ms: 20, max_backoff_ms: 100, max_elapsed_ms: 3600000 }}
spool:
  dir: {spool}
  fsync: never
"#,
        http = ports.http,
        grpc = ports.grpc,
        admin = ports.admin,
        spool = spool.display()
    );
    std::fs::write(path, yaml).unwrap();
}

fn start(config: &Path, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_meshtrace-shim"))
        .arg("--config")
        .arg(config)
        .args(["--log-format", "text"])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn wait_until<F, Fut>(what: &str, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !probe().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn metrics(admin: u16) -> Option<String> {
    let response = client()
        .get(format!("http://127.0.0.1:{admin}/metrics"))
        .send()
        .await
        .ok()?;
    response.text().await.ok()
}

async fn metric(admin: u16, series: &str) -> Option<u64> {
    metric_value(&metrics(admin).await?, series)
}

#[tokio::test]
async fn acknowledged_spans_survive_kill_9_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("spool");
    let config = dir.path().join("shim.yaml");
    let ports = Ports {
        http: free_port(),
        grpc: free_port(),
        admin: free_port(),
    };

    // Phase 1: the backend refuses everything; accept 9 spans, then SIGKILL.
    let down = Sink::new(vec![], Reply::Status(503));
    write_config(&config, &ports, down.serve_http().await, &spool);
    let mut shim = start(&config, &dir.path().join("run1.log"));
    wait_until("the shim to serve", || async {
        metrics(ports.admin).await.is_some()
    })
    .await;
    let sent: Vec<_> = [2u8, 3, 4]
        .iter()
        .enumerate()
        .map(|(i, spans)| request("checkout", &[i as u8 + 1; 16], *spans))
        .collect();
    for request in &sent {
        assert_eq!(post_protobuf(ports.http_addr(), request).await, 200);
    }
    wait_until("export attempts to begin", || async {
        down.received().len() >= 2
    })
    .await;
    shim.kill().unwrap(); // SIGKILL: no shutdown code runs.
    shim.wait().unwrap();

    // Phase 2: restart against a working backend; the spool is replayed.
    let up = Sink::new(vec![], Reply::Status(200));
    write_config(&config, &ports, up.serve_http().await, &spool);
    let shim = start(&config, &dir.path().join("run2.log"));
    wait_until("the replay to be delivered", || async {
        metric(
            ports.admin,
            "meshtrace_shim_exported_spans_total{exporter=\"backend\"}",
        )
        .await
            == Some(9)
    })
    .await;
    let text = metrics(ports.admin).await.unwrap();
    assert_eq!(
        metric_value(&text, "meshtrace_shim_spool_replayed_spans_total"),
        Some(9)
    );
    let redelivered = metric_value(&text, "meshtrace_shim_spool_redelivered_spans_total").unwrap();
    assert!(redelivered > 0, "export had begun before the kill:\n{text}");
    assert_accounting(&text, "backend");
    assert_eq!(
        flatten(&up.requests()),
        flatten(&sent),
        "every acknowledged span, unchanged"
    );

    terminate(shim).await;

    // Phase 3: backend down again; accept 5 more spans, then SIGTERM: a graceful exit within the
    // 500 ms deadline although nothing can be delivered; the spans stay in the spool.
    write_config(&config, &ports, down.serve_http().await, &spool);
    let shim = start(&config, &dir.path().join("run3.log"));
    wait_until("the shim to serve", || async {
        metrics(ports.admin).await.is_some()
    })
    .await;
    let attempts_before = down.received().len();
    let late = request("late", &[9; 16], 5);
    assert_eq!(post_protobuf(ports.http_addr(), &late).await, 200);
    wait_until("export attempts to begin", || async {
        down.received().len() > attempts_before
    })
    .await;
    assert_eq!(
        metric(ports.admin, "meshtrace_shim_spool_replayed_spans_total").await,
        Some(0),
        "all acknowledged"
    );
    terminate(shim).await;

    // Phase 4: the next start delivers them.
    let up_again = Sink::new(vec![], Reply::Status(200));
    write_config(&config, &ports, up_again.serve_http().await, &spool);
    let shim = start(&config, &dir.path().join("run4.log"));
    wait_until("the retained spans to be delivered", || async {
        metric(
            ports.admin,
            "meshtrace_shim_exported_spans_total{exporter=\"backend\"}",
        )
        .await
            == Some(5)
    })
    .await;
    assert_eq!(
        flatten(&up_again.requests()),
        flatten(std::slice::from_ref(&late))
    );
    terminate(shim).await;
    let segments = std::fs::read_dir(&spool)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".log")
        })
        .count();
    assert_eq!(
        segments, 1,
        "delivered segments are deleted, the active one stays"
    );
}

/// SIGTERM, then the exit status (a graceful shutdown exits 0).
async fn terminate(mut shim: Child) {
    let status = Command::new("kill")
        .args(["-TERM", &shim.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || shim.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "graceful exit: {exit}");
}
