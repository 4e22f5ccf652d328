"""``render --server``: every cluster's manifests fetched from a server and written to a
directory exactly as a local ``meshbridge render`` would."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from meshbridge.client._http import Client, ClientCertificate
from meshbridge.compile.output import ManifestFile, file_name, private_key_holder
from meshbridge.service.errors import NotFound, ServerError
from meshbridge.service.manifests import split_yaml
from meshbridge.service.resources import KINDS
from meshbridge.service.writer import KeyPlacement, Written, write_render

__all__ = ["RemoteRender", "fetch_all", "render_from_server"]

_CONSISTENT_TRIES = 3


@dataclass(frozen=True)
class RemoteRender:
    """What a render from a server fetched: files (path -> (bytes, private key holder)),
    objects by cluster."""

    files: dict[str, ManifestFile]
    objects: dict[str, int]
    revision: str


def fetch_all(client: Client) -> RemoteRender:
    """Every cluster's files at one store revision (fetched again if a write came between)."""
    for _ in range(_CONSISTENT_TRIES):
        clusters = [c["metadata"]["name"] for c in client.list(KINDS["Cluster"])["items"]]
        files: dict[str, ManifestFile] = {}
        counts: dict[str, int] = {}
        revisions: set[str] = set()
        try:
            for cluster in sorted(clusters):
                stream, revision = client.manifests(cluster)
                revisions.add(revision)
                docs = split_yaml(stream)
                counts[cluster] = len(docs)
                for data in docs:
                    obj = yaml.load(data, Loader=yaml.CSafeLoader)
                    files[f"{cluster}/{file_name(obj)}"] = (data, private_key_holder(obj))
        except NotFound:
            continue  # a cluster went away while we read: read them all again
        if len(revisions) <= 1:
            return RemoteRender(files, counts, next(iter(revisions), ""))
    raise ServerError(0, "the server's documents kept changing while rendering: try again")


def render_from_server(
    server: str,
    token: str | None,
    out_dir: Path,
    keys: KeyPlacement | None = None,
    *,
    server_ca: Path | None = None,
    client_cert: ClientCertificate | None = None,
    transport: httpx.BaseTransport | None = None,
) -> tuple[RemoteRender, Written]:
    """Write every cluster's manifests from ``server`` to ``out_dir``, like a local render:
    Secrets holding a private key go where ``keys`` says (left out by default)."""
    with Client(
        server, token, server_ca=server_ca, client_cert=client_cert, transport=transport
    ) as client:
        result = fetch_all(client)
    return result, write_render(out_dir, result.files, keys)
