"""One VIP kept in the state store: the record the allocator (``compile.vips``) returns and the
stores keep, and a reserved address found to be another host's VIP already.

Below every layer, beside ``meshbridge.source``: plain data that imports nothing of meshbridge,
so a store can hold VIPs without importing the compiler or the models.
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


@dataclass(frozen=True, order=True)
class Taken:
    """A reserved ``address`` that is already the VIP of ``holder`` (a host key) in ``cluster``."""

    cluster: str
    address: str
    holder: str
