"""The compile pipeline: intents -> validated snapshot -> VIPs -> every cluster's objects.

Pure: the previous VIP allocations and the certificate material come in as arguments, the new
allocations go out as a return value; nothing here reads a file, a clock or the environment.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass

from meshbridge.compile import (
    authz,
    crosscluster,
    egress,
    failover,
    ingress,
    istio_operator,
    loadbalancing,
    pki_secrets,
    snapshot,
    validate,
    vips,
)
from meshbridge.compile.envelope import Obj, ordered
from meshbridge.compile.inputs import Context, Material, Placement
from meshbridge.compile.snapshot import Snapshot
from meshbridge.errors import AddressTaken, InvalidInput, PoolExhausted, Problem
from meshbridge.model import Intents
from meshbridge.viprecord import Taken, VipRecord

Generator = Callable[[Snapshot, Context], Iterator[tuple[str, Obj]]]

GENERATORS: tuple[Generator, ...] = (
    istio_operator.build,
    pki_secrets.build,
    crosscluster.build,
    loadbalancing.build,
    failover.build,
    authz.build,
    ingress.build,
    egress.build,
)


@dataclass(frozen=True)
class Blueprint:
    """A validated snapshot and the VIP table it needs (new allocations included)."""

    snapshot: Snapshot
    vips: list[VipRecord]


def check(
    intents: Intents, *, before_apply: bool = False, found: Placement | None = None
) -> Snapshot:
    """The snapshot of valid intents, or :class:`InvalidInput` listing every problem.
    ``before_apply``: intents ``meshbridge apply`` will complete (a gateway address it
    discovers may be missing); such a snapshot is not for compiling. ``found``: where the
    Apps with ``discover: {}`` run (none: nowhere)."""
    snap = snapshot.build(intents, found)
    problems = validate.check(
        intents, snap, validate.RULES_BEFORE_APPLY if before_apply else validate.RULES
    )
    if problems:
        raise InvalidInput(problems)
    return snap


def blueprint(
    intents: Intents | Snapshot, previous: Iterable[VipRecord], found: Placement | None = None
) -> Blueprint:
    """Validate (unless given an already checked snapshot, built with its placement) and
    allocate VIPs against the previous allocation table."""
    snap = intents if isinstance(intents, Snapshot) else check(intents, found=found)
    intents = snap.intents
    needs, reserved = vips.vip_needs(snap)
    try:
        records = vips.allocate(snap.mesh.spec.pool, needs, reserved, list(previous))
    except AddressTaken as exc:
        raise InvalidInput(_taken_problems(snap, exc.taken)) from None
    except PoolExhausted as exc:
        where = intents.meshes[0] if intents.meshes else None
        problem = Problem(
            where.source if where else "<defaults>",
            where.index if where else 1,
            "Mesh",
            where.obj.name if where else "default",
            "spec.vipPool",
            f"{exc} (released addresses included): use a larger pool",
        )
        raise InvalidInput([problem]) from None
    return Blueprint(snap, records)


def _taken_problems(snap: Snapshot, taken: list[Taken]) -> list[Problem]:
    """Each ExternalService address that is already another host's VIP, at ``spec.addresses[i]``
    of every document that writes it for that cluster, naming the host (and its document)."""
    problems = []
    for t in taken:
        here = [
            d
            for d in snap.intents.external_services
            if t.cluster in (d.obj.spec.clusters or snap.clusters)
        ]
        holder = next(
            (
                d
                for d in here
                if d.obj.spec.needs_vip and vips.external_key(d.obj.spec.hosts) == t.holder
            ),
            None,
        )
        held_by = (
            f"host {t.holder}"
            if holder is None
            else f"ExternalService {holder.obj.namespace}/{holder.obj.name} "
            f"({holder.source}#{holder.index}, hosts {', '.join(holder.obj.spec.hosts)})"
        )
        for doc in here:
            es = doc.obj
            for i, address in enumerate(es.spec.addresses or ()):
                if address == t.address:
                    problems.append(
                        Problem(
                            doc.source,
                            doc.index,
                            doc.kind,
                            es.name,
                            f"spec.addresses[{i}]",
                            f"address {address} is already the VIP of {held_by} in cluster "
                            f"{t.cluster!r}, and an allocated VIP never moves: write another "
                            "address, or leave addresses out to get one from the pool",
                        )
                    )
    return problems


def objects(
    blueprint_: Blueprint, material: Material | None = None, *, only: Collection[str] | None = None
) -> dict[str, list[Obj]]:
    """Every cluster's objects, in apply order; every cluster of the mesh has an entry.

    With ``only``, just those clusters are computed (through the snapshot's per-cluster indexes,
    so the cost follows the size of those clusters, not of the mesh); unknown names are ignored.
    """
    selected = None if only is None else frozenset(only)
    ctx = Context(vips=vips.lookup(blueprint_.vips), material=material or Material(), only=selected)
    out: dict[str, list[Obj]] = defaultdict(list)
    for cluster, obj in _generated(blueprint_.snapshot, ctx):
        out[cluster].append(obj)
    return {c: ordered(out.get(c, [])) for c in ctx.selected(blueprint_.snapshot.clusters)}


def each_object(blueprint_: Blueprint, material: Material | None = None) -> Iterator[tuple[str, Obj]]:
    """Every object of the mesh with its cluster, one at a time as the generators make them (in
    no cluster's apply order: :func:`objects` sorts them), for a caller that turns each into
    something else at once. A render serialises each object as it comes, so the mesh's objects
    are never all alive together: on the 100-cluster mesh that is 160,000 containers fewer for
    the garbage collector to walk over and over while they pile up (bench/README.md). Objects
    for a cluster that is not in the mesh are not given (as :func:`objects` leaves them out)."""
    ctx = Context(vips=vips.lookup(blueprint_.vips), material=material or Material())
    clusters = frozenset(blueprint_.snapshot.clusters)
    for cluster, obj in _generated(blueprint_.snapshot, ctx):
        if cluster in clusters:
            yield cluster, obj


def _generated(snap: Snapshot, ctx: Context) -> Iterator[tuple[str, Obj]]:
    for generate in GENERATORS:
        yield from generate(snap, ctx)
