"""How far a cluster's last apply has got, from "the API server holds it" to "every proxy ACKed".

Three levels, each read, never assumed:

1. **applied**: the last apply's record (``usecases.apply``) names every Istio object it wrote
   or found in sync, with the resourceVersion the API server gave it, and what it pruned;
2. **observed**: every istiod replica's config store (``/debug/configz``) holds each of those
   objects at that resourceVersion, and none of the pruned ones;
3. **delivered**: observed, and every proxy connected to every replica (``/debug/syncz``) has
   ACKed what istiod last sent it, for every xDS type, with no NACK; no proxy that was
   connected when the change was made has gone; and, when meshbridge watched the change being
   made (``apply --wait``, the server's reconciler: a :class:`Witness`), every proxy in a
   namespace the change touched has ACKed a push istiod made *after* that moment.

Why the last condition: istiod pushes a change a little after it reads it (it waits for more
changes to batch them, 100 ms at least), so for a moment after a write every proxy has ACKed
everything sent and none has the change. A push's version is istiod's own counter
(``kube.istiod.push_version``); the newest one among the proxies just before the write is the
witness's baseline, and a push with a newer version was made after the write. Istio pushes an
object exported to its own namespace (``exportTo: ["."]``, as meshbridge writes them) to the
proxies of that namespace, and skips the others; so proxies elsewhere need no new push. Without
a witness (``status --propagation`` after a plain ``apply``) that moment cannot be seen, and a
cluster is called delivered on the first two conditions: right after a write, for the second or
so istiod waits, it may be too early (``docs/apply.md``, "Propagation").

The judgement is a pure function of the apply's record, the istiod reading and the witness;
``usecases.watch`` reads, records and waits.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from meshbridge import plural
from meshbridge.kube import Change
from meshbridge.kube.istiod import ClusterReading, ProxySync, push_version
from meshbridge.kube.kinds import CLUSTER_KINDS
from meshbridge.wire.messages import (
    ClusterPropagation,
    IntentCluster,
    IntentObject,
    IntentPropagation,
    IstiodView,
    PropagationState,
    ProxyNack,
    ProxyPending,
)

__all__ = [
    "ISTIO_KINDS",
    "Witness",
    "change_id",
    "for_intent",
    "judge",
    "last_line",
    "short_type",
    "witness",
]

# What istiod reads of what apply writes (not Secrets, Namespaces or the IstioOperator).
ISTIO_KINDS = frozenset(
    kind for kind, info in CLUSTER_KINDS.items()
    if info.group in ("networking.istio.io", "security.istio.io")
)

Version = tuple[datetime, int]


@dataclass(frozen=True)
class Witness:
    """A cluster's istiods just before meshbridge changed it: per replica (pod) the newest push
    version any of its proxies had been sent (None: none readable), the proxies connected, and
    the namespaces of the Istio objects the change wrote or deleted."""

    versions: Mapping[str, Version | None]
    proxies: frozenset[str]
    concerned: frozenset[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "versions": {pod: None if v is None else [v[0].isoformat(), v[1]]
                         for pod, v in sorted(self.versions.items())},
            "proxies": sorted(self.proxies),
            "concerned": sorted(self.concerned),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Witness:
        return cls(
            {pod: None if v is None else (datetime.fromisoformat(v[0]), int(v[1]))
             for pod, v in data.get("versions", {}).items()},
            frozenset(data.get("proxies", [])),
            frozenset(data.get("concerned", [])),
        )


def _newest(proxies: Iterable[ProxySync], field: str) -> Version | None:
    found = [push_version(getattr(t, field)) for p in proxies for t in p.resources.values()]
    known = [v for v in found if v is not None]
    return max(known) if known else None


def witness(reading: ClusterReading, changes: Iterable[Change] | None) -> Witness:
    """What a reading taken just before a write says the write is to be measured against;
    ``changes``: the write's (None: not known yet, every namespace concerned)."""
    concerned = frozenset(
        c.namespace for c in changes or ()
        if c.kind in ISTIO_KINDS and c.action in ("create", "update", "delete")
    )
    return Witness(
        {r.pod: _newest(r.proxies, "sent") for r in reading.replicas if not r.error},
        frozenset(p.proxy for r in reading.replicas for p in r.proxies),
        concerned,
    )


def change_id(record: Mapping[str, Any]) -> str:
    """What identifies the state an apply left a cluster in: its Istio objects'
    resourceVersions and what it pruned. An apply that changed nothing keeps it."""
    held = sorted((o["object"], o.get("resourceVersion", "")) for o in record.get("objects", [])
                  if o["object"].split("/", 1)[0] in ISTIO_KINDS)
    digest = hashlib.sha256(json.dumps([held, record.get("pruned", [])]).encode())
    return digest.hexdigest()[:16]


def short_type(type_url: str) -> str:
    """``type.googleapis.com/envoy.config.cluster.v3.Cluster`` -> ``Cluster``."""
    return type_url.rsplit(".", 1)[-1]


def _key(ref: str) -> tuple[str, str, str]:
    kind, _, rest = ref.partition("/")
    namespace, _, name = rest.rpartition("/")
    return kind, namespace, name


def _wanted(record: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """The Istio objects the apply left applied (ref -> resourceVersion), and the pruned ones."""
    wanted = {o["object"]: o.get("resourceVersion", "") for o in record.get("objects", [])
              if o["object"].split("/", 1)[0] in ISTIO_KINDS and o.get("state") == "Applied"}
    pruned = [ref for ref in record.get("pruned", []) if ref.split("/", 1)[0] in ISTIO_KINDS]
    return wanted, pruned


def _not_observed(reading: ClusterReading, wanted: Mapping[str, str], pruned: list[str]
                  ) -> tuple[list[str], int]:
    """Why istiod does not hold the apply's objects (one line each), and how many it holds."""
    missing: dict[str, str] = {}
    for replica in reading.replicas:
        for ref, version in wanted.items():
            have = replica.config.get(_key(ref))
            if have is None:
                missing.setdefault(ref, f"{ref}: not in istiod {replica.pod} yet")
            elif version and have != version:
                missing.setdefault(ref, f"{ref}: istiod {replica.pod} holds resourceVersion "
                                        f"{have}, the apply wrote {version}")
        for ref in pruned:
            if _key(ref) in replica.config:
                missing.setdefault(ref, f"{ref}: pruned, still in istiod {replica.pod}")
    held = sum(1 for ref in wanted if ref not in missing)
    return [missing[ref] for ref in sorted(missing)], held


def _proxies(reading: ClusterReading) -> dict[str, tuple[str, ProxySync]]:
    """Every connected proxy once (a proxy moving between replicas may show in two for a
    moment: the first replica by name wins), with its replica."""
    out: dict[str, tuple[str, ProxySync]] = {}
    for replica in sorted(reading.replicas, key=lambda r: r.pod):
        for proxy in replica.proxies:
            out.setdefault(proxy.proxy, (replica.pod, proxy))
    return out


def _proxy_state(pod: str, proxy: ProxySync, seen: Witness | None
                 ) -> tuple[list[ProxyNack], list[ProxyPending]]:
    nacks, pending = [], []
    for type_url, state in sorted(proxy.resources.items()):
        if state.lastError:
            nacks.append(ProxyNack(proxy=proxy.proxy, type=short_type(type_url),
                                   error=state.lastError))
        elif state.sent != state.acked:
            pending.append(ProxyPending(proxy=proxy.proxy, type=short_type(type_url),
                                        why="sent, not ACKed yet"))
    if nacks or pending or seen is None or proxy.namespace not in seen.concerned:
        return nacks, pending
    before = seen.versions.get(pod)
    acked = _newest([proxy], "acked")
    if before is not None and acked is not None and acked <= before:
        pending.append(ProxyPending(proxy=proxy.proxy, type="",
                                    why="istiod has not pushed the change to it yet"))
    return nacks, pending


def last_line(text: str, width: int = 300) -> str:
    """The gist of Envoy's NACK message: its last line (after the dump of what it rejected),
    its end kept when long (where Envoy says what is wrong)."""
    lines = [line.strip().lstrip(": ") for line in text.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    return last if len(last) <= width else "…" + last[-(width - 1):]


def judge(
    record: Mapping[str, Any],
    reading: ClusterReading,
    *,
    expected: frozenset[str] = frozenset(),
    seen: Witness | None = None,
) -> ClusterPropagation:
    """Where a cluster stands (the module's docstring): ``record`` its last apply's record,
    ``reading`` its istiods now, ``expected`` the proxies connected when the change was made,
    ``seen`` the witness of the write, if meshbridge watched it."""
    wanted, pruned = _wanted(record)
    base: dict[str, Any] = {"cluster": reading.cluster, "applied": record.get("state", ""),
                            "since": record.get("time"), "objects": len(wanted)}

    def verdict(state: PropagationState, reason: str, **more: Any) -> ClusterPropagation:
        return ClusterPropagation(state=state, reason=reason, **{**base, **more})

    if reading.state == "unreachable":
        return verdict("unreachable", f"the API server cannot be reached: {reading.error}")
    if record.get("state") == "Unreachable":
        return verdict("unreachable", f"the last apply could not reach it: {record.get('error')}")
    istiods = [IstiodView(pod=r.pod, proxies=len(r.proxies), error=r.error)
               for r in reading.replicas]
    failed = [r for r in reading.replicas if r.error]
    if reading.state != "read" or failed:
        why = reading.error or "; ".join(f"istiod {r.pod}: {r.error}" for r in failed)
        return verdict("istiod-unreachable", f"istiod cannot be read: {why}", istiod=istiods)
    missing, held = _not_observed(reading, wanted, pruned)
    connected = _proxies(reading)
    nacks: list[ProxyNack] = []
    pending: list[ProxyPending] = []
    for name in sorted(connected):
        pod, proxy = connected[name]
        n, p = _proxy_state(pod, proxy, seen)
        nacks += n
        pending += p
    disconnected = sorted(expected - connected.keys())
    behind = {n.proxy for n in nacks} | {p.proxy for p in pending}
    found = {"observed": held, "missing": missing, "istiod": istiods,
             "proxies": len(connected), "acked": len(connected.keys() - behind),
             "nacks": nacks, "pending": pending, "disconnected": disconnected}
    failed_apply = (f" (the last apply failed: {record.get('error')})"
                    if record.get("state") == "Failed" else "")
    if nacks:
        first = nacks[0]
        rejecting = plural.count(len({n.proxy for n in nacks}), "proxy", "proxies")
        return verdict("nack", f"NACK from {rejecting}: {first.proxy} rejected {first.type}: "
                               f"{last_line(first.error)}{failed_apply}", **found)
    if missing:
        return verdict("applied", f"istiod does not hold {len(missing)} of {len(wanted)} "
                                  f"objects yet: {missing[0]}{failed_apply}", **found)
    if disconnected or pending:
        parts = []
        if disconnected:
            parts.append(f"disconnected since the change: {', '.join(disconnected)}")
        if pending:
            behind_ = plural.count(len({p.proxy for p in pending}), "proxy", "proxies")
            parts.append(f"{behind_} not in sync: {pending[0].proxy}: {pending[0].why}")
        return verdict("observed", "; ".join(parts) + failed_apply, **found)
    return verdict("delivered", failed_apply.strip(), **found)


def for_intent(
    intent: str,
    statuses: Iterable[Mapping[str, Any]],
    views: Mapping[str, ClusterPropagation],
) -> IntentPropagation:
    """Every cluster holding objects made for ``intent`` (``Kind/namespace/name``, as the
    objects' ``meshbridge.dev/owners`` name it; the kind's case does not matter), each object's
    last apply and whether istiod holds it, and where the cluster stands (``views``)."""
    kind, _, rest = intent.partition("/")
    wanted = f"{kind.lower()}/{rest}"
    clusters = []
    for status in sorted(statuses, key=lambda s: str(s["cluster"])):
        mine = [o for o in status.get("objects", [])
                if any(f"{k.lower()}/{r}" == wanted
                       for k, _, r in (owner.partition("/") for owner in o.get("owners", [])))]
        if not mine:
            continue
        view = views.get(status["cluster"])
        read = view is not None and view.state not in ("unreachable", "istiod-unreachable")
        not_held = {line.split(":", 1)[0] for line in view.missing} if view else set()
        objects = [IntentObject(object=o["object"], applied=o["state"],
                                resource_version=o.get("resourceVersion", ""),
                                observed=(o["state"] == "Applied" and o["object"] not in not_held)
                                if read and o["object"].split("/", 1)[0] in ISTIO_KINDS else None)
                   for o in mine]
        clusters.append(IntentCluster(cluster=status["cluster"],
                                      state=view.state if view else None,
                                      reason=view.reason if view else "", objects=objects))
    return IntentPropagation(intent=intent, clusters=clusters)
