"""Multi-document YAML, split only: the API server parses YAML bodies itself, and this package
runs before any YAML library is installed."""

from __future__ import annotations


def split_yaml_docs(text: str) -> list[str]:
    """The documents of a YAML stream that hold more than comments and blank lines."""
    docs: list[str] = []
    cur: list[str] = []
    for line in text.splitlines(keepends=True):
        if line.rstrip() in ("---", "...") or line.startswith("--- "):
            docs.append("".join(cur))
            cur = []
        else:
            cur.append(line)
    docs.append("".join(cur))
    meaningful = []
    for d in docs:
        if any(ln.strip() and not ln.lstrip().startswith("#") for ln in d.splitlines()):
            meaningful.append(d)
    return meaningful
