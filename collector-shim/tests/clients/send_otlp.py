#!/usr/bin/env python3
"""Send a fixed set of spans to an OTLP endpoint with the real OpenTelemetry Python SDK exporter.

Used by the shim's end-to-end tests: the test runs this against the shim, and compares what the
shim forwarded with what this script sent. What was sent is written to --out as the protobuf
ExportTraceServiceRequest that the SDK's own OTLP encoder (`encode_spans`, the function both
OTLP exporters use) builds from the same finished spans.

  send_otlp.py --endpoint http://127.0.0.1:4318/v1/traces --protocol http/protobuf \
               --compression gzip --out sent.pb

Prints one JSON line: {"spans": N, "trace_ids": [...], "exported": true}. Exits 1 if the exporter
reported a failure.
"""

import argparse
import json
import sys

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode


class Recording:
    """Wraps an exporter and remembers whether every export succeeded."""

    def __init__(self, inner):
        self.inner = inner
        self.failures = 0

    def export(self, spans):
        result = self.inner.export(spans)
        if result != SpanExportResult.SUCCESS:
            self.failures += 1
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return True


def exporter(protocol, endpoint, compression, headers):
    if protocol == "grpc":
        from grpc import Compression
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        grpc_compression = Compression.Gzip if compression == "gzip" else Compression.NoCompression
        return OTLPSpanExporter(endpoint=endpoint, insecure=True, headers=headers,
                                compression=grpc_compression, timeout=10)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.exporter.otlp.proto.http import Compression
    return OTLPSpanExporter(endpoint=endpoint, headers=headers,
                            compression=Compression(compression), timeout=10)


def make_spans(provider, tag):
    """Every span kind, typed attributes, events, links, status, two scopes."""
    web = provider.get_tracer("meshtrace.test.web", "1.2.3",
                              schema_url="https://opentelemetry.io/schemas/1.26.0")
    db = provider.get_tracer("meshtrace.test.db", "0.1.0")
    ids = []
    with web.start_as_current_span("GET /api/v1/users/{id}", kind=SpanKind.SERVER, attributes={
        "http.request.method": "GET", "url.path": f"/api/v1/users/{tag}",
        "http.response.status_code": 200, "server.port": 8080, "sampling.ratio": 0.25,
        "user.anonymous": False, "http.request.header.accept": ["text/html", "application/json"],
        "retry.counts": [1, 2, 3],
    }) as root:
        ids.append(root.get_span_context().trace_id)
        root.add_event("cache.miss", {"cache.key": f"user:{tag}", "cache.size": 42})
        with db.start_as_current_span("SELECT users", kind=SpanKind.CLIENT,
                                      attributes={"db.system": "postgresql"}) as query:
            query.set_status(Status(StatusCode.ERROR, "deadlock detected"))
            query.add_event("exception", {"exception.type": "DeadlockError"})
        with web.start_as_current_span("enqueue audit", kind=SpanKind.PRODUCER) as producer:
            link = Link(producer.get_span_context(), {"link.reason": "audit"})
        with web.start_as_current_span("render", kind=SpanKind.INTERNAL):
            pass
        root.set_status(Status(StatusCode.OK))
    with db.start_as_current_span("consume audit", kind=SpanKind.CONSUMER, links=[link]):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--protocol", choices=["grpc", "http/protobuf"], required=True)
    parser.add_argument("--compression", choices=["gzip", "none"], default="none")
    parser.add_argument("--service", default="python-client")
    parser.add_argument("--traces", type=int, default=2)
    parser.add_argument("--header", action="append", default=[], help="k=v")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    headers = dict(h.split("=", 1) for h in args.header)
    resource = Resource.create({"service.name": args.service, "service.version": "9.9.9",
                                "deployment.environment": "test", "host.cpus": 2})
    provider = TracerProvider(resource=resource)
    memory = InMemorySpanExporter()
    otlp = Recording(exporter(args.protocol, args.endpoint, args.compression, headers))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.add_span_processor(SimpleSpanProcessor(otlp))
    for tag in range(args.traces):
        make_spans(provider, tag)
    provider.shutdown()

    spans = memory.get_finished_spans()
    with open(args.out, "wb") as out:
        out.write(encode_spans(spans).SerializeToString())
    trace_ids = sorted({format(s.context.trace_id, "032x") for s in spans})
    print(json.dumps({"spans": len(spans), "trace_ids": trace_ids, "exported": otlp.failures == 0}))
    return 0 if otlp.failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
