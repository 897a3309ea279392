"""Validation of custom resources against a CustomResourceDefinition, as the API server does it.

A plain JSON Schema validator run on a CRD's ``openAPIV3Schema`` misses what the API server
adds (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/):

- unknown fields: the schema is *structural*, so a field it does not declare is pruned, and
  ``kubectl apply`` (strict field validation, the default) rejects it. Here it is an error,
  except under ``x-kubernetes-preserve-unknown-fields``;
- ``nullable``, which JSON Schema does not know;
- ``x-kubernetes-list-type: map`` (unique keys) and ``set`` (unique items);
- ``x-kubernetes-validations``: CEL rules (Istio expresses its one-of rules this way, e.g.
  "only one of targetRefs or selector can be set"). They are evaluated with cel-python plus the
  Kubernetes CEL functions these CRDs use; a rule that cannot be evaluated is an error, never
  a pass. Transition rules (``oldSelf``) only apply to updates and are not evaluated;
- ``metadata``: checked against Kubernetes' ObjectMeta schema, and names as DNS subdomains.
"""

from __future__ import annotations

import copy
import json
import re
import string
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Iterator

import celpy
import celpy.celtypes as celtypes
import jsonschema
import yaml

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


@dataclass(frozen=True)
class Violation:
    """One problem, at a dotted path inside the object."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '<root>'}: {self.message}"


# === Schema preparation ===


def structural(schema: dict) -> dict:
    """The CRD schema as JSON Schema: `nullable` allows null, undeclared fields are rejected
    unless the node preserves unknown fields."""
    schema = copy.deepcopy(schema)

    def visit(node: Any) -> None:
        if not isinstance(node, dict):
            return
        if node.get("nullable") and "type" in node:
            node["type"] = [node["type"], "null"]
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            node["additionalProperties"] = False
        for key in ("properties", "patternProperties"):
            for child in node.get(key, {}).values():
                visit(child)
        for key in ("items", "additionalProperties", "not"):
            visit(node.get(key))
        for key in ("allOf", "anyOf", "oneOf"):
            for child in node.get(key, []):
                visit(child)

    visit(schema)
    # The API server handles these three itself on every kind.
    schema.setdefault("properties", {}).update(
        apiVersion={"type": "string"}, kind={"type": "string"}, metadata={"type": "object"}
    )
    schema["additionalProperties"] = False
    return schema


# === Kubernetes CEL library (the parts these CRDs use) ===

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
_HOST_CHARS = set(string.ascii_letters + string.digits + "-._~!$&'()*+,;=:[]<>\"%")


def _parse_request_uri(text: str) -> str | None:
    """The scheme of `text` if Go's `url.ParseRequestURI` accepts it (Kubernetes' `isURL`),
    else None. Follows net/url: no control bytes; an absolute URI or an absolute path; a port
    made of digits; no characters a host cannot hold; valid percent-escapes."""
    if not text or any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return None
    if text.startswith(":"):
        return None
    match = _SCHEME.match(text)
    scheme, rest = (match[1].lower(), text[match.end() :]) if match else ("", text)
    rest = rest.split("?", 1)[0]
    if not rest.startswith("/"):
        return scheme if scheme else None  # "oci:foo" is an opaque URI; "foo" is not a URI
    if re.search(r"%(?![0-9A-Fa-f]{2})", rest):
        return None
    if scheme and rest.startswith("//"):
        authority = rest[2:].split("/", 1)[0]
        host = authority.rsplit("@", 1)[-1]
        if not host.startswith("["):
            host_part, _, port = host.rpartition(":") if ":" in host else (host, "", "")
            if port and not port.isdigit():
                return None
            if any(c not in _HOST_CHARS for c in host_part if ord(c) < 0x80):
                return None
    return scheme


def _is_url(value: celtypes.StringType) -> celtypes.BoolType:
    return celtypes.BoolType(_parse_request_uri(str(value)) is not None)


def _url(value: celtypes.StringType) -> celtypes.StringType:
    if _parse_request_uri(str(value)) is None:
        raise ValueError(f"URL parse error during conversion from string: {value}")
    return celtypes.StringType(str(value))


def _get_scheme(value: celtypes.StringType) -> celtypes.StringType:
    return celtypes.StringType(_parse_request_uri(str(value)) or "")


CEL_FUNCTIONS = {"isURL": _is_url, "url": _url, "getScheme": _get_scheme}
_CEL = celpy.Environment()


@cache
def _program(rule: str) -> celpy.Runner:
    return _CEL.program(_CEL.compile(rule), functions=CEL_FUNCTIONS)


def evaluate_rule(rule: str, value: Any) -> tuple[bool, str]:
    """Evaluates a CEL validation rule with `self` bound to `value`: (passed, detail)."""
    try:
        result = _program(rule).evaluate({"self": celpy.json_to_cel(value)})
    except Exception as error:  # noqa: BLE001 - any evaluation failure fails the rule
        return False, f"rule could not be evaluated: {error}"
    if isinstance(result, celtypes.BoolType):
        return bool(result), ""
    return False, f"rule did not evaluate to a bool: {result!r}"


# === The walk over x-kubernetes-* extensions ===


def _children(schema: dict, value: Any, path: str) -> Iterator[tuple[dict, Any, str]]:
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, child in value.items():
            if key in properties:
                yield properties[key], child, f"{path}.{key}".lstrip(".")
            elif isinstance(extra, dict):
                yield extra, child, f"{path}.{key}".lstrip(".")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, child in enumerate(value):
            yield schema["items"], child, f"{path}[{index}]"


def extension_violations(schema: dict, value: Any, path: str = "") -> Iterator[Violation]:
    """Checks list types and CEL rules of `schema` on `value`, recursively."""
    if value is None:
        return
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "map" and isinstance(value, list):
        keys = schema.get("x-kubernetes-list-map-keys", [])
        seen = [tuple(json.dumps(item.get(k)) for k in keys) for item in value if isinstance(item, dict)]
        if len(seen) != len(set(seen)):
            yield Violation(path, f"duplicate entries for list-map keys {keys}")
    if list_type == "set" and isinstance(value, list):
        items = [json.dumps(item, sort_keys=True) for item in value]
        if len(items) != len(set(items)):
            yield Violation(path, "duplicate entries in a list of type set")
    for validation in schema.get("x-kubernetes-validations", []):
        rule = validation["rule"]
        if "oldSelf" in rule:
            continue  # transition rule: evaluated on updates only
        passed, detail = evaluate_rule(rule, value)
        if not passed:
            message = validation.get("message") or f"failed rule: {rule}"
            yield Violation(path, f"{message} {detail}".strip())
    for child_schema, child, child_path in _children(schema, value, path):
        yield from extension_violations(child_schema, child, child_path)


# === CRDs ===


class CrdValidator:
    """Every served version of every CRD in one CustomResourceDefinition file."""

    def __init__(self, crd_file: Path, object_meta_schema: dict):
        self.schemas: dict[tuple[str, str], dict] = {}
        for doc in yaml.safe_load_all(crd_file.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                if version.get("served"):
                    api_version = f"{spec['group']}/{version['name']}"
                    self.schemas[(api_version, spec["names"]["kind"])] = version["schema"]["openAPIV3Schema"]
        self._object_meta = jsonschema.Draft202012Validator(object_meta_schema)

    def knows(self, obj: dict) -> bool:
        return (obj.get("apiVersion"), obj.get("kind")) in self.schemas

    def violations(self, obj: dict) -> list[Violation]:
        """Everything the API server would reject in `obj` on create (empty when valid)."""
        key = (obj.get("apiVersion"), obj.get("kind"))
        if key not in self.schemas:
            return [Violation("", f"no served CRD version for {key[0]} {key[1]}")]
        schema = self.schemas[key]
        found = [
            Violation(".".join(str(p) for p in error.absolute_path), error.message)
            for error in jsonschema.Draft7Validator(structural(schema)).iter_errors(obj)
        ]
        found += self._metadata_violations(obj.get("metadata"))
        found += extension_violations(schema, {k: v for k, v in obj.items() if k != "metadata"})
        return found

    def _metadata_violations(self, metadata: Any) -> list[Violation]:
        if not isinstance(metadata, dict):
            return [Violation("metadata", "is required")]
        found = [
            Violation("metadata." + ".".join(str(p) for p in e.absolute_path), e.message)
            for e in self._object_meta.iter_errors(metadata)
        ]
        if not DNS_SUBDOMAIN.match(str(metadata.get("name", ""))):
            found.append(Violation("metadata.name", "must be a DNS-1123 subdomain"))
        if "namespace" in metadata and not DNS_LABEL.match(str(metadata["namespace"])):
            found.append(Violation("metadata.namespace", "must be a DNS-1123 label"))
        return found


def object_meta_schema(definitions: dict) -> dict:
    """A schema for ObjectMeta out of kubernetes-validate's bundled definitions document."""
    return {"$schema": definitions["$schema"], "$defs": definitions["$defs"], "$ref": f"#/$defs/{OBJECT_META}"}
