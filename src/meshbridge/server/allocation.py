"""Planning VIPs again after a small change, without allocating for the whole mesh.

``compile.blueprint`` allocates VIPs for every cluster; on a large mesh that is a third of a blueprint's
time, though a write usually changes what one or two clusters need. Allocation
(``compile.vips.allocate``) works cluster by cluster, and clusters share exactly one thing: the
release sequence number, which only grows when a cluster releases an address. A cluster whose
needs and reserved addresses are those its stored records were allocated for keeps every active
record and releases nothing. So allocating only the *changed* clusters — with every released
record of the others passed along, which carries the sequence number without making them
release anything — gives exactly the table a full allocation gives.

``tests/api/test_api_incremental.py`` checks that equality against ``compile.blueprint`` over series of
changes; a change to the allocation rules that breaks it shows there.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshbridge import compile as mbcompile
from meshbridge.compile import vips
from meshbridge.compile.snapshot import Snapshot
from meshbridge.errors import AddressTaken, PoolExhausted
from meshbridge.viprecord import VipRecord

__all__ = ["Needs", "replan"]


@dataclass(frozen=True)
class Needs:
    """What a VIP table was allocated for: the pool, and per cluster the host keys that need
    an address and the addresses users reserved."""

    pool: str
    hosts: dict[str, set[str]]
    reserved: dict[str, set[str]]

    def changed(self, other: Needs) -> set[str]:
        clusters = set(self.hosts) | set(other.hosts) | set(self.reserved) | set(other.reserved)
        return {
            c
            for c in clusters
            if self.hosts.get(c, set()) != other.hosts.get(c, set())
            or self.reserved.get(c, set()) != other.reserved.get(c, set())
        }


def replan(
    snap: Snapshot, table: list[VipRecord], last: Needs | None
) -> tuple[mbcompile.Blueprint, Needs]:
    """``compile.blueprint(snap, table)``, allocating only for clusters whose needs changed since
    ``table`` was allocated for ``last`` (everything when ``last`` is None or the pool moved)."""
    hosts, reserved = vips.vip_needs(snap)
    now = Needs(snap.mesh.spec.vip_pool, hosts, reserved)
    if last is None or last.pool != now.pool:
        return mbcompile.blueprint(snap, table), now
    changed = now.changed(last)
    if not changed:
        return mbcompile.Blueprint(snap, table), now
    passed = [r for r in table if r.cluster in changed or not r.active]
    try:
        part = vips.allocate(
            snap.mesh.spec.pool,
            {c: hosts[c] for c in changed if c in hosts},
            {c: reserved[c] for c in changed if c in reserved},
            passed,
        )
    except (PoolExhausted, AddressTaken):
        return mbcompile.blueprint(snap, table), now  # raises InvalidInput, located as compile does
    kept = [r for r in table if r.cluster not in changed]
    return mbcompile.Blueprint(snap, sorted(kept + [r for r in part if r.cluster in changed])), now
