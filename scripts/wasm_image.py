#!/usr/bin/env python3
"""Packages the filter as Wasm OCI images on disk, without Docker, and pins the Istio manifests.

    python3 scripts/wasm_image.py            # what `make wasm-image` runs

Writes, under target/wasm-image/:

- ``plugin.wasm``: the module packaged (the ``https://`` variant serves this file as-is);
- ``compat/``: an OCI image layout of the *compat* variant, one ``tar+gzip`` layer holding
  ``plugin.wasm`` and the manifest annotation ``module.wasm.image/variant=compat``
  (https://github.com/solo-io/wasm/blob/master/spec/spec-compat.md);
- ``oci/``: an OCI image layout of the Wasm artifact (*oci*) variant, two layers of media types
  ``application/vnd.module.wasm.config.v1+json`` and
  ``application/vnd.module.wasm.content.layer.v1+wasm``
  (https://github.com/solo-io/wasm/blob/master/spec/spec.md);
- ``digests.json``: what to put in a WasmPlugin's ``sha256``. Istio compares it with the image
  manifest's digest for ``oci://`` URLs and with the module's own SHA-256 for ``https://`` URLs
  (istio/istio pkg/wasm/cache.go);
- ``istio/``: a copy of ``istio/`` (manifests and examples) whose WasmPlugin and TrafficExtension
  URLs point at this build and carry its ``sha256``: ``kubectl apply -k target/wasm-image/istio``
  once the image is pushed.

Standard library only, so it runs on any machine with Python 3.11 before anything is installed.
Output is deterministic: the same ``.wasm`` gives byte-identical layouts and digests (fixed
mtimes and owners in the tar, no gzip timestamp, canonical JSON).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_WASM = REPO / "target/wasm32-wasip1/release/meshtrace_filter.wasm"
DEFAULT_OUT = REPO / "target/wasm-image"
MANIFESTS = REPO / "istio"
# The image and release-asset locations the manifests under istio/ name; rendering points them
# at --image / --https-url.
BASE_IMAGE_REPO = "ghcr.io/meshtrace/meshtrace-filter"
BASE_HTTPS_ASSET = "meshtrace_filter.wasm"
SOURCE = "https://github.com/meshtrace/meshtrace"
PLUGIN_NAME = "meshtrace"

OCI_LAYOUT = {"imageLayoutVersion": "1.0.0"}
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
IMAGE_CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
TAR_GZIP_LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
WASM_CONFIG_MEDIA_TYPE = "application/vnd.module.wasm.config.v1+json"
WASM_CONTENT_MEDIA_TYPE = "application/vnd.module.wasm.content.layer.v1+wasm"
VARIANT_ANNOTATION = "module.wasm.image/variant"
TITLE_ANNOTATION = "org.opencontainers.image.title"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
WASM_MAGIC = b"\x00asm"


def canonical_json(value: object) -> bytes:
    """The one serialisation used for every JSON blob, so digests are reproducible."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Blob:
    """Content-addressed bytes with the descriptor fields that point at them."""

    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return "sha256:" + sha256_hex(self.data)

    def descriptor(self, annotations: dict[str, str] | None = None) -> dict:
        desc = {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data)}
        if annotations:
            desc["annotations"] = annotations
        return desc


# === Wasm module ===


def read_leb128(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, pos


def wasm_exports(module: bytes) -> list[str]:
    """Names in the module's export section (https://webassembly.github.io/spec/core/binary/)."""
    if module[:4] != WASM_MAGIC:
        raise SystemExit("not a WebAssembly module (bad magic number)")
    names, pos = [], 8
    while pos < len(module):
        section_id = module[pos]
        size, pos = read_leb128(module, pos + 1)
        end = pos + size
        if section_id == 7:
            count, cur = read_leb128(module, pos)
            for _ in range(count):
                length, cur = read_leb128(module, cur)
                names.append(module[cur : cur + length].decode())
                cur += length + 1  # the name, then one byte of export kind
                _index, cur = read_leb128(module, cur)
        pos = end
    return names


def proxy_abi_versions(module: bytes) -> list[str]:
    """The proxy-wasm ABI versions the module exports (`proxy_abi_version_0_2_1`, ...)."""
    versions = sorted(n for n in wasm_exports(module) if n.startswith("proxy_abi_version_"))
    if not versions:
        raise SystemExit("the module exports no proxy_abi_version_*: is it a proxy-wasm filter?")
    return versions


# === Image variants ===


def compat_layer(module: bytes) -> tuple[Blob, bytes]:
    """One tar holding `plugin.wasm` (fixed owner, mode and mtime), gzipped without a timestamp.
    Returns the layer and the uncompressed tar (whose digest is the config's diff_id)."""
    info = tarfile.TarInfo("plugin.wasm")
    info.size, info.mode, info.mtime = len(module), 0o644, 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(module))
    tar_bytes = buffer.getvalue()
    layer = Blob(TAR_GZIP_LAYER_MEDIA_TYPE, gzip.compress(tar_bytes, compresslevel=9, mtime=0))
    return layer, tar_bytes


def image_annotations(version: str) -> dict[str, str]:
    return {"org.opencontainers.image.source": SOURCE, "org.opencontainers.image.version": version}


def compat_image(module: bytes, version: str) -> tuple[Blob, list[Blob]]:
    """The *compat* variant: a regular OCI image with a single tar+gzip layer."""
    layer, tar_bytes = compat_layer(module)
    config = Blob(
        IMAGE_CONFIG_MEDIA_TYPE,
        canonical_json(
            {
                "architecture": "wasm",
                "os": "wasip1",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": ["sha256:" + sha256_hex(tar_bytes)]},
            }
        ),
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config.descriptor(),
        "layers": [layer.descriptor()],
        "annotations": {VARIANT_ANNOTATION: "compat", **image_annotations(version)},
    }
    return Blob(MANIFEST_MEDIA_TYPE, canonical_json(manifest)), [config, layer]


def oci_image(module: bytes, version: str) -> tuple[Blob, list[Blob]]:
    """The *oci* variant: the runtime config (also the manifest's config, as `oras push
    --manifest-config` makes it) and the raw module, as exactly two layers."""
    runtime_config = Blob(
        WASM_CONFIG_MEDIA_TYPE,
        canonical_json(
            {
                "type": "envoy_proxy",
                "abiVersions": proxy_abi_versions(module),
                "config": {"root_ids": [PLUGIN_NAME]},
            }
        ),
    )
    content = Blob(WASM_CONTENT_MEDIA_TYPE, module)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": runtime_config.descriptor(),
        "layers": [
            runtime_config.descriptor({TITLE_ANNOTATION: "runtime-config.json"}),
            content.descriptor({TITLE_ANNOTATION: "plugin.wasm"}),
        ],
        "annotations": image_annotations(version),
    }
    return Blob(MANIFEST_MEDIA_TYPE, canonical_json(manifest)), [runtime_config, content]


def write_layout(directory: Path, manifest: Blob, blobs: list[Blob], tag: str) -> None:
    """An OCI image layout (https://github.com/opencontainers/image-spec/blob/main/image-layout.md)
    whose index names the image `tag`."""
    if directory.exists():
        shutil.rmtree(directory)
    blob_dir = directory / "blobs" / "sha256"
    blob_dir.mkdir(parents=True)
    for blob in [manifest, *blobs]:
        (blob_dir / blob.digest.removeprefix("sha256:")).write_bytes(blob.data)
    (directory / "oci-layout").write_bytes(canonical_json(OCI_LAYOUT))
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [manifest.descriptor({REF_NAME_ANNOTATION: tag})],
    }
    (directory / "index.json").write_bytes(canonical_json(index))


# === Pinned manifests ===

URL_LINE = re.compile(r"^(?P<indent>\s*)url:\s*(?P<url>\S+)\s*$")


def pin_document(doc: str, urls: dict[str, tuple[str, str]]) -> str:
    """Rewrites the `url:` of a WasmPlugin or TrafficExtension document that names one of our
    artifacts, and adds the matching `sha256:` right after it. Line-based, so comments stay."""
    if not re.search(r"(?m)^kind:\s*(WasmPlugin|TrafficExtension)\s*$", doc):
        return doc
    if re.search(r"(?m)^\s*sha256:", doc):
        raise SystemExit("a manifest under istio/ already sets sha256: the base must not pin")
    out = []
    for line in doc.splitlines(keepends=True):
        match = URL_LINE.match(line)
        target = urls.get(match["url"]) if match else None
        if target is None:
            out.append(line)
            continue
        url, digest = target
        out.append(f"{match['indent']}url: {url}\n{match['indent']}sha256: {digest}\n")
    return "".join(out)


def pin_manifests(source: Path, dest: Path, urls: dict[str, tuple[str, str]]) -> list[Path]:
    """Copies every YAML file of `source` (tests excluded) to `dest`, pinned."""
    if dest.exists():
        shutil.rmtree(dest)
    written = []
    for path in sorted(source.rglob("*.yaml")):
        relative = path.relative_to(source)
        if relative.parts[0] == "tests":
            continue
        docs = re.split(r"(?m)^(?=---\s*$)", path.read_text())
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(pin_document(doc, urls) for doc in docs))
        written.append(target)
    return written


# === Main ===


def workspace_version() -> str:
    with open(REPO / "Cargo.toml", "rb") as f:
        return tomllib.load(f)["workspace"]["package"]["version"]


def optimise(wasm_opt: str, source: Path, dest: Path) -> None:
    subprocess.run([wasm_opt, "-Oz", "--strip-debug", str(source), "-o", str(dest)], check=True)


def main(argv: list[str] | None = None) -> int:
    version = workspace_version()
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--wasm", type=Path, default=DEFAULT_WASM, help="the filter module")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--image", default=f"{BASE_IMAGE_REPO}:{version}",
                        help="registry/repository:tag the image will be pushed to")
    parser.add_argument("--https-url", default=f"{SOURCE}/releases/download/v{version}/{BASE_HTTPS_ASSET}",
                        help="where plugin.wasm will be served for https:// WasmPlugins")
    parser.add_argument("--variant", choices=["compat", "oci"], default="compat",
                        help="the variant pushed to --image, whose digest pins oci:// URLs")
    parser.add_argument("--wasm-opt", metavar="PATH", help="optimise with binaryen's wasm-opt -Oz first")
    args = parser.parse_args(argv)

    if not args.wasm.is_file():
        raise SystemExit(f"{args.wasm} is missing: run `make wasm`")
    args.out.mkdir(parents=True, exist_ok=True)
    plugin = args.out / "plugin.wasm"
    if args.wasm_opt:
        optimise(args.wasm_opt, args.wasm, plugin)
    else:
        shutil.copyfile(args.wasm, plugin)
    module = plugin.read_bytes()
    tag = args.image.rsplit(":", 1)[1] if ":" in args.image.rsplit("/", 1)[-1] else version

    variants = {"compat": compat_image(module, version), "oci": oci_image(module, version)}
    digests = {"version": version, "image": args.image, "https_url": args.https_url,
               "pinned_variant": args.variant,
               "wasm": {"file": "plugin.wasm", "size": len(module), "sha256": sha256_hex(module)}}
    for name, (manifest, blobs) in variants.items():
        write_layout(args.out / name, manifest, blobs, tag)
        digests[name] = {"layout": name, "tag": tag, "manifest_digest": manifest.digest,
                         "sha256": manifest.digest.removeprefix("sha256:")}
    (args.out / "digests.json").write_text(json.dumps(digests, indent=2, sort_keys=True) + "\n")

    urls = {
        f"oci://{BASE_IMAGE_REPO}:{version}": (f"oci://{args.image}", digests[args.variant]["sha256"]),
        f"{SOURCE}/releases/download/v{version}/{BASE_HTTPS_ASSET}": (args.https_url, digests["wasm"]["sha256"]),
    }
    pin_manifests(MANIFESTS, args.out / "istio", urls)

    out = args.out.relative_to(REPO) if args.out.is_relative_to(REPO) else args.out
    print(f"meshtrace filter {version}: {out}/plugin.wasm ({len(module)} bytes)")
    print(f"WasmPlugin sha256 for oci://{args.image}  (push the layout of that variant)")
    for name in variants:
        print(f"  {name:<7} {digests[name]['sha256']}  {out}/{name}")
    print(f"WasmPlugin sha256 for {args.https_url}")
    print(f"  https   {digests['wasm']['sha256']}  {out}/plugin.wasm")
    print(f"pinned manifests ({args.variant}): kubectl apply -k {out}/istio")
    print(f"push: oras cp --from-oci-layout {out}/{args.variant}:{tag} {args.image}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
