"""Prometheus metrics of one server process, in the text exposition format.

Requests by route template (never the raw path: names would explode the label space), method
and status; request latency; the time to compute one cluster's manifests; documents per kind,
counted in the store at scrape time so every process reports the same numbers. Per cluster, for
alerting, also read in the store at scrape time (so whichever replica is scraped, the answer is
the same): when its last successful reconcile ended, how many runs failed since, how many
objects it holds; and, per process, the reconcile runs this replica made.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from meshbridge.store import ClusterRuns

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

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


class Metrics:
    """The registry and instruments of one app (not the process-global registry: tests and
    embedders may build several apps in one process)."""

    def __init__(
        self,
        counts: Callable[[], dict[str, int]],
        runs: Callable[[], dict[str, ClusterRuns]] | None = None,
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
        self.registry.register(_ObjectsCollector(counts))
        if runs is not None:
            self.registry.register(_ClustersCollector(runs))

    def reconciled(self, cluster: str, state: str) -> None:
        self.reconciles.labels(cluster, state).inc()

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
