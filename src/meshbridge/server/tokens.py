"""API tokens: created once, stored hashed, checked in constant time; roles and what they may do.

A token reads ``mbt_<id>_<secret>``: ``id`` (public, 12 hex digits) finds the stored record,
``secret`` is 32 random bytes (URL-safe base64). The store keeps only the SHA-256 of the whole
token — a digest of 256 bits of randomness needs no slow password hash — and the comparison is
``hmac.compare_digest``. The token itself is printed once, at creation, and never again.

Roles and what each may do are in :mod:`meshbridge.server.roles`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from meshbridge.errors import Conflict, InvalidInput, NotFound, Problem
from meshbridge.server.roles import ROLES
from meshbridge.store import AuditEntry, ResourceStore, TokenRecord


def utc_now() -> str:
    """The time now, as the API and the audit log write it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

__all__ = [
    "Principal",
    "authenticate",
    "create_token",
    "list_tokens",
    "revoke_token",
]

_TOKEN_RE = re.compile(r"^mbt_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9_.@]{0,127}$")


@dataclass(frozen=True)
class Principal:
    """Who a request comes from: the token's name and role."""

    name: str
    role: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def authenticate(store: ResourceStore, token: str) -> Principal | None:
    """The principal of a live token, or None (unknown, malformed, revoked)."""
    match = _TOKEN_RE.match(token)
    if match is None:
        return None
    with store.reading():
        record = store.get_token(match.group(1))
    if record is None or record.revoked is not None:
        return None
    if not hmac.compare_digest(record.digest, _digest(token)):
        return None
    return Principal(record.name, record.role)


def _check(name: str, role: str) -> None:
    problems = []
    if not _NAME_RE.match(name):
        problems.append(
            Problem(
                "token",
                1,
                "Token",
                name[:64],
                "name",
                "1-128 letters, digits, '-', '_', '.', '@', starting with a letter or digit",
            )
        )
    if role not in ROLES:
        problems.append(
            Problem("token", 1, "Token", name[:64], "role", f"one of {', '.join(ROLES)}")
        )
    if problems:
        raise InvalidInput(problems)


def create_token(store: ResourceStore, name: str, role: str, actor: str = "local") -> str:
    """Store a new token and return it: the only time it is ever shown."""
    _check(name, role)
    token_id = secrets.token_hex(6)
    token = f"mbt_{token_id}_{secrets.token_urlsafe(32)}"
    now = utc_now()
    with store.transaction():
        if store.find_token(name) is not None:
            raise Conflict(f"a token named {name!r} already exists (revoked ones keep their name)")
        store.add_token(TokenRecord(token_id, name, role, _digest(token), now))
        store.add_audit([AuditEntry(0, now, actor, "create", "Token", "", name, None, None)])
    return token


def list_tokens(store: ResourceStore) -> list[dict[str, Any]]:
    """Every token's public fields (never the digest)."""
    return [
        {"id": t.id, "name": t.name, "role": t.role, "created": t.created, "revoked": t.revoked}
        for t in _tokens(store)
    ]


def _tokens(store: ResourceStore) -> list[TokenRecord]:
    with store.reading():
        return store.list_tokens()


def revoke_token(store: ResourceStore, name: str, actor: str = "local") -> None:
    now = utc_now()
    with store.transaction():
        if not store.revoke_token(name, now):
            raise NotFound(f"no live token named {name!r}")
        store.add_audit([AuditEntry(0, now, actor, "revoke", "Token", "", name, None, None)])
