"""Shared fixtures: the manifests under istio/, the CRD validator, kubernetes-validate and the
output of `make wasm-image`. A missing prerequisite fails with the command that provides it;
nothing is skipped."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import kubernetes_validate.utils as kv
import pytest
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from crd_validation import CrdValidator, object_meta_schema  # noqa: E402

REPO = HERE.parent.parent
ISTIO = REPO / "istio"
WASM_IMAGE = REPO / "target" / "wasm-image"
FILTER_WASM = REPO / "target" / "wasm32-wasip1" / "release" / "meshtrace_filter.wasm"
MESH_CONFIG = ISTIO / "meshconfig"
CRD_FILE = Path("schemas") / "istio" / "customresourcedefinitions.gen.yaml"
# Folders of istio/ that hold no Kubernetes manifests: these tests, and istiod Helm values.
NOT_MANIFESTS = {"tests", MESH_CONFIG.name}
# Kubernetes releases the core manifests must be valid for: the oldest we support (the preStop
# `sleep` action is on by default from 1.30) and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ["1.30.0", kv.latest_version()]


@dataclass(frozen=True)
class Manifest:
    """One YAML document of a file under istio/ (or of its pinned copy)."""

    path: Path
    index: int
    doc: dict

    @property
    def kind(self) -> str:
        return self.doc["kind"]

    @property
    def name(self) -> str:
        return self.doc["metadata"]["name"]

    @property
    def namespace(self) -> str | None:
        return self.doc["metadata"].get("namespace")

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(REPO)}#{self.index}:{self.kind}/{self.name}"


def load_manifests(root: Path, recursive: bool) -> list[Manifest]:
    files = sorted(root.rglob("*.yaml") if recursive else root.glob("*.yaml"))
    found = []
    for path in files:
        if path.name == "kustomization.yaml" or NOT_MANIFESTS & set(path.relative_to(root).parts):
            continue
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        found += [Manifest(path, i, d) for i, d in enumerate(docs)]
    return found


def base_manifests() -> list[Manifest]:
    """What `kubectl apply -k istio/` deploys (the kustomization is checked against this)."""
    return load_manifests(ISTIO, recursive=False)


def example_manifests() -> list[Manifest]:
    return load_manifests(ISTIO / "examples", recursive=False)


def pinned_manifests() -> list[Manifest]:
    """The copies `make wasm-image` pins to the built module."""
    pinned = WASM_IMAGE / "istio"
    assert pinned.is_dir(), f"{pinned} is missing: run `make wasm-image`"
    return load_manifests(pinned, recursive=True)


def mesh_configs() -> dict[str, dict]:
    """The istiod Helm values under istio/meshconfig/, by file name: each holds a `meshConfig`."""
    return {path.name: yaml.safe_load(path.read_text()) for path in sorted(MESH_CONFIG.glob("*.yaml"))}


def all_manifests() -> list[Manifest]:
    return base_manifests() + example_manifests() + pinned_manifests()


def find_crd_file() -> Path:
    """Istio's CRDs, read-only from the shared folder beside the repository (MESHTRACE_ISTIO_CRDS
    overrides): the first ancestor of the repo holding shared/schemas/istio."""
    override = os.environ.get("MESHTRACE_ISTIO_CRDS")
    if override:
        return Path(override)
    for ancestor in REPO.parents:
        candidate = ancestor / "shared" / CRD_FILE
        if candidate.is_file():
            return candidate
    raise AssertionError(
        f"shared/{CRD_FILE} not found beside the repository: set MESHTRACE_ISTIO_CRDS to Istio's "
        "customresourcedefinitions.gen.yaml"
    )


@pytest.fixture(scope="session")
def crds() -> CrdValidator:
    version = KUBERNETES_VERSIONS[-1]
    definitions = kv.schema_contents(f"kubernetes-json-schema/v{version}-local-strict/_definitions.json", version)
    return CrdValidator(find_crd_file(), object_meta_schema(definitions))


@pytest.fixture(scope="session")
def filter_wasm() -> bytes:
    assert FILTER_WASM.is_file(), f"{FILTER_WASM} is missing: run `make wasm`"
    return FILTER_WASM.read_bytes()
