"""validate and render: documents in, manifests out, VIPs and certificates kept in the store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from meshbridge import compile as mbcompile
from meshbridge.compile.output import files as manifest_files
from meshbridge.loading import Source, load
from meshbridge.model import Intents
from meshbridge.service.writer import write_tree
from meshbridge.store import Store

MaterialProvider = Callable[[Store, mbcompile.Plan], mbcompile.Material]


@dataclass(frozen=True)
class RenderResult:
    clusters: dict[str, int]  # cluster -> object count
    files: int
    new_vips: int


def validate(sources: list[Source]) -> Intents:
    """The intents, or InvalidInput listing every problem (schema and cross-document)."""
    intents = load(sources)
    mbcompile.check(intents)
    return intents


def build(
    intents: Intents, store: Store, material: MaterialProvider | None = None
) -> tuple[mbcompile.Plan, dict[str, list[dict[str, object]]]]:
    """Plan against the store and compile every cluster's objects; persists new VIPs.

    Must run inside ``store.transaction()`` so allocations and certificates land with the output.
    """
    previous = store.vip_records()
    plan = mbcompile.plan(intents, previous)
    mat = material(store, plan) if material is not None else mbcompile.Material()
    objs = mbcompile.objects(plan, mat)
    if plan.vips != previous:
        store.replace_vip_records(plan.vips)
    return plan, objs


def render(
    intents: Intents,
    out_dir: Path,
    store: Store,
    material: MaterialProvider | None = None,
) -> RenderResult:
    """Render every cluster's manifests into ``out_dir`` (replaced whole)."""
    with store.transaction():
        before = {(r.cluster, r.key) for r in store.vip_records() if r.active}
        plan, objs = build(intents, store, material)
        files = manifest_files(objs)
        write_tree(out_dir, files)
    after = {(r.cluster, r.key) for r in plan.vips if r.active}
    return RenderResult(
        clusters={c: len(o) for c, o in objs.items()},
        files=len(files),
        new_vips=len(after - before),
    )
