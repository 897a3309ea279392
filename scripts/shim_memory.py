#!/usr/bin/env python3
"""Measures the shim's resident memory with its trace store full, for the Kubernetes sizing.

    cargo build --release -p meshtrace-collector-shim
    .venv/bin/python scripts/shim_memory.py --store-max-spans 20000 --store-max-bytes 16777216

Starts target/release/meshtrace-shim on free 127.0.0.1 ports without a backend, sends OTLP/HTTP
requests of 512 server spans (10 attributes each, Envoy-like: see ../shared/anchors/shim.md
§1.1) until the store has evicted for a while, and prints the RSS idle and full, the bytes the
store charges (`meshtrace_shim_stored_bytes`) and heap per charged byte. Needs
opentelemetry-proto (istio/tests/requirements.txt, `make pydeps`). A measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

REPO = Path(__file__).resolve().parent.parent
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
SPANS_PER_REQUEST = 512


def attribute(key: str, value: str | int) -> KeyValue:
    any_value = AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)
    return KeyValue(key=key, value=any_value)


def export_request(rng: random.Random) -> bytes:
    spans = [
        Span(
            trace_id=rng.randbytes(16), span_id=rng.randbytes(8), parent_span_id=rng.randbytes(8),
            name="GET /api/v1/users/{id}", kind=Span.SPAN_KIND_SERVER,
            start_time_unix_nano=1_700_000_000_000_000_000, end_time_unix_nano=1_700_000_000_001_000_000,
            attributes=[
                attribute("http.request.method", "GET"),
                attribute("url.path", f"/api/v1/users/{rng.randrange(10**6)}"),
                attribute("url.scheme", "http"),
                attribute("http.response.status_code", 200),
                attribute("http.route", "/api/v1/users/{id}"),
                attribute("server.address", "users.default.svc.cluster.local"),
                attribute("server.port", 8080),
                attribute("network.protocol.version", "1.1"),
                attribute("client.address", f"10.0.{rng.randrange(256)}.{rng.randrange(256)}"),
                attribute("user_agent.original", USER_AGENT),
            ],
        )
        for _ in range(SPANS_PER_REQUEST)
    ]
    resource = Resource(attributes=[attribute("service.name", "users"), attribute("k8s.namespace.name", "default")])
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[ScopeSpans(spans=spans)])]
    )
    return request.SerializeToString()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def metric(admin: int, name: str) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise RuntimeError(f"{name} not in /metrics")


def post(otlp: int, body: bytes) -> None:
    """Posts one request, retrying while the store's queue is full (429 + Retry-After)."""
    while True:
        request = urllib.request.Request(
            f"http://127.0.0.1:{otlp}/v1/traces", data=body, headers={"Content-Type": "application/x-protobuf"}
        )
        try:
            urllib.request.urlopen(request, timeout=10).read()
            return
        except urllib.error.HTTPError as error:
            if error.code != 429:
                raise
            time.sleep(float(error.headers.get("Retry-After", "1")))


def wait_healthy(admin: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{admin}/healthz", timeout=1)
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the shim did not become healthy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--shim", type=Path, default=REPO / "target/release/meshtrace-shim")
    parser.add_argument("--store-max-spans", type=int, default=20_000)
    parser.add_argument("--store-max-bytes", type=int, default=16 * 1024 * 1024)
    parser.add_argument("--fill-factor", type=int, default=3, help="send this many times the store's span bound")
    parser.add_argument("--requests", type=int, default=0, help="requests to send (default: from --fill-factor)")
    args = parser.parse_args()

    otlp, grpc, admin = free_port(), free_port(), free_port()
    env = dict(
        os.environ,
        MESHTRACE_SHIM_OTLP_HTTP_ADDR=f"127.0.0.1:{otlp}",
        MESHTRACE_SHIM_OTLP_GRPC_ADDR=f"127.0.0.1:{grpc}",
        MESHTRACE_SHIM_ADMIN_ADDR=f"127.0.0.1:{admin}",
        MESHTRACE_SHIM_STORE_MAX_SPANS=str(args.store_max_spans),
        MESHTRACE_SHIM_STORE_MAX_BYTES=str(args.store_max_bytes),
        RUST_LOG="warn",
    )
    for name in [n for n in env if n.startswith(("OTEL_EXPORTER_OTLP_", "MESHTRACE_SHIM_STORE_DATA_DIR"))]:
        del env[name]
    shim = subprocess.Popen([str(args.shim)], env=env)
    try:
        wait_healthy(admin)
        idle = rss_mib(shim.pid)
        rng = random.Random(7)
        requests = args.requests or args.fill_factor * args.store_max_spans // SPANS_PER_REQUEST + 1
        for _ in range(requests):
            body = export_request(rng)
            post(otlp, body)
        # Queries run behind every queued write: once this answers, the store has them all.
        urllib.request.urlopen(f"http://127.0.0.1:{admin}/api/services", timeout=10).read()
        full = rss_mib(shim.pid)
        spans = metric(admin, "meshtrace_shim_stored_spans")
        charged = metric(admin, "meshtrace_shim_stored_bytes")
        print(f"request size        {len(body) / 1024:.0f} KiB ({SPANS_PER_REQUEST} spans), {requests} requests sent")
        print(f"idle RSS            {idle:.1f} MiB")
        print(f"store full RSS      {full:.1f} MiB ({spans:.0f} spans, {charged / 2**20:.1f} MiB charged)")
        print(f"heap per span       {(full - idle) * 2**20 / spans / 1024:.2f} KiB")
        print(f"heap/charged bytes  {(full - idle) * 2**20 / charged:.2f}")
    finally:
        shim.terminate()
        shim.wait(timeout=15)


if __name__ == "__main__":
    main()
