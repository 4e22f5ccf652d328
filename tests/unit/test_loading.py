"""The one strict reader (loading.py): what it reads, what it refuses, and that every edge gets
the same verdict and message from it.

Every intent document is read by ``loading``'s loader, which resolves each distinct plain scalar
once; a port written ``80`` must stay an int, ``"80"`` a string, ``true`` a bool, ``~`` None.
The reference is ``yaml.load_all(text, Loader=CSafeLoader)``.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from typing import Any

import pytest
import yaml
from hostile import ESCAPES, HOSTILE, alias_bomb, json_texts, raw_bytes, yaml_texts
from hypothesis import given, settings
from hypothesis import strategies as st
from plaindata import plain

from meshbridge.errors import BadRequest, InvalidInput, Problem
from meshbridge.limits import Limits
from meshbridge.loading import (
    BODIES,
    Source,
    _StrictLoader,
    load,
    load_source,
    parse_body,
    parse_config,
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


# ------------------------------------------------------------- issue 26: hostile input, limits


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_input_is_one_located_problem(case: str) -> None:
    """Each is refused while it is read, as one problem naming where and why: never expanded,
    converted or recursed into (the CLI and a process limit: tests/unit/cli)."""
    hostile = HOSTILE[case]
    try:
        text = hostile.text.decode("utf-8")
    except UnicodeDecodeError:
        with pytest.raises(BadRequest, match=hostile.why):
            parse_body(hostile.text, hostile.ctype)
        return
    if hostile.ctype == "application/json":
        with pytest.raises(BadRequest) as unreadable:
            parse_body(hostile.text, hostile.ctype)
        assert hostile.why in str(unreadable.value)
        return
    with pytest.raises(InvalidInput) as caught:
        load([Source("mesh.yaml", text)])
    lines = str(caught.value)
    assert hostile.why in lines
    assert len(lines) < 2000, "the message echoes the input"
    assert not any(c in lines for c in "\x1b\x07"), "a control character reached the message"


def test_an_alias_bomb_is_refused_where_the_aliases_outgrow_the_limit() -> None:
    problem = only_problem(alias_bomb("kind"))
    assert problem.message == (
        "YAML error at line 5, column 18: the document's aliases stand for more than 100,000 "
        "values and characters (an alias bomb?)")


def test_aliases_within_the_limit_are_read_as_yaml_reads_them() -> None:
    text = CLUSTER.replace("metadata: {name: c1}", "metadata: {name: c1, labels: &l {a: b}}") + (
        "spec:\n  gateway: &gw {address: 10.0.0.1}\n")
    intents = load([Source("mesh.yaml", text)])
    assert intents.clusters[0].obj.spec.gateway.address == "10.0.0.1"
    shared = "base: &b {x: 1, y: [1, 2]}\nagain: [*b, *b]\ns: &s text\nt: *s\n"
    assert read_yaml(shared, "m.yaml") == ([(1, yaml.safe_load(shared))], None)


def roomy(**limits: int) -> Limits:
    """Limits far above the test's input, but for those given."""
    return replace(Limits(bytes=10**6, nodes=10**6), **limits)


@pytest.mark.parametrize(("limit", "text", "message"), [
    (Limits(bytes=100, nodes=10), "a: " + "x" * 200, "the input is larger than 100 bytes"),
    (Limits(bytes=10**6, nodes=5), "[1, 2, 3, 4, 5, 6]",
     "YAML error at line 1, column 14: more than 5 values in the input"),
    (roomy(document_nodes=3), "a: [1, 2]\n",
     "YAML error at line 1, column 5: more than 3 values in one document"),
    (roomy(documents=2), "a: 1\n---\nb: 2\n---\nc: 3\n",
     "YAML error at line 4, column 1: more than 2 documents in the input"),
    (roomy(depth=2), "a: {b: {c: 1}}\n",
     "YAML error at line 1, column 8: nested too deeply (more than 2 levels)"),
    (roomy(scalar=3), "a: abcd\n",
     "YAML error at line 1, column 4: a value of 4 characters (at most 3)"),
    (roomy(int_digits=3), "a: 1_234\n",
     "YAML error at line 1, column 4: an integer of 4 digits (at most 3)"),
    (roomy(alias_size=10), "a: &a [x, y, z]\nb: [*a, *a, *a]\n",
     "YAML error at line 2, column 9: the document's aliases stand for more than 10 values and "
     "characters (an alias bomb?)"),
])
def test_every_limit_of_a_yaml_source_is_a_located_problem(limit: Limits, text: str,
                                                           message: str) -> None:
    _, problem = read_yaml(text, "m.yaml", limit)
    assert problem is not None and problem.message == message


@pytest.mark.parametrize(("limit", "body", "message"), [
    (Limits(bytes=10, nodes=10), b'{"a": "bcdefghijkl"}', "the input is larger than 10 bytes"),
    (Limits(bytes=10**6, nodes=5), b"[1, 2, 3, 4, 5, 6]",
     "JSON error: more than 5 values in the input"),
    (Limits(bytes=10**6, nodes=5), b'["a,b,c,d,e,f,g", 1]', None),  # commas in a string
    (roomy(nodes=100, documents=2), b"[{}, {}, {}]",
     "JSON error: more than 2 documents in the input"),
    (roomy(nodes=100, depth=2), b'{"a": {"b": {"c": 1}}}',
     "JSON error: nested too deeply (more than 2 levels)"),
    (roomy(nodes=100, scalar=3), b'{"abcd": 1}',
     "JSON error: a value of 4 characters (at most 3)"),
    (roomy(nodes=100, int_digits=3), b'{"a": -1234}',
     "JSON error: an integer of 4 digits (at most 3)"),
])
def test_every_limit_of_a_json_body_is_a_bad_request(limit: Limits, body: bytes,
                                                     message: str | None) -> None:
    if message is None:
        assert parse_body(body, "application/json", limits=limit)
        return
    with pytest.raises(BadRequest) as caught:
        parse_body(body, "application/json", limits=limit)
    assert str(caught.value) == f"<body>#1 document: {message}"


def test_documents_before_the_one_over_a_limit_are_still_checked() -> None:
    text = CLUSTER.replace("c1", "C1") + "---\n" + alias_bomb("kind")
    with pytest.raises(InvalidInput) as caught:
        load([Source("mesh.yaml", text)])
    assert [(p.document, p.path) for p in caught.value.problems] == [(1, "metadata.name"),
                                                                     (2, "")]


def test_messages_quote_input_bounded_and_escaped() -> None:
    long_kind = "K" * 10_000
    problem = only_problem(CLUSTER.replace("kind: Cluster", f"kind: {long_kind}"))
    assert problem.message.startswith("unknown kind 'KKKK") and len(problem.message) < 200
    problem = only_problem(CLUSTER.replace("metadata: {name: c1}", "metadata: {name: c1}\n"
                                           f"? \"{ESCAPES.encode('unicode_escape').decode()}\"\n"
                                           ": 1"))
    assert problem.path == "\\x1b]0;pwned\\x07\\x1b[31m"
    line = str(Problem("m\x1b.yaml", 1, "App", "a\x1bb" * 1000, "spec.\x07", "bad \x1b"))
    assert "\x1b" not in line and "\x07" not in line
    assert line.startswith("m\\x1b.yaml#1 App/a\\x1bba\\x1bb") and len(line) < 1500


def test_a_kubeconfig_is_read_by_the_same_reader_without_quoting_it() -> None:
    secret = "token-abc123"
    for text in (f"users: [{{name: u, user: {{token: {secret}}}}}]\nusers: 1\n",
                 f"users: [{{name: u, user: {{token: '{secret}}}}}]\n"):
        with pytest.raises(InvalidInput) as caught:
            parse_config(text.encode(), "kc", Limits(bytes=10**6, nodes=100))
        (problem,) = caught.value.problems
        assert problem.message.startswith("YAML error at line")
        assert secret not in str(problem)
    bomb = "a: &a [x, x, x]\nb: [*a, *a]\n"
    with pytest.raises(InvalidInput, match="alias bomb"):
        parse_config(bomb.encode(), "kc", roomy(nodes=100, alias_size=3))


# ---------------------------------------------------------------- any structure, any bytes


@settings(max_examples=150, deadline=None)
@given(st.one_of(yaml_texts, json_texts))
def test_any_text_is_documents_or_problems_never_an_exception(text: str) -> None:
    problems: tuple[Problem, ...] = ()
    try:
        load([Source("any.yaml", text)])
    except InvalidInput as exc:
        problems = exc.problems
    assert all("\x1b" not in str(p) for p in problems)
    for ctype in ("application/json", "application/yaml", None):
        with contextlib.suppress(BadRequest):
            parse_body(text.encode("utf-8", "surrogatepass"), ctype)


@settings(max_examples=150, deadline=None)
@given(raw_bytes)
def test_any_bytes_are_documents_or_a_bad_request(data: bytes) -> None:
    for ctype in ("application/json", "application/yaml", None):
        with contextlib.suppress(BadRequest):
            parse_body(data, ctype)
    with contextlib.suppress(InvalidInput):
        parse_config(data, "kc", BODIES)
