"""Intent text and where it came from: what every reader produces and every loader takes.

Kept apart from ``meshbridge.loading`` (which needs the models) so commands can read and digest
their input without importing the models.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """Text to load and the name to report problems under."""

    name: str
    text: str
