"""Reconcile one cluster with its desired objects: server-side apply, prune, drift, conflicts.

What meshbridge owns in a cluster is exactly what carries both labels
``app.kubernetes.io/managed-by: meshbridge`` and ``meshbridge.dev/mesh: <mesh>``. Per run:

1. list the live objects of every kind meshbridge writes (one list call per kind), telling
   owned ones from foreign ones. Lists are decoded into ``Live`` records: the metadata
   meshbridge reads (not ``managedFields``) and the content left as undecoded JSON, which is
   compared byte for byte with the desired content's canonical JSON and decoded only when the
   bytes differ;
2. make sure the namespaces the objects go to exist (created when missing, never deleted);
3. for each desired object, kind by kind in apply order (objects of one kind concurrently,
   up to ``concurrency`` requests at a time): unchanged when the live copy carries the same
   content hash *and* still holds the same content (no write, so its resourceVersion stays);
   otherwise server-side apply with field manager ``meshbridge``. An object of the same name that
   meshbridge does not own is a conflict: reported, left untouched, unless ``force_conflicts``;
4. owned objects no longer desired are deleted, in reverse apply order.

A dry run does the reads and reports what it would do, writing nothing.
"""

from __future__ import annotations

import asyncio
import difflib
import functools
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx2
import msgspec
import yaml
from lightkube import ApiError, AsyncClient
from lightkube.core import resource as lk_resource
from lightkube.types import PatchType

from meshbridge.kube.kinds import APPLY_ORDER, KINDS, PRUNABLE

FIELD_MANAGER = "meshbridge"
MANAGED_BY = ("app.kubernetes.io/managed-by", "meshbridge")
MESH_LABEL = "meshbridge.dev/mesh"
HASH_ANNOTATION = "meshbridge.dev/content-hash"
CREATED_BY_LABEL = "app.kubernetes.io/created-by"

LABELLED_ONLY = frozenset({"Secret"})  # kinds listed by label only (see ClusterReconciler._live)

Action = Literal["create", "update", "unchanged", "delete", "conflict", "failed", "skipped"]
Key = tuple[str, str, str]  # kind, namespace, name

DEFAULT_VERSIONS = {
    "": "v1",
    "install.istio.io": "v1alpha1",
    "networking.istio.io": "v1beta1",
    "security.istio.io": "v1beta1",
}


class Unreachable(Exception):
    """The cluster's API server could not be reached (connection, TLS, timeout)."""


@dataclass(frozen=True)
class Change:
    action: Action
    kind: str
    namespace: str
    name: str
    reason: str = ""
    diff: str = ""

    @property
    def ref(self) -> str:
        return (
            f"{self.kind}/{self.namespace}/{self.name}"
            if self.namespace
            else f"{self.kind}/{self.name}"
        )


@dataclass
class Outcome:
    changes: list[Change] = field(default_factory=list)

    def count(self, action: Action) -> int:
        return sum(1 for c in self.changes if c.action == action)

    @property
    def writes(self) -> int:
        return sum(1 for c in self.changes if c.action in ("create", "update", "delete"))

    @property
    def failed(self) -> bool:
        return any(c.action in ("conflict", "failed") for c in self.changes)


def key_of(obj: dict[str, Any]) -> Key:
    meta = obj["metadata"]
    return obj["kind"], meta.get("namespace") or "", meta["name"]


def prepare(obj: dict[str, Any], mesh: str) -> dict[str, Any]:
    """The object as applied: the mesh label and the hash of its content added."""
    meta = dict(obj["metadata"])  # copies of what changes; the rest is shared, never mutated
    meta["labels"] = {**meta.get("labels", {}), MESH_LABEL: mesh}
    out = {**obj, "metadata": meta}
    digest = hashlib.sha256(json.dumps(out, sort_keys=True).encode()).hexdigest()
    meta["annotations"] = {**meta.get("annotations", {}), HASH_ANNOTATION: digest}
    return out


# The top-level fields that hold an object's content, for every kind meshbridge writes (Istio's
# kinds and Namespaces: spec; Secrets: the rest). ``status`` is the cluster's, not content.
CONTENT_KEYS = ("spec", "data", "stringData", "type", "immutable")


class LiveMeta(msgspec.Struct, frozen=True):
    """The part of a live object's metadata meshbridge reads."""

    name: str = ""
    namespace: str = ""
    resourceVersion: str = ""
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}


class Live(msgspec.Struct):
    """A live object as read for comparison. Decoding a list into these skips everything else
    (``managedFields`` is about as large as the content) and leaves the content undecoded."""

    metadata: LiveMeta = msgspec.field(default_factory=LiveMeta)
    spec: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    data: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    stringData: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    type: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET
    immutable: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET

    def as_dict(self) -> dict[str, Any]:
        """Labels, annotations and content as plain data (for diffs)."""
        meta = self.metadata
        out: dict[str, Any] = {
            "metadata": {"labels": dict(meta.labels), "annotations": dict(meta.annotations)}
        }
        for key in CONTENT_KEYS:
            raw = getattr(self, key)
            if raw is not msgspec.UNSET:
                out[key] = msgspec.json.decode(raw)
        return out


@functools.cache
def live_resource(kind: str, version: str) -> type[Live]:
    """A lightkube resource class whose reads, lists and server-side applies of ``kind`` are
    decoded into ``Live`` records."""
    info = KINDS[kind]
    scope = lk_resource.NamespacedResourceG if info.namespaced else lk_resource.GlobalResource
    api_info = lk_resource.ApiInfo(
        resource=lk_resource.ResourceDef(info.group, version, kind),
        plural=info.plural,
        verbs=["get", "list", "global_list", "patch"],
    )
    made: type[Live] = type(f"Live{kind}", (Live, scope), {"_api_info": api_info})
    return made


_encode_sorted = msgspec.json.Encoder(order="sorted").encode


def in_sync(desired: dict[str, Any], live: Live) -> bool:
    """True when ``live`` holds everything ``desired`` says (and the same hash)."""
    want, have = desired["metadata"], live.metadata
    for mine, theirs in (
        (want.get("labels") or {}, have.labels),
        (want.get("annotations") or {}, have.annotations),
    ):
        if any(theirs.get(k) != v for k, v in mine.items()):
            return False
    for key in CONTENT_KEYS:
        raw = getattr(live, key)
        if raw is msgspec.UNSET or key not in desired:
            if (raw is msgspec.UNSET) != (key not in desired):
                return False
            continue
        # The same canonical bytes are the same data; other bytes may still be (the API server
        # writes JSON as Go does: sorted keys, but its own escaping and number forms).
        if bytes(raw) != _encode_sorted(desired[key]) and msgspec.json.decode(raw) != desired[key]:
            return False
    return True


def drift_diff(desired: dict[str, Any], live: Live | None) -> str:
    """A unified diff of what meshbridge manages, live (-) against desired (+). Secret values
    are never shown: a value that differs is marked as changed."""
    current = live.as_dict() if live is not None else None
    live_data = (current or {}).get("data") or {}

    def view(obj: dict[str, Any], side: str) -> list[str]:
        meta = obj.get("metadata") or {}
        trimmed = {
            "metadata": {
                "labels": meta.get("labels") or {},
                "annotations": {
                    k: v for k, v in (meta.get("annotations") or {}).items() if k != HASH_ANNOTATION
                },
            },
            **{k: obj[k] for k in CONTENT_KEYS if k in obj},
        }
        if desired["kind"] == "Secret":
            trimmed["data"] = {
                k: "<redacted>"
                if side == "live" or live_data.get(k) == v
                else "<redacted, changed>"
                for k, v in (obj.get("data") or {}).items()
            }
        text: str = yaml.safe_dump(trimmed, sort_keys=True)
        return text.splitlines(keepends=True)

    before = view(current, "live") if current is not None else []
    return "".join(difflib.unified_diff(before, view(desired, "desired"), "live", "desired", n=2))


class ClusterReconciler:
    """Reconciles one cluster through one lightkube client."""

    def __init__(
        self,
        client: AsyncClient,
        mesh: str,
        *,
        dry_run: bool = False,
        force_conflicts: bool = False,
        with_diff: bool = False,
        concurrency: int = 16,
    ) -> None:
        self.client = client
        self.concurrency = concurrency
        self.mesh = mesh
        self.dry_run = dry_run
        self.force_conflicts = force_conflicts
        self.with_diff = with_diff
        # The lists go two at a time (over two connections): measured on 5 local API servers,
        # a few lists in sequence cost them less than a TLS handshake each, and finish sooner.
        self._reads = asyncio.Semaphore(2)

    async def run(self, desired: list[dict[str, Any]]) -> Outcome:
        prepared = [prepare(o, self.mesh) for o in desired]
        outcome = Outcome()
        versions = _versions(prepared)
        (owned, foreign, unserved), _ = await asyncio.gather(
            self._live(versions), self._namespaces(prepared, outcome)
        )
        gate = asyncio.Semaphore(self.concurrency)

        async def apply(obj: dict[str, Any], live: Live | None, existing: Live | None) -> Change:
            async with gate:
                return await self._apply_one(obj, live, existing)

        async def delete(key: Key) -> Change:
            async with gate:
                return await self._delete(key, versions[key[0]])

        for kind in APPLY_ORDER:  # one kind at a time, in order; objects of a kind concurrently
            batch = [o for o in prepared if o["kind"] == kind]
            if kind in unserved:
                outcome.changes.extend(
                    _change("skipped", o, f"{o['apiVersion']} is not served by this cluster")
                    for o in batch
                )
                continue
            settled: list[Change | None] = []  # None: to be written
            todo = []
            for obj in batch:
                key = key_of(obj)
                live = owned.get(key)
                in_place = live is not None and in_sync(obj, live)
                settled.append(_change("unchanged", obj) if in_place else None)
                if not in_place:
                    todo.append(apply(obj, live, foreign.get(key)))
            written = iter(await asyncio.gather(*todo))
            outcome.changes.extend(c if c is not None else next(written) for c in settled)
        wanted = {key_of(o) for o in prepared}
        for kind in reversed(APPLY_ORDER):
            stale = sorted(k for k in owned if k[0] == kind and k not in wanted)
            outcome.changes.extend(await asyncio.gather(*(delete(k) for k in stale)))
        return outcome

    # ------------------------------------------------------------------------------ reading

    async def _live(
        self, versions: dict[str, str]
    ) -> tuple[dict[Key, Live], dict[Key, Live], set[str]]:
        """Live objects of every kind meshbridge writes: owned by this mesh, and the rest (one
        list call per kind, all kinds at once, instead of a read per object to find name
        collisions). A kind the cluster does not serve is reported in the third value."""
        lists = await asyncio.gather(*(self._list_kind(kind, versions[kind]) for kind in PRUNABLE))
        owned: dict[Key, Live] = {}
        foreign: dict[Key, Live] = {}
        unserved: set[str] = set()
        for kind, items in zip(PRUNABLE, lists, strict=True):
            if items is None:
                unserved.add(kind)
                continue
            for obj in items:
                meta = obj.metadata
                mine = (
                    meta.labels.get(MANAGED_BY[0]) == MANAGED_BY[1]
                    and meta.labels.get(MESH_LABEL) == self.mesh
                )
                (owned if mine else foreign)[(kind, meta.namespace, meta.name)] = obj
        return owned, foreign, unserved

    async def _list_kind(self, kind: str, version: str) -> list[Live] | None:
        """Every object of a kind, or None when the cluster does not serve it."""
        # Secrets: only meshbridge's (a cluster holds many, and they are not ours to read);
        # a name collision with someone else's is then found by a read of that one name.
        selector: dict[str, Any] | None = (
            {MANAGED_BY[0]: MANAGED_BY[1]} if kind in LABELLED_ONLY else None
        )
        try:
            items: list[Live] = await _patient(
                functools.partial(self._list, kind, version, selector)
            )
        except httpx2.HTTPStatusError as exc:  # ApiError, or a bare 404 for an unknown group
            if exc.response is not None and exc.response.status_code == 404:
                return None
            raise
        except (httpx2.TransportError, OSError) as exc:
            raise Unreachable(str(exc) or type(exc).__name__) from exc
        return items

    async def _namespaces(self, prepared: list[dict[str, Any]], outcome: Outcome) -> None:
        """Create the namespaces the objects need and the cluster lacks (one list, then one
        create per missing namespace, concurrently)."""
        res = KINDS["Namespace"].resource("v1")
        listed = await _patient(functools.partial(self._list, "Namespace", "v1", None))
        existing = {i.metadata.name for i in listed}
        wanted = {o["metadata"]["namespace"] for o in prepared if o["metadata"].get("namespace")}
        missing = [
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": ns, "labels": {CREATED_BY_LABEL: FIELD_MANAGER}},
            }
            for ns in sorted(wanted - existing)
        ]

        async def create(obj: dict[str, Any]) -> None:
            try:
                await _patient(lambda: self.client.create(res.from_dict(obj)))
            except ApiError as exc:
                if exc.status.code != 409:  # created meanwhile by someone else: fine
                    raise

        if not self.dry_run:
            await asyncio.gather(*(create(o) for o in missing))
        outcome.changes.extend(_change("create", o, "namespace did not exist") for o in missing)

    # ------------------------------------------------------------------------------ writing

    async def _apply_one(
        self, obj: dict[str, Any], live: Live | None, existing: Live | None
    ) -> Change:
        kind, ns, name = key_of(obj)
        version = obj["apiVersion"].rpartition("/")[2]
        reason = ""
        force = True  # on objects meshbridge owns, its fields are its own to take back
        if live is None:
            if existing is None and kind in LABELLED_ONLY:
                existing = await self._get(kind, version, name, ns)
            if existing is not None:
                if not self.force_conflicts:
                    return _change(
                        "conflict",
                        obj,
                        "an object of this name exists and is not "
                        "managed by meshbridge (use --force-conflicts to take it over)",
                    )
                reason = "taken over (--force-conflicts)"
            action: Action = "create" if existing is None else "update"
            diff = drift_diff(obj, existing) if (existing is not None and self.with_diff) else ""
        else:  # owned, and not in sync (the caller checked)
            same_hash = (
                live.metadata.annotations.get(HASH_ANNOTATION)
                == obj["metadata"]["annotations"][HASH_ANNOTATION]
            )
            action, reason = (
                "update",
                ("drift: changed outside meshbridge" if same_hash else "intent changed"),
            )
            diff = drift_diff(obj, live) if self.with_diff else ""
        if not self.dry_run:
            res: Any = live_resource(kind, version)  # the answer is decoded as a Live record
            try:
                await _patient(
                    lambda: self.client.patch(
                        res,
                        name,
                        obj,
                        namespace=ns or None,
                        patch_type=PatchType.APPLY,
                        field_manager=FIELD_MANAGER,
                        force=force,
                    )
                )
            except ApiError as exc:
                return _change("failed", obj, f"{exc.status.code}: {exc.status.message}")
        return Change(action, kind, ns, name, reason, diff)

    async def _list(self, kind: str, version: str, selector: dict[str, Any] | None) -> list[Live]:
        res: Any = live_resource(kind, version)  # lightkube's signatures name its own types
        async with self._reads:
            if KINDS[kind].namespaced:
                items = self.client.list(res, labels=selector, namespace="*")
            else:
                items = self.client.list(res, labels=selector)
            return [i async for i in items]

    async def _get(self, kind: str, version: str, name: str, ns: str) -> Live | None:
        res: Any = live_resource(kind, version)
        try:
            item: Live = await _patient(lambda: self.client.get(res, name, namespace=ns or None))
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise
        return item

    async def _delete(self, key: Key, version: str) -> Change:
        kind, ns, name = key
        if not self.dry_run:
            res = KINDS[kind].resource(version)
            try:
                await self.client.delete(res, name, namespace=ns or None)
            except ApiError as exc:
                if exc.status.code != 404:
                    return Change(
                        "failed", kind, ns, name, f"{exc.status.code}: {exc.status.message}"
                    )
        return Change("delete", kind, ns, name, "no longer wanted")


async def _patient(call: Callable[[], Awaitable[Any]], tries: int = 16) -> Any:
    """``call()``, again after a short wait while the server answers 429 (too many requests, or
    a resource's storage still initialising on first use: seen for a second or more on fresh
    API servers); waits from 0.1 s doubling up to 1 s, about 12 s in all, then the last
    answer's error is raised."""
    delay = 0.1
    for attempt in range(tries):
        try:
            return await call()
        except ApiError as exc:
            if exc.status.code != 429 or attempt == tries - 1:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
    raise AssertionError("unreachable")


def _change(action: Action, obj: dict[str, Any], reason: str = "") -> Change:
    kind, ns, name = key_of(obj)
    return Change(action, kind, ns, name, reason)


def _versions(objs: list[dict[str, Any]]) -> dict[str, str]:
    """API version to list each kind with: the one the desired objects use, else the default."""
    out = {kind: DEFAULT_VERSIONS[info.group] for kind, info in KINDS.items()}
    for obj in objs:
        out[obj["kind"]] = obj["apiVersion"].rpartition("/")[2]
    return out
