"""Plain-data Kubernetes objects: the envelope every generator uses, and their output order."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from meshbridge.compile import naming

Obj = dict[str, Any]

# Apply order, defined here only: what must exist before what references it (Namespaces, then
# the Secrets Gateways name, then Istio objects); deletion runs it backwards. Output files follow
# it too (unlisted kinds last); kube.kinds holds one resource per kind listed here.
APPLY_ORDER: tuple[str, ...] = (
    "Namespace",
    "Secret",
    "IstioOperator",
    "ServiceEntry",
    "DestinationRule",
    "Gateway",
    "VirtualService",
    "AuthorizationPolicy",
)
_RANK = {kind: i for i, kind in enumerate(APPLY_ORDER)}


def make(
    api_version: str,
    kind: str,
    name: str,
    namespace: str,
    spec: dict[str, Any] | None,
    owners: Iterable[str],
    *,
    body_key: str = "spec",
) -> Obj:
    """A Kubernetes object with meshbridge's labels and its owners annotated."""
    owner_list = sorted(set(owners))
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {naming.MANAGED_BY_LABEL: naming.MANAGED_BY},
    }
    if owner_list:
        metadata["annotations"] = {naming.OWNERS_ANNOTATION: ",".join(owner_list)}
    obj: Obj = {"apiVersion": api_version, "kind": kind, "metadata": metadata}
    if spec is not None:
        obj[body_key] = spec
    return obj


def owner_ref(kind: str, namespace: str, name: str) -> str:
    return f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}"


SortKey = tuple[int, str, str, str]
"""An object's place in its cluster's apply order (:func:`ordered`)."""


def sort_key(obj: Obj) -> SortKey:
    meta = obj["metadata"]
    return (
        _RANK.get(obj["kind"], len(_RANK)),
        obj["kind"],
        meta.get("namespace", ""),
        meta["name"],
    )


def ordered(objs: Iterable[Obj]) -> list[Obj]:
    return sorted(objs, key=sort_key)
