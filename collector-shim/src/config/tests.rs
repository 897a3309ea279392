use std::collections::HashMap;

use clap::Parser;

use super::env::*;
use super::*;

fn env(pairs: &[(&'static str, &'static str)]) -> HashMap<&'static str, &'static str> {
    pairs.iter().copied().collect()
}

type Vars = &'static [(&'static str, &'static str)];

fn fields(errors: &ConfigErrors) -> Vec<&str> {
    errors.0.iter().map(|e| e.field.as_str()).collect()
}

fn headers(export: &ExportConfig) -> Vec<(String, String)> {
    export
        .headers
        .iter()
        .map(|h| (h.name.clone(), h.resolve(&env(&[])).unwrap()))
        .collect()
}

#[test]
fn defaults_are_valid_and_match_the_constants() {
    let config = ShimConfig::default();
    assert_eq!(config.validate(), Ok(()));
    assert_eq!(config.otlp_http_addr.to_string(), "127.0.0.1:4318");
    assert_eq!(config.otlp_grpc_addr.to_string(), "127.0.0.1:4317");
    assert_eq!(config.admin_addr.to_string(), "127.0.0.1:9464");
    assert_eq!(config.max_request_body_bytes, 64 * 1024 * 1024);
    assert_eq!(config.store.max_spans, 20_000);
    assert_eq!(config.store.max_bytes, 16 * 1024 * 1024);
    assert_eq!(config.store.max_age_secs, 86_400);
    assert_eq!(config.store.data_dir, None);
    assert!(config.store.while_forwarding);
    assert!(config.exporters.is_empty());
    assert_eq!(config.spool, None);
}

#[test]
fn validate_names_every_bad_field() {
    let config = ShimConfig {
        max_request_body_bytes: 0,
        admin_addr: DEFAULT_OTLP_HTTP_ADDR,
        store: StoreConfig {
            max_spans: 0,
            max_bytes: 1,
            max_age_secs: 0,
            data_dir: Some(PathBuf::new()),
            while_forwarding: false,
        },
        queue: QueueConfig {
            max_bytes: 0,
            ..QueueConfig::default()
        },
        batch: BatchConfig {
            timeout_ms: 0,
            ..BatchConfig::default()
        },
        exporters: vec![
            ExportConfig {
                name: "Bad Name".to_owned(),
                endpoint: "ftp://backend/v1/traces".to_owned(),
                headers: vec![HeaderConfig {
                    name: "x-k".to_owned(),
                    ..HeaderConfig::default()
                }],
                timeout_ms: 0,
                retry: RetryConfig {
                    max_attempts: 0,
                    initial_backoff_ms: 10,
                    max_backoff_ms: 5,
                    max_elapsed_ms: 0,
                },
                ..ExportConfig::default()
            },
            ExportConfig::new("http://b:4318/v1/traces"),
            ExportConfig::new("http://c:4318/v1/traces"),
        ],
        spool: Some(SpoolConfig {
            segment_bytes: 10,
            max_bytes: 15,
            ..SpoolConfig::default()
        }),
        ..ShimConfig::default()
    };
    let errors = config.validate().unwrap_err();
    assert_eq!(
        fields(&errors),
        [
            "max_request_body_bytes",
            "store.max_spans",
            "store.max_age_secs",
            "queue.max_bytes",
            "batch.timeout_ms",
            "store.data_dir",
            "admin_addr",
            "exporters[0].name",
            "exporters[0].endpoint",
            "exporters[0].headers[0]",
            "exporters[0].timeout_ms",
            "exporters[0].retry.max_attempts",
            "exporters[0].retry.max_backoff_ms",
            "exporters[0].retry.max_elapsed_ms",
            "exporters[2].name",
            "spool.dir",
            "spool.max_bytes",
        ]
    );
}

#[test]
fn request_limit_must_fit_the_memory_budget() {
    let config = ShimConfig {
        max_request_body_bytes: 2000,
        queue: QueueConfig {
            max_bytes: 1000,
            ..QueueConfig::default()
        },
        exporters: vec![ExportConfig::new("http://b/v1/traces")],
        ..ShimConfig::default()
    };
    assert_eq!(
        fields(&config.validate().unwrap_err()),
        ["max_request_body_bytes"]
    );
}

const FULL_YAML: &str = r#"
otlp_http_addr: 0.0.0.0:4318
otlp_grpc_addr: 127.0.0.1:0
admin_addr: 127.0.0.1:0
store: { max_spans: 5, data_dir: /var/lib/shim/traces, while_forwarding: false }
queue:
  max_spans: 1000
  max_bytes: 67108864
  full_policy: drop_oldest
batch: { max_spans: 100, timeout_ms: 50 }
exporters:
  - name: tempo
    protocol: grpc
    endpoint: https://tempo:4317
    compression: gzip
    headers:
      - { name: authorization, value_from_env: TEMPO_TOKEN }
      - { name: x-scope-orgid, value: team-a }
    tls: { ca_file: /etc/ca.pem }
    retry: { max_attempts: 3 }
  - name: debug
    protocol: http/json
    endpoint: http://127.0.0.1:4319/v1/traces
spool: { dir: /var/lib/shim, fsync: always }
"#;

#[test]
fn yaml_file_fills_defaults() {
    let config = ShimConfig::from_yaml(FULL_YAML).unwrap();
    assert_eq!(config.validate(), Ok(()));
    assert_eq!(config.otlp_http_addr.to_string(), "0.0.0.0:4318");
    assert_eq!(config.store.max_spans, 5);
    assert_eq!(config.store.max_bytes, DEFAULT_STORE_MAX_BYTES);
    assert_eq!(config.store.max_age_secs, DEFAULT_STORE_MAX_AGE_SECS);
    assert_eq!(
        config.store.data_dir.as_deref(),
        Some(Path::new("/var/lib/shim/traces"))
    );
    assert!(!config.store.while_forwarding);
    assert_eq!(config.queue.full_policy, FullPolicy::DropOldest);
    assert_eq!(config.batch.max_spans, 100);
    assert_eq!(config.batch.max_bytes, DEFAULT_BATCH_MAX_BYTES);
    let tempo = &config.exporters[0];
    assert_eq!(tempo.protocol, Protocol::Grpc);
    assert_eq!(tempo.compression, Compression::Gzip);
    assert_eq!(tempo.retry.max_attempts, 3);
    assert_eq!(tempo.retry.max_elapsed_ms, DEFAULT_RETRY_MAX_ELAPSED_MS);
    assert_eq!(
        tempo.headers[0].resolve(&env(&[("TEMPO_TOKEN", "Bearer s3cret")])),
        Ok("Bearer s3cret".to_owned())
    );
    assert_eq!(config.exporters[1].protocol, Protocol::HttpJson);
    let spool = config.spool.unwrap();
    assert_eq!(spool.fsync, FsyncPolicy::Always);
    assert_eq!(spool.max_bytes, DEFAULT_SPOOL_MAX_BYTES);
}

#[rustfmt::skip]
#[test]
fn yaml_errors_name_the_field_path() {
    let cases: &[(&str, &str)] = &[
        ("queue: { max_span: 5 }", "queue.max_span"),
        ("exporters: [{ endpoint: http://x, protocol: thrift }]", "exporters[0].protocol"),
        ("batch: { max_spans: -1 }", "batch.max_spans"),
        ("otlp_http_addr: nope", "otlp_http_addr"),
        ("spool: { fsync: sometimes }", "spool.fsync"),
        ("store: { max_age_secs: 1h }", "store.max_age_secs"),
        ("store: { data_directory: /tmp }", "store.data_directory"),
        ("- a list", "<file>"),
    ];
    for (yaml, field) in cases {
        let errors = ShimConfig::from_yaml(yaml).unwrap_err();
        assert_eq!(fields(&errors), [*field], "{yaml}: {errors}");
    }
}

#[test]
fn header_secrets_from_env_and_file_never_leak() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "Bearer from-file\n").unwrap();
    let from_file = HeaderConfig {
        name: "authorization".to_owned(),
        value_from_file: Some(path),
        ..HeaderConfig::default()
    };
    assert_eq!(
        from_file.resolve(&env(&[])),
        Ok("Bearer from-file".to_owned())
    );
    let missing = HeaderConfig {
        name: "authorization".to_owned(),
        value_from_env: Some("NOPE".to_owned()),
        ..HeaderConfig::default()
    };
    assert!(missing.resolve(&env(&[])).unwrap_err().contains("NOPE"));
    let bad = HeaderConfig::literal("authorization", "Bearer\ntopsecret");
    let error = bad.resolve(&env(&[])).unwrap_err();
    assert!(
        !error.contains("topsecret") && error.contains("authorization"),
        "{error}"
    );
    let export = ExportConfig {
        endpoint: "http://user:hunter2@backend:4318/v1/traces".to_owned(),
        headers: vec![
            HeaderConfig::literal("authorization", "Bearer topsecret"),
            from_file,
        ],
        ..ExportConfig::default()
    };
    let debug = format!("{export:?}");
    assert!(
        !debug.contains("topsecret") && !debug.contains("hunter2") && !debug.contains("from-file"),
        "{debug}"
    );
    assert_eq!(
        export.endpoint_for_display(),
        "http://backend:4318/v1/traces"
    );
}

#[test]
fn no_endpoint_means_no_exporter() {
    assert_eq!(export_from_env(&env(&[])), Ok(None));
    assert_eq!(
        export_from_env(&env(&[(OTEL_EXPORTER_OTLP_ENDPOINT, "")])),
        Ok(None)
    );
    assert_eq!(
        export_from_env(&env(&[(OTEL_EXPORTER_OTLP_HEADERS, "a=b")])),
        Ok(None)
    );
}

#[rustfmt::skip]
#[test]
fn endpoint_resolution() {
    let cases: &[(Vars, &str, Protocol)] = &[
        (&[(OTEL_EXPORTER_OTLP_ENDPOINT, "http://c:4318")], "http://c:4318/v1/traces", Protocol::HttpProtobuf),
        (&[(OTEL_EXPORTER_OTLP_ENDPOINT, "http://c:4318/")], "http://c:4318/v1/traces", Protocol::HttpProtobuf),
        (&[(OTEL_EXPORTER_OTLP_ENDPOINT, "http://c:4318/base")], "http://c:4318/base/v1/traces", Protocol::HttpProtobuf),
        (&[(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "http://t:1/custom")], "http://t:1/custom", Protocol::HttpProtobuf),
        (&[(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "http://t:1/custom"),
           (OTEL_EXPORTER_OTLP_ENDPOINT, "http://c:4318")], "http://t:1/custom", Protocol::HttpProtobuf),
        (&[(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, ""),
           (OTEL_EXPORTER_OTLP_ENDPOINT, "http://c:4318")], "http://c:4318/v1/traces", Protocol::HttpProtobuf),
        (&[(OTEL_EXPORTER_OTLP_ENDPOINT, "http://c:4317"), (OTEL_EXPORTER_OTLP_PROTOCOL, "grpc")], "http://c:4317", Protocol::Grpc),
        (&[(OTEL_EXPORTER_OTLP_ENDPOINT, "https://c"), (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, "http/json"),
           (OTEL_EXPORTER_OTLP_PROTOCOL, "grpc")], "https://c/v1/traces", Protocol::HttpJson),
    ];
    for (vars, expected, protocol) in cases {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        let export = export_from_env(&map).unwrap().unwrap();
        assert_eq!((export.endpoint.as_str(), export.protocol), (*expected, *protocol), "{vars:?}");
    }
}

#[test]
fn headers_timeout_compression_certificate_and_precedence() {
    let map = env(&[
        (OTEL_EXPORTER_OTLP_ENDPOINT, "http://c:4318"),
        (OTEL_EXPORTER_OTLP_HEADERS, "ignored=1"),
        (
            OTEL_EXPORTER_OTLP_TRACES_HEADERS,
            " api-key = s%3Dcr%2Cet , x-tenant=a%20b ,, ",
        ),
        (OTEL_EXPORTER_OTLP_TIMEOUT, "1"),
        (OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, "2500"),
        (OTEL_EXPORTER_OTLP_COMPRESSION, "gzip"),
        (OTEL_EXPORTER_OTLP_CERTIFICATE, "/etc/ca.pem"),
    ]);
    let export = export_from_env(&map).unwrap().unwrap();
    assert_eq!(
        headers(&export),
        [
            ("api-key".to_owned(), "s=cr,et".to_owned()),
            ("x-tenant".to_owned(), "a b".to_owned()),
        ]
    );
    assert_eq!(export.timeout_ms, 2500);
    assert_eq!(export.compression, Compression::Gzip);
    assert_eq!(
        export.tls.ca_file.as_deref(),
        Some(std::path::Path::new("/etc/ca.pem"))
    );
}

#[rustfmt::skip]
#[test]
fn env_errors_name_the_variable() {
    let cases: &[(Vars, &str, &str)] = &[
        (&[(OTEL_EXPORTER_OTLP_PROTOCOL, "thrift")], OTEL_EXPORTER_OTLP_PROTOCOL, "not one of"),
        (&[(OTEL_EXPORTER_OTLP_COMPRESSION, "br")], OTEL_EXPORTER_OTLP_COMPRESSION, "br"),
        (&[(OTEL_EXPORTER_OTLP_ENDPOINT, "not a url")], OTEL_EXPORTER_OTLP_ENDPOINT, "not a valid URL"),
        (&[(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "ftp://c/v1/traces")], OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "ftp"),
        (&[(OTEL_EXPORTER_OTLP_ENDPOINT, "http://c"), (OTEL_EXPORTER_OTLP_TIMEOUT, "10s")], OTEL_EXPORTER_OTLP_TIMEOUT, "milliseconds"),
        (&[(OTEL_EXPORTER_OTLP_ENDPOINT, "http://c"), (OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, "0")], OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, "> 0"),
        (&[(OTEL_EXPORTER_OTLP_ENDPOINT, "http://c"), (OTEL_EXPORTER_OTLP_HEADERS, "novalue")], OTEL_EXPORTER_OTLP_HEADERS, "no '='"),
        (&[(OTEL_EXPORTER_OTLP_ENDPOINT, "http://c"), (OTEL_EXPORTER_OTLP_TRACES_HEADERS, "=v")], OTEL_EXPORTER_OTLP_TRACES_HEADERS, "empty key"),
        (&[(OTEL_EXPORTER_OTLP_ENDPOINT, "http://c"), (OTEL_EXPORTER_OTLP_HEADERS, "bad name=v")], OTEL_EXPORTER_OTLP_HEADERS, "header name"),
    ];
    for (vars, field, needle) in cases {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        let errors = export_from_env(&map).unwrap_err();
        assert_eq!(fields(&errors), [*field], "{vars:?}");
        let text = errors.to_string();
        assert!(text.contains(field) && text.contains(needle), "{vars:?}: {text}");
    }
}

#[test]
fn env_header_values_never_appear_in_errors() {
    let map = env(&[
        (OTEL_EXPORTER_OTLP_ENDPOINT, "http://c"),
        (
            OTEL_EXPORTER_OTLP_HEADERS,
            "authorization=Bearer%0Atopsecret",
        ),
    ]);
    let text = export_from_env(&map).unwrap_err().to_string();
    assert!(
        !text.contains("topsecret") && text.contains("authorization"),
        "{text}"
    );
}

#[test]
fn cli_defaults_flags_and_file_precedence() {
    let cli = Cli::try_parse_from(["meshtrace-shim"]).unwrap();
    assert_eq!(cli.to_config(&env(&[])).unwrap(), ShimConfig::default());
    assert_eq!(cli.log_format, LogFormat::Json);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shim.yaml");
    std::fs::write(&file, "queue: { max_spans: 7 }\nbatch: { max_spans: 3 }\n").unwrap();
    let cli = Cli::try_parse_from([
        "meshtrace-shim",
        "--config",
        file.to_str().unwrap(),
        "--batch-max-spans",
        "5",
        "--otlp-grpc-addr",
        "127.0.0.1:0",
        "--queue-full-policy",
        "drop-oldest",
        "--store-max-age-secs",
        "60",
        "--store-data-dir",
        "/tmp/mt",
        "--store-while-forwarding",
        "false",
        "--log-format",
        "text",
    ])
    .unwrap();
    let config = cli
        .to_config(&env(&[(OTEL_EXPORTER_OTLP_ENDPOINT, "http://c:4318")]))
        .unwrap();
    assert_eq!(config.queue.max_spans, 7, "from the file");
    assert_eq!(config.batch.max_spans, 5, "the flag wins over the file");
    assert_eq!(config.queue.full_policy, FullPolicy::DropOldest);
    assert_eq!(config.otlp_grpc_addr.to_string(), "127.0.0.1:0");
    assert_eq!(config.store.max_age_secs, 60);
    assert_eq!(config.store.data_dir.as_deref(), Some(Path::new("/tmp/mt")));
    assert!(!config.store.while_forwarding);
    assert_eq!(config.exporters[0].endpoint, "http://c:4318/v1/traces");
    assert_eq!(cli.log_format, LogFormat::Text);

    // A file with exporters ignores OTEL_EXPORTER_OTLP_*.
    std::fs::write(
        &file,
        "exporters: [{ endpoint: http://file:4318/v1/traces }]\n",
    )
    .unwrap();
    let cli =
        Cli::try_parse_from(["meshtrace-shim", "check-config", file.to_str().unwrap()]).unwrap();
    let config = cli
        .to_config(&env(&[(OTEL_EXPORTER_OTLP_ENDPOINT, "http://env:4318")]))
        .unwrap();
    assert_eq!(config.exporters.len(), 1);
    assert_eq!(config.exporters[0].endpoint, "http://file:4318/v1/traces");
}

#[test]
fn cli_errors_name_fields_and_variables() {
    let cli = Cli::try_parse_from([
        "meshtrace-shim",
        "--store-max-bytes",
        "0",
        "--store-max-age-secs",
        "0",
    ])
    .unwrap();
    assert_eq!(
        fields(&cli.to_config(&env(&[])).unwrap_err()),
        ["store.max_bytes", "store.max_age_secs"]
    );
    let errors = cli
        .to_config(&env(&[(OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, "thrift")]))
        .unwrap_err();
    assert_eq!(fields(&errors), [OTEL_EXPORTER_OTLP_TRACES_PROTOCOL]);
    let error = Cli::try_parse_from(["meshtrace-shim", "--admin-addr", "nope"]).unwrap_err();
    assert!(error.to_string().contains("--admin-addr"), "{error}");
    let cli = Cli::try_parse_from(["meshtrace-shim", "check-config", "/nonexistent.yaml"]).unwrap();
    let errors = cli.to_config(&env(&[])).unwrap_err();
    assert_eq!(fields(&errors), ["/nonexistent.yaml"]);
}
