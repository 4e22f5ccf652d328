"""What a reconcile will do in one cluster, decided from plain data: a pure function.

``decide(desired, listing, namespaces, owner)`` takes the desired objects, the live objects one list
call per kind returned, and the names of the cluster's namespaces, and answers the steps in the
order they are to run: namespaces to create, then every desired object (create, update,
unchanged, conflict, skipped) kind by kind in apply order, then the deletions in reverse order.
``apply``, ``apply --dry-run`` and ``diff`` all run these steps (``reconcile.ClusterReconciler``
only carries it out), so they agree on what will change.

Ownership. An object is this mesh's when it carries ``app.kubernetes.io/managed-by: meshbridge``
and ``meshbridge.dev/mesh-id: <the identity minted for this mesh's state store>``; the
``meshbridge.dev/mesh: <name>`` label beside it is for people. Objects an older meshbridge labelled
with this mesh's name and no identity are adopted (relabelled) where ``owner.adopt_legacy``
says so. Everything else is someone else's and is never written or deleted: an object of another
meshbridge mesh is a conflict even with ``force_conflicts``; an object meshbridge does not manage
is one unless ``force_conflicts`` hands it over.

What meshbridge manages in an object is what it writes: its labels and annotations and the
content fields it sets (``spec``, a Secret's ``data`` and ``type``...). An object is in sync when
the live copy carries the same content hash and holds every one of those values; fields other
managers added (``kubectl edit``, defaults, controllers) are theirs and are no drift. Lists are
compared whole (Istio's lists are atomic: server-side apply replaces them whole).
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import yaml

from meshbridge.compile.envelope import APPLY_ORDER
from meshbridge.kube.kinds import PRUNABLE

FIELD_MANAGER = "meshbridge"
MANAGED_BY = ("app.kubernetes.io/managed-by", "meshbridge")
MESH_LABEL = "meshbridge.dev/mesh"
MESH_ID_LABEL = "meshbridge.dev/mesh-id"
HASH_ANNOTATION = "meshbridge.dev/content-hash"
CREATED_BY_LABEL = "app.kubernetes.io/created-by"
INJECTION_LABEL = ("istio-injection", "enabled")

Action = Literal["create", "update", "unchanged", "delete", "conflict", "failed", "skipped"]
Key = tuple[str, str, str]  # kind, namespace, name
Claim = Literal["mine", "legacy", "other-mesh", "unmanaged"]

# The top-level fields that hold an object's content, for every kind meshbridge writes (Istio's
# kinds and Namespaces: spec; Secrets: the rest). ``status`` is the cluster's, not content.
CONTENT_KEYS = ("spec", "data", "stringData", "type", "immutable")


# ------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class Change:
    """What happened to one object. ``resource_version``: the object's resourceVersion in the
    cluster after the reconcile (written, or found in sync); empty when unknown (a dry run, a
    failure, a deletion)."""

    action: Action
    kind: str
    namespace: str
    name: str
    reason: str = ""
    diff: str = ""
    resource_version: str = ""

    @property
    def ref(self) -> str:
        return (
            f"{self.kind}/{self.namespace}/{self.name}"
            if self.namespace
            else f"{self.kind}/{self.name}"
        )


@dataclass
class ChangeSet:
    """What one cluster's reconcile did (or, in a dry run, would do): one Change per object."""

    changes: list[Change] = field(default_factory=list)

    def count(self, action: Action) -> int:
        return sum(1 for c in self.changes if c.action == action)

    @property
    def failed(self) -> bool:
        return any(c.action in ("conflict", "failed") for c in self.changes)


# --------------------------------------------------------------------------- live objects


class LiveMeta(msgspec.Struct, frozen=True):
    """The part of a live object's metadata meshbridge reads. ``managedFields`` is kept as
    undecoded JSON: read only for a diff or to check who made an object."""

    name: str = ""
    namespace: str = ""
    uid: str = ""
    resourceVersion: str = ""
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    managedFields: msgspec.Raw | msgspec.UnsetType = msgspec.UNSET


class Live(msgspec.Struct):
    """A live object as read for comparison. Decoding a list into these leaves the content (and
    ``managedFields``) undecoded: it is compared as bytes first."""

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


class _ManagedEntry(msgspec.Struct):
    manager: str = ""
    operation: str = ""
    fieldsV1: dict[str, Any] = {}


def managers(live: Live) -> set[str]:
    """The field managers that hold fields of ``live`` (empty when not read)."""
    raw = live.metadata.managedFields
    if raw is msgspec.UNSET:
        return set()
    return {e.manager for e in msgspec.json.decode(raw, type=list[_ManagedEntry])}


Shape = dict[str, Any]  # nested keys of a value; {} is a whole value (a scalar or a list)


def owned_shape(live: Live) -> Shape:
    """The fields meshbridge's applies own in ``live``, from its managedFields."""
    raw = live.metadata.managedFields
    if raw is msgspec.UNSET:
        return {}
    shape: Shape = {}
    for entry in msgspec.json.decode(raw, type=list[_ManagedEntry]):
        if entry.manager == FIELD_MANAGER and entry.operation == "Apply":
            shape = _union(shape, _fields_shape(entry.fieldsV1))
    return shape


def _fields_shape(fields: Mapping[str, Any]) -> Shape:
    out: Shape = {}
    for key, sub in fields.items():
        if not key.startswith("f:"):
            continue
        inner = sub if isinstance(sub, dict) else {}
        if any(k[:2] in ("k:", "v:", "i:") for k in inner):
            out[key[2:]] = {}  # items of a list: the list, whole
        else:
            out[key[2:]] = _fields_shape(inner)
    return out


def _shape(value: Any) -> Shape:
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    return {}


def _union(a: Shape, b: Shape) -> Shape:
    return {k: _union(a.get(k, {}), b.get(k, {})) for k in a.keys() | b.keys()}


def _project(value: Any, shape: Shape) -> Any:
    if not shape or not isinstance(value, dict):
        return value
    return {k: _project(value[k], sub) for k, sub in shape.items() if k in value}


# ------------------------------------------------------------------------------ ownership


@dataclass(frozen=True)
class Ownership:
    """Whose objects a reconcile writes and prunes: one mesh, known by the identity minted for
    its state store. ``adopt_legacy``: objects labelled with this mesh's name and no identity
    (by a meshbridge from before identities) are this mesh's, and get relabelled; so are
    objects labelled with an identity in ``previous`` (the store's own before it took over a
    lost store's, see ``usecases.rootguard``)."""

    mesh: str
    uid: str
    adopt_legacy: bool = False
    previous: frozenset[str] = frozenset()  # identities this store carried before: still its own

    @property
    def labels(self) -> dict[str, str]:
        return {MANAGED_BY[0]: MANAGED_BY[1], MESH_LABEL: self.mesh, MESH_ID_LABEL: self.uid}

    def claim(self, meta: LiveMeta) -> Claim:
        labels = meta.labels
        if labels.get(MANAGED_BY[0]) != MANAGED_BY[1]:
            return "unmanaged"
        uid = labels.get(MESH_ID_LABEL)
        if uid is not None:
            if uid == self.uid:
                return "mine"
            return "legacy" if uid in self.previous else "other-mesh"
        mesh = labels.get(MESH_LABEL)
        if mesh is None:
            return "unmanaged"  # meshbridge's rendered files, applied by another tool
        return "legacy" if self.adopt_legacy and mesh == self.mesh else "other-mesh"


def whose(meta: LiveMeta) -> str:
    """Whose an object of another meshbridge mesh is, for the user."""
    mesh, uid = meta.labels.get(MESH_LABEL, "?"), meta.labels.get(MESH_ID_LABEL)
    if uid is None:
        return (
            f"meshbridge mesh {mesh!r} as an older meshbridge labelled it (no {MESH_ID_LABEL}), "
            "not this state store's"
        )
    return f"another meshbridge mesh ({mesh!r}, {MESH_ID_LABEL} {uid})"


def prepare(obj: dict[str, Any], owner: Ownership) -> dict[str, Any]:
    """The object as applied: the ownership labels and the hash of its content added."""
    meta = dict(obj["metadata"])  # copies of what changes; the rest is shared, never mutated
    meta["labels"] = {**meta.get("labels", {}), **owner.labels}
    out = {**obj, "metadata": meta}
    digest = hashlib.sha256(json.dumps(out, sort_keys=True).encode()).hexdigest()
    meta["annotations"] = {**meta.get("annotations", {}), HASH_ANNOTATION: digest}
    return out


def key_of(obj: dict[str, Any]) -> Key:
    meta = obj["metadata"]
    return obj["kind"], meta.get("namespace") or "", meta["name"]


# ------------------------------------------------------------------------------ comparing

_encode_sorted = msgspec.json.Encoder(order="sorted").encode


def in_sync(desired: dict[str, Any], live: Live) -> bool:
    """True when ``live`` holds every label, annotation (the content hash among them) and
    content value ``desired`` sets. What else it holds is other managers' business."""
    want, have = desired["metadata"], live.metadata
    for mine, theirs in (
        (want.get("labels") or {}, have.labels),
        (want.get("annotations") or {}, have.annotations),
    ):
        if any(theirs.get(k) != v for k, v in mine.items()):
            return False
    for key in CONTENT_KEYS:
        if key not in desired:
            continue
        raw = getattr(live, key)
        if raw is msgspec.UNSET:
            return False
        # The same canonical bytes are the same data; other bytes may still hold it (the API
        # server writes JSON as Go does: sorted keys, but its own escaping and number forms,
        # and the fields other managers added).
        if bytes(raw) != _encode_sorted(desired[key]) and not _holds(
            msgspec.json.decode(raw), desired[key]
        ):
            return False
    return True


def _holds(have: Any, want: Any) -> bool:
    """``have`` holds ``want``: every key of a mapping, recursively; anything else equal."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(
            k in have and _holds(have[k], v) for k, v in want.items()
        )
    return bool(have == want)


def drift_diff(desired: dict[str, Any], live: Live | None, owned: Shape | None = None) -> str:
    """A unified diff of what meshbridge manages, live (-) against desired (+): the fields
    ``desired`` sets and those meshbridge's applies own in ``live`` (``owned``), never fields
    only other managers hold. Secret values are never shown: a value that differs is marked as
    changed."""
    after = _trimmed(desired)
    before = None
    if live is not None:
        before = _project(_trimmed(live.as_dict()), _union(_shape(after), owned or {}))
    if desired["kind"] == "Secret":
        live_data = (before or {}).get("data") or {}
        after["data"] = {
            k: "<redacted>" if live_data.get(k) == v else "<redacted, changed>"
            for k, v in (after.get("data") or {}).items()
        }
        if before is not None:
            before["data"] = dict.fromkeys(before.get("data") or {}, "<redacted>")

    def lines(view: dict[str, Any] | None) -> list[str]:
        if view is None:
            return []
        text: str = yaml.safe_dump(view, sort_keys=True)
        return text.splitlines(keepends=True)

    return "".join(difflib.unified_diff(lines(before), lines(after), "live", "desired", n=2))


def _trimmed(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    return {
        "metadata": {
            "labels": dict(meta.get("labels") or {}),
            "annotations": {
                k: v for k, v in (meta.get("annotations") or {}).items() if k != HASH_ANNOTATION
            },
        },
        **{k: obj[k] for k in CONTENT_KEYS if k in obj},
    }


# ------------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class Step:
    """One thing to do. ``live`` is the object as listed (None: not seen); writes are server-side
    applies, forced only over meshbridge's own objects (or ones ``force_conflicts`` hands over);
    a delete carries the uid and resourceVersion of ``live`` as preconditions."""

    action: Action
    kind: str
    namespace: str
    name: str
    reason: str = ""
    desired: dict[str, Any] | None = None
    live: Live | None = None
    force: bool = False

    @property
    def key(self) -> Key:
        return self.kind, self.namespace, self.name

    def change(self, action: Action | None = None, reason: str | None = None) -> Change:
        done = action or self.action
        in_sync = done == "unchanged" and self.live is not None  # as listed: its version stays
        return Change(
            done,
            self.kind,
            self.namespace,
            self.name,
            self.reason if reason is None else reason,
            resource_version=self.live.metadata.resourceVersion if in_sync and self.live else "",
        )


Listing = Mapping[str, Sequence[Live] | None]  # kind -> what its list returned; None: not served


def decide(
    desired: Sequence[dict[str, Any]],
    listing: Listing,
    namespaces: Collection[str],
    owner: Ownership,
    *,
    force_conflicts: bool = False,
    namespace_labels: Mapping[str, str] | None = None,
) -> list[Step]:
    """The steps that bring a cluster from ``listing`` to ``desired`` (see the module docstring).

    ``namespaces`` are the names of the cluster's namespaces; those the objects need and the
    cluster lacks are created with ``namespace_labels`` (namespaces are never changed or
    deleted). Only objects ``owner`` claims are ever updated without ``force_conflicts`` or
    deleted; objects of another meshbridge mesh are never written or deleted.
    """
    prepared = [prepare(o, owner) for o in desired]
    seen: dict[Key, Live] = {}
    for kind, items in listing.items():
        for item in items or ():
            seen[(kind, item.metadata.namespace, item.metadata.name)] = item
    steps = _namespace_steps(prepared, namespaces, namespace_labels or {})
    for kind in APPLY_ORDER:
        for obj in (o for o in prepared if o["kind"] == kind):
            steps.append(_object_step(obj, seen, listing, owner, force_conflicts))
    wanted = {key_of(o) for o in prepared}
    for kind in reversed(PRUNABLE):
        stale = sorted(
            key
            for key, item in seen.items()
            if key[0] == kind
            and key not in wanted
            and owner.claim(item.metadata) in ("mine", "legacy")
        )
        steps.extend(Step("delete", *key, "no longer wanted", live=seen[key]) for key in stale)
    return steps


def _namespace_steps(
    prepared: list[dict[str, Any]], existing: Collection[str], labels: Mapping[str, str]
) -> list[Step]:
    wanted = {o["metadata"]["namespace"] for o in prepared if o["metadata"].get("namespace")}
    steps = []
    for ns in sorted(wanted - set(existing)):
        obj = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": ns, "labels": {CREATED_BY_LABEL: FIELD_MANAGER, **labels}},
        }
        steps.append(Step("create", "Namespace", "", ns, "namespace did not exist", obj))
    return steps


def _object_step(
    obj: dict[str, Any],
    seen: Mapping[Key, Live],
    listing: Listing,
    owner: Ownership,
    force_conflicts: bool,
) -> Step:
    key = key_of(obj)
    kind = key[0]
    if listing.get(kind, ()) is None:
        return Step("skipped", *key, f"{obj['apiVersion']} is not served by this cluster", obj)
    live = seen.get(key)
    if live is None:
        return Step("create", *key, desired=obj)
    claim = owner.claim(live.metadata)
    if claim == "mine":
        if in_sync(obj, live):
            return Step("unchanged", *key, desired=obj, live=live)
        same_hash = (
            live.metadata.annotations.get(HASH_ANNOTATION)
            == obj["metadata"]["annotations"][HASH_ANNOTATION]
        )
        reason = "drift: changed outside meshbridge" if same_hash else "intent changed"
        return Step("update", *key, reason, obj, live, force=True)
    if claim == "legacy":
        reason = f"adopted: labelled by an older meshbridge, now with its {MESH_ID_LABEL}"
        return Step("update", *key, reason, obj, live, force=True)
    if claim == "other-mesh":
        return Step("conflict", *key, f"this object belongs to {whose(live.metadata)}", obj, live)
    if not force_conflicts:
        return Step(
            "conflict",
            *key,
            "an object of this name exists and is not managed by meshbridge "
            "(use --force-conflicts to take it over)",
            obj,
            live,
        )
    return Step("update", *key, "taken over (--force-conflicts)", obj, live, force=True)
