//! The host itself, through the probe fixture (`tests/fixtures/probe`): the ABI surface the
//! filter does not use yet behaves as Envoy's does, and strictness catches what it should.

use meshtrace_wasm_host::{
    Action, GrpcReply, Host, HostError, HostOptions, Injection, LogLevel, MetricValue, Process,
    Reply, Status, StreamId, engine, probe_module,
};
use std::time::Duration;

fn probe_host(options: HostOptions) -> Host {
    Host::start(&probe_module().unwrap_or_else(|e| panic!("{e}")), options)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `commands` in one request's headers; returns the open stream and each result.
fn run(host: &mut Host, commands: &[&str]) -> Result<(StreamId, Vec<String>), HostError> {
    let stream = host.open_stream()?;
    let mut headers = vec![
        (":method".to_owned(), "GET".to_owned()),
        (":path".to_owned(), "/p?x=1".to_owned()),
    ];
    headers.extend(
        commands
            .iter()
            .map(|c| ("x-probe".to_owned(), (*c).to_owned())),
    );
    host.request_headers(stream, headers, true)?;
    let upstream = host.upstream_request_headers(stream)?;
    let results = (0..commands.len())
        .map(|i| {
            upstream
                .get_str(format!("x-probe-result-{i}"))
                .unwrap_or_default()
        })
        .collect();
    Ok((stream, results))
}

fn results(host: &mut Host, commands: &[&str]) -> Vec<String> {
    run(host, commands).unwrap_or_else(|e| panic!("{e}")).1
}

#[test]
fn an_unimplemented_import_fails_the_start_naming_it() {
    // (module (import "env" "proxy_no_such_call" (func)))
    let mut wasm = b"\0asm\x01\0\0\0\x01\x04\x01\x60\0\0\x02\x1a\x01\x03env\x12".to_vec();
    wasm.extend_from_slice(b"proxy_no_such_call\x00\x00");
    let module = wasmtime::Module::new(engine(), &wasm).unwrap();
    let error = Host::start(&module, HostOptions::default()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "unimplemented host functions: env.proxy_no_such_call"
    );
}

#[test]
fn injecting_into_an_unknown_host_call_is_refused() {
    let mut host = probe_host(HostOptions::default());
    assert!(
        host.inject(Injection::new(
            "proxy_get_header_map_valu",
            Status::NotFound
        ))
        .is_err()
    );
}

#[test]
fn properties_come_from_the_plugin_the_request_and_the_test() {
    let mut options = HostOptions {
        root_id: "tracing".into(),
        vm_id: "vm1".into(),
        ..HostOptions::default()
    };
    options.properties.insert(
        b"node\0metadata\0CLUSTER_ID".to_vec(),
        b"Kubernetes".to_vec(),
    );
    let mut host = probe_host(options);
    let got = results(
        &mut host,
        &[
            "get-property plugin_root_id",
            "get-property plugin_vm_id",
            "get-property node.metadata.CLUSTER_ID",
            "get-property request.url_path",
            "get-property request.method",
            "get-property node.id",
        ],
    );
    assert_eq!(got, ["tracing", "vm1", "Kubernetes", "/p", "GET", "none"]);
    host.inject(Injection::new("proxy_get_property", Status::InternalFailure).times(1))
        .unwrap();
    assert_eq!(
        results(&mut host, &["get-property node.id"]),
        ["err InternalFailure"]
    );
}

#[test]
fn set_property_is_stream_filter_state() {
    let mut host = probe_host(HostOptions::default());
    let (stream, got) = run(
        &mut host,
        &["set-property sampled yes", "get-property sampled"],
    )
    .unwrap();
    assert_eq!(got, ["ok", "yes"]);
    assert_eq!(
        host.filter_state(stream, "sampled").unwrap(),
        Some(&b"yes"[..])
    );
    let (other, got) = run(&mut host, &["get-property sampled"]).unwrap();
    assert_eq!(got, ["none"], "per stream");
    assert_eq!(host.filter_state(other, "sampled").unwrap(), None);
}

#[test]
fn header_writes_and_removals_reach_the_upstream() {
    let mut host = probe_host(HostOptions::default());
    let (stream, got) = run(
        &mut host,
        &[
            "add-header b3 1",
            "add-header b3 2",
            "replace-header x-one a",
            "remove-header :path",
            "get-pairs",
        ],
    )
    .unwrap();
    assert_eq!(got[..4], ["ok", "ok", "ok", "ok"]);
    let upstream = host.upstream_request_headers(stream).unwrap();
    assert_eq!(upstream.get_all("b3"), [&b"1"[..], b"2"]);
    assert_eq!(upstream.get_str("x-one").as_deref(), Some("a"));
    assert_eq!(upstream.get(":path"), None);
}

#[test]
fn queues_notify_their_owner_after_the_call() {
    let process = Process::new();
    let mut owner = probe_host(HostOptions::default().in_process(&process));
    // Every probe VM registers queue `probe` under its vm_id; as in Envoy the last registration
    // of a name owns it, so the sender lives under another vm_id.
    let mut sender = probe_host(HostOptions {
        vm_id: "sender".into(),
        ..HostOptions::default().in_process(&process)
    });
    assert_eq!(
        results(
            &mut sender,
            &["enqueue probe one", "enqueue probe two", "enqueue nope x"]
        ),
        ["ok", "ok", "none"]
    );
    assert!(
        owner.logs_containing(LogLevel::Info, "dequeued").is_empty(),
        "not before the owner runs"
    );
    owner.run_pending().unwrap();
    let lines: Vec<_> = owner
        .logs_containing(LogLevel::Info, "dequeued")
        .iter()
        .map(|l| l.message.clone())
        .collect();
    assert_eq!(lines, ["dequeued one", "dequeued two"]);
}

#[test]
fn a_local_response_is_recorded() {
    let mut host = probe_host(HostOptions::default());
    let (stream, _) = run(&mut host, &["local-response 403"]).unwrap();
    let response = host.local_response(stream).unwrap().unwrap();
    assert_eq!(
        (response.status, response.body.as_slice()),
        (403, &b"denied"[..])
    );
    assert_eq!(
        response.headers.get_str("x-probe").as_deref(),
        Some("local")
    );
}

#[test]
fn a_stream_paused_on_a_call_out_resumes_on_its_answer() {
    let mut host = probe_host(HostOptions::default());
    let stream = host.open_stream().unwrap();
    let action = host
        .request_headers(stream, [("x-probe", "http-call meshtrace_shim")], true)
        .unwrap();
    assert_eq!(action, Action::Pause);
    let call = &host.pending_calls()[0];
    assert_eq!(call.context_id, stream.0);
    host.reply_after(call.token, Duration::from_millis(30), Reply::status(204))
        .unwrap();
    host.advance(Duration::from_millis(29)).unwrap();
    assert_eq!(host.stream_controls(stream).unwrap().0, []);
    host.advance(Duration::from_millis(1)).unwrap();
    assert_eq!(
        host.stream_controls(stream).unwrap().0,
        [meshtrace_wasm_host::abi::StreamType::Request]
    );
    assert_eq!(
        host.logs_containing(LogLevel::Info, "answered 204").len(),
        1
    );
    // A reset answers with no headers.
    run(&mut host, &["http-call meshtrace_shim"]).unwrap();
    let token = host.pending_calls()[0].token;
    host.reply(token, Reply::Reset).unwrap();
    assert_eq!(
        host.logs_containing(LogLevel::Info, "answered reset").len(),
        1
    );
}

#[test]
fn grpc_calls_are_answered_on_the_root() {
    let mut host = probe_host(HostOptions::default());
    let got = results(
        &mut host,
        &["grpc-call meshtrace_shim", "grpc-call unknown"],
    );
    assert_eq!(got, ["1", "err ParseFailure"]);
    let call = &host.grpc_calls()[0];
    assert_eq!(
        (call.service_name.as_str(), call.method.as_str()),
        ("probe.Service", "Call")
    );
    assert_eq!(call.messages, [b"ping".to_vec()]);
    let reply = GrpcReply {
        messages: vec![b"pong!".to_vec()],
        ..GrpcReply::default()
    };
    host.grpc_reply(1, reply).unwrap();
    assert_eq!(
        host.logs_containing(LogLevel::Info, "grpc 1 answered 0 with 5 bytes")
            .len(),
        1
    );
}

#[test]
fn foreign_functions_metrics_environment_clock_and_stdout() {
    let options = HostOptions {
        env: vec![("POD_NAME".into(), "web-1".into())],
        ..HostOptions::default()
    };
    let mut host = probe_host(options);
    host.foreign_function("upper", |args| Ok(args.to_ascii_uppercase()));
    let got = results(
        &mut host,
        &[
            "foreign upper abc",
            "foreign nope x",
            "histogram 7",
            "counter-get",
            "env POD_NAME",
            "env HOME",
            "time",
            "print hello",
        ],
    );
    let now = host.now_unix_nanos().to_string();
    assert_eq!(
        got,
        [
            "ABC",
            "err NotFound",
            "ok",
            "1",
            "web-1",
            "none",
            now.as_str(),
            "ok"
        ]
    );
    assert_eq!(
        host.metrics().get("probe_sizes"),
        Some(&MetricValue::Histogram(vec![7]))
    );
    assert_eq!(host.logs_containing(LogLevel::Info, "hello").len(), 1);
    host.advance(Duration::from_secs(3)).unwrap();
    assert_eq!(
        results(&mut host, &["time"]),
        [(host.now_unix_nanos()).to_string()]
    );
}

#[test]
fn envoy_rejects_what_strict_mode_reports() {
    let mut host = probe_host(HostOptions::default());
    let error = run(&mut host, &["counter-add 0"]).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("proxy_increment_metric: `probe_requests_total` incremented by 0: Envoy answers BadArgument"), "{text}");

    let mut host = probe_host(HostOptions::default());
    let error = run(&mut host, &["http-call-noauth meshtrace_shim"]).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("proxy_http_call: no `:authority` header"),
        "{error}"
    );

    let mut tolerant = probe_host(HostOptions::default());
    tolerant.tolerate("proxy_http_call");
    assert_eq!(
        results(&mut tolerant, &["http-call-noauth meshtrace_shim"]),
        ["err BadArgument"]
    );
}

#[test]
fn a_monotonic_clock_read_traps_as_in_envoy() {
    let mut host = probe_host(HostOptions::default());
    let error = run(&mut host, &["instant"]).unwrap_err();
    assert!(
        error.to_string().contains("clock_time_get(\"errno 58\")"),
        "{error}"
    );
}

#[test]
fn a_runaway_loop_runs_out_of_fuel_instead_of_hanging() {
    let mut host = probe_host(HostOptions {
        fuel_per_callback: 10_000_000,
        ..HostOptions::default()
    });
    let error = run(&mut host, &["spin"]).unwrap_err();
    assert!(
        matches!(
            &error,
            HostError::Trap {
                callback: "proxy_on_request_headers",
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("fuel"), "{error}");
}
