"""VIP allocation: a pure function from (needs, previous allocations) to new allocations.

Rules, per cluster:

* a host keeps the address it has as long as it is needed (it never moves because other hosts
  come or go);
* a host no longer needed is *released*: its address stays recorded, with a release sequence
  number, and is not handed to anyone else while never-used addresses remain;
* a new host first gets back its own released address, if nobody took it; otherwise the lowest
  never-used address of the pool; only when the pool has none left, the address released
  longest ago;
* addresses the user wrote into an ExternalService (``spec.addresses``) are never allocated;
  one that is already the VIP of another host still needed in that cluster is refused
  (:class:`AddressTaken`): taking it would move that host's VIP.

The network and broadcast addresses of the pool are never allocated. Hosts are allocated in
sorted order, so the same needs from the same state always give the same addresses.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import replace

from meshbridge.compile import naming
from meshbridge.compile.snapshot import Snapshot
from meshbridge.errors import AddressTaken, PoolExhausted
from meshbridge.viprecord import Taken, VipRecord


def capacity(pool: ipaddress.IPv4Network) -> int:
    return max(pool.num_addresses - 2, 0)


def external_key(hosts: tuple[str, ...] | list[str]) -> str:
    """The allocation key of an ExternalService: its hosts, sorted and joined."""
    return ",".join(sorted(hosts))


def vip_needs(snap: Snapshot) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Per cluster: the host keys that need a VIP, and the addresses users reserved (computed
    once per snapshot: validation and planning both ask)."""
    cached = snap.derived.get("vip_needs")
    if cached is None:
        cached = snap.derived["vip_needs"] = _vip_needs(snap)
    result: tuple[dict[str, set[str]], dict[str, set[str]]] = cached
    return result


def _vip_needs(snap: Snapshot) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    needs: dict[str, set[str]] = defaultdict(set)
    reserved: dict[str, set[str]] = defaultdict(set)
    for use in snap.remote_uses:
        needs[use.client_cluster].add(use.host)
        needs[use.server_cluster].add(use.host)  # the server side's ServiceEntry
    for bal in snap.balanced_uses:
        if bal.client_cluster not in snap.placement.get(
            _app_of(snap, bal.namespace, bal.service), ()
        ):
            needs[bal.client_cluster].add(naming.local_host(bal.service, bal.namespace))
    for doc in snap.intents.external_services:
        es = doc.obj
        for cluster in es.spec.clusters or snap.clusters:
            if cluster not in snap.clusters:
                continue
            if es.spec.needs_vip:
                needs[cluster].add(external_key(es.spec.hosts))
            reserved[cluster].update(es.spec.addresses or ())
    return dict(needs), dict(reserved)


def _app_of(snap: Snapshot, namespace: str, service: str) -> tuple[str, str]:
    intents = snap.services.get((namespace, service), ())
    return (namespace, intents[0].spec.app) if intents else (namespace, "")


def _free_offsets(used: set[int], last: int) -> Iterator[int]:
    offset = 1
    for taken in sorted(used):
        while offset < taken and offset <= last:
            yield offset
            offset += 1
        offset = max(offset, taken + 1)
    while offset <= last:
        yield offset
        offset += 1


def allocate(
    pool: ipaddress.IPv4Network,
    needs: Mapping[str, set[str]],
    reserved: Mapping[str, set[str]],
    previous: list[VipRecord],
) -> list[VipRecord]:
    """The new allocation table; raises :class:`AddressTaken` if a reserved address is the VIP
    of a host still needed there, :class:`PoolExhausted` if a cluster cannot fit."""
    taken = held_reserved(pool, needs, reserved, previous)
    if taken:
        raise AddressTaken(taken)
    by_cluster: dict[str, list[VipRecord]] = defaultdict(list)
    for rec in previous:
        by_cluster[rec.cluster].append(rec)
    seq = max((r.released or 0 for r in previous), default=0)
    out: list[VipRecord] = []
    for cluster in sorted(set(by_cluster) | set(needs)):
        records, seq = _allocate_cluster(
            cluster,
            pool,
            needs.get(cluster, set()),
            reserved.get(cluster, set()),
            by_cluster.get(cluster, []),
            seq,
        )
        out.extend(records)
    return sorted(out)


def held_reserved(
    pool: ipaddress.IPv4Network,
    needs: Mapping[str, set[str]],
    reserved: Mapping[str, set[str]],
    previous: list[VipRecord],
) -> list[Taken]:
    """Reserved addresses that are the active VIP of another host still needed in the cluster
    (a host whose address left the pool moves anyway: that is not the reservation's doing)."""
    out = [
        Taken(rec.cluster, rec.address, rec.key)
        for rec in previous
        if rec.active
        and rec.address in reserved.get(rec.cluster, ())
        and rec.key in needs.get(rec.cluster, ())
        and ipaddress.ip_address(rec.address) in pool
    ]
    return sorted(out)


def _allocate_cluster(
    cluster: str,
    pool: ipaddress.IPv4Network,
    wanted: set[str],
    reserved: set[str],
    previous: list[VipRecord],
    seq: int,
) -> tuple[list[VipRecord], int]:
    base = int(pool.network_address)
    last = pool.num_addresses - 2
    blocked = set(reserved)
    # each address parsed once: offset in the pool, None outside it
    offsets: dict[str, int | None] = {}
    for address in [r.address for r in previous] + sorted(blocked):
        if address not in offsets:
            ip = ipaddress.ip_address(address)
            offsets[address] = int(ip) - base if ip in pool else None
    # keep what is still wanted, release the rest
    kept: dict[str, VipRecord] = {}
    released: list[VipRecord] = []
    for rec in sorted(previous, key=lambda r: (r.released or 0, r.key)):
        in_pool = offsets[rec.address] is not None
        if rec.active and rec.key in wanted and rec.address not in blocked and in_pool:
            kept[rec.key] = rec
        elif rec.active:
            seq += 1
            released.append(replace(rec, released=seq))
        else:
            released.append(rec)
    taken = {r.address for r in kept.values()}
    ever_used = {offset for offset in offsets.values() if offset is not None}
    fresh = _free_offsets(ever_used, last)
    # released addresses: oldest release first; a host's own released address is its first pick
    own: dict[str, VipRecord] = {}
    for rec in released:  # ascending release order: the latest release of a key wins
        if rec.address not in taken and rec.address not in blocked:
            own[rec.key] = rec
    for key in sorted(wanted - kept.keys()):
        mine = own.get(key)
        if mine is not None and mine.address not in taken:
            address = mine.address
        else:
            nxt = next(fresh, None)
            if nxt is not None:
                address = str(ipaddress.IPv4Address(base + nxt))
            else:
                address = _oldest_released(released, taken, blocked, cluster, len(wanted))
        taken.add(address)
        kept[key] = VipRecord(cluster, key, address)
    # a released record whose address is taken again is forgotten: one record per address
    remaining: dict[str, VipRecord] = {}
    for rec in released:
        if rec.address not in taken:
            remaining[rec.address] = rec
    return sorted(kept.values()) + sorted(remaining.values()), seq


def _oldest_released(
    released: list[VipRecord], taken: set[str], blocked: set[str], cluster: str, needed: int
) -> str:
    for rec in sorted(released, key=lambda r: r.released or 0):
        if rec.address not in taken and rec.address not in blocked:
            return rec.address
    raise PoolExhausted(cluster, needed)


def lookup(records: list[VipRecord]) -> dict[tuple[str, str], str]:
    """(cluster, key) -> address, for the active records."""
    return {(r.cluster, r.key): r.address for r in records if r.active}
