"""The intent documents as REST resources: kinds, plurals, URLs and server-set fields.

Both ends of the HTTP boundary build URLs from this one table (``api`` registers its routes,
``client`` addresses them), so a kind cannot be served under one path and asked for under
another. The server stores the documents users write, Kubernetes style: each stored object
carries three server-set fields in ``metadata`` — ``resourceVersion`` (the store's resources
counter at its last write), ``uid`` and ``creationTimestamp`` — which are stripped before a
document is validated (the models forbid unknown fields) and added back in every answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meshbridge.errors import BadRequest

__all__ = [
    "RESOURCES",
    "SERVER_FIELDS",
    "ObjectKey",
    "ResourceKind",
    "kind_named",
    "source_of",
    "strip_server_fields",
]

ObjectKey = tuple[str, str, str]  # (kind, namespace or "", name)
SERVER_FIELDS = ("resourceVersion", "uid", "creationTimestamp")


@dataclass(frozen=True)
class ResourceKind:
    """One document kind as the API serves it."""

    kind: str
    plural: str
    namespaced: bool

    def path(self, namespace: str, name: str) -> str:
        if self.namespaced:
            return f"/api/v1/namespaces/{namespace}/{self.plural}/{name}"
        return f"/api/v1/{self.plural}/{name}"

    def collection(self, namespace: str | None = None) -> str:
        """The list URL: in one namespace, or across all (``None``, and cluster-scoped)."""
        if self.namespaced and namespace is not None:
            return f"/api/v1/namespaces/{namespace}/{self.plural}"
        return f"/api/v1/{self.plural}"


RESOURCES: dict[str, ResourceKind] = {
    k.kind: k
    for k in (
        ResourceKind("Mesh", "meshes", False),
        ResourceKind("Cluster", "clusters", False),
        ResourceKind("App", "apps", True),
        ResourceKind("InboundIntent", "inboundintents", True),
        ResourceKind("ExternalService", "externalservices", True),
    )
}
_ALIASES: dict[str, str] = {}
for _k in RESOURCES.values():
    for _alias in (_k.kind.lower(), _k.plural):
        _ALIASES[_alias] = _k.kind
_ALIASES.update({"mesh": "Mesh", "ii": "InboundIntent", "es": "ExternalService"})


def kind_named(word: str) -> ResourceKind:
    """The kind for ``App``, ``app``, ``apps`` (any case); BadRequest otherwise."""
    found = _ALIASES.get(word.lower())
    if found is None:
        known = ", ".join(k.plural for k in RESOURCES.values())
        raise BadRequest(f"unknown kind {word!r} (one of {known})")
    return RESOURCES[found]


def source_of(key: ObjectKey) -> str:
    """Where a stored document is reported in problems: its API path."""
    kind, namespace, name = key
    return RESOURCES[kind].path(namespace, name)


def strip_server_fields(raw: Any) -> tuple[Any, str | None]:
    """A copy of ``raw`` without server-set metadata, and the resourceVersion it asked for."""
    if not isinstance(raw, dict) or not isinstance(raw.get("metadata"), dict):
        return raw, None
    meta = dict(raw["metadata"])
    version = meta.pop("resourceVersion", None)
    for field in SERVER_FIELDS[1:]:
        meta.pop(field, None)
    out = dict(raw)
    out["metadata"] = meta
    return out, None if version is None else str(version)
