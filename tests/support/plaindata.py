"""Plain data as hypothesis draws it, with the strings YAML finds hardest: what the emitter and
the loader are both checked against PyYAML with."""

from __future__ import annotations

from hypothesis import strategies as st

# Strings YAML would read as another type, or that need quoting or escaping when written.
# fmt: off
TRICKY = [
    "", "true", "False", "yes", "no", "on", "off", "~", "null", "Null", "80", "0o17", "0x1F",
    "1e3", "1_000", ".5", ".inf", "-.NaN", "2026-11-28", "2026-11-28T07:33:26Z", "<<", "=",
    "- a", "a: b", "a:b", "#x", "x #y", "@x", "`x", "!tag", "&anchor", "*alias", "%d", "|", ">",
    "[a]", "{a: 1}", "'q'", '"q"', " lead", "trail ", "two\nlines", "tab\there", "é", "😀",
    "\x07bell", "\u2028", "x" * 5000, "a " * 2100, "---", "...",
]
# fmt: on

scalars = st.one_of(
    st.sampled_from(TRICKY),
    st.text(max_size=30),
    st.integers(),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
)
plain = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(TRICKY), st.text(max_size=10)), children, max_size=4
        ),
    ),
    max_leaves=25,
)
