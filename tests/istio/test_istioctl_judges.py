"""Level 3: real istioctl accepts everything meshbridge renders.

What is judged: every example (each folder under examples/, found when the tests are collected, so
a new example is covered without editing this file) in both Istio API versions meshbridge can write
(Mesh ``spec.istio.apiVersion``: v1beta1, the default, and v1), and the benchmarks' large
generated mesh (bench/meshgen defaults: 100 clusters, 2,000 servers with 2 clients each, every
third load-balanced over two clusters, plus 20 egress services: 8,121 intents, about 25,000
objects; ~20 s). Each is rendered with a fresh state
store in tmp_path, and each cluster's folder, on its own, must pass both of Istio's judges (see
``judges.py``):

- ``istioctl analyze``: no Error and no Warning message (its exit code with
  ``--failure-threshold=Warning`` must agree);
- ``istioctl validate``: exit 0 and every rendered file reported "is valid" (not "has warnings").

Info messages do not fail a test. Info is Istio's "worth knowing" level, below analyze's own
default failure threshold (Error) and below ours (Warning); it flags things that are not wrong,
and there are none for today's output. They are not hidden either: each one is raised as a pytest
warning (listed in the run's summary) and appears in any failure report, with istioctl's full
output for that folder.

``ALLOWED`` is the only way to accept an Error or Warning: one analyzer message code per entry,
with the written reason it is not about meshbridge's output. It is empty: nothing is excused.

Negative controls prove the judges can fail: a Gateway under the dotted name meshbridge wrote
before the fix of the naming scheme (IST0106, rejected by the webhook), a Gateway that validation
only warns about (IST0133), and a file istioctl cannot parse (which ``analyze -o json`` would
have passed silently).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from bench.meshgen import generate
from helpers import EXAMPLES, write_docs
from judges import IstioTools, Verdict, judge, judge_all

pytestmark = pytest.mark.istio

# Analyzer message code -> why it is not about meshbridge's output. Keep it empty unless a
# message is genuinely about istioctl's offline view (say, a check that needs the live cluster's
# pods), never to accept a problem in what we render.
ALLOWED: dict[str, str] = {}

EXAMPLE_CASES = sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir())
MESHBRIDGE_API = "meshbridge.dev/v1alpha1"
DEFAULT_API_VERSION = "v1beta1"
API_VERSIONS = [DEFAULT_API_VERSION, "v1"]
WORKERS = 2  # concurrent folders: each istioctl call is one process, the machine has 2 cores

Cli = Callable[..., Any]


def _render(cli: Cli, intents: Path, tmp_path: Path) -> list[Path]:
    """``meshbridge render`` with a fresh state store; one folder per cluster, holding all that
    lands in that cluster (the Secrets with private keys too, which apply sends)."""
    out = tmp_path / "out"
    result = cli(
        "render", "-f", str(intents), "-o", str(out), "--state", str(tmp_path / "state.db"),
        "--include-secrets", *_placed_everywhere(intents, tmp_path),
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    folders = sorted(p for p in out.iterdir() if p.is_dir())
    assert folders, f"render wrote no cluster folder: {result.stdout}"
    return folders


def _placed_everywhere(intents: Path, tmp_path: Path) -> list[str]:
    """For an example with discovered Apps (``discover: {}``), ``--placement`` of a file that
    places each of them in every Cluster (local and cross-cluster routes, failover between
    clusters): render reads no cluster, and without a placement such an App runs nowhere."""
    docs = [doc for path in sorted(intents.glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]
    clusters = sorted(d["metadata"]["name"] for d in docs if d["kind"] == "Cluster")
    placed = [{"apiVersion": MESHBRIDGE_API, "kind": "App", "metadata": d["metadata"],
               "spec": {"clusters": clusters}}
              for d in docs if d["kind"] == "App" and "discover" in d.get("spec", {})]
    if not placed:
        return []
    path = tmp_path / "placement.yaml"
    path.write_text(yaml.safe_dump_all(placed, sort_keys=False))
    return ["--placement", str(path)]


def _with_api_version(example: Path, api_version: str, into: Path) -> Path:
    """The example's intents, with Mesh spec.istio.apiVersion set (a Mesh added if it has none)."""
    docs = [
        doc
        for path in sorted(example.iterdir())
        if path.suffix in (".yaml", ".yml")
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
    meshes = [doc for doc in docs if doc["kind"] == "Mesh"]
    if not meshes:
        meshes = [{"apiVersion": MESHBRIDGE_API, "kind": "Mesh", "metadata": {"name": "default"}}]
        docs.append(meshes[0])
    meshes[0].setdefault("spec", {}).setdefault("istio", {})["apiVersion"] = api_version
    write_docs(into / "intents.yaml", docs)
    return into


def _rendered(folders: list[Path], pattern: str) -> set[str]:
    """Every value of a regex group found in the rendered files (cheaper than parsing 3,000)."""
    found: set[str] = set()
    for folder in folders:
        for path in folder.rglob("*.yaml"):
            found.update(re.findall(pattern, path.read_text(), re.MULTILINE))
    return found


def _assert_clean(verdicts: list[Verdict]) -> None:
    """Fail with istioctl's full output for every rejected folder; surface the notes."""
    for verdict in verdicts:
        for note in verdict.notes:
            warnings.warn(f"{verdict.judge} {verdict.folder}: {note}", stacklevel=2)
    rejected = [v for v in verdicts if not v.clean]
    assert not rejected, "\n\n".join(v.report() for v in rejected)


@pytest.mark.parametrize("api_version", API_VERSIONS)
@pytest.mark.parametrize("example", EXAMPLE_CASES)
def test_every_cluster_of_an_example_passes_istioctl(
    example: str, api_version: str, cli: Cli, istio_tools: IstioTools, tmp_path: Path
) -> None:
    intents = EXAMPLES / example
    if api_version != DEFAULT_API_VERSION:
        intents = _with_api_version(intents, api_version, tmp_path / "intents")
    folders = _render(cli, intents, tmp_path)
    groups = _rendered(folders, r"^apiVersion: (?:networking|security)\.istio\.io/(\w+)$")
    assert groups == {api_version}, f"Istio objects rendered as {groups}, not {api_version}"
    _assert_clean(judge_all(istio_tools.istioctl, folders, ALLOWED, WORKERS))


def test_every_cluster_of_a_generated_mesh_passes_istioctl(
    cli: Cli, istio_tools: IstioTools, tmp_path: Path
) -> None:
    # The benchmarks' large mesh (bench/meshgen.py defaults): 100 clusters, 2,000 servers with
    # 2 clients each, every third load-balanced; plus 20 egress services.
    docs = generate(egress=20)
    intents = write_docs(tmp_path / "intents" / "mesh.yaml", docs)
    folders = _render(cli, intents, tmp_path)
    assert [f.name for f in folders] == [f"c{i:03d}" for i in range(100)]
    kinds = _rendered(folders, r"^kind: (\w+)$")
    assert {"ServiceEntry", "DestinationRule", "Gateway", "VirtualService"} <= kinds, kinds
    _assert_clean(judge_all(istio_tools.istioctl, folders, ALLOWED, WORKERS))


# Objects each judge must reject, and what it must say: (file text, analyzer message, validate's).
BAD_OBJECTS: dict[str, tuple[str, tuple[str, str, str], str]] = {
    # A server Gateway under meshbridge's pre-fix name: metadata.name must be a DNS-1123 label.
    "gateway-name-with-dots": (
        """\
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: httpbin.bar.cluster2, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
    - port: {number: 15443, name: tls, protocol: TLS}
      tls: {mode: AUTO_PASSTHROUGH}
      hosts: [httpbin.bar.cluster2]
""",
        ("Error", "IST0106", 'invalid gateway name: "httpbin.bar.cluster2"'),
        'invalid gateway name: "httpbin.bar.cluster2"',
    ),
    # Accepted by the webhook with a warning: a warning must fail the judges too.
    "certificate-on-passthrough": (
        """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: passthrough, namespace: istio-system}
spec:
  selector: {istio: ingressgateway}
  servers:
    - port: {number: 443, name: tls, protocol: TLS}
      tls: {mode: PASSTHROUGH, credentialName: app-credential}
      hosts: [app.example.com]
""",
        ("Warning", "IST0133", "PASSTHROUGH mode does not use certificates"),
        "has warnings",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_OBJECTS))
def test_the_judges_reject_a_bad_object(case: str, istio_tools: IstioTools, tmp_path: Path) -> None:
    text, (level, code, says), validate_says = BAD_OBJECTS[case]
    folder = tmp_path / "cluster1"
    (folder / "istio-system").mkdir(parents=True)
    (folder / "istio-system" / "gateway.yaml").write_text(text)
    analyzed, validated = judge(istio_tools.istioctl, folder, ALLOWED)
    expected = [m for m in analyzed.messages if (m.level, m.code) == (level, code)]
    assert not analyzed.clean, analyzed.report()
    assert any(says in m.text for m in expected), analyzed.report()
    assert not validated.clean, validated.report()
    assert validate_says in validated.stdout + validated.stderr, validated.report()


def test_the_judges_reject_a_file_they_cannot_parse(
    istio_tools: IstioTools, tmp_path: Path
) -> None:
    folder = tmp_path / "cluster1"
    folder.mkdir()
    (folder / "broken.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n")
    analyzed, validated = judge(istio_tools.istioctl, folder, ALLOWED)
    assert not analyzed.clean, analyzed.report()
    assert analyzed.returncode not in (0, 79), analyzed.report()
    assert not validated.clean, validated.report()
