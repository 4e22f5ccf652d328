"""validate and render: documents in, manifests out, VIPs and certificates kept in the store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from meshbridge import compile as mbcompile
from meshbridge.compile.envelope import Obj
from meshbridge.compile.snapshot import Snapshot
from meshbridge.loading import Source, load
from meshbridge.model import Intents
from meshbridge.output.emitter import ManifestFile, serialised
from meshbridge.output.writer import KeyPlacement, Written, staging
from meshbridge.progress import SILENT, Progress
from meshbridge.store import Store

MaterialProvider = Callable[[Store, mbcompile.Blueprint], mbcompile.Material]


@dataclass(frozen=True)
class Rendered:
    """One render: the blueprint, every cluster's object count, and either every cluster's objects
    (``build(serialise=False)``) or the manifest files (path -> (bytes, what private key the
    file holds, if any)); the other is empty."""

    blueprint: mbcompile.Blueprint
    counts: dict[str, int]
    objects: dict[str, list[Obj]]
    files: dict[str, ManifestFile]
    new_vips: int


def parse(sources: list[Source]) -> Intents:
    """The documents, checked one by one (schema); cross-document rules run at build time."""
    return load(sources)


def validate(
    sources: list[Source], progress: Progress = SILENT, *, before_apply: bool = False
) -> Snapshot:
    """The checked snapshot of the intents (``.intents``), or InvalidInput listing every
    problem (schema and cross-document). Pass it on to build/render: no second check.
    ``before_apply``: what ``meshbridge validate`` checks: a gateway address apply will
    discover may be missing (such a snapshot is not for rendering).
    ``progress`` hears of the two stages (documents one by one, then across documents)."""
    progress.stage("reading intents")
    intents = load(sources)
    progress.stage("checking intents across documents")
    return mbcompile.check(intents, before_apply=before_apply)


def build(
    intents: Intents | Snapshot,
    store: Store,
    material: MaterialProvider | None = None,
    *,
    serialise: bool = True,
    progress: Progress = SILENT,
    found: mbcompile.Placement | None = None,
) -> Rendered:
    """Blueprint against the store, compile and serialise every cluster's objects; persist new VIPs.
    ``found``: where the discovered Apps run (a checked snapshot is checked again with it).

    Runs in one store transaction, so allocations and certificates land together or not at all.
    Each object is serialised as it is made and not kept (``objects`` is left empty);
    ``serialise=False`` (apply: objects go to clusters, not files) keeps the objects instead and
    leaves ``files`` empty. ``progress`` hears of each stage, and of objects serialised.
    """
    objs: dict[str, list[Obj]] = {}
    files: dict[str, ManifestFile] = {}
    with store.transaction():
        progress.stage("allocating VIPs and certificates")
        previous = store.vip_records()
        if found is not None and isinstance(intents, Snapshot):
            intents = intents.intents
        blueprint = mbcompile.blueprint(intents, previous, found)
        mat = material(store, blueprint) if material is not None else mbcompile.Material()
        if serialise:
            progress.stage("computing and serialising objects")
            files, counts = serialised(
                mbcompile.each_object(blueprint, mat), blueprint.snapshot.clusters, progress.advance
            )
        else:
            progress.stage("computing objects")
            objs = mbcompile.objects(blueprint, mat)
            counts = {cluster: len(cluster_objs) for cluster, cluster_objs in objs.items()}
        if blueprint.vips != previous:
            store.replace_vip_records(blueprint.vips)
    before = {(r.cluster, r.key) for r in previous if r.active}
    after = {(r.cluster, r.key) for r in blueprint.vips if r.active}
    return Rendered(blueprint, counts, objs, files, len(after - before))


def render(
    intents: Intents | Snapshot,
    out_dir: Path,
    store: Store,
    material: MaterialProvider | None = None,
    keys: KeyPlacement | None = None,
    progress: Progress = SILENT,
    found: mbcompile.Placement | None = None,
) -> tuple[Rendered, Written]:
    """Render every cluster's manifests into ``out_dir`` (replaced whole); Secrets holding a
    private key are left out unless ``keys`` places them (a secrets directory, or ``out_dir``).

    The targets are checked before anything is rendered. The files are written beside them
    inside the store transaction (if they cannot be written, the new VIPs and certificates are
    not kept either) and put in place once it is committed, so an interrupted render leaves the
    old output as it was, and output never holds what the store does not. ``progress`` hears
    of each stage as it begins, and of clusters serialised and files written.
    """
    with staging(out_dir, keys) as stage:
        with store.transaction():
            result = build(intents, store, material, progress=progress, found=found)
            stage.fill(result.files, progress)
        progress.stage("replacing the previous output")
        written = stage.swap()
    return result, written
