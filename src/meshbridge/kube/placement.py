"""Where discovered Apps run, read from a cluster: the facts and what they say.

Six kinds of object tell where an App runs (``docs/intents.md``, "Discovered placement"):
Services and their EndpointSlices for an App that serves, workloads (Deployments, StatefulSets,
DaemonSets) and Pods labelled ``<labelKey>: <name>`` for one that only calls. Each kind is a
:class:`Source`: the lightkube resource, its name in RBAC terms (``kube.access``), and how one
object becomes a *fact* (a small value under its namespace and name). A cluster's facts, kept by
one list per kind (:func:`read_cluster`) or by a list and a watch (``kube.watching``), are
turned into "App -> ready instances" by :func:`found`, a pure function.

Only the kinds a :class:`Look` needs are read: no workload or pod is listed when no client-only
App is discovered. Every list is across namespaces (one request per kind, whatever the number of
Apps), read-only. A cluster that cannot be read is never "no instances": :class:`Reading` then
carries no ``found``, only the error (a refusal names the verb, resource, namespace and cluster:
``kube.access.refused``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient, ConfigError, operators
from lightkube.core.exceptions import NotReadyError
from lightkube.resources.apps_v1 import DaemonSet, Deployment, StatefulSet
from lightkube.resources.core_v1 import Pod, Service
from lightkube.resources.discovery_v1 import EndpointSlice

from meshbridge.errors import KubeconfigError
from meshbridge.kube.access import refused
from meshbridge.kube.fleet import ClusterAccess, ReconcileOptions, client_for
from meshbridge.kube.retry import patiently, per_cluster

__all__ = ["SOURCES", "Facts", "Look", "Reading", "Source", "found", "read_placements"]

AppKey = tuple[str, str]  # (namespace, App name)
ObjectKey = tuple[str, str]  # (namespace, object name)
Facts = dict[str, dict[ObjectKey, Any]]  # source name -> facts by object
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True)
class Look:
    """What to look for in one cluster: the Services of each App that serves (every one of
    them with a ready endpoint), and the Apps that only call (a labelled workload or running
    pod), by the Mesh's label key."""

    services: Mapping[AppKey, tuple[str, ...]] = field(default_factory=dict)
    clients: tuple[AppKey, ...] = ()
    label_key: str = "app"

    @property
    def sources(self) -> tuple[str, ...]:
        """The kinds to read, by source name, in a fixed order."""
        out: tuple[str, ...] = ()
        if self.services:
            out += SERVING
        if self.clients:
            out += CALLING
        return out


def _labels(meta: Any) -> dict[str, str]:
    return dict((meta.labels if meta is not None else None) or {})


def _service(obj: Any, _: str) -> bool:
    return True


def _slice(obj: Any, _: str) -> tuple[str, int] | None:
    """(its Service, ready endpoints): ``conditions.ready`` unset counts as ready, as the
    EndpointSlice API says consumers should read it."""
    service = _labels(obj.metadata).get(SERVICE_NAME_LABEL)
    if not service:
        return None
    ready = sum(1 for e in obj.endpoints or []
                if e.conditions is None or e.conditions.ready is not False)
    return service, ready


def _workload(obj: Any, key: str) -> frozenset[str] | None:
    """The label's values on the workload and on its pod template."""
    values = {_labels(obj.metadata).get(key)}
    template = obj.spec.template if obj.spec is not None else None
    if template is not None:
        values.add(_labels(template.metadata).get(key))
    values.discard(None)
    return frozenset(v for v in values if v is not None) or None


def _pod(obj: Any, key: str) -> tuple[str, bool] | None:
    """(the label's value, running)."""
    value = _labels(obj.metadata).get(key)
    if value is None:
        return None
    return value, obj.status is not None and obj.status.phase == "Running"


@dataclass(frozen=True)
class Source:
    """One kind of object placement is read from."""

    name: str
    resource: Any  # a lightkube resource class
    group: str
    fact: Callable[[Any, str], Any]  # (object, label key) -> its fact, or None: not one
    labelled: bool = False  # listed by the label key (pods: there may be many)

    def selector(self, label_key: str) -> dict[str, Any] | None:
        return {label_key: operators.exists()} if self.labelled else None


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source("services", Service, "", _service),
        Source("endpointslices", EndpointSlice, "discovery.k8s.io", _slice),
        Source("deployments", Deployment, "apps", _workload),
        Source("statefulsets", StatefulSet, "apps", _workload),
        Source("daemonsets", DaemonSet, "apps", _workload),
        Source("pods", Pod, "", _pod, labelled=True),
    )
}
SERVING = ("services", "endpointslices")
CALLING = ("deployments", "statefulsets", "daemonsets", "pods")


def fact_of(source: Source, obj: Any, label_key: str) -> tuple[ObjectKey, Any] | None:
    """An object's key and fact, or None when it tells nothing."""
    meta = obj.metadata
    if meta is None or not meta.name:
        return None
    value = source.fact(obj, label_key)
    return None if value is None else ((meta.namespace or "", meta.name), value)


def found(look: Look, facts: Facts) -> dict[AppKey, int]:
    """The Apps of ``look`` that run in the cluster the facts are of, each with its ready
    instances (for an App that serves, the fewest ready endpoints of its Services; for one
    that calls, its running pods, 0 when only a workload carries the label)."""
    out: dict[AppKey, int] = {}
    services = facts.get("services", {})
    ready: dict[ObjectKey, int] = {}
    for (ns, _), (service, count) in facts.get("endpointslices", {}).items():
        ready[(ns, service)] = ready.get((ns, service), 0) + count
    for app, names in look.services.items():
        counts = [ready.get((app[0], n), 0) if (app[0], n) in services else 0 for n in names]
        if counts and min(counts) > 0:
            out[app] = min(counts)
    pods = facts.get("pods", {})
    for app in look.clients:
        ns, name = app
        running = sum(1 for (pns, _), (value, up) in pods.items()
                      if pns == ns and value == name and up)
        labelled = any(
            ons == ns and name in values
            for kind in ("deployments", "statefulsets", "daemonsets")
            for (ons, _), values in facts.get(kind, {}).items()
        )
        if running or labelled:
            out[app] = running
    return out


# ------------------------------------------------------------------------- one-shot reading


@dataclass(frozen=True)
class Reading:
    """What one cluster said: the Apps found there (None: it could not be read, see
    ``error``; its last known placements stand)."""

    cluster: str
    found: dict[AppKey, int] | None
    error: str = ""


async def list_source(client: AsyncClient, source: Source, label_key: str
                      ) -> tuple[dict[ObjectKey, Any], str]:
    """Every fact of one kind across namespaces, and the list's resourceVersion."""
    listed = client.list(source.resource, namespace="*", labels=source.selector(label_key))
    facts: dict[ObjectKey, Any] = {}
    async for obj in listed:
        kv = fact_of(source, obj, label_key)
        if kv is not None:
            facts[kv[0]] = kv[1]
    try:
        version = listed.resourceVersion
    except NotReadyError:  # an answer without one (never from a real API server)
        version = ""
    return facts, version


async def _listed(client: AsyncClient, name: str, look: Look) -> dict[ObjectKey, Any]:
    facts, _ = await patiently(lambda: list_source(client, SOURCES[name], look.label_key))
    return facts


def describe(exc: BaseException, verb: str, source: Source, cluster: str) -> str:
    """Why a request about ``source`` failed, for a report: a 403 names what was refused."""
    if isinstance(exc, ApiError):
        if exc.status.code == 403:
            return refused(verb, source.group, source.name, None, cluster,
                           exc.status.message or "")
        return f"{verb} {source.name}: {exc.status.code}: {exc.status.message}"
    if isinstance(exc, httpx2.HTTPStatusError):
        return f"{verb} {source.name}: {exc.response.status_code}"
    if isinstance(exc, ConfigError):
        return f"kubeconfig: {exc}"
    text = (str(exc) or type(exc).__name__).splitlines()[0][:300]
    return f"cannot reach the cluster's API server: {text}"


async def read_cluster(target: ClusterAccess, look: Look, options: ReconcileOptions) -> Reading:
    """One list per kind the look needs, all at once; tried again as a reconcile is when the
    cluster cannot be reached (``kube.retry.per_cluster``)."""
    try:
        client = client_for(target, options.timeout)
    except KubeconfigError as exc:
        return Reading(target.name, None, str(exc))
    failed: list[str] = []

    async def attempt(_: int) -> Facts:
        names = look.sources
        lists = await asyncio.gather(*(_listed(client, n, look) for n in names),
                                     return_exceptions=True)
        out: Facts = {}
        for name, result in zip(names, lists, strict=True):
            if isinstance(result, BaseException):
                failed[:] = [name]
                raise result
            out[name] = result
        return out

    try:
        facts = await per_cluster(attempt, attempts=options.retries, backoff=options.backoff)
    except (httpx2.HTTPError, OSError, ConfigError) as exc:
        source = SOURCES[failed[0] if failed else "services"]
        return Reading(target.name, None, describe(exc, "list", source, target.name))
    finally:
        await client.close()
    return Reading(target.name, found(look, facts))


async def read_placements(
    looks: Mapping[str, tuple[ClusterAccess, Look]], options: ReconcileOptions
) -> list[Reading]:
    """Every cluster of ``looks`` read, ``options.parallel`` at a time; by cluster name."""
    gate = asyncio.Semaphore(max(1, options.parallel))

    async def one(target: ClusterAccess, look: Look) -> Reading:
        async with gate:
            return await read_cluster(target, look, options)

    found_ = await asyncio.gather(*(one(t, lk) for _, (t, lk) in sorted(looks.items())))
    return list(found_)
