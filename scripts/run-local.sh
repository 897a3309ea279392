#!/usr/bin/env bash
# Runs the local demo stack in the foreground (see README): collector shim, demo upstream and
# Envoy with the meshtrace filter, on the local contract's ports. Ctrl-C stops all three.
# Started by `make run`, which builds everything first.
set -euo pipefail
cd "$(dirname "$0")/.."

SHIM=target/release/meshtrace-shim
UPSTREAM=target/release/meshtrace-demo-upstream
ENVOY=.venv/bin/envoy
for bin in "$SHIM" "$UPSTREAM" "$ENVOY" target/wasm32-wasip1/release/meshtrace_filter.wasm; do
  [[ -x "$bin" || -f "$bin" ]] || { echo "missing $bin: run 'make run'" >&2; exit 1; }
done

pids=()
stop() {
  trap - EXIT INT TERM
  [[ ${#pids[@]} -gt 0 ]] && kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop EXIT
trap 'echo; echo "stopping meshtrace"; stop; exit 0' INT TERM

"$SHIM" --log-format text & pids+=($!)
"$UPSTREAM" 127.0.0.1:8080 & pids+=($!)
# Access-log lines (JSON, with the filter's trace and span ids) go to stdout, flushed every
# 500 ms rather than Envoy's default 10 s.
"$ENVOY" -c envoy/envoy.yaml --disable-hot-restart --concurrency 2 -l warn \
  --file-flush-interval-msec 500 & pids+=($!)

ready() { curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null; }
for _ in $(seq 100); do
  if ready http://127.0.0.1:9901/ready && ready http://127.0.0.1:9464/healthz; then break; fi
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "a component exited during start-up (is a port of the local contract in use?)" >&2; exit 1; }
  done
  sleep 0.2
done

cat <<'MSG'

meshtrace is running (Ctrl-C stops everything):
  trace viewer    http://127.0.0.1:9464/   (open it in a browser: recent traces, waterfalls)
  Envoy listener  http://127.0.0.1:10000   (admin http://127.0.0.1:9901)
  demo upstream   http://127.0.0.1:8080    (echoes the request headers it got)
  shim OTLP/HTTP  http://127.0.0.1:4318/v1/traces, OTLP/gRPC 127.0.0.1:4317, admin http://127.0.0.1:9464

Try:
  curl -s http://127.0.0.1:10000/hello -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'
    -> the upstream's echo: its traceparent keeps the trace id, with the filter's span as parent;
       Envoy's access-log line (printed here) names the same trace_id and span_id
  http://127.0.0.1:9464/#/trace/4bf92f3577b34da6a3ce929d0e0e4736
    -> that trace in the viewer (spans reach the shim within about a second)
  curl -s http://127.0.0.1:9464/api/traces/4bf92f3577b34da6a3ce929d0e0e4736
    -> the filter's span, as OTLP/JSON
  curl -s http://127.0.0.1:9901/stats | grep meshtrace
    -> the filter's own counters

From a log line to its trace and back: docs/correlation.md

MSG

# Exit (and stop the others) as soon as any component exits.
wait -n
echo "a component exited; stopping the stack" >&2
exit 1
