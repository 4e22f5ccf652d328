"""What istiod holds and what its proxies acknowledged, read from every istiod replica.

A cluster's istiod replicas are its pods labelled ``app=istiod`` in ``istio-system`` (every
revision's, as an install labels them); each serves only the proxies connected to it, so every
Running replica is read. From each, through a port-forward to its monitoring port 15014
(``kube.portforward``, where istiod answers its own loopback without a token), two debug
answers on one connection:

* ``/debug/configz``: every Istio object in istiod's config store; kept: kind, namespace, name
  and ``metadata.resourceVersion`` (what apply wrote is compared by resourceVersion);
* ``/debug/syncz``: one entry per connected proxy (``name.namespace``), and per xDS type the
  nonce istiod last sent, the one the proxy last ACKed, and Envoy's error if it NACKed.

Both are decoded with msgspec into the few fields meshbridge reads (a large mesh's configz is
megabytes). Nothing here judges them: ``usecases.propagation`` does.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import httpx2
import msgspec
from lightkube import ApiError, AsyncClient, ConfigError
from lightkube.resources.core_v1 import Pod

from meshbridge.errors import KubeconfigError, PortForwardError, Unreachable
from meshbridge.kube import portforward
from meshbridge.kube.fleet import ClusterAccess, client_for
from meshbridge.kube.retry import patiently

__all__ = [
    "CONFIGZ",
    "DEBUG_PORT",
    "ISTIOD_LABEL",
    "ISTIO_SYSTEM",
    "SYNCZ",
    "ClusterReading",
    "ProxySync",
    "Replica",
    "TypeSync",
    "decode_configz",
    "decode_syncz",
    "push_version",
    "read_cluster",
    "read_clusters",
]

ISTIO_SYSTEM = "istio-system"
ISTIOD_LABEL = ("app", "istiod")
DEBUG_PORT = 15014
CONFIGZ, SYNCZ = "/debug/configz", "/debug/syncz"

ObjectKey = tuple[str, str, str]  # kind, namespace, name


# ------------------------------------------------------------------------------- decoding


class _Meta(msgspec.Struct):
    name: str = ""
    namespace: str = ""
    resourceVersion: str = ""


class _Config(msgspec.Struct):
    kind: str = ""
    metadata: _Meta = msgspec.field(default_factory=_Meta)


class TypeSync(msgspec.Struct, frozen=True):
    """One xDS type of one proxy: the nonce istiod last sent, the one the proxy last ACKed, and
    Envoy's message when it rejected (NACKed) what was sent."""

    sent: str = ""
    acked: str = ""
    lastError: str = ""


class ProxySync(msgspec.Struct, frozen=True):
    proxy: str = ""  # name.namespace
    proxy_type: str = ""  # sidecar, router, ...
    resources: dict[str, TypeSync] = {}  # type URL -> its state

    @property
    def namespace(self) -> str:
        return self.proxy.rpartition(".")[2]  # pod names may hold dots; namespaces cannot


_configz = msgspec.json.Decoder(list[_Config] | None)
_syncz = msgspec.json.Decoder(list[ProxySync] | None)


def decode_configz(body: bytes) -> dict[ObjectKey, str]:
    """``/debug/configz`` -> {(kind, namespace, name): resourceVersion}."""
    return {
        (c.kind, c.metadata.namespace, c.metadata.name): c.metadata.resourceVersion
        for c in _configz.decode(body) or []
    }


def decode_syncz(body: bytes) -> list[ProxySync]:
    """``/debug/syncz`` -> one record per connected proxy."""
    return list(_syncz.decode(body) or [])


def push_version(nonce: str) -> tuple[datetime, int] | None:
    """The push a nonce belongs to, in istiod's order; None when it is not istiod's form.

    istiod's nonce is the push's version followed by a UUID (pilot/pkg/xds/discovery.go:
    ``nonce()``), and a push's version is the time it was made (RFC 3339, whole seconds) and a
    counter of the process's pushes (``NextVersion``): ``2026-12-07T05:29:36Z/2`` + 36
    characters. Incremental pushes (endpoints) keep their push context's version."""
    if len(nonce) <= 36:
        return None
    when, sep, counter = nonce[:-36].rpartition("/")
    if not sep or not counter.isdigit():
        return None
    try:
        return datetime.fromisoformat(when), int(counter)
    except ValueError:
        return None


# -------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Replica:
    """One istiod pod: what it holds and its proxies, or why it could not be read."""

    pod: str
    config: dict[ObjectKey, str] = field(default_factory=dict)
    proxies: list[ProxySync] = field(default_factory=list)
    error: str = ""


ReadState = Literal["read", "no-istiod", "failed", "unreachable"]


@dataclass(frozen=True)
class ClusterReading:
    """Every istiod replica of a cluster (``state`` read), or why none could be: no istiod pod
    running (``no-istiod``), its pods cannot be listed (``failed``), the API server cannot be
    reached or its kubeconfig is unusable (``unreachable``)."""

    cluster: str
    state: ReadState
    replicas: list[Replica] = field(default_factory=list)
    error: str = ""


async def _istiod_pods(client: AsyncClient) -> tuple[list[str], str]:
    """The Running istiod pods by name, and (when there is none) what there is instead."""
    pods = await patiently(lambda: _list_pods(client))
    running = sorted(name for name, phase in pods if phase == "Running")
    if running:
        return running, ""
    if pods:
        found = ", ".join(f"{name} ({phase or 'no phase'})" for name, phase in sorted(pods))
        return [], f"no istiod pod is Running in {ISTIO_SYSTEM}: {found}"
    return [], (f"no istiod in this cluster: no pod labelled {ISTIOD_LABEL[0]}="
                f"{ISTIOD_LABEL[1]} in {ISTIO_SYSTEM} (is Istio installed?)")


async def _list_pods(client: AsyncClient) -> list[tuple[str, str]]:
    out = []
    async for pod in client.list(Pod, namespace=ISTIO_SYSTEM,
                                 labels={ISTIOD_LABEL[0]: ISTIOD_LABEL[1]}):
        name = pod.metadata.name if pod.metadata else ""
        out.append((name or "", (pod.status.phase if pod.status else "") or ""))
    return out


async def _read_replica(client: AsyncClient, pod: str, timeout: float) -> Replica:
    try:
        configz, syncz = await portforward.get(
            client, ISTIO_SYSTEM, pod, DEBUG_PORT, [CONFIGZ, SYNCZ], timeout
        )
    except (PortForwardError, Unreachable) as exc:
        return Replica(pod, error=str(exc))
    for path, answer in ((CONFIGZ, configz), (SYNCZ, syncz)):
        if answer.status != 200:
            text = answer.body[:200].decode(errors="replace").strip()
            return Replica(pod, error=f"GET {path} on port {DEBUG_PORT} answered "
                                      f"{answer.status}{': ' + text if text else ''}")
    try:
        return Replica(pod, decode_configz(configz.body), decode_syncz(syncz.body))
    except msgspec.DecodeError as exc:
        return Replica(pod, error=f"istiod's debug answer cannot be read: {exc}")


async def read_cluster(target: ClusterAccess, timeout: float) -> ClusterReading:
    """Every istiod replica of one cluster, read at once."""
    try:
        client = client_for(target, timeout)
    except KubeconfigError as exc:  # it cannot be reached at all
        return ClusterReading(target.name, "unreachable", error=str(exc))
    try:
        pods, why = await _istiod_pods(client)
        if not pods:
            return ClusterReading(target.name, "no-istiod", error=why)
        replicas = await asyncio.gather(*(_read_replica(client, p, timeout) for p in pods))
        return ClusterReading(target.name, "read", list(replicas))
    except ApiError as exc:
        return ClusterReading(target.name, "failed",
                              error=f"cannot list the istiod pods in {ISTIO_SYSTEM}: "
                                    f"{exc.status.code}: {exc.status.message}")
    except (httpx2.TransportError, OSError) as exc:
        return ClusterReading(target.name, "unreachable",
                              error=(str(exc) or type(exc).__name__).splitlines()[0][:300])
    except httpx2.HTTPStatusError as exc:  # an answer that is not the API server's (a proxy's)
        return ClusterReading(target.name, "failed",
                              error=f"{exc.response.status_code}: {exc.request.url.path}")
    except ConfigError as exc:  # credentials that fail when used (an exec plugin, a token file)
        return ClusterReading(target.name, "unreachable", error=f"kubeconfig: {exc}")
    finally:
        await client.close()


async def read_clusters(
    targets: list[ClusterAccess], timeout: float, parallel: int = 16
) -> list[ClusterReading]:
    """Every target's istiods, ``parallel`` clusters at a time; in target order."""
    gate = asyncio.Semaphore(max(1, parallel))

    async def one(target: ClusterAccess) -> ClusterReading:
        async with gate:
            return await read_cluster(target, timeout)

    return list(await asyncio.gather(*(one(t) for t in targets)))
