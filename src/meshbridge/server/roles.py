"""The roles an API token has, and what each may do; no store, so the CLI's help can name them.

Each role includes the ones below it: ``viewer`` reads documents, the audit log and metrics;
``editor`` also writes documents and reads rendered manifests (which can hold CA private keys);
``admin`` also manages tokens and credentials.
"""

from __future__ import annotations

__all__ = ["ROLES", "allows"]

ROLES = ("viewer", "editor", "admin")
_RANK = {role: i for i, role in enumerate(ROLES)}


def allows(role: str, needed: str) -> bool:
    """Whether ``role`` may do what ``needed`` may (admin > editor > viewer)."""
    return _RANK.get(role, -1) >= _RANK[needed]
