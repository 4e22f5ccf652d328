"""The JSON bodies ``meshbridge serve`` answers and ``meshbridge --server`` reads, as models.

The API builds each answer from one of these models and the client reads it back into the same
model, so the two ends cannot drift apart field by field, and nothing travels as text to be
taken apart again: a problem is sent with its source, document index, kind, name, field path and
message (``document`` is its human form, ``file#3 Kind/name``); a cluster's manifests are a
Kubernetes ``List`` of objects, which the client writes through the same emitter as a local
render. Field names are camelCase on the wire, as Kubernetes writes them.

Answers are read leniently (unknown fields are ignored), so an older client keeps working with
a newer server that adds a field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from meshbridge.errors import Problem

__all__ = [
    "ApplyAnswer",
    "ApplyItem",
    "ClusterPropagation",
    "ClusterStatus",
    "CredentialList",
    "CredentialView",
    "ErrorAnswer",
    "ErrorItem",
    "FlaggedDocument",
    "IntentCluster",
    "IntentObject",
    "IntentPropagation",
    "IstiodView",
    "LeaseView",
    "ListMeta",
    "ManifestList",
    "ObjectState",
    "PlacementAnswer",
    "PlacementItem",
    "ProblemsAnswer",
    "PropagationAnswer",
    "PropagationState",
    "ProxyNack",
    "ProxyPending",
    "ReplicaView",
    "RunView",
    "StatusAnswer",
    "UncoveredItem",
    "WatchView",
]


class _Wire(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )

    def to_json(self) -> dict[str, Any]:
        """The body as sent: camelCase names, every field written."""
        return self.model_dump(by_alias=True, mode="json")


# ------------------------------------------------------------------------------------ errors


class ErrorItem(_Wire):
    """One problem or error message. ``document`` and ``path`` locate it for a reader;
    ``source``, ``index``, ``kind`` and ``name`` say the same for a program."""

    message: str
    document: str = ""
    path: str = ""
    source: str | None = None
    index: int | None = None
    kind: str | None = None
    name: str | None = None

    @classmethod
    def of(cls, problem: Problem) -> ErrorItem:
        return cls(
            message=problem.message,
            document=problem.where,
            path=problem.path,
            source=problem.source,
            index=problem.document,
            kind=problem.kind,
            name=problem.name,
        )

    def problem(self, origins: Sequence[tuple[str, int]] = (), body: str = "") -> Problem | None:
        """The problem this item carries, or None for a plain message. A problem located in
        the request ``body`` (``<body>#i``) is located in ``origins[i - 1]`` instead: the
        user's own file and document."""
        if self.source is None or self.index is None:
            return None
        source, index = self.source, self.index
        if source == body and 1 <= index <= len(origins):
            source, index = origins[index - 1]
        return Problem(source, index, self.kind or "", self.name or "", self.path, self.message)


class ErrorAnswer(_Wire):
    """Every error answer: 4xx and 5xx alike. A plain message carries no ``source``,
    ``index``, ``kind`` or ``name`` (they are left out, not null)."""

    errors: list[ErrorItem]

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json", exclude_none=True)

    @classmethod
    def of(cls, message: str, problems: Sequence[Problem] = ()) -> ErrorAnswer:
        items = [ErrorItem.of(p) for p in problems] or [ErrorItem(message=message)]
        return cls(errors=items)


# ------------------------------------------------------------------------------------- apply


class ListMeta(_Wire):
    resource_version: str = ""


class ApplyItem(_Wire):
    kind: str
    namespace: str | None
    name: str
    action: str
    resource_version: str


class ApplyAnswer(_Wire):
    """What ``POST /api/v1/apply`` stored (or, as a dry run, would store)."""

    api_version: str
    kind: Literal["ApplyResult"] = "ApplyResult"
    metadata: ListMeta
    items: list[ApplyItem]


# --------------------------------------------------------------------------------- manifests


class ManifestList(_Wire):
    """One cluster's rendered objects in apply order, at one store revision: a Kubernetes
    ``List`` (``kubectl apply -f`` reads it as it is)."""

    api_version: Literal["v1"] = "v1"
    kind: Literal["List"] = "List"
    metadata: ListMeta
    items: list[dict[str, Any]]


# ------------------------------------------------------------------------------------ status


class ObjectState(_Wire):
    object: str
    state: str
    reason: str = ""
    time: str | None = None
    resource_version: str = ""  # as the cluster holds it after the apply (empty: unknown)
    owners: list[str] = Field(default_factory=list)  # the intents it was made for


# ------------------------------------------------------------------------------- propagation

PropagationState = Literal[
    "delivered", "observed", "applied", "nack", "istiod-unreachable", "unreachable"
]


class ProxyNack(_Wire):
    """A proxy rejected (NACKed) what istiod sent it: Envoy's message."""

    proxy: str  # name.namespace
    type: str  # the xDS type, short: Cluster, Listener, RouteConfiguration, ...
    error: str


class ProxyPending(_Wire):
    """A proxy that has not acknowledged the change yet, and why."""

    proxy: str
    type: str  # "" when about the proxy rather than one type
    why: str


class IstiodView(_Wire):
    """One istiod replica (pod) as read: its proxies, or why it could not be read."""

    pod: str
    proxies: int = 0
    error: str = ""


class ClusterPropagation(_Wire):
    """How far a cluster's last apply has got: ``applied`` (the API server holds it),
    ``observed`` (every istiod replica holds those resourceVersions), ``delivered`` (every
    proxy ACKed a push made since); or ``nack`` (a proxy rejected what istiod sent),
    ``istiod-unreachable``, ``unreachable`` (the API server). ``reason`` says what is missing;
    ``seconds``: from the end of the write to delivered, when meshbridge watched it happen."""

    cluster: str
    state: PropagationState
    reason: str = ""
    applied: str = ""  # the last apply's state: Applied, Failed, Unreachable
    since: str | None = None  # when the change was applied
    objects: int = 0  # Istio objects istiod should hold
    observed: int = 0  # of those, held at the applied resourceVersion by every replica
    missing: list[str] = Field(default_factory=list)
    istiod: list[IstiodView] = Field(default_factory=list)
    proxies: int = 0  # connected to istiod
    acked: int = 0  # of those, in sync with what istiod holds
    nacks: list[ProxyNack] = Field(default_factory=list)
    pending: list[ProxyPending] = Field(default_factory=list)
    disconnected: list[str] = Field(default_factory=list)  # connected at the change, not now
    delivered_at: str | None = None
    seconds: float | None = None
    checked: str | None = None


class IntentObject(_Wire):
    """One object made for an intent, in one cluster: its last apply and whether istiod holds
    it at the resourceVersion applied."""

    object: str
    applied: str  # Applied, Failed, Pending, Unreachable
    resource_version: str = ""
    observed: bool | None = None  # None: not known (istiod not read, or a kind it does not hold)


class IntentCluster(_Wire):
    """A cluster an intent's objects live in, and where the cluster stands."""

    cluster: str
    state: PropagationState | None  # None: not read (no propagation known)
    reason: str = ""
    objects: list[IntentObject] = Field(default_factory=list)


class IntentPropagation(_Wire):
    """``status KIND/NAMESPACE/NAME``: every cluster an intent's objects live in."""

    intent: str
    clusters: list[IntentCluster]


class PropagationAnswer(_Wire):
    """Every cluster's propagation, and whether the documents' revision the replicas last
    applied has reached every affected cluster (the server's answer)."""

    items: list[ClusterPropagation]
    revision: str | None = None
    delivered: bool = False
    pending: list[str] = Field(default_factory=list)  # clusters not delivered yet


class LeaseView(_Wire):
    holder: str
    term: int
    expires: str | None


class RunView(_Wire):
    id: int
    cluster: str
    replica: str
    term: int
    revision: str
    started: str | None
    finished: str | None  # None while running, or when its replica died
    state: str | None  # None until it finished
    error: str
    objects: int


class ClusterStatus(_Wire):
    """A cluster's last reconcile: its result per object, and who reconciles it."""

    cluster: str
    state: str
    error: str = ""
    time: str | None = None
    attempts: int = 0
    objects: list[ObjectState] = Field(default_factory=list)
    last_run: RunView | None = None
    last_success: str | None = None
    failures: int = 0
    lease: LeaseView | None = None
    pruned: list[str] = Field(default_factory=list)  # what its last apply deleted
    propagation: ClusterPropagation | None = None


class ReplicaView(_Wire):
    id: str
    host: str
    pid: int
    started: str | None
    seen: str | None


class StatusAnswer(_Wire):
    items: list[ClusterStatus]
    time: str | None
    replicas: list[ReplicaView]
    reconciler: bool
    propagation: PropagationAnswer | None = None


class PlacementItem(_Wire):
    """A discovered App placed in a cluster: found running there (``gone`` None) with
    ``ready`` instances, or found nowhere since ``gone`` and kept until ``keptUntil``."""

    namespace: str
    app: str
    cluster: str
    ready: int
    found: str | None = None
    seen: str | None = None
    gone: str | None = None
    kept_until: str | None = None


class WatchView(_Wire):
    """How a cluster is read for placements: ``watching`` (a server's watch), ``read`` (a
    one-off read), or ``failing`` with the error (its last known placements stand)."""

    cluster: str
    state: str
    error: str = ""
    since: str | None = None
    replica: str = ""
    relists: int = 0


class UncoveredItem(_Wire):
    """A discovered placement an intent's weights or failover priority do not cover."""

    namespace: str
    app: str
    cluster: str
    intent: str
    message: str


class PlacementAnswer(_Wire):
    """Where the discovered Apps run (``discovered``: every one, ``namespace/name``), how each
    cluster is read, and what the declared splits do not cover."""

    items: list[PlacementItem]
    discovered: list[str] = Field(default_factory=list)
    clusters: list[WatchView] = Field(default_factory=list)
    uncovered: list[UncoveredItem] = Field(default_factory=list)
    time: str | None = None


class FlaggedDocument(_Wire):
    """A stored document left out of every render, and why."""

    kind: str
    namespace: str | None
    name: str
    path: str
    resource_version: str
    reason: str
    problems: list[ErrorItem]


class ProblemsAnswer(_Wire):
    items: list[FlaggedDocument]
    set: list[ErrorItem]


# ------------------------------------------------------------------------------- credentials


class CredentialView(_Wire):
    """What may be shown of a cluster credential: never a key, certificate, token or password."""

    name: str
    created: str
    updated: str
    updated_by: str
    current_context: str | None
    contexts: list[dict[str, str]]


class CredentialList(_Wire):
    items: list[CredentialView]
