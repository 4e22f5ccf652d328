"""The CLI's side of a meshbridge server: the same documents and commands, sent over HTTP.

:class:`Client` wraps the REST API and turns error answers back into meshbridge errors, so the
CLI prints and exits as it does locally: 422 -> InvalidInput (problems named by the user's own
files and documents, not by the request body), 409 -> Conflict, 404 -> NotFound, anything
else -> ServerError. :func:`render_from_server` writes every cluster's manifests to a
directory exactly as a local ``meshbridge render`` would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from meshbridge.compile.output import ManifestFile, file_name, private_key_holder
from meshbridge.errors import InvalidInput, Problem
from meshbridge.loading import Source, load_objects
from meshbridge.service.documents import BODY, parse_documents
from meshbridge.service.errors import Conflict, NotFound, ServerError
from meshbridge.service.manifests import split_yaml
from meshbridge.service.resources import ResourceKind, strip_server_fields
from meshbridge.service.writer import KeyPlacement, Written, write_render

__all__ = ["Client", "RemoteRender", "read_documents", "render_from_server"]

_WHERE = re.compile(
    r"^(?P<source>.*)#(?P<index>\d+) (?:(?P<kind>[A-Za-z]+)/(?P<name>.*)|document)$"
)
_CONSISTENT_TRIES = 3

Located = tuple[str, int, Any]  # (file name, document index, raw document)


def read_documents(sources: Sequence[Source]) -> list[Located]:
    """Every document of the sources as plain data, checked against the models first.

    Server-set fields (``resourceVersion`` ...) are allowed and kept: the server reads
    ``resourceVersion`` as a precondition. Cross-document rules are left to the server, which
    holds the other documents.
    """
    docs: list[Located] = []
    for source in sources:
        for index, raw in parse_documents(source.text.encode(), "application/yaml", source.name):
            docs.append((source.name, index, raw))
    load_objects((name, index, strip_server_fields(raw)[0]) for name, index, raw in docs)
    return docs


def _problem(item: Any, origins: Sequence[tuple[str, int]] = ()) -> Problem:
    if not isinstance(item, dict):
        return Problem("server", 0, "", "", "", str(item))
    where = _WHERE.match(str(item.get("document", "")))
    path, message = str(item.get("path", "")), str(item.get("message", ""))
    if where is None:
        return Problem(str(item.get("document") or "server"), 0, "", "", path, message)
    source, index = where["source"], int(where["index"])
    if source == BODY and 1 <= index <= len(origins):
        source, index = origins[index - 1]
    return Problem(source, index, where["kind"] or "", where["name"] or "", path, message)


def _hide_userinfo(url: str) -> str:
    parsed = httpx.URL(url)
    return str(parsed.copy_with(username=None, password=None)) if parsed.userinfo else url


class Client:
    """A meshbridge server at ``server`` (``http://host:port``), as a bearer of ``token``."""

    def __init__(
        self,
        server: str,
        token: str | None,
        *,
        timeout: float = 120.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.server = _hide_userinfo(server)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=server.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(
        self, method: str, path: str, *, origins: Sequence[tuple[str, int]] = (), **kwargs: Any
    ) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServerError(
                0, f"cannot reach the meshbridge server {self.server}: {exc}"
            ) from None
        if response.status_code < 400:
            return response
        try:
            errors = response.json().get("errors", [])
        except (ValueError, AttributeError):
            errors = []
        problems = [
            _problem(e, origins) for e in errors if isinstance(e, dict) and e.get("document")
        ]
        first = next((e.get("message") for e in errors if isinstance(e, dict)), None)
        message = str(first or response.reason_phrase or "error")
        status = response.status_code
        if status == 422 and problems:
            raise InvalidInput(problems)
        if status == 409:
            raise Conflict(message, problems)
        if status == 404:
            raise NotFound(message)
        raise ServerError(status, f"the server answered {status}: {message}", problems)

    # ------------------------------------------------------------------------------ calls

    def apply(
        self, docs: Sequence[Located], *, prune: bool = False, dry_run: bool = False
    ) -> dict[str, Any]:
        body = json.dumps([raw for _, _, raw in docs], default=str)
        params = {"prune": "true"} if prune else {}
        if dry_run:
            params["dryRun"] = "All"
        response = self.request(
            "POST",
            "/api/v1/apply",
            params=params or None,
            content=body.encode(),
            headers={"Content-Type": "application/json"},
            origins=[(name, index) for name, index, _ in docs],
        )
        result: dict[str, Any] = response.json()
        return result

    def get(self, kind: ResourceKind, name: str, namespace: str = "") -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", kind.path(namespace, name)).json()
        return result

    def list(
        self, kind: ResourceKind, namespace: str | None = None, selector: str | None = None
    ) -> dict[str, Any]:
        path = f"/api/v1/{kind.plural}"
        if kind.namespaced and namespace is not None:
            path = f"/api/v1/namespaces/{namespace}/{kind.plural}"
        params = {"labelSelector": selector} if selector else None
        result: dict[str, Any] = self.request("GET", path, params=params).json()
        return result

    def delete(
        self, kind: ResourceKind, name: str, namespace: str = "", version: str | None = None
    ) -> dict[str, Any]:
        params = {"resourceVersion": version} if version else None
        result: dict[str, Any] = self.request(
            "DELETE", kind.path(namespace, name), params=params
        ).json()
        return result

    def manifests(self, cluster: str) -> tuple[bytes, str]:
        """The cluster's manifests as render writes them, and the store revision they are of."""
        response = self.request(
            "GET", f"/api/v1/clusters/{cluster}/manifests", headers={"Accept": "application/yaml"}
        )
        return response.content, response.headers.get("X-Meshbridge-Revision", "")


@dataclass(frozen=True)
class RemoteRender:
    """What a render from a server fetched: files (path -> (bytes, private key holder)),
    objects by cluster."""

    files: dict[str, ManifestFile]
    objects: dict[str, int]
    revision: str


def fetch_all(client: Client) -> RemoteRender:
    """Every cluster's files at one store revision (fetched again if a write came between)."""
    from meshbridge.service.resources import KINDS

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
    transport: httpx.BaseTransport | None = None,
) -> tuple[RemoteRender, Written]:
    """Write every cluster's manifests from ``server`` to ``out_dir``, like a local render:
    Secrets holding a private key go where ``keys`` says (left out by default)."""
    with Client(server, token, transport=transport) as client:
        result = fetch_all(client)
    return result, write_render(out_dir, result.files, keys)
