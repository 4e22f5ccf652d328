"""The Store protocol: what use cases may ask of the state store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Protocol

from meshbridge.compile.vips import VipRecord


class Store(Protocol):
    """Persistent state of a mesh. Writes made inside ``transaction()`` land together or not at
    all; outside one, each call is its own transaction."""

    def transaction(self) -> AbstractContextManager[None]: ...

    def vip_records(self) -> list[VipRecord]: ...

    def replace_vip_records(self, records: list[VipRecord]) -> None: ...

    def get_blob(self, kind: str, name: str) -> bytes | None: ...

    def put_blob(self, kind: str, name: str, data: bytes) -> None: ...

    def delete_blob(self, kind: str, name: str) -> None: ...

    def list_blobs(self, kind: str) -> dict[str, bytes]: ...

    def close(self) -> None: ...


def iter_kinds(store: Store, kinds: list[str]) -> Iterator[tuple[str, str, bytes]]:
    for kind in kinds:
        for name, data in sorted(store.list_blobs(kind).items()):
            yield kind, name, data
