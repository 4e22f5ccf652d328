"""``render --server``: every cluster's manifests fetched from a server and written to a
directory exactly as a local ``meshbridge render`` would.

The file paths are built from names the server sends (cluster, namespace, kind, name), so they
are checked before anything is written (:func:`safe_relative_path`): a path is
``<cluster>/<namespace>/<file>``, each part a plain name; an absolute path, ``..``, a hidden
name, a separator or control character inside a name, or anything that would resolve outside
the output directory is refused, and nothing is written. A hostile or broken server cannot make
the client write anywhere but inside DIR.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

from meshbridge import plural
from meshbridge.client._http import ClientCertificate, ServerClient
from meshbridge.errors import NotFound, ServerError, UnsafePath
from meshbridge.output.emitter import ManifestFile, files, private_key_holder
from meshbridge.output.writer import KeyPlacement, Written, write_render
from meshbridge.wire.resources import RESOURCES

__all__ = ["RemoteRender", "fetch_all", "render_from_server", "safe_relative_path"]

_CONSISTENT_TRIES = 3
_PARTS = 3  # <cluster>/<namespace>/<kind>.<name>.yaml
_MAX_PART = 255  # bytes in one path component, on every common file system
_CLUSTER = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # a DNS label, as Cluster names
_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f/\\]")


def _refuse(rel: str, why: str) -> UnsafePath:
    return UnsafePath(
        f"the server sent a name that makes the file path {rel!r} ({why}): refusing to write "
        "it, nothing was written. Only plain names below the output directory are written; "
        "is --server a meshbridge server you trust?"
    )


def safe_relative_path(rel: str, root: Path) -> str:
    """``rel`` when it names a file inside ``root`` as ``<cluster>/<namespace>/<file>``,
    every part a plain name; UnsafePath otherwise."""
    if rel.startswith(("/", "\\")) or os.path.isabs(rel):
        raise _refuse(rel, "an absolute path")
    parts = rel.split("/")
    for part in parts:
        if part == "":
            raise _refuse(rel, "an empty part: a name that is empty or an absolute path")
        if part in (".", ".."):
            raise _refuse(rel, f"a path part is {part!r}")
        if part.startswith("."):
            raise _refuse(rel, "a hidden name")
        if _UNSAFE_CHARS.search(part):
            raise _refuse(rel, "a separator or control character inside a name")
        if len(part.encode()) > _MAX_PART:
            raise _refuse(rel, f"a name longer than {_MAX_PART} bytes")
    if len(parts) != _PARTS:
        raise _refuse(rel, f"not <cluster>/<namespace>/<file>: {plural.count(len(parts), 'part')}")
    base = Path(os.path.realpath(root))
    resolved = Path(os.path.realpath(base / rel))
    if not resolved.is_relative_to(base) or resolved == base:
        raise _refuse(rel, "it resolves outside the output directory")
    return rel


def _check_object(cluster: str, obj: Any) -> None:
    """UnsafePath for an object the server sent that is not a Kubernetes object with string
    kind, name and namespace, or a Secret whose data is not a mapping."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    if (
        not isinstance(meta, dict)
        or not isinstance(obj.get("kind"), str)
        or not isinstance(meta.get("name"), str)
        or not isinstance(meta.get("namespace", ""), str | None)
    ):
        raise UnsafePath(
            f"the server sent, for cluster {cluster!r}, a document that is not a Kubernetes "
            "object with a kind and a name: nothing was written"
        )
    try:
        private_key_holder(obj)
    except (TypeError, AttributeError, KeyError):
        raise UnsafePath(
            f"the server sent, for cluster {cluster!r}, a Secret whose data is not a mapping: "
            "nothing was written"
        ) from None


@dataclass(frozen=True)
class RemoteRender:
    """What a render from a server fetched: files (path -> (bytes, private key holder)),
    objects by cluster."""

    files: dict[str, ManifestFile]
    objects: dict[str, int]
    revision: str


def _cluster_names(client: ServerClient) -> list[str]:
    names = []
    for item in client.list(RESOURCES["Cluster"]).get("items", []):
        name = item.get("metadata", {}).get("name") if isinstance(item, dict) else None
        if not isinstance(name, str) or not _CLUSTER.match(name):
            raise UnsafePath(
                f"the server listed a Cluster named {str(name)[:80]!r}, which is not a DNS "
                "label: refusing to use it in a URL or a file path, nothing was written"
            )
        names.append(name)
    return sorted(names)


def fetch_all(client: ServerClient) -> RemoteRender:
    """Every cluster's files at one store revision (fetched again if a write came between).

    The server sends objects; they become files as a local render's do (``output.emitter``), so
    the files hold the same bytes."""
    for _ in range(_CONSISTENT_TRIES):
        clusters = _cluster_names(client)
        objects: dict[str, list[dict[str, Any]]] = {}
        revisions: set[str] = set()
        try:
            for cluster in clusters:
                answer = client.manifests(cluster)
                revisions.add(answer.metadata.resource_version)
                for obj in answer.items:
                    _check_object(cluster, obj)
                objects[cluster] = answer.items
        except NotFound:
            continue  # a cluster went away while we read: read them all again
        if len(revisions) <= 1:
            counts = {cluster: len(objs) for cluster, objs in objects.items()}
            return RemoteRender(files(objects), counts, next(iter(revisions), ""))
    raise ServerError(0, "the server's documents kept changing while rendering: try again")


def _check_paths(files: Mapping[str, ManifestFile], out_dir: Path, keys: KeyPlacement) -> None:
    """Every path safe below the output directory, and below the secrets directory for the
    files that go there."""
    roots = [out_dir.expanduser()]
    if keys.secrets_dir is not None:
        roots.append(keys.secrets_dir.expanduser())
    for rel in files:
        for root in roots:
            safe_relative_path(rel, root)


def render_from_server(
    server: str,
    token: str | None,
    out_dir: Path,
    keys: KeyPlacement | None = None,
    *,
    server_ca: Path | None = None,
    client_cert: ClientCertificate | None = None,
    transport: httpx2.BaseTransport | None = None,
) -> tuple[RemoteRender, Written]:
    """Write every cluster's manifests from ``server`` to ``out_dir``, like a local render:
    Secrets holding a private key go where ``keys`` says (left out by default). Every path is
    checked before the first file is written."""
    placement = keys or KeyPlacement()
    with ServerClient(
        server, token, server_ca=server_ca, client_cert=client_cert, transport=transport
    ) as client:
        result = fetch_all(client)
    _check_paths(result.files, out_dir, placement)
    return result, write_render(out_dir, result.files, placement)
