"""Prometheus metrics of one server process, in the text exposition format.

Requests by route template (never the raw path: names would explode the label space), method
and status; request latency; the time to compute one cluster's manifests; documents per kind,
counted in the store at scrape time so every process reports the same numbers. Per cluster, for
alerting, also read in the store at scrape time (so whichever replica is scraped, the answer is
the same): when its last successful reconcile ended, how many runs failed since, how many
objects it holds, whether its last change reached every proxy, its proxies, NACKing and stale
proxies; and, per process, the reconcile runs this replica made and the time from a revision
to its delivery in the clusters this replica watched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from meshbridge.store import ClusterRuns
from meshbridge.wire.messages import ClusterPropagation

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_PROPAGATION_BUCKETS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _ObjectsCollector(Collector):
    def __init__(self, counts: Callable[[], dict[str, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "meshbridge_objects", "Intent documents stored, by kind.", labels=["kind"]
        )
        try:
            counts = self._counts()
        except Exception:
            counts = {}
        for kind, count in sorted(counts.items()):
            family.add_metric([kind], count)
        yield family


class _ClustersCollector(Collector):
    def __init__(self, runs: Callable[[], dict[str, ClusterRuns]]) -> None:
        self._runs = runs

    def collect(self) -> Iterator[GaugeMetricFamily]:
        success = GaugeMetricFamily(
            "meshbridge_cluster_last_success_timestamp_seconds",
            "When the cluster's last successful (Applied) reconcile ended (Unix time).",
            labels=["cluster"],
        )
        failures = GaugeMetricFamily(
            "meshbridge_cluster_reconcile_failures",
            "Reconcile runs of the cluster that failed since its last successful one.",
            labels=["cluster"],
        )
        objects = GaugeMetricFamily(
            "meshbridge_cluster_objects",
            "Objects the cluster is to hold, as of its last reconcile.",
            labels=["cluster"],
        )
        running = GaugeMetricFamily(
            "meshbridge_cluster_reconciling",
            "1 while a reconcile of the cluster is in progress (by the replica named).",
            labels=["cluster", "replica"],
        )
        try:
            runs = self._runs()
        except Exception:
            runs = {}
        for cluster, r in sorted(runs.items()):
            if r.last_success is not None:
                success.add_metric([cluster], r.last_success)
            failures.add_metric([cluster], r.failures)
            objects.add_metric([cluster], r.last.objects)
            if r.last.finished is None:
                running.add_metric([cluster, r.last.replica], 1)
        yield from (success, failures, objects, running)


class _PropagationCollector(Collector):
    """Per cluster, from the propagation records (so every replica answers the same)."""

    def __init__(self, views: Callable[[], dict[str, ClusterPropagation]]) -> None:
        self._views = views

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = {
            "delivered": GaugeMetricFamily(
                "meshbridge_cluster_delivered",
                "1 when every proxy of the cluster has ACKed its last change, else 0.",
                labels=["cluster"]),
            "proxies": GaugeMetricFamily(
                "meshbridge_cluster_proxies",
                "Proxies connected to the cluster's istiods, at the last check.",
                labels=["cluster"]),
            "nacks": GaugeMetricFamily(
                "meshbridge_cluster_proxy_nacks",
                "Proxies of the cluster that rejected (NACKed) what istiod sent them.",
                labels=["cluster"]),
            "stale": GaugeMetricFamily(
                "meshbridge_cluster_stale_proxies",
                "Proxies of the cluster not in sync with its last change: not ACKed yet, "
                "NACKed, or disconnected since the change.",
                labels=["cluster"]),
        }
        try:
            views = self._views()
        except Exception:
            views = {}
        for cluster, v in sorted(views.items()):
            families["delivered"].add_metric([cluster], 1 if v.state == "delivered" else 0)
            families["proxies"].add_metric([cluster], v.proxies)
            families["nacks"].add_metric([cluster], len({n.proxy for n in v.nacks}))
            families["stale"].add_metric([cluster], v.proxies - v.acked + len(v.disconnected))
        yield from families.values()


class Metrics:
    """The registry and instruments of one app (not the process-global registry: tests and
    embedders may build several apps in one process)."""

    def __init__(
        self,
        counts: Callable[[], dict[str, int]],
        runs: Callable[[], dict[str, ClusterRuns]] | None = None,
        propagation: Callable[[], dict[str, ClusterPropagation]] | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "meshbridge_http_requests",
            "HTTP requests served, by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "meshbridge_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method.",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.render = Histogram(
            "meshbridge_render_duration_seconds",
            "Time to compute and serialise one cluster's manifests (cache misses only).",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.reconciles = Counter(
            "meshbridge_reconciles",
            "Reconcile runs this replica made, by cluster and result.",
            ["cluster", "state"],
            registry=self.registry,
        )
        self.propagation = Histogram(
            "meshbridge_propagation_seconds",
            "From a revision of the documents (when this replica saw it, within a second of "
            "the write) to every proxy of a cluster having ACKed it, by cluster.",
            ["cluster"],
            buckets=_PROPAGATION_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_ObjectsCollector(counts))
        if runs is not None:
            self.registry.register(_ClustersCollector(runs))
        if propagation is not None:
            self.registry.register(_PropagationCollector(propagation))

    def reconciled(self, cluster: str, state: str) -> None:
        self.reconciles.labels(cluster, state).inc()

    def delivered(self, cluster: str, seconds: float) -> None:
        self.propagation.labels(cluster).observe(seconds)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
