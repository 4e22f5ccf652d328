"""The one strict reader (loading.py): what it reads, what it refuses, and that every edge gets
the same verdict and message from it.

Every intent document is read by ``loading``'s loader, which resolves each distinct plain scalar
once; a port written ``80`` must stay an int, ``"80"`` a string, ``true`` a bool, ``~`` None.
The reference is ``yaml.load_all(text, Loader=CSafeLoader)``.
"""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from plaindata import plain

from meshbridge.loading import Source, _StrictLoader, load_source


def loaded(text: str) -> list[Any]:
    return list(yaml.load_all(text, Loader=_StrictLoader))


@settings(max_examples=300, deadline=None)
@given(st.lists(plain, min_size=1, max_size=5))
def test_intent_loader_reads_what_pyyaml_reads(objs: list[Any]) -> None:
    text = yaml.dump_all(objs, Dumper=yaml.CSafeDumper, allow_unicode=True)
    assert loaded(text) == list(yaml.load_all(text, Loader=yaml.CSafeLoader)) == objs
    # The same data in flow style, twice in one stream: the second time round, the loader
    # answers from what it kept.
    flow = yaml.dump_all(objs * 2, Dumper=yaml.CSafeDumper, default_flow_style=True)
    assert loaded(flow) == list(yaml.load_all(flow, Loader=yaml.CSafeLoader))


def test_intent_loader_types_plain_scalars_as_yaml_does() -> None:
    texts = ["80", "'80'", "true", "'true'", "~", "null", "''", "1.5", "0x1F", "2026-11-28"]
    text = "".join(f"k{i}: {t}\n" for i, t in enumerate(texts)) + "k99: [80, '80', true, ~]\n"
    expected = yaml.load(text, Loader=yaml.CSafeLoader)
    assert loaded(text + "---\n" + text) == [expected, expected]
    assert (expected["k0"], expected["k1"], expected["k2"], expected["k4"]) == (
        80,
        "80",
        True,
        None,
    )


def test_intent_loader_still_refuses_duplicate_keys() -> None:
    docs, problems = load_source(Source("mesh.yaml", "a: 1\nb: 2\na: 3\n"))
    assert not docs
    assert [p.message for p in problems] == ["YAML error at line 3, column 1: duplicate key 'a'"]
