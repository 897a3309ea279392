"""The Istio way to put the filter's ids in access logs (docs/correlation.md): the istiod Helm
values under istio/meshconfig/ and the Telemetry that turns the provider on.

MeshConfig is not a Kubernetes resource, so Istio's CRD file has no schema for it. The fields
used here are checked against MESH_CONFIG_FIELDS, written from istio/api
`mesh/v1alpha1/config.proto` (`MeshConfig`, `ExtensionProvider`, `EnvoyFileAccessLogProvider`)
for exactly the fields these files use: a misspelt or misplaced field fails. The Telemetry is
checked against its CRD with the other manifests (test_manifests.py). What the formats produce
is checked in real Envoy, translated as istiod translates them, by tests/tests/correlation.rs."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable

import pytest
from conftest import all_manifests, mesh_configs

# The meshtrace keys of every JSON access-log format in the repository, and what they read
# (the filter's published filter state; tests/tests/correlation.rs ties these to the filter).
MESHTRACE_KEYS = {
    "trace_id": "%FILTER_STATE(wasm.meshtrace.trace_id:PLAIN)%",
    "span_id": "%FILTER_STATE(wasm.meshtrace.span_id:PLAIN)%",
    "trace_sampled": "%FILTER_STATE(wasm.meshtrace.sampled:PLAIN)%",
    "sampling_reason": "%FILTER_STATE(wasm.meshtrace.sampling_reason:PLAIN)%",
}
# Istio's built-in provider, configured by the access-log fields of MeshConfig itself.
BUILTIN_PROVIDER = "envoy"


def check_string(value, where: str) -> list[str]:
    return [] if isinstance(value, str) else [f"{where}: expected a string, got {value!r}"]


def check_enum(*allowed: str) -> Callable:
    def check(value, where: str) -> list[str]:
        return [] if value in allowed else [f"{where}: {value!r} is not one of {list(allowed)}"]

    return check


def check_bool(value, where: str) -> list[str]:
    return [] if isinstance(value, bool) else [f"{where}: expected a boolean, got {value!r}"]


def check_labels(value, where: str) -> list[str]:
    """A google.protobuf.Struct of format strings (Envoy renders other values as they are)."""
    if not isinstance(value, dict) or not value:
        return [f"{where}: expected a non-empty mapping"]
    return [e for key, v in value.items() for e in check_string(v, f"{where}.{key}")]


def check_log_format(value, where: str) -> list[str]:
    """`LogFormat` is a oneof: `text` or `labels`."""
    errors = check_fields(value, {"text": check_string, "labels": check_labels}, where)
    if isinstance(value, dict) and len(value.keys() & {"text", "labels"}) != 1:
        errors.append(f"{where}: exactly one of text or labels")
    return errors


def check_file_provider(value, where: str) -> list[str]:
    fields = {"path": check_string, "logFormat": check_log_format, "omitEmptyValues": check_bool}
    return check_fields(value, fields, where)


def check_provider(value, where: str) -> list[str]:
    errors = check_fields(value, {"name": check_string, "envoyFileAccessLog": check_file_provider}, where)
    if isinstance(value, dict):
        if not value.get("name"):
            errors.append(f"{where}: name is required")
        if "envoyFileAccessLog" not in value:
            errors.append(f"{where}: no provider kind")
    return errors


def check_providers(value, where: str) -> list[str]:
    if not isinstance(value, list):
        return [f"{where}: expected a list"]
    errors = [e for i, p in enumerate(value) for e in check_provider(p, f"{where}[{i}]")]
    names = [p.get("name") for p in value if isinstance(p, dict)]
    errors += [f"{where}: provider {n!r} defined twice" for n in sorted(set(names)) if names.count(n) > 1]
    return errors


MESH_CONFIG_FIELDS: dict[str, Callable] = {
    "accessLogFile": check_string,
    "accessLogEncoding": check_enum("TEXT", "JSON"),
    "accessLogFormat": check_string,
    "extensionProviders": check_providers,
}


def check_fields(value, fields: dict[str, Callable], where: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: expected a mapping, got {value!r}"]
    errors = [f"{where}: unknown field {key!r}" for key in value if key not in fields]
    for key, check in fields.items():
        if key in value:
            errors += check(value[key], f"{where}.{key}")
    return errors


def json_format(mesh: dict) -> dict | None:
    """The JSON keys of the built-in provider's format, as istiod parses them (None: not JSON)."""
    if mesh.get("accessLogEncoding") != "JSON" or "accessLogFormat" not in mesh:
        return None
    return json.loads(mesh["accessLogFormat"])


def violations(values: dict) -> list[str]:
    errors = check_fields(values, {"meshConfig": lambda v, w: check_fields(v, MESH_CONFIG_FIELDS, w)}, "values")
    mesh = values.get("meshConfig", {})
    if mesh.get("accessLogEncoding") == "JSON" and "accessLogFormat" in mesh:
        try:
            parsed = json_format(mesh)
        except json.JSONDecodeError as error:
            return errors + [f"accessLogFormat is not JSON ({error}): istiod would use its default keys"]
        errors += check_labels(parsed, "accessLogFormat")
    return errors


def access_log_formats() -> dict[str, dict]:
    """Every JSON access-log format the meshconfig files define, by where it is defined."""
    formats = {}
    for file, values in mesh_configs().items():
        mesh = values["meshConfig"]
        if (parsed := json_format(mesh)) is not None:
            formats[f"{file} accessLogFormat"] = parsed
        for provider in mesh.get("extensionProviders", []):
            labels = provider.get("envoyFileAccessLog", {}).get("logFormat", {}).get("labels")
            if labels is not None:
                formats[f"{file} provider {provider['name']}"] = labels
    return formats


def test_there_are_both_ways() -> None:
    assert sorted(mesh_configs()) == ["access-log-format.yaml", "access-log-provider.yaml"]
    assert len(access_log_formats()) == 2


@pytest.mark.parametrize("file", sorted(mesh_configs()))
def test_mesh_config_uses_istios_fields(file: str) -> None:
    assert violations(mesh_configs()[file]) == []


def providers(values: dict) -> list[dict]:
    return values["meshConfig"]["extensionProviders"]


def labels(values: dict) -> dict:
    return providers(values)[0]["envoyFileAccessLog"]["logFormat"]["labels"]


BREAKS: list[tuple[str, str, Callable[[dict], None], str]] = [
    ("access-log-format.yaml", "misspelt field",
     lambda v: v["meshConfig"].update(accesLogFile="/dev/stdout"), "unknown field 'accesLogFile'"),
    ("access-log-format.yaml", "unknown encoding",
     lambda v: v["meshConfig"].update(accessLogEncoding="YAML"), "is not one of"),
    ("access-log-format.yaml", "format that is not JSON",
     lambda v: v["meshConfig"].update(accessLogFormat='{"trace_id": "%TRACE_ID%",}'), "is not JSON"),
    ("access-log-format.yaml", "format value not a string",
     lambda v: v["meshConfig"].update(accessLogFormat='{"trace_id": 1}'), "expected a string"),
    ("access-log-provider.yaml", "provider without a name",
     lambda v: providers(v)[0].pop("name"), "name is required"),
    ("access-log-provider.yaml", "provider defined twice",
     lambda v: providers(v).append(copy.deepcopy(providers(v)[0])), "defined twice"),
    ("access-log-provider.yaml", "text and labels",
     lambda v: providers(v)[0]["envoyFileAccessLog"]["logFormat"].update(text="%TRACE_ID%"), "exactly one"),
    ("access-log-provider.yaml", "misplaced labels",
     lambda v: providers(v)[0]["envoyFileAccessLog"].update(labels={"a": "b"}), "unknown field 'labels'"),
    ("access-log-provider.yaml", "label not a string",
     lambda v: labels(v).update(trace_sampled=True), "expected a string"),
]


@pytest.mark.parametrize(("file", "name", "mutate", "expected"), BREAKS, ids=[b[1] for b in BREAKS])
def test_broken_mesh_config_is_refused(file: str, name: str, mutate, expected: str) -> None:
    broken = copy.deepcopy(mesh_configs()[file])
    mutate(broken)
    found = violations(broken)
    assert any(expected in message for message in found), f"{name}: {found}"


@pytest.mark.parametrize("where", sorted(access_log_formats()))
def test_every_format_logs_the_filters_ids(where: str) -> None:
    fields = access_log_formats()[where]
    assert {key: fields.get(key) for key in MESHTRACE_KEYS} == MESHTRACE_KEYS


def test_both_ways_log_the_same_lines() -> None:
    first, second = access_log_formats().values()
    assert first == second


def test_every_access_log_provider_a_telemetry_names_is_defined() -> None:
    defined = {BUILTIN_PROVIDER} | {
        provider["name"] for values in mesh_configs().values() for provider in values["meshConfig"].get("extensionProviders", [])
    }
    named = [
        (manifest.id, provider["name"])
        for manifest in all_manifests()
        if manifest.kind == "Telemetry"
        for entry in manifest.doc["spec"].get("accessLogging", [])
        for provider in entry.get("providers", [])
    ]
    assert named, "no Telemetry turns an access-log provider on"
    assert [(where, name) for where, name in named if name not in defined] == []
