"""One VIP kept in the state store: the record type shared by the allocator and the stores.

A module of its own (and ``meshbridge.compile`` loading its parts lazily) so that opening a store
does not import the models.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class VipRecord:
    """One address recorded for a host key in a cluster; ``released`` orders releases."""

    cluster: str
    key: str
    address: str
    released: int | None = None

    @property
    def active(self) -> bool:
        return self.released is None
