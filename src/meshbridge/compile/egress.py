"""Egress under REGISTRY_ONLY: a MESH_EXTERNAL ServiceEntry per ExternalService in each selected
cluster, with the VIP allocated from the pool when a TCP port needs one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from meshbridge.compile.crosscluster import networking
from meshbridge.compile.envelope import Obj, make, owner_ref
from meshbridge.compile.inputs import Context
from meshbridge.compile.snapshot import Snapshot
from meshbridge.compile.vips import external_key


def build(snap: Snapshot, ctx: Context) -> Iterator[tuple[str, Obj]]:
    for doc in sorted(snap.intents.external_services, key=lambda d: (d.obj.namespace, d.obj.name)):
        es = doc.obj
        owners = [owner_ref("ExternalService", es.namespace, es.name)]
        for cluster in ctx.selected(sorted(es.spec.clusters or snap.clusters)):
            if cluster not in snap.clusters:
                continue
            spec: dict[str, Any] = {"hosts": list(es.spec.hosts)}
            if es.spec.addresses:
                spec["addresses"] = list(es.spec.addresses)
            elif es.spec.needs_vip:
                spec["addresses"] = [ctx.vips[(cluster, external_key(es.spec.hosts))]]
            spec["ports"] = [
                {"number": p.number, "name": p.name, "protocol": p.protocol} for p in es.spec.ports
            ]
            spec["location"] = "MESH_EXTERNAL"
            spec["resolution"] = es.spec.effective_resolution
            if es.spec.endpoints:
                spec["endpoints"] = [
                    e.model_dump(by_alias=True, exclude_none=True) for e in es.spec.endpoints
                ]
            yield (
                cluster,
                make(networking(snap), "ServiceEntry", es.name, es.namespace, spec, owners),
            )
