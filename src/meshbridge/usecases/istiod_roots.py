"""What each cluster's istiod signs under, as meshbridge can see it, and what to do about it.

Writing ``cacerts`` does not change what istiod signs with. istiod picks its CA when it starts
(its own self-signed one when it found no ``cacerts``) and, once on ``cacerts``, loads a
changed one only when it can (a new intermediate; a new ``root-cert.pem`` only with
``ISTIO_MULTIROOT_MESH``, which meshbridge's IstioOperator sets). It publishes the roots of the
CA it signs with in the ConfigMap ``istio-ca-root-cert`` of every namespace, and apply reads
the one in istio-system (``kube.read_cacerts``). Compared with the ``cacerts`` the cluster holds
(``seen_cacerts``), it says one of:

* ``in-step``: istiod publishes the roots of that ``cacerts``;
* ``outside``: none of the roots it publishes is one of the mesh's: istiod signs with a CA of
  its own, as on a cluster that ran Istio before meshbridge wrote its ``cacerts``. Its
  workloads and the mesh's distrust each other until istiod restarts onto the ``cacerts``, and
  then the workloads, which keep certificates from the old CA until they restart
  (``restarts``: the exact commands, in order);
* ``loading``: the mesh's roots, but not yet those of a ``cacerts`` written less than
  ``VOLUME_REFRESH`` ago: the kubelet refreshes istiod's secret volume within about a minute;
* ``behind``: the same for longer: istiod did not load it (without ``ISTIO_MULTIROOT_MESH`` it
  ignores a ``cacerts`` whose ``root-cert.pem`` changed, and every later one, until restarted);
* ``unseen``: no ``istio-ca-root-cert`` could be read (no istiod, or no right to read it).

What istiod was seen publishing is kept per cluster (``pki.istiod/<cluster>``: fingerprints, the
time they were first and last seen, and for ``outside`` the restarts), so ``status`` shows it and
``pki rotate-root`` can wait for it (:func:`rollout_waits`). Fingerprints only, no certificate.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from meshbridge.compile.snapshot import Snapshot
from meshbridge.compile.snapshot import build as snapshot
from meshbridge.errors import StateError
from meshbridge.model import Intents
from meshbridge.pki.bundle import CacertsFacts, pem_fingerprints
from meshbridge.store import Store
from meshbridge.usecases.seen_cacerts import read_seen

__all__ = [
    "SEEN_ISTIOD_KIND",
    "VOLUME_REFRESH",
    "Finding",
    "SeenIstiod",
    "findings",
    "published_roots",
    "read_istiod",
    "record_istiod",
    "restarts",
    "restarts_for",
    "rollout_waits",
]

SEEN_ISTIOD_KIND = "pki.istiod"
# How long after apply wrote a cacerts istiod may still run on the old one: the kubelet refreshes
# a pod's secret volume on its sync (1 minute by default, plus its cache's lifetime).
VOLUME_REFRESH = timedelta(minutes=2)
GATEWAY = "istio-ingressgateway"  # the ingress gateway of meshbridge's IstioOperator

State = Literal["in-step", "outside", "loading", "behind", "unseen"]


@dataclass(frozen=True)
class SeenIstiod:
    """The roots a cluster's istiod published when apply last looked (empty: none could be
    read), since when it has published them, and the restarts an ``outside`` one needs."""

    roots: tuple[str, ...]
    since: str
    seen: str
    restarts: tuple[str, ...] = ()

    def to_json(self) -> bytes:
        body = {"roots": list(self.roots), "since": self.since, "seen": self.seen,
                "restarts": list(self.restarts)}
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes, cluster: str) -> SeenIstiod:
        try:
            body = json.loads(data)
            return cls(tuple(str(r) for r in body["roots"]), str(body["since"]),
                       str(body["seen"]), tuple(str(r) for r in body.get("restarts", ())))
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(
                f"{SEEN_ISTIOD_KIND}/{cluster}: the stored record is damaged ({type(exc).__name__})"
            ) from None


def published_roots(pem: str | None) -> tuple[str, ...]:
    """The fingerprints of the roots istiod publishes (empty: none published or readable)."""
    if not pem:
        return ()
    try:
        return pem_fingerprints(pem)
    except ValueError:
        return ()


def read_istiod(store: Store) -> dict[str, SeenIstiod]:
    return {name: SeenIstiod.from_json(data, name)
            for name, data in store.list_blobs(SEEN_ISTIOD_KIND).items()}


def record_istiod(store: Store, cluster: str, roots: tuple[str, ...], now: str,
                  restarts: Sequence[str] = ()) -> None:
    """What ``cluster``'s istiod publishes now; ``since`` is kept while the roots stay."""
    data = store.get_blob(SEEN_ISTIOD_KIND, cluster)
    old = SeenIstiod.from_json(data, cluster) if data is not None else None
    since = old.since if old is not None and set(old.roots) == set(roots) else now
    store.put_blob(SEEN_ISTIOD_KIND, cluster, SeenIstiod(roots, since, now, tuple(restarts)).to_json())


# --------------------------------------------------------------------------------- judging


@dataclass(frozen=True)
class Finding:
    """One cluster's istiod against the ``cacerts`` it holds."""

    cluster: str
    state: State
    published: tuple[str, ...]  # the roots istiod publishes
    wanted: tuple[str, ...]  # the roots of the cacerts the cluster holds (or the mesh's)
    since: str  # istiod published ``published`` since then; for loading/behind: cacerts since
    restarts: tuple[str, ...] = ()

    def describe(self) -> list[str]:
        """What ``apply`` and ``status`` print (nothing for ``in-step`` and ``unseen``)."""
        got, want = _fps(self.published), _fps(self.wanted)
        if self.state == "outside":
            return [
                f"{self.cluster}: istiod signs with a root outside the mesh: it publishes "
                f"{got} (istio-ca-root-cert), the mesh's is {want}. istiod picks its CA when it "
                f"starts, and workloads keep their certificates until they restart: until "
                f"then they and the mesh's workloads refuse each other. Restart, in this order:",
                *(f"  {n}. {r}" for n, r in enumerate(self.restarts, start=1)),
            ]
        if self.state == "loading":
            return [f"{self.cluster}: istiod still publishes {got}; it loads the cacerts of "
                    f"{want} written at {self.since} once the kubelet refreshes its volume "
                    f"(within {_minutes(VOLUME_REFRESH)})"]
        if self.state == "behind":
            return [f"{self.cluster}: istiod publishes {got}, not the roots of the cacerts it "
                    f"has held since {self.since} ({want}): it has not loaded them. istiod "
                    f"loads a cacerts whose root-cert.pem changed only with "
                    f"ISTIO_MULTIROOT_MESH=true (meshbridge's IstioOperator sets it; install "
                    f"it), else restart istiod; 'pki rotate-root' waits for it"]
        return []


def _colons(fingerprint: str) -> str:
    """A fingerprint as openssl prints it: upper-case byte pairs between colons."""
    return ":".join(fingerprint[i : i + 2] for i in range(0, len(fingerprint), 2)).upper()


def _fps(roots: Sequence[str]) -> str:
    return ", ".join(f"sha256:{r}" for r in roots) or "no root"


def _minutes(delta: timedelta) -> str:
    return f"{int(delta.total_seconds() // 60)} minutes"


def judge(cluster: str, seen: SeenIstiod | None, held: CacertsFacts | None, held_since: str,
          mesh_roots: Sequence[str], now: datetime) -> Finding:
    """``cluster``'s istiod as ``seen`` against the cacerts it ``held`` since ``held_since``
    (None: none recorded, judged against the roots the mesh trusts, ``mesh_roots``)."""
    wanted = held.roots if held is not None and held.roots else tuple(mesh_roots)
    if seen is None or not seen.roots:
        return Finding(cluster, "unseen", (), wanted, seen.seen if seen else "")
    if set(seen.roots) == set(wanted):
        return Finding(cluster, "in-step", seen.roots, wanted, seen.since)
    if not set(seen.roots) & (set(mesh_roots) | set(wanted)):
        return Finding(cluster, "outside", seen.roots, wanted, seen.since, seen.restarts)
    fresh = held_since and now - datetime.fromisoformat(held_since) < VOLUME_REFRESH
    return Finding(cluster, "loading" if fresh else "behind", seen.roots, wanted, held_since)


def findings(store: Store, clusters: Sequence[str], mesh_roots: Sequence[str],
             now: datetime) -> list[Finding]:
    """Every one of ``clusters`` judged from what apply recorded."""
    istiods, held = read_istiod(store), read_seen(store)
    out = []
    for cluster in clusters:
        h = held.get(cluster)
        out.append(judge(cluster, istiods.get(cluster), h.facts if h else None,
                         h.since if h else "", mesh_roots, now))
    return out


def restarts_for(intents: Intents) -> Callable[[str, str], list[str]]:
    """:func:`restarts` of a Cluster of ``intents``, given its name and the mesh's root: its
    kubeconfig, and the namespaces its Apps run in."""

    snap: Snapshot | None = None  # built once, at the first cluster that needs restarts

    def plan(cluster: str, root: str) -> list[str]:
        nonlocal snap
        if snap is None:
            snap = snapshot(intents)
        namespaces = [ns for (ns, _), where in snap.placement.items() if cluster in where]
        ref = snap.clusters[cluster].spec.kubeconfig
        path, context = (ref.path, ref.context) if ref is not None else (None, None)
        return restarts(path, context, namespaces, root)

    return plan


def restarts(kubeconfig: str | None, context: str | None, namespaces: Sequence[str],
             root: str) -> list[str]:
    """The restarts that move a cluster from istiod's own CA to its ``cacerts``, in order:
    istiod (then wait until it publishes ``root``), the ingress gateway, then the workloads,
    namespace by namespace (``kubectl rollout restart``, as a Deployment's own rollout does it:
    new pods before old ones go)."""
    kubectl = ["kubectl"]
    if kubeconfig:
        kubectl += ["--kubeconfig", kubeconfig]
    if context:
        kubectl += ["--context", context]
    k = shlex.join(kubectl)
    steps = [
        f"{k} -n istio-system rollout restart deployment/istiod\n"
        f"     then wait until istiod publishes the mesh's root: "
        f"{k} -n istio-system get configmap istio-ca-root-cert "
        f"-o jsonpath='{{.data.root-cert\\.pem}}' | openssl x509 -noout -fingerprint -sha256 "
        f"prints sha256 Fingerprint={_colons(root)}",
        f"{k} -n istio-system rollout restart deployment/{GATEWAY}",
    ]
    steps += [f"{k} -n {shlex.quote(ns)} rollout restart deployment,statefulset,daemonset"
              for ns in sorted(set(namespaces)) if ns != "istio-system"]
    steps.append("any other namespace whose pods have a sidecar, the same way")
    return steps


# ------------------------------------------------------------------------- rotation waits


def rollout_waits(store: Store, phase_roots: Sequence[str], clusters: Sequence[str], *,
                  count_from: Literal["istiod", "cacerts"], cert_ttl: timedelta,
                  now: datetime) -> list[str]:
    """Why a root rotation must not leave its phase yet, as far as meshbridge can see: one line
    per cluster whose istiod does not publish ``phase_roots``, or whose workloads may still
    hold certificates from before the phase reached it (workloads renew within a certificate
    lifetime, ``cert_ttl``, of istiod's change: counted from when istiod was first seen
    publishing the phase's roots, or, when the roots do not change (``count_from="cacerts"``),
    from when apply wrote the phase's cacerts plus ``VOLUME_REFRESH``). Empty when none."""
    istiods, held = read_istiod(store), read_seen(store)
    lines = []
    for cluster in sorted(clusters):
        seen = istiods.get(cluster)
        if seen is None or not seen.roots:
            lines.append(f"{cluster}: istiod not seen (no istio-ca-root-cert read in "
                         f"istio-system{f' at {seen.seen}' if seen else ''})")
            continue
        if set(seen.roots) != set(phase_roots):
            lines.append(f"{cluster}: istiod publishes {_fps(seen.roots)} (seen {seen.seen}), "
                         f"not yet this phase's {_fps(phase_roots)}")
            continue
        start = datetime.fromisoformat(seen.since)
        h = held.get(cluster)
        if count_from == "cacerts" and h is not None:
            start = max(start, datetime.fromisoformat(h.since) + VOLUME_REFRESH)
        ready = start + cert_ttl
        if now < ready:
            lines.append(f"{cluster}: workloads may hold certificates from before "
                         f"{start.isoformat(timespec='seconds')} (workload certificates live "
                         f"{_span(cert_ttl)}): wait until {ready.isoformat(timespec='seconds')}")
    return lines


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"
