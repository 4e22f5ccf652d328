"""The server's background reconciler: the stored mesh applied to its clusters, after every
change and every ``interval`` seconds, with per-cluster status kept for the API.

It is the CLI's reconciler (``meshbridge.kube``) fed from the server's catalog instead of files:
the same plan, VIPs and certificates the manifests endpoint serves. Clusters reach their API
servers through the credential their ``spec.kubeconfig`` names, registered by an admin
(:mod:`meshbridge.service.credentials`; the server reads no kubeconfig file); clusters without
``spec.kubeconfig`` are left out (their manifests are still served for GitOps). Gateway
discovery is a CLI feature (``meshbridge apply``); the server needs explicit gateway addresses.

Like ``apply``, it never replaces the root of trust live in a cluster
(:mod:`meshbridge.service.rootguard`): when a cluster would get a ``cacerts`` of a root it does
not trust now (a new database that minted its own root), it writes to no cluster and reports
that as every cluster's status until the root is brought back (``pki import``).

Several server processes on one database would each reconcile; run the reconciler in one of
them (``serve --reconcile-interval 0`` in the others).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from meshbridge import compile as mbcompile
from meshbridge.kube import ClusterReport, MeshRef, Options, Target, reconcile_all
from meshbridge.service import rootguard
from meshbridge.service.apply import record_status
from meshbridge.service.catalog import Catalog
from meshbridge.service.credentials import Credentials, cluster_targets
from meshbridge.service.ownership import mesh_ref
from meshbridge.service.render import MaterialProvider

log = logging.getLogger("meshbridge.reconciler")

SERVER_ADVICE = (
    "If the server's database lost its PKI, bring the live root back into it: meshbridge pki "
    "import --state DB --force --cert ROOT.pem --key ROOT-KEY.pem (ROOT.pem is root-cert.pem of "
    "the live cacerts; see docs/pki.md)."
)


@dataclass
class Reconciler:
    catalog: Catalog
    material: MaterialProvider | None = None
    interval: float = 60.0  # seconds between runs when nothing changes
    poll: float = 1.0  # seconds between looks at the store's revision counters
    options: Options = field(default_factory=Options)
    credentials: Credentials | None = None  # what Clusters' spec.kubeconfig.credential names
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def trigger(self) -> None:
        """Run as soon as possible (e.g. ``POST /api/v1/reconcile``)."""
        self._wake.set()

    async def run_forever(self) -> None:
        seen: object = None
        loop = asyncio.get_running_loop()
        last = float("-inf")
        while True:
            revisions = await asyncio.to_thread(self._revisions)
            due = loop.time() - last >= self.interval
            if revisions != seen or due or self._wake.is_set():
                self._wake.clear()
                try:
                    await self.reconcile_once()
                except Exception:  # a bad run must not end the loop; the next one may work
                    log.exception("background reconcile failed")
                seen, last = revisions, loop.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll)

    def _revisions(self) -> Any:
        with self.catalog.store.reading():
            return self.catalog.store.revisions().resources

    def _desired(self) -> tuple[list[Target], MeshRef | None, dict[str, list[dict[str, Any]]]]:
        """Targets (clusters with a kubeconfig), the mesh, objects; no work without targets."""
        with self.catalog.writing():
            self.catalog.sync()
            plan = self.catalog.plan()
            intents = plan.snapshot.intents
            chosen = cluster_targets(intents, self.credentials)
            if not chosen:
                return [], None, {}
            mesh = mesh_ref(
                self.catalog.store,
                intents.mesh.name,
                sidecar_injection=intents.mesh.spec.istio.sidecar_injection,
            )
            material = self.material(self.catalog.store, plan) if self.material else None
            return chosen, mesh, mbcompile.objects(plan, material)

    async def reconcile_once(self) -> list[ClusterReport]:
        chosen, mesh, objects = await asyncio.to_thread(self._desired)
        if not chosen or mesh is None:
            return []
        checked = await rootguard.check(chosen, objects, self.options)
        if checked.replacements:
            message = f"{rootguard.describe(checked)}; nothing written. {SERVER_ADVICE}"
            reports = rootguard.refused(checked, message)
            await asyncio.to_thread(record_status, self.catalog.store, reports, objects)
            log.warning("%s", message)
            return reports
        found = await reconcile_all(checked.targets, objects, mesh, self.options)
        reports = rootguard.merged(checked, found)
        await asyncio.to_thread(self._record, reports, objects, checked)
        for r in reports:
            if r.state != "Applied":
                log.warning("cluster %s: %s %s", r.cluster, r.state, r.error)
        return reports

    def _record(
        self,
        reports: list[ClusterReport],
        objects: dict[str, list[dict[str, Any]]],
        checked: rootguard.Checked,
    ) -> None:
        record_status(self.catalog.store, reports, objects)
        rootguard.record(self.catalog.store, checked, reports)

