"""Reconcile many clusters at once: bounded concurrency, retries, one report each.

A cluster that cannot be reached, or answers "not now", is tried again (``ReconcileOptions.retries``
attempts in all, waits as ``kube.retry.per_cluster`` says) and then reported Unreachable (or
Failed, for an answer); a cluster whose objects fail or conflict is reported Failed. Neither
stops the others.

Clients are lightkube's, on its own transport (httpx2), with the kubeconfig's credentials.
Proxies from the environment (``HTTPS_PROXY``, ``NO_PROXY``...) are honoured as kubectl
honours them, loopback included: an API server on ``localhost`` or a loopback address is never
reached through a proxy (Go's rule; httpx2 alone would send it to the proxy too).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx2
from lightkube import ApiError, AsyncClient, ConfigError, KubeConfig

from meshbridge import plural
from meshbridge.errors import InvalidInput, KubeconfigError, Unreachable
from meshbridge.kube.reconcile import ClusterReconciler
from meshbridge.kube.retry import per_cluster
from meshbridge.kube.steps import INJECTION_LABEL, ChangeSet, Ownership
from meshbridge.limits import FILES
from meshbridge.loading import parse_config
from meshbridge.loopback import is_loopback

State = Literal["Applied", "Planned", "Failed", "Unreachable"]


@dataclass(frozen=True)
class ClusterAccess:
    """How to reach one cluster: a kubeconfig file (``kubeconfig``, the CLI's), or the
    kubeconfig itself as data (``config``: a credential registered on the server, which reads
    no file), or why it cannot be reached (``unusable``: its Failed reason; nothing is read)."""

    name: str
    kubeconfig: str | None
    context: str | None = None
    config: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)
    unusable: str = ""


@dataclass(frozen=True)
class MeshRef:
    """The mesh a reconcile works for: its name, the identity minted for its state store (what
    its objects' ownership labels carry), the clusters where objects an older meshbridge
    labelled with its name alone are to be adopted, and whether namespaces apply creates get
    ``istio-injection=enabled``."""

    name: str
    uid: str
    adopt_legacy_in: frozenset[str] = frozenset()
    sidecar_injection: bool = True
    previous_ids: frozenset[str] = frozenset()

    def ownership(self, cluster: str) -> Ownership:
        return Ownership(self.name, self.uid, adopt_legacy=cluster in self.adopt_legacy_in,
                         previous=self.previous_ids)

    @property
    def namespace_labels(self) -> dict[str, str]:
        return dict([INJECTION_LABEL]) if self.sidecar_injection else {}


@dataclass
class ClusterReport:
    cluster: str
    state: State
    outcome: ChangeSet = field(default_factory=ChangeSet)
    error: str = ""
    attempts: int = 0
    finished_at: str = ""


@dataclass(frozen=True)
class ReconcileOptions:
    """How a run goes: ``retries`` attempts per cluster, the wait between them doubling from
    ``backoff`` seconds (``kube.retry``); ``timeout``: seconds for each request."""

    dry_run: bool = False
    force_conflicts: bool = False
    with_diff: bool = False
    parallel: int = 4
    retries: int = 3
    backoff: float = 0.5
    timeout: float = 10.0


Progress = Callable[[ClusterReport], None]


def client_for(target: ClusterAccess, timeout: float = 10.0) -> AsyncClient:
    """A lightkube client for a target (kube's own: callers outside kube never hold one), or
    KubeconfigError naming what is wrong with its kubeconfig."""
    try:
        return _client_for(target, timeout)
    except (ConfigError, OSError, ValueError, KeyError) as exc:
        raise KubeconfigError(f"kubeconfig: {exc}") from exc


def _client_for(target: ClusterAccess, timeout: float) -> AsyncClient:
    if target.unusable:
        raise ConfigError(target.unusable)
    if target.config is not None:
        where = f"the credential of cluster {target.name!r}"
        try:
            config = KubeConfig.from_dict(dict(target.config))
        except (KeyError, TypeError, AttributeError, ValueError):
            raise ConfigError(f"{where} is not a valid kubeconfig") from None
    else:
        if not target.kubeconfig:
            raise ConfigError(f"cluster {target.name!r} has no spec.kubeconfig")
        path = Path(target.kubeconfig).expanduser()
        where = f"kubeconfig {path}"
        if not path.is_file():
            raise ConfigError(f"kubeconfig {path} does not exist")
        with path.open("rb") as f:
            data = f.read(FILES.bytes + 1)
        try:  # the one reader (C loader, limits), not lightkube's own (the Python loader)
            config = KubeConfig.from_dict(parse_config(data, str(path), FILES), fname=path)
        except InvalidInput as exc:
            raise ConfigError(f"kubeconfig {exc}") from None
        except (KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"kubeconfig {path} is not a valid kubeconfig: {exc}") from None
    single = config.get(target.context) if target.context else config.get()
    if single is None:
        raise ConfigError(f"{where} has no context {target.context!r}")
    return AsyncClient(
        config=single,
        timeout=httpx2.Timeout(timeout),
        field_manager="meshbridge",
        trust_env=not _on_loopback(single.cluster.server),  # False: no proxy from the env
    )


def _on_loopback(server: str) -> bool:
    """The API server is this machine's own (``localhost`` or a loopback address): kubectl
    (Go's net/http) never sends such requests to a proxy, whatever ``NO_PROXY`` says."""
    try:
        host = httpx2.URL(server).host
    except (httpx2.InvalidURL, TypeError):
        return False
    return is_loopback(host)


async def reconcile_one(
    target: ClusterAccess, desired: list[dict[str, Any]], mesh: MeshRef, options: ReconcileOptions
) -> ClusterReport:
    report = ClusterReport(target.name, "Unreachable")
    try:
        client = client_for(target, options.timeout)
    except KubeconfigError as exc:
        report.state, report.error, report.attempts = "Failed", str(exc), 1
        report.finished_at = _now()
        return report

    async def attempt(number: int) -> ChangeSet:
        report.attempts = number
        return await ClusterReconciler(
            client,
            mesh.ownership(target.name),
            namespace_labels=mesh.namespace_labels,
            dry_run=options.dry_run,
            force_conflicts=options.force_conflicts,
            with_diff=options.with_diff,
        ).run(desired)

    try:
        outcome = await per_cluster(attempt, attempts=options.retries, backoff=options.backoff)
    except (Unreachable, httpx2.TransportError, OSError) as exc:
        report.state, report.error = "Unreachable", _reason(exc)
    except httpx2.HTTPStatusError as exc:
        report.state, report.error = "Failed", _status_text(exc)
    except ConfigError as exc:  # credentials that fail when used (an exec plugin, a token file)
        report.state, report.error = "Failed", f"kubeconfig: {exc}"
    else:
        report.outcome = outcome
        if outcome.failed:
            report.state = "Failed"
            report.error = (
                f"{plural.count(outcome.count('conflict'), 'conflict')}, "
                f"{plural.count(outcome.count('failed'), 'failure')}"
            )
        else:
            report.state = "Planned" if options.dry_run else "Applied"
    finally:
        await client.close()
    report.finished_at = _now()
    return report


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _status_text(exc: httpx2.HTTPStatusError) -> str:
    if isinstance(exc, ApiError):
        return f"{exc.status.code}: {exc.status.message}"
    return f"{exc.response.status_code}: {exc.request.method} {exc.request.url.path}"


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]


async def reconcile_all(
    targets: list[ClusterAccess],
    desired: Mapping[str, list[dict[str, Any]]],
    mesh: MeshRef,
    options: ReconcileOptions,
    progress: Progress | None = None,
) -> list[ClusterReport]:
    """Every target reconciled, at most ``options.parallel`` at a time; reports in target order."""
    gate = asyncio.Semaphore(max(1, options.parallel))

    async def one(target: ClusterAccess) -> ClusterReport:
        async with gate:
            report = await reconcile_one(target, desired.get(target.name, []), mesh, options)
        if progress is not None:
            progress(report)
        return report

    return list(await asyncio.gather(*(one(t) for t in targets)))
