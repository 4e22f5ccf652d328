"""How a value someone gave appears in a message: escaped, and cut to a bounded excerpt.

Input reaches messages — a kind that is none, a document's name, a key given twice, a field
nobody knows, a name in a URL. Printed raw, a control character in it would reach the reader's
terminal (a file someone hands you could set the window's title or colours), and a long value
would make the message as large as the input. Every message that quotes input does it through
:func:`escaped` (bare text: names, paths) or :func:`quoted` (a value, quoted as Python would).

"Printable" is Python's ``str.isprintable``: control characters (C0, DEL, C1), format
characters (bidirectional overrides, zero-width joiners), line and paragraph separators and
unassigned code points are shown as ``\\x1b``, ``\\u202e``, ``\\U000e0001``.
"""

from __future__ import annotations

import reprlib

__all__ = ["LIMIT", "escaped", "quoted"]

LIMIT = 64
"""Characters of a value shown in a message, at most (what is cut is marked with '…')."""

_SHORT = reprlib.Repr()
_SHORT.maxlevel = 2
_SHORT.maxdict = _SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxset = 4
_SHORT.maxstring = _SHORT.maxother = LIMIT


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escaped(text: str, limit: int = LIMIT) -> str:
    """``text`` with every character that is not printable escaped, and cut after ``limit``
    characters of the original (marked with '…'); text that needs neither is returned as is."""
    cut = text[:limit]
    if not cut.isprintable():
        cut = "".join(c if c.isprintable() else _escape(c) for c in cut)
    return cut + "…" if len(text) > limit else cut


def quoted(value: object, limit: int = LIMIT) -> str:
    """``value`` as ``repr`` shows it — a string in quotes, with non-printable characters
    escaped — but bounded: a string cut after ``limit`` characters, a list or mapping after a
    few items and two levels (an alias-shared structure is never walked whole)."""
    if isinstance(value, str):
        return repr(value[:limit]) + ("…" if len(value) > limit else "")
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 4 * limit:
        return f"<an integer of {value.bit_length()} bits>"
    try:
        shown = _SHORT.repr(value)
    except (ValueError, RecursionError):  # an integer too long to print, inside a list
        shown = f"<{type(value).__name__}>"
    return escaped(shown, 4 * limit)
