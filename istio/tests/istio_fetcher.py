"""What Istio's agent does with a Wasm module it fetches, re-implemented to check our images.

Written from istio/istio ``pkg/wasm`` (read, not copied): ``imagefetcher.go`` (``PrepareFetch``,
``extractDockerImage``, ``extractOCIStandardImage``, ``extractWasmPluginBinary``,
``extractOCIArtifactImage``), ``cache.go`` (checksum comparison, ``isValidWasmBinary``) and
``httpfetcher.go`` (``unboxIfPossible``). For ``oci://`` URLs the checksum Istio compares with
``WasmPlugin.sha256`` is the image manifest's digest; for ``https://`` URLs it is the SHA-256 of
the (unboxed) module. Error texts follow Istio's, so a failing test reads like the agent's log.

The OCI image layout is read as a registry would serve it: every blob must match its digest and
size, or the push (and any pull) fails.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import posixpath
import tarfile
from dataclasses import dataclass
from pathlib import Path

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
WASM_CONFIG = "application/vnd.module.wasm.config.v1+json"
WASM_CONTENT = "application/vnd.module.wasm.content.layer.v1+wasm"
WASM_MAGIC = b"\x00asm"
PLUGIN_FILE = "plugin.wasm"


class FetchError(Exception):
    """The agent would refuse this image or module."""


@dataclass
class Image:
    """A manifest (raw bytes, as a registry serves them) and its blobs."""

    manifest_bytes: bytes
    blobs: dict[str, bytes]

    @property
    def manifest(self) -> dict:
        return json.loads(self.manifest_bytes)

    @property
    def digest_hex(self) -> str:
        """`img.Digest().Hex`: what Istio compares with `sha256` for oci:// URLs."""
        return hashlib.sha256(self.manifest_bytes).hexdigest()

    def blob(self, descriptor: dict) -> bytes:
        return self.blobs[descriptor["digest"]]


def _checked_blob(layout: Path, descriptor: dict) -> bytes:
    algorithm, _, hex_digest = descriptor["digest"].partition(":")
    if algorithm != "sha256":
        raise FetchError(f"unsupported digest algorithm {algorithm}")
    path = layout / "blobs" / "sha256" / hex_digest
    if not path.is_file():
        raise FetchError(f"blob {descriptor['digest']} is missing")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != hex_digest:
        raise FetchError(f"blob {descriptor['digest']} does not match its digest")
    if len(data) != descriptor["size"]:
        raise FetchError(f"blob {descriptor['digest']} is {len(data)} bytes, descriptor says {descriptor['size']}")
    return data


def read_layout(layout: Path, tag: str) -> Image:
    """The image tagged `tag` in an OCI image layout, every blob verified."""
    if json.loads((layout / "oci-layout").read_text()) != {"imageLayoutVersion": "1.0.0"}:
        raise FetchError("oci-layout is not imageLayoutVersion 1.0.0")
    index = json.loads((layout / "index.json").read_text())
    matches = [
        m for m in index.get("manifests", [])
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
    ]
    if len(matches) != 1:
        raise FetchError(f"index.json names {len(matches)} manifests tagged {tag!r}")
    manifest_bytes = _checked_blob(layout, matches[0])
    manifest = json.loads(manifest_bytes)
    blobs = {d["digest"]: _checked_blob(layout, d) for d in [manifest["config"], *manifest["layers"]]}
    return Image(manifest_bytes, blobs)


def _extract_plugin_binary(compressed: bytes) -> bytes:
    """extractWasmPluginBinary: gunzip, walk the tar, first entry whose base name is plugin.wasm."""
    try:
        tar_bytes = gzip.decompress(compressed)
    except OSError as error:
        raise FetchError(f"failed to parse layer as tar.gz: {error}") from error
    with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
        for member in tar:
            if posixpath.basename(member.name) == PLUGIN_FILE:
                handle = tar.extractfile(member)
                if handle is None:
                    raise FetchError(f"failed to read {PLUGIN_FILE}")
                return handle.read()
    raise FetchError(f"{PLUGIN_FILE} not found in the archive")


def _last_layer_of_type(image: Image, media_type: str) -> bytes:
    layers = image.manifest["layers"]
    if not layers:
        raise FetchError("number of layers must be greater than zero")
    if layers[-1]["mediaType"] != media_type:
        raise FetchError(f"invalid media type {layers[-1]['mediaType']} (expect {media_type})")
    return _extract_plugin_binary(image.blob(layers[-1]))


def _extract_oci_artifact(image: Image) -> bytes:
    layers = image.manifest["layers"]
    if len(layers) != 2:
        raise FetchError(f"number of layers must be 2 but got {len(layers)}")
    for layer in layers:
        if layer["mediaType"] == WASM_CONTENT:
            return image.blob(layer)
    raise FetchError(f"could not find the layer of type {WASM_CONTENT}")


def extract_module(image: Image) -> bytes:
    """PrepareFetch's binary fetcher: Docker images by their last layer; OCI images first as the
    compat variant, then as the oci (artifact) variant."""
    if image.manifest.get("mediaType") == DOCKER_MANIFEST:
        return _last_layer_of_type(image, DOCKER_LAYER)
    try:
        return _last_layer_of_type(image, OCI_LAYER)
    except FetchError as compat_error:
        try:
            return _extract_oci_artifact(image)
        except FetchError as oci_error:
            raise FetchError(
                "the given image is in invalid format as an OCI image: "
                f"could not parse as compat variant: {compat_error}; "
                f"could not parse as oci variant: {oci_error}"
            ) from oci_error


def is_valid_wasm_binary(module: bytes) -> bool:
    """cache.go isValidWasmBinary: eight bytes at least, starting with the Wasm magic number."""
    return len(module) >= 8 and module[:4] == WASM_MAGIC


def fetch_oci(image: Image, sha256: str) -> bytes:
    """The agent's whole oci:// path: checksum against the manifest digest, extraction, check."""
    if sha256 and image.digest_hex != sha256:
        raise FetchError(f"module has checksum {image.digest_hex}, which does not match: {sha256}")
    module = extract_module(image)
    if not is_valid_wasm_binary(module):
        raise FetchError("fetched Wasm binary is invalid")
    return module


def unbox_if_possible(body: bytes) -> bytes:
    """httpfetcher.go unboxIfPossible: peel gzip and tar (first file) until a Wasm module shows."""
    current = body
    while True:
        if is_valid_wasm_binary(current):
            return current
        if current[:2] == b"\x1f\x8b":
            current = gzip.decompress(current)
        elif len(current) > 262 and current[257:262] == b"ustar":
            with tarfile.open(fileobj=io.BytesIO(current), mode="r:") as tar:
                first = next(iter(tar), None)
                handle = tar.extractfile(first) if first else None
                if handle is None:
                    return body
                current = handle.read()
        else:
            return body


def fetch_https(body: bytes, sha256: str) -> bytes:
    """The agent's https:// path: unbox, checksum of the module, check."""
    module = unbox_if_possible(body)
    actual = hashlib.sha256(module).hexdigest()
    if sha256 and actual != sha256:
        raise FetchError(f"module has checksum {actual}, which does not match: {sha256}")
    if not is_valid_wasm_binary(module):
        raise FetchError("fetched Wasm binary is invalid")
    return module
