"""What each cluster's ``cacerts`` holds, as apply last saw it: what root rotation waits for.

``pki rotate-root advance`` and ``finish`` are safe only once every cluster holds the current
phase's ``cacerts``. The store cannot know that from its own rows, so apply records it: per
cluster, the fingerprints (:class:`meshbridge.pki.bundle.CacertsFacts`) of the ``cacerts`` it
wrote or found in sync (``applied``), or, when it could not write it, of the one it read live
(``live``). One row per cluster, ``pki.held/<cluster>``, rewritten only when what the cluster
holds changes. No key, no certificate: fingerprints only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from meshbridge.errors import StateError
from meshbridge.pki.bundle import CacertsFacts
from meshbridge.store import Store

__all__ = ["SEEN_CACERTS_KIND", "SeenCacerts", "not_holding_expected", "read_seen", "record_seen"]

SEEN_CACERTS_KIND = "pki.held"

How = Literal["applied", "live"]


@dataclass(frozen=True)
class SeenCacerts:
    """A cluster's ``cacerts`` as fingerprints, how apply learnt it, and since when."""

    facts: CacertsFacts
    how: How
    since: str

    def to_json(self) -> bytes:
        body = {
            "roots": list(self.facts.roots),
            "anchor": self.facts.anchor,
            "intermediate": self.facts.intermediate,
            "how": self.how,
            "since": self.since,
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes, cluster: str) -> SeenCacerts:
        try:
            body = json.loads(data)
            facts = CacertsFacts(
                tuple(str(r) for r in body["roots"]),
                str(body["anchor"]),
                str(body["intermediate"]),
            )
            how: How = "applied" if body["how"] == "applied" else "live"
            return cls(facts, how, str(body["since"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise StateError(
                f"{SEEN_CACERTS_KIND}/{cluster}: the stored record is damaged ({type(exc).__name__})"
            ) from None


def read_seen(store: Store) -> dict[str, SeenCacerts]:
    """Every cluster's last recorded ``cacerts``, by cluster name."""
    return {name: SeenCacerts.from_json(data, name) for name, data in store.list_blobs(SEEN_CACERTS_KIND).items()}


def record_seen(store: Store, cluster: str, facts: CacertsFacts, how: How, now: str) -> None:
    """Record what ``cluster`` holds; unchanged holdings keep their row (and its ``since``)."""
    data = store.get_blob(SEEN_CACERTS_KIND, cluster)
    if data is not None:
        old = SeenCacerts.from_json(data, cluster)
        if old.facts == facts and old.how == how:
            return
    store.put_blob(SEEN_CACERTS_KIND, cluster, SeenCacerts(facts, how, now).to_json())


def _ids(roots: tuple[str, ...]) -> str:
    return ", ".join(r[:16] for r in roots) or "none"


def not_holding_expected(store: Store, expected: Mapping[str, CacertsFacts]) -> list[str]:
    """One line per cluster whose recorded ``cacerts`` is not the ``expected`` one (same roots,
    same intermediate), saying what apply last saw there; empty when every cluster holds it."""
    recorded = read_seen(store)
    out = []
    for cluster, want in sorted(expected.items()):
        got = recorded.get(cluster)
        if got is None:
            out.append(f"{cluster}: no apply recorded")
        elif not got.facts.same_bundle(want):
            seen = "applied" if got.how == "applied" else "found live"
            what = f"roots {_ids(got.facts.roots)}"
            if set(got.facts.roots) == set(want.roots):
                what += ", with another intermediate"
            out.append(f"{cluster}: holds {what} ({seen} {got.since})")
    return out
