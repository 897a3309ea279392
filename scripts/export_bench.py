#!/usr/bin/env python3
"""Per-worker batching vs a singleton exporter VM, in real Envoy (`make bench-export`).

For each design, a fresh Envoy (`--concurrency 2`, V8) serves a cheap route (a
`direct_response`, so only Envoy and the filter work) with the meshtrace filter; spans go to a
counting OTLP sink. Each trial measures, between two readings of Envoy's `/stats` and
`/proc/<pid>/stat`:

- export calls per 1,000 spans exported (`meshtrace_export_calls_ok_total` /
  `meshtrace_spans_exported_total`),
- Envoy CPU (user + system) per request, in microseconds,
- requests per second.

Loads: `wrk -t1 -c16` (saturation) and `h2load --rps` (a fixed, moderate rate). Designs:
`none` (no filter, the baseline), `per_worker` (each worker VM batches and exports),
`singleton` (workers enqueue each span to a proxy-wasm shared queue drained by one exporter VM,
Envoy's `bootstrap_extensions` Wasm service with `singleton: true`). The singleton design was
measured and then removed: it runs only with the prototype build of commit 9816676
(`exporter.shared_queue`); see docs/export.md. Results go to stdout as a Markdown table.
"""

import argparse
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENVOY = os.path.join(ROOT, ".venv/bin/envoy")
WASM = os.path.join(ROOT, "target/wasm32-wasip1/release/meshtrace_filter.wasm")
QUEUE = {"vm_id": "meshtrace_exporter", "name": "meshtrace_spans"}


class Sink(http.server.BaseHTTPRequestHandler):
    """Answers every export 200 with an empty body; counts calls."""

    protocol_version = "HTTP/1.1"
    calls = 0

    def setup(self):
        super().setup()
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        Sink.calls += 1
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wasm_config(name, root_id, plugin_config):
    return {
        "name": name,
        "root_id": root_id,
        "configuration": {
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": json.dumps(plugin_config),
        },
        "vm_config": {
            "vm_id": root_id,
            "runtime": "envoy.wasm.runtime.v8",
            "code": {"local": {"filename": WASM}},
        },
    }


def envoy_config(design, listen, admin, sink):
    filters = []
    bootstrap = []
    exporter = {"flush_interval_ms": 1000}
    if design == "singleton":
        exporter["shared_queue"] = QUEUE
        bootstrap.append({
            "name": "envoy.bootstrap.wasm",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.wasm.v3.WasmService",
                "singleton": True,
                "config": wasm_config(
                    "meshtrace_exporter", "meshtrace_exporter",
                    {"exporter": {"flush_interval_ms": 1000, "shared_queue": QUEUE}}),
            },
        })
    if design != "none":
        filters.append({
            "name": "envoy.filters.http.wasm",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": wasm_config("meshtrace", "meshtrace", {"exporter": exporter}),
            },
        })
    filters.append({
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
    })
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "bootstrap_extensions": bootstrap,
        "static_resources": {
            "listeners": [{
                "name": "ingress",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "ingress",
                        "route_config": {"virtual_hosts": [{
                            "name": "all", "domains": ["*"],
                            "routes": [{"match": {"prefix": "/"}, "direct_response": {
                                "status": 200, "body": {"inline_string": "ok"}}}],
                        }]},
                        "http_filters": filters,
                    },
                }]}],
            }],
            "clusters": [{
                "name": "meshtrace_shim",
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {"cluster_name": "meshtrace_shim", "endpoints": [{"lb_endpoints": [{
                    "endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": sink}}}}]}]},
            }],
        },
    }


def stats(admin):
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats") as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        if value.strip().isdigit():
            out[name] = int(value)
    return out


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(admin, design):
    """Waits until the filter buffered nothing (the last tick exported it)."""
    if design == "none":
        return
    for _ in range(100):
        s = stats(admin)
        if s.get("wasmcustom.meshtrace_export_buffered_spans", 0) == 0 and \
                s.get("wasmcustom.meshtrace_export_in_flight_spans", 0) == 0:
            return
        time.sleep(0.1)


def trial(design, load, seconds, rate, sink_port):
    listen, admin = free_port(), free_port()
    work = tempfile.mkdtemp()
    path = os.path.join(work, "envoy.json")
    with open(path, "w") as f:
        json.dump(envoy_config(design, listen, admin, sink_port), f)
    envoy = subprocess.Popen(
        [ENVOY, "-c", path, "--concurrency", "2", "--disable-hot-restart", "-l", "warn",
         "--base-id", str(listen)],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "envoy.log"), "w"))
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready").read()
                break
            except OSError:
                time.sleep(0.05)
        url = f"http://127.0.0.1:{listen}/"
        subprocess.run(["wrk", "-t1", "-c16", "-d2s", url], capture_output=True, check=True)
        time.sleep(1.5)
        settle(admin, design)
        before, cpu0, t0 = stats(admin), cpu_seconds(envoy.pid), time.time()
        if load == "wrk":
            cmd = ["wrk", "-t1", "-c16", f"-d{seconds}s", url]
        else:
            cmd = ["h2load", "--h1", "-c4", f"--rps={rate // 4}", f"-D{seconds}", url]
        subprocess.run(cmd, capture_output=True, check=True)
        time.sleep(1.5)  # one flush interval: what is buffered leaves
        settle(admin, design)
        after, cpu1, t1 = stats(admin), cpu_seconds(envoy.pid), time.time()
    finally:
        envoy.terminate()
        envoy.wait()
        shutil.rmtree(work, ignore_errors=True)

    def delta(name):
        return after.get(name, 0) - before.get(name, 0)

    requests = delta("http.ingress.downstream_rq_completed")
    spans = delta("wasmcustom.meshtrace_spans_exported_total")
    calls = delta("wasmcustom.meshtrace_export_calls_ok_total")
    dropped = sum(after.get(n, 0) - before.get(n, 0) for n in after if n.startswith("wasmcustom.meshtrace_spans_dropped_"))
    return {
        "design": design, "load": load, "requests": requests,
        "rps": requests / seconds,
        "cpu_us_per_request": (cpu1 - cpu0) * 1e6 / max(requests, 1),
        "calls_per_1000_spans": calls * 1000 / spans if spans else float("nan"),
        "spans": spans, "calls": calls, "dropped": dropped,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=2000, help="requests/s of the fixed-rate load")
    parser.add_argument("--designs", default="none,per_worker",
                        help="none, per_worker, singleton (singleton: prototype build only)")
    parser.add_argument("--loads", default="wrk,rate")
    args = parser.parse_args()
    for tool in ("wrk", "h2load"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install wrk nghttp2-client")
    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    results = []
    for load in args.loads.split(","):
        for rnd in range(args.rounds):
            for design in args.designs.split(","):
                r = trial(design, load, args.seconds, args.rate, port)
                r["round"] = rnd
                results.append(r)
                print(json.dumps(r), file=sys.stderr, flush=True)
    print("| load | design | req/s (median) | Envoy CPU µs/request (min/median/max) | export calls per 1,000 spans (median) | spans dropped |")
    print("|---|---|---|---|---|---|")
    for load in args.loads.split(","):
        for design in args.designs.split(","):
            rs = [r for r in results if r["design"] == design and r["load"] == load]
            med = lambda key: sorted(r[key] for r in rs)[len(rs) // 2]
            cpu = sorted(r["cpu_us_per_request"] for r in rs)
            print(f"| {load} | {design} | {med('rps'):,.0f} | {cpu[0]:.1f} / {med('cpu_us_per_request'):.1f} / {cpu[-1]:.1f} "
                  f"| {med('calls_per_1000_spans'):.2f} | {sum(r['dropped'] for r in rs)} |")


if __name__ == "__main__":
    main()
