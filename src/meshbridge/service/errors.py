"""Errors of the server's use cases, beside :mod:`meshbridge.errors`' tree.

::

    MeshbridgeError
    ├── NotFound          no such document, cluster or token (API 404)
    ├── Conflict          a stale resourceVersion, or a delete that would leave the stored set
    │                     invalid (API 409); ``problems`` says which documents are in the way
    ├── BadRequest        a request the API cannot read: body, query, content type (API 400)
    └── ServerError       the CLI's view of an error answer from a meshbridge server

Each carries a message that is safe to show a client: no secret, no internal detail.
"""

from __future__ import annotations

from collections.abc import Iterable

from meshbridge.errors import MeshbridgeError, Problem

__all__ = ["BadRequest", "Conflict", "NotFound", "ServerError"]


class NotFound(MeshbridgeError):
    """The named object does not exist."""


class Conflict(MeshbridgeError):
    """The request conflicts with what is stored; nothing was written."""

    def __init__(self, message: str, problems: Iterable[Problem] = ()) -> None:
        super().__init__(message)
        self.problems: tuple[Problem, ...] = tuple(sorted(set(problems)))


class BadRequest(MeshbridgeError):
    """The request itself cannot be understood."""


class ServerError(MeshbridgeError):
    """A meshbridge server answered with an error (as seen by a client)."""

    def __init__(self, status: int, message: str, problems: Iterable[Problem] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.problems: tuple[Problem, ...] = tuple(problems)
