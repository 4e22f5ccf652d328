"""The same tricky documents given to ``meshbridge validate -f FILE`` and to a server's
``POST /api/v1/apply`` get the same verdict and the same message, at the same field path: both
read through ``loading`` (docs/architecture.md, "The compile pipeline").

Verdicts correspond as CLI exit 0 <-> 200 and exit 2 <-> 422, or <-> 400 for a body the server
cannot read at all (YAML it cannot parse, a duplicate or complex key). The CLI prints one
``FILE#N Kind/name path: message`` line per problem on stderr; the server answers
``{"errors": [{"document", "path", "message", "source", "index", "kind", "name"}]}``, or for a
400 one message that is the problem's line with ``<body>`` for the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from apitest import Api

HEAD = "apiVersion: meshbridge.dev/v1alpha1\nkind: Cluster\n"
CLUSTER = HEAD + "metadata: {name: c1}\nspec:\n  gateway: {address: 10.0.0.1}\n"


@dataclass(frozen=True)
class Case:
    id: str
    text: str
    verdict: int  # the HTTP status; the CLI's exit code follows from it
    expect: tuple[str, ...] = ()  # what the problem lines say, in order (file name left out)
    ctype: str = "application/yaml"
    file: str = "mesh.yaml"


CASES = [
    Case("valid", CLUSTER + "---\n" + HEAD.replace("Cluster", "App")
         + "metadata: {name: sleep, namespace: foo}\nspec: {clusters: [c1]}\n", 200),
    Case("valid-json", json.dumps({"apiVersion": "meshbridge.dev/v1alpha1", "kind": "Cluster",
                                   "metadata": {"name": "c1"}}),
         200, ctype="application/json", file="mesh.json"),
    Case("duplicate-as-written", HEAD + "metadata: {name: c1, name: c2}\n", 400,
         ("#1 document: YAML error at line 3, column 22: duplicate key 'name'",)),
    Case("duplicate-on-true", CLUSTER + "  on: 1\n  true: 2\n", 400,
         ("#1 document: YAML error at line 7, column 3: duplicate key 'true'",)),
    Case("duplicate-yes-on", HEAD + "metadata:\n  name: c1\n  labels: {yes: a, On: b}\n", 400,
         ("#1 document: YAML error at line 5, column 20: duplicate key 'On'",)),
    Case("one-and-quoted-one", HEAD + "metadata:\n  name: c1\n  labels: {'1': a, 1: b}\n", 422,
         ("#1 Cluster/c1 metadata.labels[1]: Input should be a valid string",)),
    Case("misspelt-field", HEAD + "metadata: {name: c1}\nspec: {gatway: {address: 10.0.0.1}}\n",
         422, ("#1 Cluster/c1 spec.gatway: unknown field (did you mean 'gateway'?)",)),
    Case("nested-misspelt-field", HEAD + "metadata: {name: c1}\n"
         "spec: {gateway: {adress: 10.0.0.1}}\n", 422,
         ("#1 Cluster/c1 spec.gateway.adress: unknown field (did you mean 'address'?)",)),
    Case("wrong-kind", CLUSTER.replace("kind: Cluster", "kind: Clustr"), 422,
         ("#1 document kind: unknown kind 'Clustr' (did you mean 'Cluster'?)",)),
    Case("bad-api-version", CLUSTER.replace("v1alpha1", "v1"), 422,
         ("#1 Cluster/c1 apiVersion: must be 'meshbridge.dev/v1alpha1', not 'meshbridge.dev/v1'",)),
    Case("quoted-port", CLUSTER.replace("10.0.0.1}", "10.0.0.1, port: '32001'}"), 422,
         ("#1 Cluster/c1 spec.gateway.port: Input should be a valid integer",)),
    Case("complex-key", CLUSTER + "  ? [x]\n  : 1\n", 400,
         ("#1 document: YAML error at line 6, column 5: a mapping key must be a plain scalar, "
          "not a list or a mapping",)),
    Case("syntax-error-in-second-document", CLUSTER + "---\nkind: [App\n", 400,
         ("#2 document: YAML error at line 8, column 1: did not find expected ',' or ']'",)),
    Case("not-a-mapping", "- a\n- b\n", 422,
         ("#1 document: a document must be a mapping, not list",)),
    Case("two-documents-two-problems",
         CLUSTER.replace("c1", "C1") + "---\n" + CLUSTER.replace("address", "adress"), 422,
         ("#1 Cluster/C1 metadata.name: 'C1' is not a DNS-1123 label (lower-case letters, "
          "digits and '-', starting and ending with a letter or digit, at most 63 characters)",
          "#2 Cluster/c1 spec.gateway.adress: unknown field (did you mean 'address'?)")),
]


def problem_lines(stderr: str, src: Path) -> list[str]:
    """The CLI's problem lines, each without the file name it starts with."""
    lines = [line for line in stderr.splitlines() if line and not line.startswith("error: ")]
    assert all(line.startswith(f"{src}#") for line in lines), stderr
    return [line[len(str(src)):] for line in lines]


def answered_lines(answer: dict) -> list[str]:
    """The server's problems as the CLI writes them, each without ``<body>``."""
    lines = []
    for item in answer["errors"]:
        ident = f"{item['kind']}/{item['name']}" if item["kind"] else "document"
        assert item["source"] == "<body>"
        assert item["document"] == f"<body>#{item['index']} {ident}"
        path = f" {item['path']}" if item["path"] else ""
        lines.append(f"#{item['index']} {ident}{path}: {item['message']}")
    return lines


def both(cli, api: Api, tmp_path: Path, case: Case) -> tuple[int, list[str], int, list[str]]:
    """CLI exit code and problem lines, HTTP status and problem lines, for ``case``."""
    src = tmp_path / "intents" / case.file
    src.parent.mkdir()
    src.write_text(case.text)
    run = cli("validate", "-f", str(src))
    answer = api.apply(case.text, ctype=case.ctype)
    if answer.status_code == 200:
        return run.exit_code, problem_lines(run.stderr, src), 200, []
    if answer.status_code == 400:
        (item,) = answer.json()["errors"]
        assert item["message"].startswith("<body>#"), item
        return run.exit_code, problem_lines(run.stderr, src), 400, [item["message"][6:]]
    return run.exit_code, problem_lines(run.stderr, src), answer.status_code, answered_lines(
        answer.json())


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_the_cli_and_the_server_give_the_same_verdict_and_message(
    cli, api: Api, tmp_path: Path, case: Case
) -> None:
    code, cli_lines, status, api_lines = both(cli, api, tmp_path, case)
    assert (code, status) == ((0, 200) if case.verdict == 200 else (2, case.verdict))
    assert cli_lines == api_lines == list(case.expect)


def test_a_json_document_with_a_key_given_twice_gets_the_same_verdict(
    cli, api: Api, tmp_path: Path
) -> None:
    text = ('{"apiVersion": "meshbridge.dev/v1alpha1", "kind": "Cluster", '
            '"metadata": {"name": "east", "name": "west"}}')
    case = Case("json-duplicate", text, 400, ctype="application/json", file="mesh.json")
    code, cli_lines, status, _ = both(cli, api, tmp_path, case)
    assert code == 2 and "duplicate key 'name'" in cli_lines[0]
    assert status == 400, "the server stored Cluster/west, dropping 'east' without a word"
    assert api.get("/api/v1/clusters/west").status_code == 404


@pytest.mark.parametrize(("data", "cli_says", "server_says"), [
    (b"", "no intent document in the input (it is empty)", "the body holds no document"),
    (b"# only a comment\n---\n", "no intent document in the input (it is empty)",
     "the body holds no document"),
    (CLUSTER.replace("c1", "caf\xe9").encode("latin-1"), "not UTF-8 text",
     "the body is not UTF-8 text"),
])
def test_input_with_no_document_to_read_is_refused_on_both_paths(
    cli, api: Api, tmp_path: Path, data: bytes, cli_says: str, server_says: str
) -> None:
    """No document at all: the CLI exits 2 naming the file, the server answers 400 (there is
    no document for a problem to locate); nothing is stored."""
    src = tmp_path / "mesh.yaml"
    src.write_bytes(data)
    run = cli("validate", "-f", str(src))
    assert run.exit_code == 2
    assert problem_lines(run.stderr, src) == [f"#0 document: {cli_says}"]
    answer = api.http.post("/api/v1/apply", content=data,
                           headers={**api.as_("editor"), "Content-Type": "application/yaml"})
    assert answer.status_code == 400
    assert answer.json()["errors"] == [{"message": server_says, "document": "", "path": ""}]
    assert api.get("/api/v1/clusters").json()["items"] == []
