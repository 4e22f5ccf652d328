"""Stored intent documents as the API answers them: reads, lists and label selectors.

The server-set fields each answer carries (``resourceVersion``, ``uid``, ``creationTimestamp``)
and the resource table are the wire's (:mod:`meshbridge.wire.resources`).

Reads go to the store, not to a process cache, so every server process on one database answers
the same. Writes go through :mod:`meshbridge.server.catalog`, which validates the whole
resulting set of documents before anything is stored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meshbridge.errors import BadRequest, NotFound
from meshbridge.excerpt import escaped, quoted
from meshbridge.model import API_VERSION
from meshbridge.store import ResourceRow, ResourceStore
from meshbridge.wire.resources import ResourceKind

__all__ = ["Selector", "get_object", "list_objects", "parse_selector", "to_object"]

def to_object(row: ResourceRow, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The API's view of a stored row: the document with server-set metadata added."""
    doc = dict(body if body is not None else json.loads(row.body))
    meta = dict(doc.get("metadata") or {})
    meta["uid"] = row.uid
    meta["resourceVersion"] = str(row.resource_version)
    meta["creationTimestamp"] = row.created
    doc["metadata"] = meta
    return doc


# ------------------------------------------------------------------------------------- reads


def get_object(
    store: ResourceStore, kind: ResourceKind, namespace: str, name: str
) -> dict[str, Any]:
    with store.reading():
        row = store.get_resource(kind.kind, namespace if kind.namespaced else "", name)
    if row is None:
        where = f" in namespace {escaped(namespace)}" if kind.namespaced else ""
        raise NotFound(f"{kind.kind} {quoted(name)} not found{where}")
    return to_object(row)


def list_objects(
    store: ResourceStore,
    kind: ResourceKind,
    namespace: str | None = None,
    selector: Selector | None = None,
) -> dict[str, Any]:
    """A Kubernetes-style list: ``{apiVersion, kind: <Kind>List, metadata, items}``."""
    with store.reading():
        rows = store.list_resources(kind.kind, namespace if kind.namespaced else None)
        revision = store.revisions().resources
    items = []
    for row in rows:
        doc = json.loads(row.body)
        if selector is None or selector.matches(_labels(doc)):
            items.append(to_object(row, doc))
    return {
        "apiVersion": API_VERSION,
        "kind": f"{kind.kind}List",
        "metadata": {"resourceVersion": str(revision)},
        "items": items,
    }


def _labels(doc: Mapping[str, Any]) -> dict[str, str]:
    meta = doc.get("metadata")
    labels = meta.get("labels") if isinstance(meta, dict) else None
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


# --------------------------------------------------------------------------- label selectors

_TERM = re.compile(
    r"^\s*(!?)\s*([A-Za-z0-9][-A-Za-z0-9_./]*)\s*(?:(==|!=|=)\s*([-A-Za-z0-9_.]*))?\s*$"
)


@dataclass(frozen=True)
class Selector:
    """Equality-based label selector terms: ``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``."""

    terms: tuple[tuple[str, str, str], ...]  # (key, op, value); op in = != exists !exists

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, op, value in self.terms:
            if op == "=" and labels.get(key) != value:
                return False
            if op == "!=" and labels.get(key) == value:
                return False
            if op == "exists" and key not in labels:
                return False
            if op == "!exists" and key in labels:
                return False
        return True


def parse_selector(text: str | None) -> Selector | None:
    """Parse ``labelSelector``; BadRequest naming the term that cannot be read."""
    if text is None or not text.strip():
        return None
    terms: list[tuple[str, str, str]] = []
    for part in text.split(","):
        match = _TERM.match(part)
        if match is None:
            raise BadRequest(
                f"labelSelector: cannot read {quoted(part.strip())} (use key=value,key2=value2)"
            )
        negate, key, op, value = match.groups()
        if op is None:
            terms.append((key, "!exists" if negate else "exists", ""))
        elif negate:
            raise BadRequest(f"labelSelector: {quoted(part.strip())}: '!' only goes before a bare key")
        else:
            terms.append((key, "!=" if op == "!=" else "=", value))
    return Selector(tuple(terms))
