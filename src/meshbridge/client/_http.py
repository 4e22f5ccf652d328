"""The CLI's side of a meshbridge server: the same documents and commands, sent over HTTP(S).

:class:`ServerClient` wraps the REST API and turns error answers back into meshbridge errors,
so the CLI prints and exits as it does locally: 422 -> InvalidInput (problems named by the user's own
files and documents, not by the request body), 409 -> Conflict, 404 -> NotFound, anything
else -> ServerError.

Before anything is sent, the connection is checked (:func:`check_server_url`): the token never
travels over plain HTTP to a host that is not loopback, and an ``https`` server is verified
against the system's trust or the CA bundle given (``--server-ca``).
"""

from __future__ import annotations

import builtins
import json
import ssl
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2
import pydantic

from meshbridge.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    Problem,
    ServerError,
    UnsafeConnection,
)
from meshbridge.loading import BODY, Source, load_objects, read_yaml
from meshbridge.loopback import is_loopback
from meshbridge.wire.messages import (
    ApplyAnswer,
    CredentialList,
    CredentialView,
    ErrorAnswer,
    ManifestList,
    PlacementAnswer,
    ProblemsAnswer,
    StatusAnswer,
)
from meshbridge.wire.resources import ResourceKind, strip_server_fields

__all__ = [
    "ClientCertificate",
    "FileDocument",
    "ServerClient",
    "check_server_url",
    "read_documents",
]

FileDocument = tuple[str, int, Any]  # (file name, document index, raw document)
ClientCertificate = tuple[Path, Path]  # (certificate chain PEM, private key PEM)


def check_server_url(server: str, token: str | None) -> httpx2.URL:
    """The server's URL, once it is safe to send ``token`` there; UnsafeConnection otherwise.

    A token goes over ``https``, or over ``http`` to a loopback host only: on any other
    network a bearer token in clear text is anyone's token.
    """
    try:
        url = httpx2.URL(server)
    except (httpx2.InvalidURL, TypeError, ValueError):
        raise UnsafeConnection(
            "the server URL is not a URL: give it as https://HOST:PORT"
        ) from None
    if url.scheme not in ("http", "https") or not url.host:
        raise UnsafeConnection(
            f"the server URL must be https://HOST[:PORT] (or http:// to a loopback address), "
            f"not {_shown(url)}"
        )
    if url.scheme == "http" and token and not is_loopback(url.host):
        raise UnsafeConnection(
            f"refusing to send the API token over plain HTTP to {url.host}: only a loopback "
            "address (127.0.0.1, ::1, localhost) is reached without TLS. Use "
            f"https://{url.netloc.decode('ascii', 'replace').rpartition('@')[2]} (the server runs "
            "with --tls-cert/--tls-key; --server-ca or MESHBRIDGE_SERVER_CA names the CA that "
            "signed its certificate)"
        )
    return url


def _shown(url: httpx2.URL) -> str:
    """A URL fit for a message: no user name or password."""
    return str(url.copy_with(username=None, password=None)) if url.userinfo else str(url)


def _tls_context(server_ca: Path | None, client_cert: ClientCertificate | None) -> ssl.SSLContext:
    """The context verifying the server: the system's trust, or ``server_ca`` alone; with a
    client certificate for a server that asks for one (``serve --tls-client-ca``)."""
    try:
        context = ssl.create_default_context(cafile=str(server_ca) if server_ca else None)
    except (OSError, ssl.SSLError) as exc:
        raise UnsafeConnection(
            f"cannot use the server CA file {server_ca} (--server-ca, MESHBRIDGE_SERVER_CA): "
            f"{getattr(exc, 'strerror', None) or exc}"
        ) from None
    if client_cert is not None:
        cert, key = client_cert
        try:
            context.load_cert_chain(str(cert), str(key))
        except (OSError, ssl.SSLError) as exc:
            raise UnsafeConnection(
                f"cannot use the client certificate {cert} with key {key}: "
                f"{getattr(exc, 'strerror', None) or exc}"
            ) from None
    return context


def read_documents(sources: Sequence[Source]) -> list[FileDocument]:
    """Every document of the sources as plain data, checked against the models first.

    Input without a document is refused, as ``loading.load`` refuses it.
    Server-set fields (``resourceVersion`` ...) are allowed and kept: the server reads
    ``resourceVersion`` as a precondition. Cross-document rules are left to the server, which
    holds the other documents.
    """
    docs: list[FileDocument] = []
    problems: list[Problem] = []
    for source in sources:
        found, stopped = read_yaml(source.text, source.name)
        docs.extend((source.name, index, raw) for index, raw in found)
        if stopped is not None:
            problems.append(stopped)
    if problems:
        raise InvalidInput(problems)
    if not docs:  # an empty pipe must not reach a server (with --prune it would delete all)
        raise InvalidInput(
            Problem(source.name, 0, "", "", "", "no intent document in the input (it is empty)")
            for source in sources
        )
    load_objects((name, index, strip_server_fields(raw)[0]) for name, index, raw in docs)
    return docs


_Answer = typing.TypeVar("_Answer", bound=pydantic.BaseModel)


def _read(model: type[_Answer], response: httpx2.Response) -> _Answer:
    """The answer as ``model``; ServerError when it is not that shape (not a meshbridge
    server, or one this client cannot read)."""
    try:
        return model.model_validate_json(response.content)
    except pydantic.ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ServerError(
            0, f"the server's answer to {response.request.method} {response.request.url.path} is "
            f"not a {model.__name__} ({where}: {first['msg']}): nothing was written; is it a "
            "meshbridge server of this version?"
        ) from None


class ServerClient:
    """A meshbridge server at ``server`` (``https://host:port``), as a bearer of ``token``.

    ``server_ca``: the CA bundle that verifies an ``https`` server (default: the system's
    trust); ``client_cert``: (certificate, key) for a server that asks for one. The URL is
    checked before anything is sent (:func:`check_server_url`).
    """

    def __init__(
        self,
        server: str,
        token: str | None,
        *,
        server_ca: Path | None = None,
        client_cert: ClientCertificate | None = None,
        timeout: float = 120.0,
        transport: httpx2.BaseTransport | None = None,
    ) -> None:
        url = check_server_url(server, token)
        self.server = _shown(url)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        verify: ssl.SSLContext | bool = True
        if url.scheme == "https":
            verify = _tls_context(server_ca, client_cert)
        self._http = httpx2.Client(
            base_url=server.rstrip("/"),
            headers=headers,
            timeout=timeout,
            transport=transport,
            verify=verify,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ServerClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(
        self, method: str, path: str, *, origins: Sequence[tuple[str, int]] = (), **kwargs: Any
    ) -> httpx2.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx2.HTTPError as exc:
            hint = ""
            if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                hint = (
                    " (the server's certificate is not trusted: --server-ca or "
                    "MESHBRIDGE_SERVER_CA names the CA that signed it)"
                )
            raise ServerError(
                0, f"cannot reach the meshbridge server {self.server}: {exc}{hint}"
            ) from None
        if response.status_code < 400:
            return response
        try:
            items = ErrorAnswer.model_validate_json(response.content).errors
        except ValueError:  # not our error shape: a proxy's page, say
            items = []
        found = [item.problem(origins, BODY) for item in items]
        problems = [p for p in found if p is not None]
        message = next((item.message for item in items), None) or response.reason_phrase
        status = response.status_code
        if status == 422 and problems:
            raise InvalidInput(problems)
        if status == 409:
            raise Conflict(message, problems)
        if status == 404:
            raise NotFound(message)
        raise ServerError(status, f"the server answered {status}: {message or 'error'}", problems)

    # ------------------------------------------------------------------------------ calls

    def apply(
        self, docs: Sequence[FileDocument], *, prune: bool = False, dry_run: bool = False
    ) -> ApplyAnswer:
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
        return _read(ApplyAnswer, response)

    def get(self, kind: ResourceKind, name: str, namespace: str = "") -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", kind.path(namespace, name)).json()
        return result

    def list(
        self, kind: ResourceKind, namespace: str | None = None, selector: str | None = None
    ) -> dict[str, Any]:
        path = kind.collection(namespace)
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

    def credentials(self) -> builtins.list[CredentialView]:
        """Every registered cluster credential's public view (admin)."""
        response = self.request("GET", "/api/v1/credentials")
        return _read(CredentialList, response).items

    def put_credential(
        self, name: str, kubeconfig: dict[str, Any]
    ) -> tuple[CredentialView, bool]:
        """Register (or replace) credential ``name``: (its public view, whether it is new)."""
        response = self.request(
            "PUT",
            f"/api/v1/credentials/{quote(name, safe='')}",
            content=json.dumps(kubeconfig).encode(),
            headers={"Content-Type": "application/json"},
        )
        view = _read(CredentialView, response)
        return view, response.status_code == 201

    def delete_credential(self, name: str) -> None:
        self.request("DELETE", f"/api/v1/credentials/{quote(name, safe='')}")

    def manifests(self, cluster: str) -> ManifestList:
        """The cluster's rendered objects, at the store revision ``metadata.resourceVersion``."""
        response = self.request("GET", f"/api/v1/clusters/{quote(cluster, safe='')}/manifests")
        return _read(ManifestList, response)

    def status(self) -> StatusAnswer:
        """Every cluster's last reconcile on the server, and the replicas."""
        return _read(StatusAnswer, self.request("GET", "/api/v1/status"))

    def placements(self) -> PlacementAnswer:
        """Where the discovered Apps run, as the server's watches keep it."""
        return _read(PlacementAnswer, self.request("GET", "/api/v1/placements"))

    def problems(self) -> ProblemsAnswer:
        """The stored documents left out of renders, and why."""
        return _read(ProblemsAnswer, self.request("GET", "/api/v1/problems"))
