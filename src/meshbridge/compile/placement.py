"""Discovered placement, as compile sees it: what to look for where, and what a declared split
says of what was found.

An App with ``discover: {}`` runs where it is found (``inputs.Placement``, handed in like the
VIPs: read from the clusters by ``meshbridge apply`` or a server, recorded in the state store,
or given in a file). Compile never reads a cluster; this module says

* what is to be looked for in each cluster (:func:`wanted`): the Services of each discovered
  App's InboundIntents, or for an App that serves none, its workloads and pods;
* what the intents' declared splits say of a placement (:func:`coverage`). Weights and a
  failover priority are what the user wrote and are never changed to fit what was found:

  - an instance found in a cluster the weights give 0% (or leave out) gets no traffic from
    that intent's clients;
  - a cluster the weights give a share, or the priority names, where no instance is found,
    keeps its share or its place (``snapshot`` places the App there): with ``failover``,
    clients pass over it once its gateway fails their requests; without, that share of
    requests fails;
  - an instance found in a cluster the priority leaves out is tried last.

  Each is a :class:`Uncovered`, reported by ``apply``, ``discover``, ``render`` and ``status``;
  none is an error (the documents are valid whatever runs where).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from meshbridge.compile.snapshot import AppKey, Snapshot, selected
from meshbridge.model import App, InboundIntentSpec


@dataclass(frozen=True)
class Wanted:
    """What tells that an App runs in a cluster: each of ``services`` (namespace, name) with
    a ready endpoint; or, for an App that serves nothing (``services`` empty), a workload or
    running pod labelled ``<label_key>: <app name>`` in its namespace."""

    app: AppKey
    services: tuple[str, ...]


def discovered(snap: Snapshot) -> dict[AppKey, App]:
    """The Apps with ``discover: {}``, by (namespace, name)."""
    return {key: app for key, app in snap.apps.items() if app.spec.discover is not None}


def candidates(snap: Snapshot) -> dict[AppKey, tuple[str, ...]]:
    """Each discovered App with the clusters it may run in (its ``clusterSelector``'s, or
    every cluster)."""
    return {key: selected(app, snap.clusters) for key, app in discovered(snap).items()}


def wanted(snap: Snapshot) -> dict[str, list[Wanted]]:
    """Per cluster, the discovered Apps that may run there and what tells that they do."""
    out: dict[str, list[Wanted]] = {}
    for key, clusters in sorted(candidates(snap).items()):
        services = sorted(
            {
                service
                for (ns, service), intents in snap.services.items()
                if ns == key[0] and any(i.spec.app == key[1] for i in intents)
            }
        )
        for cluster in clusters:
            out.setdefault(cluster, []).append(Wanted(key, tuple(services)))
    return out


@dataclass(frozen=True, order=True)
class Uncovered:
    """A discovered placement that an intent's declared split does not cover."""

    namespace: str
    app: str
    cluster: str
    intent: str
    message: str

    def __str__(self) -> str:
        return (f"App {self.namespace}/{self.app} in cluster {self.cluster!r} "
                f"(InboundIntent {self.intent}): {self.message}")


def coverage(snap: Snapshot) -> list[Uncovered]:
    """Every discovered placement an intent's weights or failover priority do not cover, and
    every cluster they name where the App is not found (the rules in the module docstring)."""
    out: set[Uncovered] = set()
    for key in discovered(snap):
        found = snap.found.get(key, frozenset())
        for intents in snap.services.values():
            for intent in intents:
                if (intent.namespace, intent.spec.app) == key:
                    out.update(_uncovered(key, intent.name, intent.spec, found))
    return sorted(out)


def _uncovered(
    key: AppKey, intent: str, spec: InboundIntentSpec, found: frozenset[str]
) -> list[Uncovered]:
    ns, app = key
    out = []
    lb, fo = spec.load_balancing, spec.failover
    if lb is not None:
        weights: Mapping[str, int] = lb.weights
        fails = ("clients pass over it once their requests to it fail (failover)"
                 if fo is not None else "that share of requests fails")
        for cluster in sorted(found):
            if not weights.get(cluster):
                out.append(Uncovered(ns, app, cluster, intent,
                                     "found running, but loadBalancing.weights give it no share: "
                                     "it gets no traffic from this intent's clients"))
        for cluster, weight in sorted(weights.items()):
            if weight and cluster not in found:
                out.append(Uncovered(ns, app, cluster, intent,
                                     f"not found running, but loadBalancing.weights give it "
                                     f"{weight}%: it keeps its share, and {fails}"))
    if fo is not None and fo.priority is not None:
        for cluster in sorted(found - set(fo.priority)):
            out.append(Uncovered(ns, app, cluster, intent,
                                 "found running, but not in failover.priority: tried last"))
        for cluster in fo.priority:
            if cluster not in found:
                out.append(Uncovered(ns, app, cluster, intent,
                                     "not found running, but named in failover.priority: it "
                                     "keeps its place, and clients pass over it once their "
                                     "requests to it fail"))
    return out
