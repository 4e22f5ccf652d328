"""Who may write to a cluster: one holder at a time, through lease rows with an expiry.

Every writer of a cluster's objects — each ``serve`` replica's reconciler, and ``meshbridge
apply`` on the same store — first takes the cluster's lease (``cluster:<name>``) in the store:
a row naming the holder, a term and an expiry on the database's clock. A holder renews its
leases while it works and releases them when done; a holder that dies simply stops renewing,
and the lease is free again ``ttl`` seconds after its last renewal. A holder that cannot renew
(the database is gone for it) stops its work before the lease can expire: its writes end at
``renewed + FENCE * ttl``, while nobody else may start before ``renewed + ttl``.

Why lease rows and not PostgreSQL advisory locks: a session lock lives as long as its
connection, and the server learns that a replica's host vanished only when TCP says so (two
hours with the kernel's defaults), while the replica learns it lost the lock only when it next
uses that connection: the takeover time would be unbounded and, for a while, two writers could
both believe they hold it. A lease has a stated expiry that both sides know, is visible
(``GET /api/v1/status``), needs no dedicated connection (nor a session-mode pooler), and works on
SQLite as well.

Which replica reconciles which cluster: every replica writes a heartbeat; among the replicas
seen within ``ttl``, a cluster goes to the one ranked first by rendezvous hashing
(:func:`owner`), so the clusters spread over the replicas and move only when a replica comes
or goes. That only spreads the work; the lease is what makes it exclusive.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

import stamina

from meshbridge.errors import StateError, StateLocked
from meshbridge.store import ReplicaStore

__all__ = [
    "CLUSTER",
    "DEFAULT_TTL",
    "FENCE",
    "holding",
    "lease_name",
    "owner",
    "replica_id",
]

log = logging.getLogger("meshbridge.leases")

CLUSTER = "cluster:"  # lease names: cluster:<name>
DEFAULT_TTL = 15.0  # seconds a lease lasts after its last renewal
FENCE = 2 / 3  # a holder that could not renew stops writing this share of ttl after its last


def lease_name(cluster: str) -> str:
    return f"{CLUSTER}{cluster}"


def replica_id() -> str:
    """This process, as leases and reconcile records name it: ``host:pid`` (in Kubernetes the
    host name is the pod's)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner(cluster: str, replicas: Iterable[str]) -> str | None:
    """The replica that should reconcile ``cluster`` (rendezvous hashing), None for none."""
    ranked = sorted(replicas, key=lambda r: hashlib.sha256(f"{r}\0{cluster}".encode()).digest())
    return ranked[-1] if ranked else None


@contextmanager
def holding(
    store: ReplicaStore,
    clusters: Sequence[str],
    *,
    writes: bool = True,
    holder: str | None = None,
    ttl: float = DEFAULT_TTL,
    wait: float = 120.0,
    waiting: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold the leases of ``clusters`` while the block runs (``meshbridge apply``): wait up to
    ``wait`` seconds for replicas (or another apply) working on any of them (``waiting`` is
    told once, naming them), then StateLocked naming who holds what. The leases are renewed in
    a thread and released at the end. Nothing is taken when ``writes`` is false (a dry run)."""
    if not writes or not clusters:
        yield
        return
    holder = holder or f"cli:{replica_id()}"
    names = [lease_name(c) for c in sorted(set(clusters))]
    _take_all(store, names, holder, ttl, wait, waiting)
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(ttl / 3):
            try:
                kept = store.renew_leases(holder, names, ttl)
            except StateError as exc:
                log.warning("cannot renew the cluster leases: %s", exc)
                continue
            if len(kept) != len(names):
                log.warning("cluster leases lost: %s", ", ".join(sorted(set(names) - kept)))

    thread = threading.Thread(target=renew, name="meshbridge-leases", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        store.release_leases(holder, names)


def _take_all(
    store: ReplicaStore,
    names: list[str],
    holder: str,
    ttl: float,
    wait: float,
    waiting: Callable[[str], None] | None,
) -> None:
    """Every lease of ``names`` or none (so two appliers of overlapping clusters cannot each
    hold a part and wait for the other)."""
    told = False
    for attempt in stamina.retry_context(
        on=StateLocked, attempts=None, timeout=wait, wait_initial=0.5, wait_max=0.5,
        wait_jitter=0.0, wait_exp_base=1,
    ):
        with attempt:
            busy = _try_all(store, names, holder, ttl)
            if busy is None:
                return
            if waiting is not None and not told:
                waiting(f"waiting up to {wait:.0f} s for clusters another meshbridge is "
                        f"reconciling: {busy or 'some'}")
                told = True
            raise StateLocked(
                f"clusters are being reconciled by another meshbridge: {busy or 'some'}; "
                f"waited {wait:.0f} s: try again"
            )


def _try_all(store: ReplicaStore, names: list[str], holder: str, ttl: float) -> str | None:
    """Take every lease of ``names`` (None), or none of them: then who holds which."""
    got: list[str] = []
    for name in names:
        if store.acquire_lease(name, holder, ttl) is None:
            break
        got.append(name)
    else:
        return None
    store.release_leases(holder, got)
    now, leases = store.leases(CLUSTER)
    return ", ".join(
        f"{lease.name.removeprefix(CLUSTER)} ({lease.holder})"
        for lease in leases
        if lease.name in names and lease.holder != holder and lease.expires > now
    )
