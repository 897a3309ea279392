"""Differential conformance: a generated header corpus and the OpenTelemetry Python propagators.

Run with the project's virtualenv (`make pydeps` installs tests/requirements.txt):

    .venv/bin/python tests/conformance/propagators.py corpus --seed 4 --per-kind 1000 > corpus.json
    .venv/bin/python tests/conformance/propagators.py extract < requests.json > answers.json

`corpus` writes, for every format, `--per-kind` valid and `--per-kind` invalid header sets, each
labelled with the class of value it exercises (deterministic for a seed). `extract` reads a JSON
list of {"format": ..., "headers": [[name, value], ...]} and answers, for each, what that
format's OpenTelemetry propagator extracted: the span context (hex ids, sampled), the baggage and
the tracestate. tests/tests/conformance.rs drives both and compares with the filter.
"""

import json
import logging
import random
import sys
import urllib.parse

from opentelemetry import baggage as otel_baggage
from opentelemetry import trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.aws import AwsXRayPropagator
from opentelemetry.propagators.b3 import B3MultiFormat, B3SingleFormat
from opentelemetry.propagators.cloud_trace_propagator import CloudTraceFormatPropagator
from opentelemetry.propagators.jaeger import JaegerPropagator
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

PROPAGATORS = {
    "tracecontext": TraceContextTextMapPropagator(),
    "baggage": W3CBaggagePropagator(),
    "b3": B3SingleFormat(),
    "b3multi": B3MultiFormat(),
    "jaeger": JaegerPropagator(),
    "gcp": CloudTraceFormatPropagator(),
    "xray": AwsXRayPropagator(),
}


class PairsGetter(Getter):
    """A carrier of (name, value) pairs, names compared case-insensitively, as HTTP does."""

    def get(self, carrier, key):
        values = [v for n, v in carrier if n.lower() == key.lower()]
        return values or None

    def keys(self, carrier):
        return [n for n, _ in carrier]


GETTER = PairsGetter()


def extract(item):
    propagator = PROPAGATORS[item["format"]]
    context = propagator.extract(item["headers"], context={}, getter=GETTER)
    span_context = trace.get_current_span(context).get_span_context()
    answer = {"ctx": None, "baggage": None, "tracestate": None}
    if span_context.is_valid:
        answer["ctx"] = {
            "trace_id": f"{span_context.trace_id:032x}",
            "span_id": f"{span_context.span_id:016x}",
            "sampled": span_context.trace_flags.sampled,
        }
        if span_context.trace_state is not None:
            answer["tracestate"] = span_context.trace_state.to_header()
    entries = otel_baggage.get_all(context)
    if entries:
        answer["baggage"] = {k: str(v) for k, v in entries.items()}
    return answer


# === corpus ===

HEX = "0123456789abcdef"
TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$&'*-.^_`|~"
SAFE_VALUE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~:/?@!$&'()*"


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)

    def hex(self, n):
        value = "".join(self.r.choice(HEX) for _ in range(n))
        return value if value.strip("0") else "1" + value[1:]

    def pick(self, items):
        return self.r.choice(items)

    def token(self, lo=1, hi=12):
        return "".join(self.r.choice(TOKEN_CHARS) for _ in range(self.r.randint(lo, hi)))

    def ts_key(self):
        r = self.r
        body = "".join(r.choice("abcdefghijklmnopqrstuvwxyz0123456789_-*/") for _ in range(r.randint(0, 10)))
        if r.random() < 0.2:
            return r.choice("abcdefghijklmnopqrstuvwxyz0123456789") + body + "@" + r.choice("abcdefghijklmnopqrstuvwxyz") + body[:5]
        return r.choice("abcdefghijklmnopqrstuvwxyz") + body

    def ts_value(self):
        chars = [chr(c) for c in range(0x21, 0x7F) if chr(c) not in ",="]
        inner = "".join(self.r.choice(chars + [" "]) for _ in range(self.r.randint(0, 20)))
        return inner + self.r.choice(chars)

    def tracestate(self):
        members, seen = [], set()
        for _ in range(self.r.randint(1, 6)):
            key = self.ts_key()
            if key not in seen:
                seen.add(key)
                members.append(f"{key}={self.ts_value()}")
        return members

    def bag_value(self, plain=False):
        text = "".join(self.r.choice(SAFE_VALUE) for _ in range(self.r.randint(0, 16)))
        if plain or self.r.random() < 0.5:
            return urllib.parse.quote(text, safe="")
        decoded = text + self.r.choice([" ", "é", "✓", "日本", ",", ";", "%", "\""])
        return urllib.parse.quote(decoded, safe="")


def case(fmt, kind, cls, headers):
    return {"format": fmt, "kind": kind, "class": cls, "headers": headers}


def tracecontext(g, kind):
    t, s, flags = g.hex(32), g.hex(16), g.pick(["00", "01", "02", "03", g.hex(2)])
    if kind == "valid":
        cls = g.pick(["v00", "future_version", "with_tracestate", "tracestate_two_lines"])
        if cls == "future_version":
            return case("tracecontext", kind, cls, [["traceparent", f"{g.pick(['01', 'cc', 'fe'])}-{t}-{s}-{flags}-{g.token()}"]])
        headers = [["traceparent", f"00-{t}-{s}-{flags}"]]
        if cls == "with_tracestate":
            headers.append(["tracestate", ",".join(g.tracestate())])
        if cls == "tracestate_two_lines":
            members = g.tracestate() + g.tracestate()
            cut = len(members) // 2
            headers += [["tracestate", ",".join(members[:cut])], ["tracestate", ",".join(members[cut:])]]
        return case("tracecontext", kind, cls, headers)
    cls = g.pick(["short", "v00_extra", "version_ff", "upper_hex", "zero_trace", "zero_span",
                  "bad_delimiter", "bad_hex", "empty_flags", "non_ascii", "too_long", "bad_tracestate"])
    value = {
        "short": f"00-{t}-{s}-{flags}"[: g.r.randint(0, 54)],
        "v00_extra": f"00-{t}-{s}-{flags}-{g.token()}",
        "version_ff": f"ff-{t}-{s}-{flags}",
        "upper_hex": f"00-{t.upper()}-{s}-{flags}" if any(c.isalpha() for c in t) else f"00-{t}-{s.upper()}A-{flags}"[:55],
        "zero_trace": f"00-{'0' * 32}-{s}-{flags}",
        "zero_span": f"00-{t}-{'0' * 16}-{flags}",
        "bad_delimiter": f"00-{t}-{s}-{flags}".replace("-", g.pick(["_", ".", " "]), 1),
        "bad_hex": f"00-{t[:-1]}{g.pick('ghxyz')}-{s}-{flags}",
        "empty_flags": f"00-{t}-{s}-",
        "non_ascii": f"00-{t[:-1]}é-{s}-{flags}",
        "too_long": f"cc-{t}-{s}-{flags}-{'x' * 600}",
        "bad_tracestate": f"00-{t}-{s}-{flags}",
    }[cls]
    headers = [["traceparent", value]]
    if cls == "bad_tracestate":
        headers.append(["tracestate", ",".join(g.tracestate() + [g.pick(["Bad=1", "k=", "x", "k=a=b", "k=v\u00e9"])])])
    return case("tracecontext", kind, cls, headers)


def b3_single(g, kind):
    t = g.hex(g.pick([16, 32]))
    s, p = g.hex(16), g.hex(16)
    if kind == "valid":
        cls = g.pick(["trace_span", "sampling", "parent", "trace64", "uppercase"])
        value = {
            "trace_span": f"{t}-{s}",
            "sampling": f"{t}-{s}-{g.pick(['0', '1', 'd'])}",
            "parent": f"{t}-{s}-{g.pick(['0', '1', 'd'])}-{p}",
            "trace64": f"{g.hex(16)}-{s}-1",
            "uppercase": f"{t.upper()}-{s.upper()}-1",
        }[cls]
        return case("b3", kind, cls, [["b3", value]])
    cls = g.pick(["trace_length", "span_length", "zero_trace", "zero_span", "bad_sampling", "true_sampling",
                  "five_fields", "bad_parent", "bad_hex", "sampling_only_bad"])
    value = {
        "trace_length": f"{g.hex(g.pick([15, 17, 31, 33, 20]))}-{s}-1",
        "span_length": f"{t}-{g.hex(g.pick([15, 17, 8]))}-1",
        "zero_trace": f"{'0' * 32}-{s}-1",
        "zero_span": f"{t}-{'0' * 16}-1",
        "bad_sampling": f"{t}-{s}-{g.pick(['2', 'x', 'yes', '01', 'D'])}",
        "true_sampling": f"{t}-{s}-{g.pick(['true', 'True'])}",
        "five_fields": f"{t}-{s}-1-{p}-{g.hex(4)}",
        "bad_parent": f"{t}-{s}-1-{g.hex(g.pick([8, 15, 17]))}",
        "bad_hex": f"{t[:-1]}g-{s}-1",
        "sampling_only_bad": g.pick(["2", "x", "true", "dd"]),
    }[cls]
    return case("b3", kind, cls, [["b3", value]])


def b3_multi(g, kind):
    t = g.hex(g.pick([16, 32]))
    s, p = g.hex(16), g.hex(16)
    ids = [["x-b3-traceid", t], ["x-b3-spanid", s]]
    if kind == "valid":
        cls = g.pick(["ids_only", "sampled", "sampled_bool", "flags_debug", "parent", "trace64"])
        extra = {
            "ids_only": [],
            "sampled": [["x-b3-sampled", g.pick(["0", "1"])]],
            "sampled_bool": [["x-b3-sampled", g.pick(["true", "false"])]],
            "flags_debug": [["x-b3-flags", "1"]] + g.pick([[], [["x-b3-sampled", "1"]]]),
            "parent": [["x-b3-parentspanid", p], ["x-b3-sampled", "1"]],
            "trace64": [["x-b3-sampled", "1"]],
        }[cls]
        if cls == "trace64":
            ids[0][1] = g.hex(16)
        return case("b3multi", kind, cls, ids + extra)
    cls = g.pick(["bad_trace", "missing_span", "bad_span", "zero_span", "zero_trace", "bad_sampled", "bad_flags", "missing_trace"])
    headers = {
        "bad_trace": [["x-b3-traceid", g.hex(g.pick([15, 20, 33]))], ["x-b3-spanid", s], ["x-b3-sampled", "1"]],
        "missing_span": [["x-b3-traceid", t], ["x-b3-sampled", "1"]],
        "bad_span": [["x-b3-traceid", t], ["x-b3-spanid", s[:-1] + "z"], ["x-b3-sampled", "1"]],
        "zero_span": [["x-b3-traceid", t], ["x-b3-spanid", "0" * 16]],
        "zero_trace": [["x-b3-traceid", "0" * 32], ["x-b3-spanid", s]],
        "bad_sampled": ids + [["x-b3-sampled", g.pick(["2", "yes", "x"])]],
        "bad_flags": ids + [["x-b3-sampled", "1"], ["x-b3-flags", g.pick(["2", "true", "x"])]],
        "missing_trace": [["x-b3-spanid", s], ["x-b3-sampled", "1"]],
    }[cls]
    return case("b3multi", kind, cls, headers)


def jaeger(g, kind):
    t, s, p = g.hex(32), g.hex(16), g.hex(16)
    flags = g.pick(["0", "1", "3", "01", "03", "05"])
    baggage = [[f"uberctx-{g.token(1, 8).lower()}", g.bag_value(plain=True)] for _ in range(g.r.randint(0, 3))]
    if kind == "valid":
        cls = g.pick(["full", "short_ids", "url_encoded", "zero_parent", "debug_only", "with_baggage"])
        value = {
            "full": f"{t}:{s}:{p}:{flags}",
            "short_ids": f"{t.lstrip('0')[: g.r.randint(1, 32)] or '1'}:{s.lstrip('0')[: g.r.randint(1, 16)] or '1'}:0:{flags}",
            "url_encoded": f"{t}%3A{s}%3A{p}%3A{flags}",
            "zero_parent": f"{t}:{s}:0:{flags}",
            "debug_only": f"{t}:{s}:0:2",
            "with_baggage": f"{t}:{s}:0:{flags}",
        }[cls]
        headers = [["uber-trace-id", value]] + (baggage if cls == "with_baggage" else [])
        return case("jaeger", kind, cls, headers)
    cls = g.pick(["three_fields", "five_fields", "zero_trace", "zero_span", "bad_hex", "long_trace", "bad_flags",
                  "hex_prefix", "underscore", "sign", "inner_space", "bad_parent"])
    value = {
        "three_fields": f"{t}:{s}:{flags}",
        "five_fields": f"{t}:{s}:{p}:{flags}:1",
        "zero_trace": f"{'0' * g.r.randint(1, 32)}:{s}:0:1",
        "zero_span": f"{t}:{'0' * g.r.randint(1, 16)}:0:1",
        "bad_hex": f"{t[:-1]}x:{s}:0:1",
        "long_trace": f"1{t}:{s}:0:1",
        "bad_flags": f"{t}:{s}:0:{g.pick(['x', '', '100', 'fff'])}",
        "hex_prefix": f"0x{t[:16]}:{s}:0:1",
        "underscore": f"{t[:8]}_{t[8:16]}:{s}:0:1",
        "sign": f"+{t[:16]}:{s}:0:1",
        "inner_space": f"{t[:16]}:{s} :0:1",
        "bad_parent": f"{t}:{s}:{g.pick(['x', '', p + '0'])}:1",
    }[cls]
    return case("jaeger", kind, cls, [["uber-trace-id", value]] + baggage)


def baggage(g, kind):
    def members(n, plain=False):
        out, seen = [], set()
        while len(out) < n:
            key = g.token()
            if key not in seen:
                seen.add(key)
                out.append(f"{key}={g.bag_value(plain)}")
        return out

    if kind == "valid":
        cls = g.pick(["simple", "encoded", "properties", "ows", "plus", "two_lines", "many", "duplicate_keys"])
        if cls == "simple":
            return case("baggage", kind, cls, [["baggage", ",".join(members(g.r.randint(1, 8), plain=True))]])
        if cls == "encoded":
            return case("baggage", kind, cls, [["baggage", ",".join(members(g.r.randint(1, 8)))]])
        if cls == "properties":
            ms = [m + ";" + g.token().lower() + g.pick(["", "=" + g.token().lower()]) for m in members(g.r.randint(1, 4), plain=True)]
            return case("baggage", kind, cls, [["baggage", ",".join(ms)]])
        if cls == "ows":
            ms = [m.replace("=", g.pick([" = ", "\t=", "= "]), 1) for m in members(g.r.randint(1, 5), plain=True)]
            return case("baggage", kind, cls, [["baggage", " , ".join(ms)]])
        if cls == "plus":
            return case("baggage", kind, cls, [["baggage", f"{g.token()}=a+b,{g.token()}=%2B"]])
        if cls == "two_lines":
            ms = members(g.r.randint(2, 8), plain=True)
            return case("baggage", kind, cls, [["baggage", ",".join(ms[:1])], ["baggage", ",".join(ms[1:])]])
        if cls == "many":
            return case("baggage", kind, cls, [["baggage", ",".join(members(g.r.randint(64, 180), plain=True))[:8192].rsplit(",", 1)[0]]])
        ms = members(3, plain=True)
        key = ms[0].split("=")[0]
        return case("baggage", kind, cls, [["baggage", ",".join(ms + [f"{key}={g.bag_value(True)}"])]])
    cls = g.pick(["no_equals", "bad_key", "bad_value", "empty_property", "non_ascii", "member_too_long", "too_many", "too_long"])
    ms = members(g.r.randint(1, 4), plain=True)
    bad = {
        "no_equals": g.token(),
        "bad_key": g.pick(["a b", "k(", "k@x", "k/v", "{k}"]) + "=v",
        "bad_value": g.token() + "=" + g.pick(["a b", "a\\b", "\"q\"", "a;", "a,b" [:2]]),
        "empty_property": g.token() + "=v;",
        "non_ascii": g.token() + "=é",
        "member_too_long": g.token() + "=" + "v" * 4100,
        "too_many": ",".join(members(181, plain=True)),
        "too_long": ",".join(f"{g.token(4, 8)}{i}={'v' * 500}" for i in range(20)),
    }[cls]
    return case("baggage", kind, cls, [["baggage", ",".join(ms + [bad]) if cls not in ("too_many", "too_long") else bad]])


def gcp(g, kind):
    t = g.hex(32)
    span = g.r.randint(1, 2**64 - 1)
    if kind == "valid":
        cls = g.pick(["with_options", "without_options", "small_span"])
        value = {
            "with_options": f"{t}/{span};o={g.pick(['0', '1'])}",
            "without_options": f"{t}/{span}",
            "small_span": f"{t}/{g.r.randint(1, 1000)};o=1",
        }[cls]
        return case("gcp", kind, cls, [["x-cloud-trace-context", value]])
    cls = g.pick(["upper_hex", "short_trace", "zero_span", "span_overflow", "bad_options", "no_slash", "extra", "zero_trace"])
    value = {
        "upper_hex": f"{t.upper()}/{span};o=1" if any(c.isalpha() for c in t) else f"{t[:-1]}A/{span};o=1",
        "short_trace": f"{t[:-1]}/{span};o=1",
        "zero_span": f"{t}/0;o=1",
        "span_overflow": f"{t}/{2**64 + g.r.randint(0, 10**6)};o=1",
        "bad_options": f"{t}/{span};o={g.pick(['', 'x', '-1'])}",
        "no_slash": f"{t}{span};o=1",
        "extra": f"{t}/{span};o=1;x=2",
        "zero_trace": f"{'0' * 32}/{span};o=1",
    }[cls]
    return case("gcp", kind, cls, [["x-cloud-trace-context", value]])


def xray(g, kind):
    root = f"1-{g.hex(8)}-{g.hex(24)}"
    parent = g.hex(16)
    if kind == "valid":
        cls = g.pick(["full", "reordered", "sampled_unknown", "no_sampled", "with_lineage"])
        fields = {
            "full": [f"Root={root}", f"Parent={parent}", f"Sampled={g.pick(['0', '1'])}"],
            "reordered": [f"Sampled={g.pick(['0', '1'])}", f"Parent={parent}", f"Root={root}"],
            "sampled_unknown": [f"Root={root}", f"Parent={parent}", "Sampled=?"],
            "no_sampled": [f"Root={root}", f"Parent={parent}"],
            "with_lineage": [f"Root={root}", f"Parent={parent}", "Sampled=1", f"Lineage={g.hex(8)}:1|{g.hex(8)}:5"],
        }[cls]
        return case("xray", kind, cls, [["x-amzn-trace-id", ";".join(fields)]])
    cls = g.pick(["no_root", "root_version", "root_length", "no_parent", "parent_length", "bad_sampled", "garbage_field", "lower_keys"])
    fields = {
        "no_root": [f"Parent={parent}", "Sampled=1"],
        "root_version": [f"Root=2{root[1:]}", f"Parent={parent}", "Sampled=1"],
        "root_length": [f"Root={root[:-1]}", f"Parent={parent}", "Sampled=1"],
        "no_parent": [f"Root={root}", "Sampled=1"],
        "parent_length": [f"Root={root}", f"Parent={parent[:-1]}", "Sampled=1"],
        "bad_sampled": [f"Root={root}", f"Parent={parent}", f"Sampled={g.pick(['2', 'x', 'yes'])}"],
        "garbage_field": [f"Root={root}", f"Parent={parent}", "Sampled=1", "garbage"],
        "lower_keys": [f"root={root}", f"parent={parent}", "sampled=1"],
    }[cls]
    return case("xray", kind, cls, [["x-amzn-trace-id", ";".join(fields)]])


GENERATORS = {
    "tracecontext": tracecontext,
    "baggage": baggage,
    "b3": b3_single,
    "b3multi": b3_multi,
    "jaeger": jaeger,
    "gcp": gcp,
    "xray": xray,
}


def corpus(seed, per_kind):
    g = Gen(seed)
    return [gen(g, kind) for name, gen in GENERATORS.items() for kind in ("valid", "invalid") for _ in range(per_kind)]


def main(argv):
    # The propagators log every rejected header; the corpus is full of them on purpose.
    logging.disable(logging.CRITICAL)
    if len(argv) >= 2 and argv[1] == "corpus":
        args = dict(zip(argv[2::2], argv[3::2]))
        json.dump(corpus(int(args.get("--seed", "4")), int(args.get("--per-kind", "1000"))), sys.stdout)
    elif len(argv) == 2 and argv[1] == "extract":
        json.dump([extract(item) for item in json.load(sys.stdin)], sys.stdout)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
