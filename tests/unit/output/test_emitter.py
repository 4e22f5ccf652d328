"""The emitter writes exactly what PyYAML writes, only faster.

Every rendered file goes through ``output.emitter.Emitter``; if it wrote a string that YAML
reads back as something else ("true", "80", "~", "") unquoted, or laid out a document
differently, users' Git trees would change or their manifests would mean something else. The
reference is ``yaml.dump(obj, Dumper=CSafeDumper)`` with the render's options.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from plaindata import TRICKY, plain

from meshbridge.output.emitter import Emitter, dump, dump_all

OPTIONS: dict[str, Any] = {
    "sort_keys": False,
    "default_flow_style": False,
    "width": 4096,
    "allow_unicode": True,
    "encoding": "utf-8",
}

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


