"""`make wasm-image` output passes the rules Istio's agent applies when it fetches a module
(istio_fetcher.py), the digests it publishes are the ones the agent computes, the build is
reproducible, and images the agent refuses are refused here too."""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import REPO, WASM_IMAGE, pinned_manifests
from istio_fetcher import (
    OCI_LAYER,
    WASM_CONFIG,
    WASM_CONTENT,
    FetchError,
    Image,
    extract_module,
    fetch_https,
    fetch_oci,
    read_layout,
)

SCRIPT = REPO / "scripts" / "wasm_image.py"
VARIANTS = ["compat", "oci"]


@pytest.fixture(scope="module")
def digests() -> dict:
    path = WASM_IMAGE / "digests.json"
    assert path.is_file(), f"{path} is missing: run `make wasm-image`"
    return json.loads(path.read_text())


def image(digests: dict, variant: str) -> Image:
    return read_layout(WASM_IMAGE / variant, digests[variant]["tag"])


def test_published_module_is_the_filter_build(digests: dict, filter_wasm: bytes) -> None:
    """make test rebuilds the image after the filter, so a stale package cannot pass."""
    published = (WASM_IMAGE / digests["wasm"]["file"]).read_bytes()
    assert published == filter_wasm
    assert digests["wasm"]["sha256"] == hashlib.sha256(published).hexdigest()


@pytest.mark.parametrize("variant", VARIANTS)
def test_istio_fetches_the_module_with_the_published_sha256(variant: str, digests: dict, filter_wasm: bytes) -> None:
    img = image(digests, variant)
    assert img.manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert img.digest_hex == digests[variant]["sha256"]
    assert digests[variant]["manifest_digest"] == "sha256:" + digests[variant]["sha256"]
    assert fetch_oci(img, digests[variant]["sha256"]) == filter_wasm


def test_compat_variant_follows_its_spec(digests: dict, filter_wasm: bytes) -> None:
    """One tar+gzip layer holding plugin.wasm, the variant annotation, a config whose diff_id is
    the uncompressed layer (spec-compat.md), and a tar without build-machine details."""
    img = image(digests, "compat")
    manifest = img.manifest
    assert manifest["annotations"]["module.wasm.image/variant"] == "compat"
    assert [layer["mediaType"] for layer in manifest["layers"]] == [OCI_LAYER]
    tar_bytes = gzip.decompress(img.blob(manifest["layers"][0]))
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        members = tar.getmembers()
        assert [(m.name, m.mtime, m.uid, m.gid, m.mode) for m in members] == [("plugin.wasm", 0, 0, 0, 0o644)]
        assert tar.extractfile(members[0]).read() == filter_wasm
    config = json.loads(img.blob(manifest["config"]))
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(tar_bytes).hexdigest()]


def test_oci_variant_follows_its_spec(digests: dict, filter_wasm: bytes) -> None:
    """Exactly two layers: the runtime config (envoy_proxy, the module's proxy-wasm ABI) and
    the raw module (spec.md)."""
    img = image(digests, "oci")
    layers = img.manifest["layers"]
    assert [layer["mediaType"] for layer in layers] == [WASM_CONFIG, WASM_CONTENT]
    runtime = json.loads(img.blob(layers[0]))
    assert runtime["type"] == "envoy_proxy"
    assert runtime["abiVersions"] == ["proxy_abi_version_0_2_1"]
    assert img.blob(layers[1]) == filter_wasm


def test_https_variant_sha256_is_the_module_digest(digests: dict, filter_wasm: bytes) -> None:
    body = (WASM_IMAGE / "plugin.wasm").read_bytes()
    assert fetch_https(body, digests["wasm"]["sha256"]) == filter_wasm


def test_build_is_reproducible(tmp_path: Path, digests: dict) -> None:
    """A second build of the same module gives byte-identical layouts, so the published sha256
    can be recomputed by anyone from the same .wasm."""
    out = tmp_path / "again"
    subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], check=True, capture_output=True)
    for variant in VARIANTS:
        for path in sorted((WASM_IMAGE / variant).rglob("*")):
            if path.is_file():
                assert (out / path.relative_to(WASM_IMAGE)).read_bytes() == path.read_bytes(), path
    assert json.loads((out / "digests.json").read_text()) == digests


def test_pinned_manifests_carry_the_digest_istio_compares(digests: dict) -> None:
    """Every WasmPlugin and TrafficExtension copy in target/wasm-image/istio points at this build:
    oci:// with the pinned variant's manifest digest, https:// with the module's digest."""
    pinned = 0
    for manifest in pinned_manifests():
        if manifest.kind not in {"WasmPlugin", "TrafficExtension"}:
            continue
        wasm = manifest.doc["spec"].get("wasm", manifest.doc["spec"])
        if wasm["url"].startswith("oci://"):
            assert wasm["url"] == f"oci://{digests['image']}", manifest.id
            assert wasm["sha256"] == digests[digests["pinned_variant"]]["sha256"], manifest.id
        else:
            assert wasm["url"] == digests["https_url"], manifest.id
            assert wasm["sha256"] == digests["wasm"]["sha256"], manifest.id
        pinned += 1
    assert pinned >= 5


# === What the agent refuses ===


def rewrite(img: Image, mutate) -> Image:
    """A copy of `img` with its manifest changed by `mutate(manifest, blobs)`."""
    manifest, blobs = copy.deepcopy(img.manifest), dict(img.blobs)
    mutate(manifest, blobs)
    return Image(json.dumps(manifest).encode(), blobs)


def add_blob(blobs: dict, data: bytes, media_type: str) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"mediaType": media_type, "digest": digest, "size": len(data)}


def compat_layer_with(blobs: dict, name: str, data: bytes) -> dict:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.addfile(info, io.BytesIO(data))
    return add_blob(blobs, gzip.compress(buffer.getvalue()), OCI_LAYER)


REFUSED = {
    # higress#4014: a third layer.
    "three layers": ("oci", lambda m, b: m["layers"].append(m["layers"][0]), "number of layers must be 2 but got 3"),
    # higress#4528: the single-layer wasm-pkg artifact, content layer only.
    "content layer only": ("oci", lambda m, b: m.update(layers=m["layers"][1:]), "number of layers must be 2 but got 1"),
    "no content layer": ("oci", lambda m, b: m["layers"][1].update(mediaType="application/wasm"),
                         "could not find the layer of type"),
    "uncompressed tar layer": ("compat", lambda m, b: m["layers"][0].update(
        mediaType="application/vnd.oci.image.layer.v1.tar"), "invalid media type"),
    "module under another name": ("compat", lambda m, b: m.update(
        layers=[compat_layer_with(b, "filter.wasm", b"\x00asm\x01\x00\x00\x00")]), "plugin.wasm not found"),
    "not a Wasm module": ("compat", lambda m, b: m.update(
        layers=[compat_layer_with(b, "plugin.wasm", b"#!/bin/sh\n")]), "fetched Wasm binary is invalid"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_istio_refuses_what_it_refuses(case: str, digests: dict) -> None:
    variant, mutate, expected = REFUSED[case]
    broken = rewrite(image(digests, variant), mutate)
    with pytest.raises(FetchError, match=expected):
        fetch_oci(broken, broken.digest_hex)


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_stale_sha256_is_refused(variant: str, digests: dict) -> None:
    other = "compat" if variant == "oci" else "oci"
    with pytest.raises(FetchError, match="does not match"):
        fetch_oci(image(digests, variant), digests[other]["sha256"])
    with pytest.raises(FetchError, match="does not match"):
        fetch_https((WASM_IMAGE / "plugin.wasm").read_bytes(), digests[variant]["sha256"])


def test_a_corrupt_blob_is_refused(tmp_path: Path, digests: dict) -> None:
    layout = tmp_path / "compat"
    shutil.copytree(WASM_IMAGE / "compat", layout)
    layer = image(digests, "compat").manifest["layers"][0]["digest"].removeprefix("sha256:")
    blob = layout / "blobs" / "sha256" / layer
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(FetchError, match="does not match its digest"):
        read_layout(layout, digests["compat"]["tag"])


def test_compat_is_tried_before_the_artifact_layout(digests: dict) -> None:
    """An image that is neither variant reports both attempts, like the agent's log."""
    broken = rewrite(image(digests, "compat"), lambda m, b: m["layers"][0].update(mediaType="text/plain"))
    with pytest.raises(FetchError, match="could not parse as compat variant.*could not parse as oci variant"):
        extract_module(broken)
