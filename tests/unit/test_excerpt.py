"""How input appears in messages (excerpt.py): escaped, so that a file someone hands you cannot
drive the terminal that prints its problems, and bounded, so that a message never grows with
the input."""

from __future__ import annotations

import pytest

from meshbridge.excerpt import LIMIT, escaped, quoted


@pytest.mark.parametrize(("text", "shown"), [
    ("sleep", "sleep"),
    ("café-😀", "café-😀"),  # printable, whatever the script
    ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),  # a terminal title
    ("a\x1b[31mred", "a\\x1b[31mred"),
    ("\x9b31m", "\\x9b31m"),  # the one-byte CSI
    ("rtl\u202etxt", "rtl\\u202etxt"),  # a bidirectional override
    ("tag\U000e0041", "tag\\U000e0041"),
    ("two\nlines\r\t", "two\\x0alines\\x0d\\x09"),
])
def test_escaped_shows_every_character_that_is_not_printable_as_an_escape(text: str,
                                                                          shown: str) -> None:
    assert escaped(text) == shown


def test_escaped_and_quoted_are_bounded() -> None:
    assert escaped("x" * 10_000) == "x" * LIMIT + "…"
    assert escaped("\x1b" * 10_000, 3) == "\\x1b\\x1b\\x1b…"
    assert quoted("y" * 10_000) == repr("y" * LIMIT) + "…"
    assert quoted("a\x1bb") == "'a\\x1bb'"


def test_quoted_never_walks_a_shared_structure_whole() -> None:
    """An alias bomb as PyYAML builds it: nine references to one list, six levels deep."""
    bomb: object = ["lol"] * 9
    for _ in range(6):
        bomb = [bomb] * 9
    shown = quoted(bomb)
    assert shown.startswith("[[[") and len(shown) < 4 * LIMIT + 10


def test_quoted_shows_any_value_without_an_error() -> None:
    assert quoted(7 ** 10_000) == "<an integer of 28074 bits>"  # str() would refuse it
    assert quoted([7 ** 10_000]) in ("[<list>]", "<list>")
    assert quoted(None) == "None" and quoted(True) == "True" and quoted(80) == "80"
    assert quoted({"k\x1b": "v"}) == "{'k\\x1b': 'v'}"
