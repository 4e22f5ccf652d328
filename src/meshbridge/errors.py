"""The meshbridge error tree, in one place so every edge maps errors the same way.

::

    MeshbridgeError                  base; never raised itself
    ├── InvalidInput                 the user's documents are wrong (CLI exit 2, API 422);
    │                                carries every Problem found, nothing was written
    ├── VipError                     the VIP allocator cannot place an address (compile.vips);
    │   │                            the compile step turns it into InvalidInput
    │   ├── PoolExhausted            a cluster needs more VIPs than the pool holds
    │   └── AddressTaken             a reserved address is another host's VIP already
    ├── StateError                   the state store cannot be used as asked
    │   ├── StateLocked              another process holds the store, or a concurrent writer
    │   │                            won a race (a retry may succeed; API 503 + Retry-After)
    │   ├── StateUnavailable         the database cannot be reached now (refused, lost in a
    │   │                            fail-over; a retry may succeed; API 503 + Retry-After)
    │   └── SealingError             the key-encryption key is missing or wrong
    ├── PKIError                     certificate material cannot be issued or imported
    │   └── RootReplaced             apply would replace the root of trust live in clusters;
    │                                nothing was written (CLI exit 1)
    ├── OutputError                  the render target cannot be written safely
    ├── ClusterError                 a cluster cannot be used as asked (kube wraps every
    │   │                            error of its Kubernetes client library in one of these)
    │   ├── KubeconfigError          the kubeconfig or credential that reaches it is unusable
    │   ├── Unreachable              its API server cannot be reached (connection, TLS, timeout)
    │   ├── DiscoveryError           its gateway address cannot be read from it
    │   └── PortForwardError         a port inside one of its pods (istiod's debug port) cannot
    │                                be reached through the API server's pods/portforward
    ├── NotFound                     no such document, cluster or token (API 404)
    ├── Conflict                     a stale resourceVersion, or a delete that would leave the
    │                                stored set invalid (API 409); ``problems`` says which
    │                                documents are in the way
    ├── BadRequest                   a request the API cannot read: body, query, content type
    │   │                            (API 400)
    │   └── PayloadTooLarge          the request body is over the server's limit (API 413)
    ├── UnreadableFile               a file the user names cannot be read (the admin's
    │                                kubeconfig for ``credential add``, or a file it names)
    └── ServerError                  the CLI's view of an error answer from a meshbridge server
        ├── UnsafeConnection         the server URL or TLS settings would expose the token or
        │                            trust an unverified server; nothing was sent
        └── UnsafePath               the server sent a name that is not a plain file name below
                                     the output directory; nothing was written

Edges (CLI, API) catch ``MeshbridgeError`` and print its message; anything else is a bug and
is reported as one, without leaking internals to API clients. A test checks that every
exception class meshbridge defines is in this tree.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from meshbridge import plural
from meshbridge.excerpt import escaped
from meshbridge.viprecord import Taken

__all__ = [
    "AddressTaken",
    "BadRequest",
    "ClusterError",
    "Conflict",
    "DiscoveryError",
    "InvalidInput",
    "KubeconfigError",
    "MeshbridgeError",
    "NotFound",
    "OutputError",
    "PKIError",
    "PayloadTooLarge",
    "PoolExhausted",
    "PortForwardError",
    "Problem",
    "RootReplaced",
    "SealingError",
    "ServerError",
    "StateError",
    "StateLocked",
    "StateUnavailable",
    "Unreachable",
    "UnreadableFile",
    "UnsafeConnection",
    "UnsafePath",
    "VipError",
]


_SHOWN = 1024  # characters of a path or file name in a problem's line (messages: 4x)
_NAME = 253  # characters of a name: a DNS name's longest


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the input, located as precisely as we can.

    ``source`` is the file name (or ``<stdin>``), ``document`` the 1-based index of the YAML
    document in that file, ``kind``/``name`` identify the document, ``path`` is the field path in
    the document (``spec.clients[0].app``) and ``message`` says what is wrong.
    """

    source: str
    document: int
    kind: str
    name: str
    path: str
    message: str

    @property
    def where(self) -> str:
        """``source#document Kind/name``, escaped: a name (or a file name) may hold any
        character, and this is printed on terminals (:mod:`meshbridge.excerpt`)."""
        ident = f"{self.kind}/{escaped(self.name, _NAME)}" if self.kind else "document"
        return f"{escaped(self.source, _SHOWN)}#{self.document} {ident}"

    def __str__(self) -> str:
        path = f" {escaped(self.path, _SHOWN)}" if self.path else ""
        return f"{self.where}{path}: {escaped(self.message, 4 * _SHOWN)}"



class MeshbridgeError(Exception):
    """Base of every error meshbridge raises on purpose."""


class InvalidInput(MeshbridgeError):
    """The documents given are not a valid mesh; ``problems`` lists every issue found."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(sorted(set(problems)))
        count = len(self.problems)
        super().__init__(f"{plural.count(count, 'problem')} in the input")

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)


class StateError(MeshbridgeError):
    """The state store cannot be opened, read or written."""


class StateLocked(StateError):
    """Another process is writing the same state store."""


class StateUnavailable(StateError):
    """The database did not answer or lost the connection (a restart, a fail-over): nothing was
    written by the statement that failed, and a retry may succeed."""


class SealingError(StateError):
    """Sealed (encrypted) private keys cannot be opened with the key-encryption key at hand."""


class PKIError(MeshbridgeError):
    """Certificate material cannot be issued, imported or rotated as asked."""


class RootReplaced(PKIError):
    """Writing the rendered ``cacerts`` would replace the root a cluster trusts now; the message
    names every such cluster with both roots' fingerprints."""

    def __init__(self, message: str, clusters: Iterable[str]) -> None:
        super().__init__(message)
        self.clusters: tuple[str, ...] = tuple(clusters)


class OutputError(MeshbridgeError):
    """The render output directory cannot be (re)written safely."""


class NotFound(MeshbridgeError):
    """The named object does not exist."""


class Conflict(MeshbridgeError):
    """The request conflicts with what is stored; nothing was written."""

    def __init__(self, message: str, problems: Iterable[Problem] = ()) -> None:
        super().__init__(message)
        self.problems: tuple[Problem, ...] = tuple(sorted(set(problems)))


class BadRequest(MeshbridgeError):
    """The request itself cannot be understood."""


class PayloadTooLarge(BadRequest):
    """The request body is larger than the server accepts."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the request body is larger than {limit} bytes")


class ServerError(MeshbridgeError):
    """A meshbridge server answered with an error (as seen by a client)."""

    def __init__(self, status: int, message: str, problems: Iterable[Problem] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.problems: tuple[Problem, ...] = tuple(problems)


class VipError(MeshbridgeError):
    """The VIP allocator cannot place an address."""


class PoolExhausted(VipError):
    def __init__(self, cluster: str, needed: int) -> None:
        super().__init__(f"VIP pool exhausted in cluster {cluster!r} ({needed} hosts)")
        self.cluster = cluster


class AddressTaken(VipError):
    def __init__(self, taken: Sequence[Taken]) -> None:
        super().__init__(
            "; ".join(f"{t.address} is the VIP of {t.holder} in cluster {t.cluster!r}" for t in taken)
        )
        self.taken = list(taken)


class ClusterError(MeshbridgeError):
    """A cluster cannot be used as asked; the message says why (never a credential)."""


class KubeconfigError(ClusterError):
    """The kubeconfig file or registered credential that reaches a cluster is unusable."""


class Unreachable(ClusterError):
    """The cluster's API server could not be reached (connection, TLS, timeout)."""


class DiscoveryError(ClusterError):
    """The gateway's address cannot be read from the cluster (the message says why)."""


class PortForwardError(ClusterError):
    """A port inside a pod cannot be reached through the API server's ``pods/portforward``:
    refused (RBAC, no such pod), the kubelet could not connect to it, or what answered there
    was not HTTP (the message says which)."""


class UnreadableFile(MeshbridgeError):
    """A file the user named cannot be read, or is not what it should be."""


class UnsafeConnection(ServerError):
    """The server URL or TLS settings would expose the token or trust an unverified server;
    nothing was sent."""

    def __init__(self, message: str) -> None:
        super().__init__(0, message)


class UnsafePath(ServerError):
    """The server sent a name that would make a file path outside the output directory (or
    not a plain file name); nothing was written."""

    def __init__(self, message: str) -> None:
        super().__init__(0, message)
