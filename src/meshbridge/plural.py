"""How a count reads in a message: ``1 cluster``, ``2 clusters``, ``1 new VIP``.

Every message that prints a count with its noun goes through :func:`count`, so none says
``1 clusters`` or ``cluster(s)``. Plain text, no I/O: any layer may use it.
"""

from __future__ import annotations

__all__ = ["count"]


def count(n: int, one: str, many: str | None = None) -> str:
    """``n`` and the noun it counts, singular for 1 (``many`` defaults to ``one + "s"``)."""
    return f"{n} {one if n == 1 else (many if many is not None else one + 's')}"
