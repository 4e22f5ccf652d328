"""What a compile needs besides the documents: allocations and certificate material.

Everything here is plain data handed in by the caller (the use cases read it from the state
store and the PKI): compile itself never looks anything up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# Where the Apps with ``discover: {}`` were found running, (namespace, app) -> clusters: read
# from the clusters, recorded in the state store, or given in a file, and handed in like the
# VIPs (compile never reads a cluster). A discovered App it does not name runs nowhere.
Placement = Mapping[tuple[str, str], frozenset[str]]


@dataclass(frozen=True)
class ClusterCA:
    """The four PEM files Istio's plug-in CA reads from the ``cacerts`` Secret."""

    ca_cert: str
    ca_key: str
    root_cert: str
    cert_chain: str


@dataclass(frozen=True)
class IngressCredential:
    """A server certificate for an external host; ``ca`` only for MUTUAL (the client CA)."""

    cert: str
    key: str
    ca: str | None = None


@dataclass(frozen=True)
class Material:
    """Certificate material by cluster (``cacerts``) and by external host (ingress)."""

    cacerts: Mapping[str, ClusterCA] = field(default_factory=dict)
    ingress: Mapping[str, IngressCredential] = field(default_factory=dict)


@dataclass(frozen=True)
class Context:
    """Per-run inputs of the generators: VIPs by (cluster, host key) and certificate material."""

    vips: Mapping[tuple[str, str], str]
    material: Material = field(default_factory=Material)
    only: frozenset[str] | None = None  # compute only these clusters' objects

    def wants(self, cluster: str) -> bool:
        return self.only is None or cluster in self.only

    def selected(self, clusters: Iterable[str]) -> list[str]:
        """The clusters among ``clusters`` this run computes, in order."""
        return [c for c in clusters if self.wants(c)]
