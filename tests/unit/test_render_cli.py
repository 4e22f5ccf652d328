"""The render and validate commands as users run them: inputs, output tree, state, exit codes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import yaml
from helpers import EXAMPLES, read_tree, write_docs


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_rendering_twice_gives_identical_bytes(cli, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli("render", "-f", str(EXAMPLES / "helloworld-lb"), "-o", str(a)).exit_code == 0
    assert cli("render", "-f", str(EXAMPLES / "helloworld-lb"), "-o", str(b)).exit_code == 0
    assert _digest(a) == _digest(b)


def test_output_dir_is_rewritten_nothing_stale(cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert cli("render", "-f", str(EXAMPLES / "sleep-httpbin"), "-o", str(out)).exit_code == 0
    assert (out / "cluster2").is_dir()
    docs = [d for d in yaml.safe_load_all((EXAMPLES / "sleep-httpbin" / "mesh.yaml").read_text())
            if d["metadata"]["name"] != "cluster2"]
    src = write_docs(tmp_path / "in" / "one.yaml", docs)
    assert cli("render", "-f", str(src), "-o", str(out)).exit_code == 0
    assert not (out / "cluster2").exists()
    assert sorted(p.name for p in out.iterdir()) == [".meshbridge-render", "cluster1"]


def test_refuses_to_wipe_a_directory_it_did_not_write(cli, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    result = cli("render", "-f", str(EXAMPLES / "sleep-httpbin"), "-o", str(out))
    assert result.exit_code == 1
    assert "not written by meshbridge" in result.stderr
    assert (out / "notes.txt").read_text() == "precious"


def test_stdin_and_directories_and_files_mix(cli, tmp_path: Path) -> None:
    text = (EXAMPLES / "sleep-httpbin" / "apps.yaml").read_text()
    out = tmp_path / "out"
    result = cli("render", "-f", str(EXAMPLES / "sleep-httpbin" / "mesh.yaml"), "-f", "-",
                 "-o", str(out), input=text)
    assert result.exit_code == 0, result.stderr
    tree = read_tree(out)
    assert "cluster1/foo/serviceentry.httpbin.bar.cluster2.yaml" in tree


def test_validate_reports_success(cli) -> None:
    result = cli("validate", "-f", str(EXAMPLES / "helloworld-lb"))
    assert result.exit_code == 0
    assert "valid: 5 documents" in result.stderr


def test_state_option_and_env(cli, tmp_path: Path, monkeypatch) -> None:
    state = tmp_path / "custom" / "s.db"
    result = cli("render", "-f", str(EXAMPLES / "egress"), "-o", str(tmp_path / "o"),
                 "--state", str(state))
    assert result.exit_code == 0, result.stderr
    assert state.exists()
    assert oct(state.stat().st_mode & 0o777) == "0o600"
    monkeypatch.delenv("MESHBRIDGE_STATE")
    assert cli("render", "-f", str(EXAMPLES / "egress"), "-o", str(tmp_path / "o2")).exit_code == 0
    assert (tmp_path / ".meshbridge" / "state.db").exists(), "default state path not used"


def test_vips_survive_between_runs_when_intents_change(cli, tmp_path: Path) -> None:
    base = list(yaml.safe_load_all((EXAMPLES / "egress" / "mesh.yaml").read_text()))
    src = write_docs(tmp_path / "in" / "e.yaml", base)
    cli("render", "-f", str(src), "-o", str(tmp_path / "o"))
    mysql = tmp_path / "o" / "cluster1" / "default" / "serviceentry.mysql.yaml"
    first = yaml.safe_load(mysql.read_text())["spec"]["addresses"]
    extra = {"apiVersion": "meshbridge.dev/v1alpha1", "kind": "ExternalService",
             "metadata": {"name": "aaa", "namespace": "default"},
             "spec": {"hosts": ["aaa.example"], "ports": [{"number": 5432, "name": "pg"}],
                      "endpoints": [{"address": "172.16.0.9"}]}}
    write_docs(src, [extra, *base])
    cli("render", "-f", str(src), "-o", str(tmp_path / "o"))
    assert yaml.safe_load(mysql.read_text())["spec"]["addresses"] == first


def test_help_reads_like_a_tool(cli) -> None:
    result = cli("--help")
    assert result.exit_code == 0
    for command in ("validate", "render"):
        assert command in result.stdout
    render_help = cli("render", "--help").stdout
    assert "--state" in render_help and "MESHBRIDGE_STATE" in render_help
    assert "-o" in render_help


def test_secret_free_manifests_are_world_readable_only_if_not_secret(cli, tmp_path: Path) -> None:
    out = tmp_path / "o"
    args = ("render", "-f", str(EXAMPLES / "sleep-httpbin"), "-o", str(out), "--include-secrets")
    assert cli(*args).exit_code == 0
    secrets = 0
    for path in out.rglob("*.yaml"):
        secret = yaml.safe_load(path.read_text())["kind"] == "Secret"
        secrets += secret
        mode = os.stat(path).st_mode & 0o777
        assert mode == (0o600 if secret else 0o644), path
    assert secrets == 2
