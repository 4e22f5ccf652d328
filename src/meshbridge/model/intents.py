"""The whole set of documents one run works on, each remembered with where it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from meshbridge.model.kinds import App, Cluster, ExternalService, InboundIntent, Mesh

AnyDoc = Mesh | Cluster | App | InboundIntent | ExternalService
T = TypeVar("T", bound=AnyDoc)


@dataclass(frozen=True)
class Located(Generic[T]):
    """A document and its origin: file name and 1-based document index in that file."""

    obj: T
    source: str = "<memory>"
    index: int = 1

    @property
    def kind(self) -> str:
        return self.obj.kind

    @property
    def name(self) -> str:
        if self.obj.metadata.namespace:
            return f"{self.obj.metadata.namespace}/{self.obj.metadata.name}"
        return self.obj.metadata.name


_KIND_NAMES = ("Mesh", "Cluster", "App", "InboundIntent", "ExternalService")


@dataclass(frozen=True)
class Intents:
    """Every document of a run, by kind, in the order they were read."""

    meshes: tuple[Located[Mesh], ...] = ()
    clusters: tuple[Located[Cluster], ...] = ()
    apps: tuple[Located[App], ...] = ()
    inbound: tuple[Located[InboundIntent], ...] = ()
    external_services: tuple[Located[ExternalService], ...] = ()
    _all: tuple[Located[AnyDoc], ...] = field(default=(), repr=False)

    @property
    def mesh(self) -> Mesh:
        """The Mesh document, or one with every default when none was given."""
        if self.meshes:
            return self.meshes[0].obj
        return Mesh.model_validate(
            {
                "apiVersion": "meshbridge.dev/v1alpha1",
                "kind": "Mesh",
                "metadata": {"name": "default"},
            }
        )

    def documents(self) -> tuple[Located[AnyDoc], ...]:
        return self._all

    @classmethod
    def of(cls, docs: list[Located[AnyDoc]]) -> Intents:
        by_kind: dict[str, list[Located[AnyDoc]]] = {k: [] for k in _KIND_NAMES}
        for d in docs:  # one pass: a server re-plans the whole set on every write
            by_kind[d.obj.kind].append(d)
        return cls(
            meshes=tuple(by_kind["Mesh"]),  # type: ignore[arg-type]
            clusters=tuple(by_kind["Cluster"]),  # type: ignore[arg-type]
            apps=tuple(by_kind["App"]),  # type: ignore[arg-type]
            inbound=tuple(by_kind["InboundIntent"]),  # type: ignore[arg-type]
            external_services=tuple(by_kind["ExternalService"]),  # type: ignore[arg-type]
            _all=tuple(docs),
        )
