"""The colours of the states, in one place: the SVG uses them, and the page's style sheet gets
its ``.st-<state>`` rules from :func:`state_css` (so a state added to ``wire.graph.STATES``
needs one colour here, nowhere else)."""

from __future__ import annotations

STATE_COLORS: dict[str, str] = {
    "applied": "#2f9e5b",
    "delivered": "#1f6fd1",  # reserved: configuration every proxy has acknowledged
    "pending": "#8a94a0",
    "drift": "#c98a00",
    "failing": "#d23b36",
    "unreachable": "#7a48c0",
}
UNKNOWN_COLOR = "#8a94a0"


def color(state: str) -> str:
    return STATE_COLORS.get(state, UNKNOWN_COLOR)


def state_css() -> str:
    """``.st-<state>`` rules setting ``--st`` to the state's colour."""
    return "".join(f".st-{name}{{--st:{value}}}\n" for name, value in STATE_COLORS.items())
