"""The one strict reader (loading.py): what it reads, what it refuses, and that every edge gets
the same verdict and message from it.

Every intent document is read by ``loading``'s loader, which resolves each distinct plain scalar
once; a port written ``80`` must stay an int, ``"80"`` a string, ``true`` a bool, ``~`` None.
The reference is ``yaml.load_all(text, Loader=CSafeLoader)``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from plaindata import plain

from meshbridge.errors import BadRequest, InvalidInput, Problem
from meshbridge.loading import (
    Source,
    _StrictLoader,
    load,
    load_source,
    parse_body,
    parse_one,
    read_yaml,
)


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


# ------------------------------------------------------------------ issue 25: the reader directly

CLUSTER = "apiVersion: meshbridge.dev/v1alpha1\nkind: Cluster\nmetadata: {name: c1}\n"


def only_problem(text: str, name: str = "mesh.yaml") -> Problem:
    """The one problem ``load`` finds in ``text``, raised as InvalidInput (not another error)."""
    with pytest.raises(InvalidInput) as caught:
        load([Source(name, text)])
    (problem,) = caught.value.problems
    return problem


@pytest.mark.parametrize(("text", "where", "key"), [
    ("on: 1\ntrue: 2\n", "line 2, column 1", "true"),  # both the boolean true
    ("yes: 1\nOn: 2\n", "line 2, column 1", "On"),
    ("~: 1\nnull: 2\n", "line 2, column 1", "null"),
    ("0x10: a\n16: b\n", "line 2, column 1", "16"),  # both the integer 16
    ("metadata: {name: a, name: b}\n", "line 1, column 21", "name"),
    (CLUSTER + "spec:\n  gateway: {address: 10.0.0.1}\n  gateway: {address: 10.0.0.2}\n",
     "line 6, column 3", "gateway"),
])
def test_a_key_given_twice_as_yaml_resolves_it_is_refused(text: str, where: str, key: str) -> None:
    """PyYAML would keep the last value and say nothing: the user's first one would be lost."""
    problem = only_problem(text)
    assert (problem.source, problem.document) == ("mesh.yaml", 1)
    assert problem.message == f"YAML error at {where}: duplicate key {key!r}"


@pytest.mark.parametrize(("text", "expected"), [
    ("1: a\n'1': b\n", {1: "a", "1": "b"}),  # an integer and a string
    ("on: a\n'on': b\n", {True: "a", "on": "b"}),  # a boolean and a string
    ("a: 1\nA: 2\n", {"a": 1, "A": 2}),
])
def test_keys_that_yaml_resolves_apart_are_not_duplicates(text: str, expected: dict) -> None:
    assert read_yaml(text, "mesh.yaml") == ([(1, expected)], None)


@pytest.mark.parametrize("key", ["? [x]\n: 1\n", "? {a: 1}\n: 1\n", "[x]: 1\n"])
def test_a_list_or_mapping_as_a_key_is_a_located_problem(key: str) -> None:
    problem = only_problem(CLUSTER + "---\n" + key)
    assert (problem.source, problem.document) == ("mesh.yaml", 2)
    assert problem.message.startswith("YAML error at line 5, column ")
    assert problem.message.endswith(": a mapping key must be a plain scalar, not a list or a mapping")


@pytest.mark.parametrize("text", [
    "[" * 50_000 + "]" * 50_000,
    "{a: " * 50_000 + "}" * 50_000,
    "- " * 50_000 + "x\n",
    CLUSTER + "spec: " + "[" * 50_000 + "]" * 50_000 + "\n",
])
def test_input_nested_too_deeply_is_a_problem_not_a_crash(text: str) -> None:
    problem = only_problem(text)
    assert problem.source == "mesh.yaml" and problem.document == 1
    assert problem.message.startswith("YAML error")
    assert "nest" in problem.message


def test_a_json_body_nested_too_deeply_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="nested too deeply"):
        parse_body(("[" * 50_000 + "]" * 50_000).encode(), "application/json")


def test_parse_body_reads_one_json_object_an_array_or_a_kubernetes_list() -> None:
    a, b = {"kind": "App"}, {"kind": "Cluster"}
    assert parse_body(json.dumps(a).encode(), "application/json") == [(1, a)]
    # a null item is skipped but keeps its place: problems name the item as the sender counts
    assert parse_body(json.dumps([a, None, b]).encode(), "application/json") == [(1, a), (3, b)]
    listed = {"apiVersion": "v1", "kind": "List", "items": [a, b]}
    assert parse_body(json.dumps(listed).encode(), "application/json") == [(1, a), (2, b)]


@pytest.mark.parametrize(("body", "ctype", "expected"), [
    (b"{a: 1}", "application/yaml", [(1, {"a": 1})]),  # YAML flow, not JSON
    (b"{a: 1}", "text/yaml; charset=utf-8", [(1, {"a": 1})]),
    (b"a: 1\n---\n---\nb: [2]\n", None, [(1, {"a": 1}), (3, {"b": [2]})]),
    (b'  {"a": 1}', None, [(1, {"a": 1})]),  # JSON by its first character
    (b'{"a": 1}', "application/json; charset=utf-8", [(1, {"a": 1})]),
])
def test_parse_body_reads_yaml_or_json_by_content_type_or_first_character(
    body: bytes, ctype: str | None, expected: list
) -> None:
    assert parse_body(body, ctype) == expected


@pytest.mark.parametrize(("body", "ctype", "message"), [
    (b"{a: 1}", None, "<body>#1 document: JSON error at line 1, column 2: Expecting property "
                      "name enclosed in double quotes"),
    (b"{a: 1}", "application/json", "<body>#1 document: JSON error at line 1, column 2: "
                                    "Expecting property name enclosed in double quotes"),
    (b"a: 1\n---\nb: [\n", "application/yaml",
     "<body>#2 document: YAML error at line 4, column 1: did not find expected node content"),
    (b"a: 1\na: 2\n", None, "<body>#1 document: YAML error at line 2, column 1: duplicate key 'a'"),
    (b"kind: caf\xe9\n", "application/yaml", "the body is not UTF-8 text"),
    (b"\xff\xfe{\x00}\x00", "application/json", "the body is not UTF-8 text"),
])
def test_a_body_that_cannot_be_read_is_a_bad_request(body: bytes, ctype: str | None,
                                                     message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_body(body, ctype)
    assert str(caught.value) == message


def test_a_json_body_with_a_key_given_twice_is_refused_as_a_file_is() -> None:
    body = (b'{"apiVersion": "meshbridge.dev/v1alpha1", "kind": "Cluster", '
            b'"metadata": {"name": "east", "name": "west"}}')
    # as a file (the CLI), the same text is refused
    assert only_problem(body.decode()).message.endswith("duplicate key 'name'")
    with pytest.raises(BadRequest, match="duplicate key 'name'"):
        parse_body(body, "application/json")


def test_parse_one_wants_exactly_one_document() -> None:
    assert parse_one(b"a: 1\n", None) == {"a": 1}
    for body, count in ((b"# nothing\n", 0), (b"a: 1\n---\nb: 2\n", 2)):
        with pytest.raises(BadRequest, match=f"exactly one document, not {count}"):
            parse_one(body, None)


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n---\n", "\n\n"])
def test_loading_empty_input_is_a_problem_naming_each_source(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        load([Source("a.yaml", text), Source("<stdin>", text)])
    assert [str(p) for p in caught.value.problems] == [
        f"{name}#0 document: no intent document in the input (it is empty)"
        for name in ("<stdin>", "a.yaml")]


def test_every_problem_names_file_document_kind_name_and_field_path() -> None:
    docs = [
        {"apiVersion": "meshbridge.dev/v1alpha1", "kind": "Cluster", "metadata": {"name": "c1"},
         "spec": {"gateway": {"address": "10.0.0.1"}}},
        {"apiVersion": "meshbridge.dev/v1alpha1", "kind": "InboundIntent",
         "metadata": {"name": "httpbin", "namespace": "bar"},
         "spec": {"app": "httpbin", "port": "8000", "protocl": "HTTP",
                  "clients": [{"app": "Sleep", "accessPoints": [{"path": ["/x"]}]}],
                  "loadBalancing": {"weights": {"c1": 101}}}},
        {"apiVersion": "meshbridge.dev/v1", "kind": "App",
         "metadata": {"name": "sleep", "namespace": "foo"}, "spec": {"clusters": ["c1"]}},
        {"apiVersion": "meshbridge.dev/v1alpha1", "kind": "Clustr", "metadata": {"name": "c2"}},
    ]
    with pytest.raises(InvalidInput) as caught:
        load([Source("mesh.yaml", yaml.safe_dump_all(docs, sort_keys=False))])
    got = {(p.source, p.document, p.kind, p.name, p.path): p.message
           for p in caught.value.problems}
    intent = ("mesh.yaml", 2, "InboundIntent", "httpbin")
    assert got == {
        (*intent, "spec.port"): "Input should be a valid integer",  # a quoted number
        (*intent, "spec.protocl"): "unknown field (did you mean 'protocol'?)",
        (*intent, "spec.clients[0].app"): "'Sleep' is not a DNS-1123 label (lower-case letters, "
        "digits and '-', starting and ending with a letter or digit, at most 63 characters)",
        (*intent, "spec.clients[0].accessPoints[0].path"): "unknown field (did you mean 'paths'?)",
        (*intent, "spec.loadBalancing.weights.c1"): "Input should be less than or equal to 100",
        ("mesh.yaml", 3, "App", "sleep", "apiVersion"):
            "must be 'meshbridge.dev/v1alpha1', not 'meshbridge.dev/v1'",
        ("mesh.yaml", 4, "", "c2", "kind"): "unknown kind 'Clustr' (did you mean 'Cluster'?)",
    }


def test_an_unknown_field_with_no_near_miss_lists_the_known_ones() -> None:
    problem = only_problem(CLUSTER + "spec: {zzz: 1}\n")
    assert (problem.kind, problem.name, problem.path) == ("Cluster", "c1", "spec.zzz")
    assert problem.message == "unknown field (known fields: gateway, kubeconfig)"
