"""meshbridge graph: a file for each format, bad input refused as validate refuses it."""

from __future__ import annotations

from pathlib import Path

from helpers import EXAMPLES


def test_graph_writes_html_and_svg_the_same_each_time(cli, tmp_path: Path) -> None:
    for name in ("mesh.html", "mesh.svg"):
        first = cli("graph", "-f", str(EXAMPLES / "sleep-httpbin"), "-o", name)
        assert first.exit_code == 0, first.stderr
        assert "2 clusters, 2 app instances, 1 call" in first.stdout
        data = (tmp_path / name).read_bytes()
        assert cli("graph", "-f", str(EXAMPLES / "sleep-httpbin"), "-o", name).exit_code == 0
        assert (tmp_path / name).read_bytes() == data
    assert (tmp_path / "mesh.svg").read_bytes().startswith(b"<svg")


def test_bad_input_exits_2_and_writes_nothing(cli, tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("apiVersion: meshbridge.dev/v1alpha1\nkind: App\n"
                                       "metadata: {name: a, namespace: n}\nspec: {clusters: [nowhere]}\n")
    result = cli("graph", "-f", "bad.yaml", "-o", "mesh.html")
    assert result.exit_code == 2 and "bad.yaml" in result.stderr
    assert not (tmp_path / "mesh.html").exists()
    assert cli("graph", "-f", str(EXAMPLES / "sleep-httpbin"), "-o", "mesh.png").exit_code == 2
