"""Reconcile one cluster with its desired objects: read it, decide the steps, carry them out.

Per run:

1. list the live objects of every kind meshbridge writes (one list call per kind, all kinds at
   once, instead of a read per object to find name collisions) and the namespaces. Lists are
   decoded into ``Live`` records: the metadata meshbridge reads and the content (and
   ``managedFields``) left as undecoded JSON;
2. ``steps.decide`` decides every step from that (a pure function: see its module);
3. the steps are carried out: missing namespaces created, then kind by kind in apply order
   (objects of one kind concurrently, up to ``concurrency`` requests at a time) server-side
   applies with field manager ``meshbridge``, then deletions in reverse order.

What each write may touch is what the decision saw, and no more:

* a create is an apply without force: if someone created an object of that name after the list,
  a field they set differently is a conflict (409) and nothing is written; if it held the same
  values (so the apply went through), the answer names another field manager and meshbridge's
  part is taken back out at once (an apply of nothing) and reported as a conflict;
* an update (forced: meshbridge's fields are its own) names the uid it saw, so an object deleted
  or replaced meanwhile is not written;
* a delete carries the uid and resourceVersion it saw as preconditions, so an object changed or
  replaced meanwhile is left in place.

A dry run does the reads and reports what it would do, writing nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.core import resource as lk_resource
from lightkube.types import PatchType

from meshbridge.compile.envelope import APPLY_ORDER
from meshbridge.compile.naming import ISTIO_SYSTEM
from meshbridge.errors import Unreachable
from meshbridge.kube.kinds import CLUSTER_KINDS, PRUNABLE
from meshbridge.kube.retry import patiently
from meshbridge.kube.steps import (
    FIELD_MANAGER,
    MANAGED_BY,
    Change,
    ChangeSet,
    Live,
    Ownership,
    Step,
    decide,
    drift_diff,
    key_of,
    managers,
    owned_shape,
)

LABELLED_ONLY = frozenset({"Secret"})  # kinds listed by label only (see _list_kind)
# Kinds meshbridge writes in one namespace only, listed there (kube.access: no more is asked)
LISTED_IN = {"Secret": ISTIO_SYSTEM}

DEFAULT_VERSIONS = {
    "": "v1",
    "install.istio.io": "v1alpha1",
    "networking.istio.io": "v1beta1",
    "security.istio.io": "v1beta1",
}

_MEANWHILE = "after meshbridge read the cluster"


@functools.cache
def live_resource(kind: str, version: str) -> type[Live]:
    """A lightkube resource class whose reads, lists and server-side applies of ``kind`` are
    decoded into ``Live`` records."""
    info = CLUSTER_KINDS[kind]
    scope = lk_resource.NamespacedResourceG if info.namespaced else lk_resource.GlobalResource
    api_info = lk_resource.ApiInfo(
        resource=lk_resource.ResourceDef(info.group, version, kind),
        plural=info.plural,
        verbs=["get", "list", "global_list", "patch"],
    )
    made: type[Live] = type(f"Live{kind}", (Live, scope), {"_api_info": api_info})
    return made


class ClusterReconciler:
    """Reconciles one cluster through one lightkube client."""

    def __init__(
        self,
        client: AsyncClient,
        owner: Ownership,
        *,
        namespace_labels: Mapping[str, str] | None = None,
        dry_run: bool = False,
        force_conflicts: bool = False,
        with_diff: bool = False,
        concurrency: int = 16,
    ) -> None:
        self.client = client
        self.concurrency = concurrency
        self.owner = owner
        self.namespace_labels = dict(namespace_labels or {})
        self.dry_run = dry_run
        self.force_conflicts = force_conflicts
        self.with_diff = with_diff
        # The lists go two at a time (over two connections): measured on 5 local API servers,
        # a few lists in sequence cost them less than a TLS handshake each, and finish sooner.
        self._reads = asyncio.Semaphore(2)

    async def run(self, desired: list[dict[str, Any]]) -> ChangeSet:
        versions = _versions(desired)
        listing, namespaces = await asyncio.gather(
            self._listing(versions),
            patiently(functools.partial(self._list, "Namespace", "v1", None)),
        )
        steps = decide(
            desired,
            listing,
            {n.metadata.name for n in namespaces},
            self.owner,
            force_conflicts=self.force_conflicts,
            namespace_labels=self.namespace_labels,
        )
        gate = asyncio.Semaphore(self.concurrency)

        async def carry_out(step: Step) -> Change:
            if step.action in ("unchanged", "conflict", "skipped"):
                return step.change()
            async with gate:
                if step.action == "delete":
                    return await self._delete(step, versions[step.kind])
                if step.kind == "Namespace":
                    return await self._create_namespace(step)
                return await self._apply(step)

        outcome = ChangeSet()
        for kind in APPLY_ORDER:  # one kind at a time, in order; objects of a kind concurrently
            batch = [s for s in steps if s.kind == kind and s.action != "delete"]
            outcome.changes.extend(await asyncio.gather(*(carry_out(s) for s in batch)))
        for kind in reversed(PRUNABLE):
            batch = [s for s in steps if s.kind == kind and s.action == "delete"]
            outcome.changes.extend(await asyncio.gather(*(carry_out(s) for s in batch)))
        return outcome

    # ------------------------------------------------------------------------------ reading

    async def _listing(self, versions: dict[str, str]) -> dict[str, list[Live] | None]:
        lists = await asyncio.gather(*(self._list_kind(kind, versions[kind]) for kind in PRUNABLE))
        return dict(zip(PRUNABLE, lists, strict=True))

    async def _list_kind(self, kind: str, version: str) -> list[Live] | None:
        """Every object of a kind, or None when the cluster does not serve it."""
        # Secrets: only meshbridge's, in istio-system, the one namespace it writes them in (a
        # cluster holds many, and they are not ours to read); a name collision with someone
        # else's is then found by a read of that one name.
        selector: dict[str, Any] | None = (
            {MANAGED_BY[0]: MANAGED_BY[1]} if kind in LABELLED_ONLY else None
        )
        try:
            items: list[Live] = await patiently(
                functools.partial(self._list, kind, version, selector)
            )
        except httpx2.HTTPStatusError as exc:  # ApiError, or a bare 404 for an unknown group
            if exc.response is not None and exc.response.status_code == 404:
                return None
            raise
        except (httpx2.TransportError, OSError) as exc:
            raise Unreachable(str(exc) or type(exc).__name__) from exc
        return items

    async def _list(self, kind: str, version: str, selector: dict[str, Any] | None) -> list[Live]:
        res: Any = live_resource(kind, version)  # lightkube's signatures name its own types
        async with self._reads:
            if CLUSTER_KINDS[kind].namespaced:
                items = self.client.list(res, labels=selector, namespace=LISTED_IN.get(kind, "*"))
            else:
                items = self.client.list(res, labels=selector)
            return [i async for i in items]

    async def _get(self, kind: str, version: str, name: str, ns: str) -> Live | None:
        res: Any = live_resource(kind, version)
        try:
            item: Live = await patiently(lambda: self.client.get(res, name, namespace=ns or None))
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise
        return item

    # ------------------------------------------------------------------------------ writing

    async def _create_namespace(self, step: Step) -> Change:
        assert step.desired is not None
        if not self.dry_run:
            res = CLUSTER_KINDS["Namespace"].resource("v1")
            try:
                await patiently(lambda: self.client.create(res.from_dict(step.desired)))
            except ApiError as exc:
                if exc.status.code != 409:  # created meanwhile by someone else: fine, not ours
                    raise
                return step.change(reason="namespace was created meanwhile (left as it is)")
        return step.change()

    async def _apply(self, step: Step) -> Change:
        obj = step.desired
        assert obj is not None
        kind, ns, name = key_of(obj)
        version = obj["apiVersion"].rpartition("/")[2]
        live, action, reason, force = step.live, step.action, step.reason, step.force
        if action == "create" and kind in LABELLED_ONLY:
            live = await self._get(kind, version, name, ns)  # not listed unless labelled
            if live is not None:  # so it is not meshbridge's
                if not self.force_conflicts:
                    return step.change(
                        "conflict",
                        "an object of this name exists and is not managed by meshbridge "
                        "(use --force-conflicts to take it over)",
                    )
                action, reason, force = "update", "taken over (--force-conflicts)", True
        diff = ""
        if self.with_diff and action == "update":
            diff = drift_diff(obj, live, owned_shape(live) if live is not None else None)
        change = Change(action, kind, ns, name, reason, diff)
        if self.dry_run:
            return change
        body = obj
        if live is not None:  # only the object that was read: not one made since in its place
            body = {**obj, "metadata": {**obj["metadata"], "uid": live.metadata.uid}}
        try:
            answer = await self._patch(kind, version, name, ns, body, force=force)
        except ApiError as exc:
            return _failed_write(step, exc)
        if action == "create" and managers(answer) - {FIELD_MANAGER}:
            return await self._give_back(step, version, answer)
        return dataclasses.replace(change, resource_version=answer.metadata.resourceVersion)

    async def _patch(
        self, kind: str, version: str, name: str, ns: str, body: dict[str, Any], *, force: bool
    ) -> Live:
        res: Any = live_resource(kind, version)  # the answer is decoded as a Live record
        answer: Live = await patiently(
            lambda: self.client.patch(
                res,
                name,
                body,
                namespace=ns or None,
                patch_type=PatchType.APPLY,
                field_manager=FIELD_MANAGER,
                force=force,
            )
        )
        return answer

    async def _give_back(self, step: Step, version: str, answer: Live) -> Change:
        """Someone made this object after the list and it held meshbridge's values, so the
        create went through: take meshbridge's labels and fields back out (an apply of
        nothing by its field manager) and report the conflict."""
        assert step.desired is not None
        meta = {"name": step.name, "uid": answer.metadata.uid}
        if step.namespace:
            meta["namespace"] = step.namespace
        nothing = {"apiVersion": step.desired["apiVersion"], "kind": step.kind, "metadata": meta}
        reason = f"an object of this name was created by someone else {_MEANWHILE}: left as is"
        try:
            await self._patch(step.kind, version, step.name, step.namespace, nothing, force=False)
        except ApiError as exc:
            reason += f" (but taking meshbridge's labels back out failed: {_status(exc)})"
            return step.change("failed", reason)
        return step.change("conflict", reason)

    async def _delete(self, step: Step, version: str) -> Change:
        if self.dry_run:
            return step.change()
        assert step.live is not None
        seen = step.live.metadata
        res = CLUSTER_KINDS[step.kind].resource(version)
        preconditions = {"uid": seen.uid, "resourceVersion": seen.resourceVersion}
        try:
            await _delete_if(self.client, res, step.name, step.namespace, preconditions)
        except ApiError as exc:
            if exc.status.code == 404:  # already gone
                return step.change()
            if exc.status.code == 409:
                return step.change(
                    "failed",
                    f"changed or replaced {_MEANWHILE} (resourceVersion {seen.resourceVersion}): "
                    "not deleted; apply again to look at it anew",
                )
            return step.change("failed", _status(exc))
        return step.change()


async def _delete_if(
    client: AsyncClient, res: Any, name: str, namespace: str, preconditions: dict[str, str]
) -> None:
    """DELETE with ``DeleteOptions.preconditions``, sent like any request (``patiently``).

    lightkube's public ``delete`` sends no body, and the API server reads preconditions only
    from the body (not from query parameters). So this one request is built and sent by the
    client's internal ``GenericAsyncClient`` (``AsyncClient._client``: ``prepare_request``,
    ``build_adapter_request``, ``send``, ``raise_for_status``), through the same connections,
    authentication and proxies as every other request. pyproject.toml pins lightkube to the
    minor this was written against; ``tests/unit/kube/test_retry.py`` sends such a delete.
    """
    generic: Any = client._client  # internal: see the docstring and the pin in pyproject.toml
    request = generic.prepare_request("delete", res=res, name=name, namespace=namespace or None)
    request.data = {"apiVersion": "v1", "kind": "DeleteOptions", "preconditions": preconditions}

    async def send() -> None:
        response = await generic.send(generic.build_adapter_request(request))
        generic.raise_for_status(response)

    await patiently(send)


def _failed_write(step: Step, exc: ApiError) -> Change:
    code, message = exc.status.code, exc.status.message or ""
    if code == 409 and step.action == "create":
        return step.change(
            "conflict",
            f"an object of this name was created by someone else {_MEANWHILE} and holds "
            f"other values: not written ({message})",
        )
    if code in (409, 422) and "uid" in message.lower():
        return step.change(
            "conflict", f"deleted or replaced {_MEANWHILE}: not written; apply again"
        )
    return step.change("failed", f"{code}: {message}")


def _status(exc: ApiError) -> str:
    return f"{exc.status.code}: {exc.status.message}"


def _versions(objs: list[dict[str, Any]]) -> dict[str, str]:
    """API version to list each kind with: the one the desired objects use, else the default."""
    out = {kind: DEFAULT_VERSIONS[info.group] for kind, info in CLUSTER_KINDS.items()}
    for obj in objs:
        out[obj["kind"]] = obj["apiVersion"].rpartition("/")[2]
    return out
