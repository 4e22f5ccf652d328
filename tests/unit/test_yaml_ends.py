"""Both ends of YAML in meshbridge do exactly what PyYAML does, only faster.

- Every rendered file goes through ``compile.output.Emitter``; if it wrote a string that YAML
  reads back as something else ("true", "80", "~", "") unquoted, or laid out a document
  differently, users' Git trees would change or their manifests would mean something else. The
  reference is ``yaml.dump(obj, Dumper=CSafeDumper)`` with the render's options.
- Every intent file is read by ``loading``'s loader, which resolves each distinct plain scalar
  once; a port written ``80`` must stay an int, ``"80"`` a string, ``true`` a bool, ``~`` None.
  The reference is ``yaml.load_all(text, Loader=CSafeLoader)``.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from meshbridge.loading import Source, load_source
from meshbridge.loading import _StrictLoader as IntentLoader
from meshbridge.output.emitter import Emitter, dump, dump_all

OPTIONS: dict[str, Any] = {
    "sort_keys": False,
    "default_flow_style": False,
    "width": 4096,
    "allow_unicode": True,
    "encoding": "utf-8",
}

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


def reference(obj: Any) -> bytes:
    data: bytes = yaml.dump(obj, Dumper=yaml.CSafeDumper, **OPTIONS)
    return data


@settings(max_examples=300, deadline=None)
@given(st.lists(plain, min_size=1, max_size=5))
def test_same_bytes_as_pyyaml_for_any_plain_data(objs: list[Any]) -> None:
    emitter = Emitter()  # one emitter for many documents, as a render uses it
    for obj in objs:
        assert emitter.dump(obj) == reference(obj)
    assert dump_all(objs) == b"---\n".join(reference(o) for o in objs)


def test_every_tricky_scalar_as_key_and_value() -> None:
    emitter = Emitter()
    for text in [*TRICKY, 0.0, -0.0, 1, True, None, 1.0]:  # 1 and True, 0.0 and -0.0 apart
        for obj in (text, {text: text}, [text], {"k": [text, {text: [text]}]}):
            assert emitter.dump(obj) == reference(obj), obj
            assert yaml.load(emitter.dump(obj), Loader=yaml.CSafeLoader) == obj


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        ((1, 2), TypeError, "cannot serialise a tuple: plain dicts and lists only"),
        ({1, 2}, TypeError, "cannot serialise a set: plain dicts and lists only"),
        (frozenset({"a"}), yaml.representer.RepresenterError, "cannot represent"),
    ],
)
def test_only_plain_data_and_the_emitter_stays_usable(
    bad: Any, error: type[Exception], message: str
) -> None:
    emitter = Emitter()
    assert emitter.dump({"kind": "Secret"}) == b"kind: Secret\n"
    with pytest.raises(error, match=message):
        emitter.dump({"spec": {"ports": [1, bad]}})
    # The failed document is gone; the next one comes out whole, as if it were the first.
    assert emitter.dump({"kind": "Service"}) == b"kind: Service\n"
    assert dump({"kind": "Service"}) == b"kind: Service\n"


def loaded(text: str) -> list[Any]:
    return list(yaml.load_all(text, Loader=IntentLoader))


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
