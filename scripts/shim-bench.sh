#!/usr/bin/env bash
# Measures the collector shim on this machine (a benchmark, not a test): `make bench-shim`.
#   1. throughput: load generator -> shim -> sink, vs the same generator straight to the sink
#      (the baseline); reports spans/s of both and their ratio, and the shim's peak RSS.
#   2. overload: the backend is down (connection refused, retried forever) while the generator
#      keeps sending for OVERLOAD_SECONDS; reports the shim's peak RSS against its memory budget,
#      and what was accepted and refused (429).
# The shim runs with its defaults otherwise, so the trace store keeps a copy of forwarded spans
# (in memory, outside the budget).
# Everything on 127.0.0.1, bounded in time. Results are written up in docs/shim.md.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_RUN="${SECONDS_RUN:-10}"
OVERLOAD_SECONDS="${OVERLOAD_SECONDS:-30}"
CONCURRENCY="${CONCURRENCY:-8}"
SPANS="${SPANS:-100}"
BUDGET="${BUDGET:-67108864}"

cargo build --release -q -p meshtrace-collector-shim --bin meshtrace-shim --example load
SHIM=target/release/meshtrace-shim
LOAD=target/release/examples/load
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { [[ ${#pids[@]} -gt 0 ]] && kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT
wait_http() { for _ in $(seq 100); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "not up: $1" >&2; exit 1; }
metric() { curl -fsS "http://127.0.0.1:$1/metrics" | awk -v s="$2" '$1==s {print $2}'; }
peak_rss_mib() { awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

SINK=$(port); "$LOAD" sink "127.0.0.1:$SINK" & pids+=($!)
wait_http "http://127.0.0.1:$SINK/count"

echo "== baseline: generator -> sink directly (${SECONDS_RUN}s, concurrency $CONCURRENCY, $SPANS spans/request)"
direct=$("$LOAD" send "http://127.0.0.1:$SINK/v1/traces" "$SECONDS_RUN" "$CONCURRENCY" "$SPANS")
echo "$direct"

run_shim() { # $1 = exporter endpoint; prints the pid; sets HTTP, ADMIN
  HTTP=$(port); ADMIN=$(port)
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="$1" "$SHIM" --log-format text \
    --otlp-http-addr "127.0.0.1:$HTTP" --otlp-grpc-addr 127.0.0.1:0 --admin-addr "127.0.0.1:$ADMIN" \
    --queue-max-bytes "$BUDGET" --max-request-body-bytes 16777216 >/dev/null 2>&1 &
  SHIM_PID=$!; pids+=($SHIM_PID)
  wait_http "http://127.0.0.1:$ADMIN/healthz"
}

echo "== through the shim: generator -> shim -> sink"
run_shim "http://127.0.0.1:$SINK/v1/traces"
via=$("$LOAD" send "http://127.0.0.1:$HTTP/v1/traces" "$SECONDS_RUN" "$CONCURRENCY" "$SPANS")
echo "$via"
sleep 1
echo "shim exported $(metric "$ADMIN" 'meshtrace_shim_exported_spans_total{exporter="otlp"}') spans, peak RSS $(peak_rss_mib "$SHIM_PID") MiB;" \
     "trace store copies: $(metric "$ADMIN" meshtrace_shim_stored_spans) kept," \
     "$(metric "$ADMIN" 'meshtrace_shim_store_dropped_spans_total{reason="queue_full"}') dropped (store queue full)"
python3 - "$direct" "$via" <<'PY'
import json, sys
d, v = (json.loads(a) for a in sys.argv[1:3])
print(f"ratio shim/direct = {v['accepted_per_s'] / d['accepted_per_s']:.2f} "
      f"({v['accepted_per_s']:.0f} vs {d['accepted_per_s']:.0f} spans/s)")
PY
kill "$SHIM_PID"; wait "$SHIM_PID" 2>/dev/null || true

echo "== overload: backend down, ${OVERLOAD_SECONDS}s, budget $((BUDGET / 1048576)) MiB"
DEAD=$(port)
run_shim "http://127.0.0.1:$DEAD/v1/traces"
over=$("$LOAD" send "http://127.0.0.1:$HTTP/v1/traces" "$OVERLOAD_SECONDS" "$CONCURRENCY" "$SPANS")
echo "$over"
echo "peak RSS $(peak_rss_mib "$SHIM_PID") MiB; memory_used_bytes $(metric "$ADMIN" meshtrace_shim_memory_used_bytes)" \
     "of $(metric "$ADMIN" meshtrace_shim_queue_capacity_bytes); refused(queue_full) $(metric "$ADMIN" 'meshtrace_shim_refused_spans_total{reason="queue_full"}')" \
     "; ready: $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ADMIN/readyz")"
