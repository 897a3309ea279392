"""Every manifest under istio/ (and its pinned copy) is one the API server accepts, a broken copy
of each is one it refuses, and the pieces fit together: the filter's export cluster is the one
Istio builds for the shim, the shim listens where its Service and probes point, and it runs
locked down. The filter's own config parser checks pluginConfig in tests/tests/istio.rs."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path

import kubernetes_validate.utils as kv
import pytest
import yaml
from crd_validation import DNS_LABEL, DNS_SUBDOMAIN, evaluate_rule
from conftest import (
    ISTIO,
    KUBERNETES_VERSIONS,
    Manifest,
    all_manifests,
    base_manifests,
    example_manifests,
)

CORE_KINDS = {"Namespace", "ServiceAccount", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"}
PLUGIN_KINDS = {"WasmPlugin", "TrafficExtension"}


def validate_core(doc: dict) -> list[str]:
    """kubernetes-validate in strict mode (unknown fields are errors) for every supported
    Kubernetes version, a kind it has no schema for being an error too; plus the API server's
    name rules, which are not in the JSON schemas."""
    name = str(doc.get("metadata", {}).get("name", ""))
    label_named = doc.get("kind") in {"Namespace", "Service"}
    errors = [] if (DNS_LABEL if label_named else DNS_SUBDOMAIN).match(name) else [f"invalid name {name!r}"]
    for version in KUBERNETES_VERSIONS:
        try:
            kv.validate(doc, version, strict=True)
        except kv.ValidationError as error:
            path = ".".join(str(p) for p in error.path)
            errors.append(f"k8s {version}: {path}: {error.message}")
        except kv.SchemaNotFoundError as error:
            errors.append(error.message)
    return errors


def violations(doc: dict, crds) -> list[str]:
    if doc.get("kind") in CORE_KINDS:
        return validate_core(doc)
    return [str(v) for v in crds.violations(doc)]


@pytest.mark.parametrize("manifest", all_manifests(), ids=lambda m: m.id)
def test_manifest_is_valid(manifest: Manifest, crds) -> None:
    assert manifest.kind in CORE_KINDS or crds.knows(manifest.doc), f"unexpected kind {manifest.kind}"
    assert violations(manifest.doc, crds) == []


# === Broken copies ===


def spec(d: dict) -> dict:
    return d["spec"]


def wasm(d: dict) -> dict:
    """Where the Wasm settings live: the spec of a WasmPlugin, spec.wasm of a TrafficExtension."""
    return d["spec"]["wasm"] if d["kind"] == "TrafficExtension" else d["spec"]


def select(d: dict, labels: dict) -> None:
    """Targets the workloads with `labels` (and nothing else)."""
    spec(d).pop("targetRefs", None)
    spec(d)["selector"] = {"matchLabels": labels}


def container(d: dict) -> dict:
    return d["spec"]["template"]["spec"]["containers"][0]


# (what is broken, how, a fragment of the expected error). Each break applies to every manifest
# of the kind; the break must make validation fail with that message.
BREAKS: dict[str, list[tuple[str, Callable[[dict], None], str]]] = {
    "*": [
        ("misspelt metadata field", lambda d: d["metadata"].update(lables={"a": "b"}), "lables"),
        ("name not a DNS name", lambda d: d["metadata"].update(name="Meshtrace_Shim"), ""),
    ],
    "WasmPlugin": [
        ("selector and targetRefs", lambda d: spec(d).update(
            selector={"matchLabels": {"app": "a"}},
            targetRefs=[{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "g"}]),
         "only one of targetRefs or selector can be set"),
        ("ftp:// url", lambda d: spec(d).update(url="ftp://example.com/filter.wasm"), "url must have schema"),
        ("uppercase sha256", lambda d: spec(d).update(sha256="AB" * 32), "does not match"),
        ("HOST env with a value", lambda d: spec(d).setdefault("vmConfig", {}).setdefault("env", []).append(
            {"name": "X", "valueFrom": "HOST", "value": "v"}), "value may only be set when valueFrom is INLINE"),
        ("duplicate env name", lambda d: spec(d).setdefault("vmConfig", {}).update(
            env=[{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]), "duplicate entries"),
        ("unknown fail strategy", lambda d: spec(d).update(failStrategy="FAIL_SOMETIMES"), "is not one of"),
        ("misspelt field", lambda d: spec(d).update(failstrategy="FAIL_OPEN"), "failstrategy"),
        ("wildcard selector", lambda d: select(d, {"app": "*"}), "wildcard not allowed"),
    ],
    "TrafficExtension": [
        ("wasm and lua", lambda d: spec(d).update(lua={"inlineCode": "function envoy_on_request(h) end"}),
         "exactly one of wasm or lua must be set"),
        ("no url", lambda d: wasm(d).pop("url"), "'url' is a required property"),
        ("ftp:// url", lambda d: wasm(d).update(url="ftp://example.com/filter.wasm"), "url must have schema"),
        ("unknown phase", lambda d: spec(d).update(phase="FIRST"), "is not one of"),
        ("cross-namespace target", lambda d: spec(d).update(
            targetRefs=[{"kind": "Gateway", "name": "g", "namespace": "other"}]), "cross namespace referencing"),
    ],
    "Telemetry": [
        ("selector and targetRefs", lambda d: spec(d).update(
            selector={"matchLabels": {"app": "a"}}, targetRefs=[{"kind": "Gateway", "name": "g"}]),
         "only one of targetRefs or selector can be set"),
        ("sampling above 100%", lambda d: spec(d)["tracing"][0].update(randomSamplingPercentage=100.5), "maximum"),
        ("misspelt field", lambda d: spec(d)["tracing"][0].update(disableContextPropogation=True),
         "disableContextPropogation"),
        ("unknown access-log mode", lambda d: spec(d).setdefault("accessLogging", [{}])[0].update(
            match={"mode": "INBOUND"}), "is not one of"),
        ("access-log provider without a name", lambda d: spec(d).setdefault("accessLogging", [{}])[0]
         .setdefault("providers", []).append({}), "'name' is a required property"),
    ],
    "ServiceEntry": [
        ("wildcard-only host", lambda d: spec(d).update(hosts=["*"]), ""),
        ("port 0", lambda d: spec(d)["ports"][0].update(number=0), ""),
        ("unknown resolution", lambda d: spec(d).update(resolution="MAGIC"), "is not one of"),
    ],
    "Deployment": [
        ("replicas as text", lambda d: spec(d).update(replicas="two"), "replicas"),
        ("misspelt probe field", lambda d: container(d)["livenessProbe"]["httpGet"].update(pth="/healthz"), "pth"),
    ],
    "Service": [("port as text", lambda d: spec(d)["ports"][0].update(port="otlp"), "port")],
    "ConfigMap": [("number as a value", lambda d: d["data"].update(MESHTRACE_SHIM_STORE_MAX_SPANS=5), "data")],
    "NetworkPolicy": [("policyTypes not a list", lambda d: spec(d).update(policyTypes="Ingress"), "policyTypes")],
    "PodDisruptionBudget": [("minAvailable as object", lambda d: spec(d).update(minAvailable={"pods": 1}), "minAvailable")],
    "ServiceAccount": [("token flag as text", lambda d: d.update(automountServiceAccountToken="no"), "automount")],
    "Namespace": [("misspelt spec", lambda d: d.update(spce={}), "spce")],
}


def broken_copies() -> list[tuple[Manifest, str, Callable[[dict], None], str]]:
    cases = []
    for manifest in base_manifests() + example_manifests():
        breaks = BREAKS["*"] + BREAKS.get(manifest.kind, [])
        assert len(breaks) > len(BREAKS["*"]), f"no kind-specific break for {manifest.kind}"
        cases += [(manifest, name, mutate, expected) for name, mutate, expected in breaks]
    return cases


@pytest.mark.parametrize(
    ("manifest", "name", "mutate", "expected"),
    broken_copies(),
    ids=lambda value: value.id if isinstance(value, Manifest) else value if isinstance(value, str) else "",
)
def test_broken_copy_is_refused(manifest: Manifest, name: str, mutate, expected: str, crds) -> None:
    broken = copy.deepcopy(manifest.doc)
    mutate(broken)
    assert broken != manifest.doc, f"the break {name!r} changed nothing"
    found = violations(broken, crds)
    assert found, f"{name}: accepted"
    assert any(expected in message for message in found), f"{name}: refused for another reason: {found}"


def test_the_cel_library_understands_urls() -> None:
    """isURL/url().getScheme() follow Go's url.ParseRequestURI, as Kubernetes' CEL library does."""
    rule = 'isURL(self) ? url(self).getScheme() : "-"'
    cases = {
        "oci://ghcr.io/meshtrace/meshtrace-filter:0.1.0": "oci",
        "https://example.com/filter.wasm": "https",
        "file:///opt/filter.wasm": "file",
        "ghcr.io/meshtrace/meshtrace-filter:0.1.0": "-",
        "http://host:port/x": "-",
        "/plugins/filter.wasm": "",
        "": "-",
    }
    for url, scheme in cases.items():
        assert evaluate_rule(f"({rule}) == {json.dumps(scheme)}", url) == (True, ""), url
    assert evaluate_rule("self.size() == 0", "") == (True, "")
    assert evaluate_rule("self.nosuchfunction()", "x")[0] is False


# === The pieces fit together ===


def by_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m.kind == kind]


def one(manifests: list[Manifest], kind: str) -> dict:
    found = by_kind(manifests, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0].doc


def is_http_port(port: dict) -> bool:
    """How Istio decides a Service or ServiceEntry port speaks HTTP: appProtocol, else the port
    name's prefix (ServiceEntry: the protocol field)."""
    protocol = port.get("appProtocol") or port.get("protocol") or ""
    if protocol.upper() in {"HTTP", "HTTP2", "GRPC", "H2C"}:
        return True
    return re.match(r"^(http|http2|grpc)(-|$)", port.get("name", "")) is not None


def cluster_targets(manifests: list[Manifest]) -> dict[str, dict]:
    """Every `outbound|<port>||<host>` cluster Istio builds from these manifests, with its port."""
    clusters = {}
    for service in by_kind(manifests, "Service"):
        host = f"{service.name}.{service.namespace}.svc.cluster.local"
        for port in service.doc["spec"]["ports"]:
            clusters[f"outbound|{port['port']}||{host}"] = port
    for entry in by_kind(manifests, "ServiceEntry"):
        for host in entry.doc["spec"]["hosts"]:
            for port in entry.doc["spec"]["ports"]:
                clusters[f"outbound|{port['number']}||{host}"] = port
    return clusters


def plugin_configs(manifests: list[Manifest]) -> list[tuple[Manifest, dict]]:
    return [(m, wasm(m.doc).get("pluginConfig", {})) for m in manifests if m.kind in PLUGIN_KINDS]


def test_export_cluster_is_an_http_cluster_istio_builds() -> None:
    """exporter.cluster must be the exact name Istio gives the shim's cluster, or the filter's
    dispatch_http_call fails with BadArgument on every flush. Examples may add ServiceEntries."""
    base = base_manifests()
    checked = 0
    for path in sorted({m.path for m in base + example_manifests()}):
        in_file = [m for m in base + example_manifests() if m.path == path]
        clusters = cluster_targets(base + in_file)
        for manifest, config in plugin_configs(in_file):
            exporter = config.get("exporter", {})
            cluster = exporter.get("cluster", "")
            assert cluster in clusters, f"{manifest.id}: {cluster!r} is not one of {sorted(clusters)}"
            assert is_http_port(clusters[cluster]), f"{manifest.id}: {cluster} is not an HTTP port"
            host, port = cluster.split("|")[3], cluster.split("|")[1]
            assert exporter.get("authority") == f"{host}:{port}", f"{manifest.id}: authority"
            checked += 1
    assert checked >= 5


def test_every_plugin_fails_open_early_in_the_chain() -> None:
    plugins = [m for m in base_manifests() + example_manifests() if m.kind in PLUGIN_KINDS]
    assert len(plugins) >= 5
    for plugin in plugins:
        assert wasm(plugin.doc)["failStrategy"] == "FAIL_OPEN", plugin.id
        assert plugin.doc["spec"]["phase"] == "AUTHN", plugin.id
        assert "sha256" not in wasm(plugin.doc), f"{plugin.id}: the base is pinned by make wasm-image"


def test_native_tracing_neither_propagates_nor_reports() -> None:
    telemetry = one(base_manifests(), "Telemetry")
    plugin = one(base_manifests(), "WasmPlugin")
    assert telemetry["metadata"]["namespace"] == plugin["metadata"]["namespace"]
    assert "selector" not in telemetry["spec"] and "targetRefs" not in telemetry["spec"]
    assert telemetry["spec"]["tracing"] == [{"disableContextPropagation": True, "disableSpanReporting": True}]


def test_shim_pod_is_wired_to_its_service_config_and_account() -> None:
    base = base_manifests()
    deployment, service = one(base, "Deployment"), one(base, "Service")
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    for kind in ("PodDisruptionBudget",):
        assert one(base, kind)["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert one(base, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert pod["spec"]["serviceAccountName"] == one(base, "ServiceAccount")["metadata"]["name"]
    shim = pod["spec"]["containers"][0]
    assert shim["envFrom"] == [{"configMapRef": {"name": one(base, "ConfigMap")["metadata"]["name"]}}]
    ports = {p["name"]: p["containerPort"] for p in shim["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports.keys()
    namespaces = {m.namespace for m in base if m.kind in {"ServiceAccount", "ConfigMap", "Deployment", "Service"}}
    assert namespaces == {one(base, "Namespace")["metadata"]["name"]}


def test_shim_listens_where_the_service_and_probes_point() -> None:
    """The ConfigMap binds the pod IP on the container ports (the binary's default, 127.0.0.1,
    would make the Service and the probes fail)."""
    base = base_manifests()
    data = one(base, "ConfigMap")["data"]
    shim = one(base, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in shim["ports"]}
    assert data["MESHTRACE_SHIM_OTLP_HTTP_ADDR"] == f"0.0.0.0:{ports['otlp-http']}"
    assert data["MESHTRACE_SHIM_OTLP_GRPC_ADDR"] == f"0.0.0.0:{ports['otlp-grpc']}"
    assert data["MESHTRACE_SHIM_ADMIN_ADDR"] == f"0.0.0.0:{ports['admin']}"
    assert shim["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert shim["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    policy = one(base, "NetworkPolicy")["spec"]
    allowed = {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
    assert allowed == set(ports)
    # Istio must see OTLP/gRPC as gRPC (HTTP/2), not as plain TCP or HTTP/1.1.
    by_target = {p["targetPort"]: p for p in one(base, "Service")["spec"]["ports"]}
    assert by_target["otlp-grpc"]["appProtocol"] == "grpc"


def test_shim_runs_locked_down() -> None:
    base = base_manifests()
    pod = one(base, "Deployment")["spec"]["template"]
    assert pod["metadata"]["labels"]["sidecar.istio.io/inject"] == "false"
    assert one(base, "Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    spec_ = pod["spec"]
    assert spec_["automountServiceAccountToken"] is False
    assert spec_["securityContext"]["runAsNonRoot"] is True
    assert spec_["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for shim in spec_["containers"]:
        context = shim["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert {"cpu", "memory"} <= shim["resources"]["requests"].keys()
        assert "memory" in shim["resources"]["limits"]


def test_kustomization_lists_every_base_manifest() -> None:
    kustomization = yaml.safe_load((ISTIO / "kustomization.yaml").read_text())
    assert "namespace" not in kustomization, "a namespace transform would move the WasmPlugin out of the root namespace"
    listed = kustomization["resources"]
    files = sorted(p.name for p in ISTIO.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == files
    assert all((ISTIO / Path(name)).is_file() for name in listed)
