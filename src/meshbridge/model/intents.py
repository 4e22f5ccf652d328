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
        def pick(kind: type[T]) -> tuple[Located[T], ...]:
            return tuple(d for d in docs if isinstance(d.obj, kind))  # type: ignore[misc]

        return cls(
            meshes=pick(Mesh),
            clusters=pick(Cluster),
            apps=pick(App),
            inbound=pick(InboundIntent),
            external_services=pick(ExternalService),
            _all=tuple(docs),
        )
