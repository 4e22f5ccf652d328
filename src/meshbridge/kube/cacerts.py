"""Read each cluster's live ``cacerts`` Secret (istio-system), keeping only its public files.

Before apply writes a ``cacerts`` anywhere it must know, for every cluster, which roots the
cluster trusts now (``meshbridge.usecases.rootguard``). This module does the reading: one GET of
``istio-system/cacerts`` per cluster, all clusters at once (``parallel`` at a time), with the
same retries as a reconcile (``kube.retry``). Whoever owns the Secret, it is read: a
``cacerts`` made by hand (the seed procedure's ``kubectl create secret``) carries the root the
mesh runs on as much as one meshbridge wrote.

Only ``root-cert.pem``, ``ca-cert.pem`` and ``cert-chain.pem`` leave this module; the key
(``ca-key.pem``) is dropped with the answer and never decoded.

With it, a second GET reads what istiod publishes: ``root-cert.pem`` of the ConfigMap
``istio-ca-root-cert`` in istio-system, the roots of the CA istiod signs with now (istiod
writes it into every namespace, from the CA it loaded: ``usecases.istiod_roots``). It is read
even where there is no ``cacerts`` (istiod on a CA of its own), and a failure to read it fails
nothing: that cluster's istiod is then unseen.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import httpx2
from lightkube import ApiError, AsyncClient, ConfigError
from lightkube.resources.core_v1 import ConfigMap, Secret

from meshbridge.errors import KubeconfigError
from meshbridge.kube.fleet import ClusterAccess, ReconcileOptions, client_for
from meshbridge.kube.retry import patiently, per_cluster
from meshbridge.kube.steps import MESH_ID_LABEL, MESH_LABEL

__all__ = ["CACERTS", "LiveCacerts", "read_cacerts"]

CACERTS = ("istio-system", "cacerts")
PUBLISHED_ROOT = ("istio-system", "istio-ca-root-cert")  # istiod's roots, as it publishes them
_PUBLIC = ("root-cert.pem", "ca-cert.pem", "cert-chain.pem")

# unconfigured: no client could be made (kubeconfig); the reconcile reports that itself.
ReadState = Literal["found", "absent", "unreachable", "failed", "unconfigured"]


@dataclass(frozen=True)
class LiveCacerts:
    """What one cluster holds: ``files`` (public PEM files) when ``state`` is ``found``."""

    cluster: str
    state: ReadState
    files: Mapping[str, str] = field(default_factory=dict)
    error: str = ""
    attempts: int = 0
    owner: tuple[str, str] | None = None  # (mesh name, mesh-id) of meshbridge's labels, if any
    # root-cert.pem of istio-ca-root-cert: what istiod signs under (None: not published/read)
    published: str | None = None


def _public(secret: Secret) -> dict[str, str]:
    data = secret.data or {}
    out = {}
    for name in _PUBLIC:
        if name in data:
            try:
                out[name] = base64.b64decode(data[name]).decode("ascii", "replace")
            except (binascii.Error, ValueError):
                out[name] = ""  # unreadable: the caller sees no certificate there
    return out


async def _read_one(target: ClusterAccess, options: ReconcileOptions) -> LiveCacerts:
    try:
        client = client_for(target, options.timeout)
    except KubeconfigError as exc:
        return LiveCacerts(target.name, "unconfigured", error=str(exc), attempts=1)
    attempts = 0

    async def attempt(number: int) -> Secret:
        nonlocal attempts
        attempts = number
        secret: Secret = await patiently(
            lambda: client.get(Secret, CACERTS[1], namespace=CACERTS[0])
        )
        return secret

    try:
        secret = await per_cluster(attempt, attempts=options.retries, backoff=options.backoff)
    except ApiError as exc:
        if exc.status.code == 404:
            published = await _published(client)
            return LiveCacerts(target.name, "absent", attempts=attempts, published=published)
        error = f"{exc.status.code}: {exc.status.message}"
        return LiveCacerts(target.name, "failed", error=error, attempts=attempts)
    except (httpx2.TransportError, OSError) as exc:
        error = (str(exc) or type(exc).__name__).splitlines()[0][:300]
        return LiveCacerts(target.name, "unreachable", error=error, attempts=attempts)
    except httpx2.HTTPStatusError as exc:  # an answer that is not the API server's (a proxy's)
        error = f"{exc.response.status_code}: {exc.request.method} {exc.request.url.path}"
        return LiveCacerts(target.name, "failed", error=error, attempts=attempts)
    except ConfigError as exc:  # credentials that fail when used (an exec plugin, a token file)
        return LiveCacerts(target.name, "unconfigured", error=f"kubeconfig: {exc}",
                           attempts=attempts)
    else:
        published = await _published(client)
    finally:
        await client.close()
    labels = (secret.metadata.labels if secret.metadata else None) or {}
    owner = None
    if labels.get(MESH_LABEL) and labels.get(MESH_ID_LABEL):
        owner = (labels[MESH_LABEL], labels[MESH_ID_LABEL])
    return LiveCacerts(
        target.name, "found", _public(secret), attempts=attempts, owner=owner, published=published
    )


async def _published(client: AsyncClient) -> str | None:
    """root-cert.pem of istio-ca-root-cert in istio-system; None when it cannot be had (one
    try: what it tells is an observation, and the next apply looks again)."""
    try:
        found = await client.get(ConfigMap, PUBLISHED_ROOT[1], namespace=PUBLISHED_ROOT[0])
    except (ApiError, httpx2.TransportError, httpx2.HTTPStatusError, OSError, ConfigError):
        return None
    return (found.data or {}).get("root-cert.pem")


async def read_cacerts(targets: list[ClusterAccess], options: ReconcileOptions) -> list[LiveCacerts]:
    """Every target's live ``cacerts`` (public files only), in target order."""
    gate = asyncio.Semaphore(max(1, options.parallel))

    async def one(target: ClusterAccess) -> LiveCacerts:
        async with gate:
            return await _read_one(target, options)

    return list(await asyncio.gather(*(one(t) for t in targets)))
