"""The CLI against a real server: apply, get, delete, render --server, token and db commands."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
import yaml
from apitest import LiveServer
from helpers import EXAMPLES
from typer.testing import CliRunner

from meshbridge.cli import remote, server
from meshbridge.cli.main import render
from meshbridge.output.writer import KeyPlacement
from meshbridge.server.tokens import create_token
from meshbridge.store import open_store


@pytest.fixture
def backend() -> str:
    return "sqlite"  # the client does not care which database the server has


def _app() -> typer.Typer:
    """The commands as the lead registers them on `meshbridge` (see docs/server.md)."""
    app = typer.Typer(no_args_is_help=True)
    app.command()(remote.apply)
    app.command()(remote.get)
    app.command()(remote.delete)
    app.command()(render)  # the real one: with --server (MESHBRIDGE_SERVER) it renders remotely
    app.add_typer(server.db_app)
    app.add_typer(server.token_app)
    return app


@pytest.fixture
def cli(live: Callable[..., LiveServer], db_url: str, monkeypatch: pytest.MonkeyPatch
        ) -> Callable[..., object]:
    srv = live()
    store = open_store(db_url)
    token = create_token(store, "cli-user", "editor")
    store.close()
    monkeypatch.setenv("MESHBRIDGE_SERVER", srv.url)
    monkeypatch.setenv("MESHBRIDGE_TOKEN", token)
    monkeypatch.setenv("MESHBRIDGE_DB", db_url)

    def run(*args: str, input: str | None = None):
        return CliRunner().invoke(_app(), list(args), input=input, catch_exceptions=False)

    return run


def _private_keys(root: Path) -> list[str]:
    """Files below ``root`` that hold a private key (in a Secret's data, base64)."""
    return [
        str(p.relative_to(root)) for p in sorted(root.rglob("*.yaml"))
        if any(b"PRIVATE KEY" in base64.b64decode(v)
               for d in yaml.safe_load_all(p.read_text()) if d
               for v in (d.get("data") or {}).values())
    ]


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_apply_get_delete(cli) -> None:
    r = cli("apply", "-f", str(EXAMPLES / "sleep-httpbin"))
    assert r.exit_code == 0, r.stderr
    assert "app foo/sleep created" in r.stdout
    assert "cluster cluster1 created" in r.stdout
    r = cli("get", "apps", "-A")
    assert r.exit_code == 0 and "sleep" in r.stdout and "NAMESPACE" in r.stdout
    r = cli("get", "app", "httpbin", "-n", "bar", "-o", "json")
    assert json.loads(r.stdout)["spec"]["clusters"] == ["cluster2"]
    r = cli("get", "clusters", "-o", "yaml")
    assert [d["metadata"]["name"] for d in yaml.safe_load_all(r.stdout)] == ["cluster1", "cluster2"]
    refused = cli("delete", "app", "httpbin", "-n", "bar")
    assert refused.exit_code == 1
    assert "inboundintents/httpbin" in refused.stderr
    assert cli("delete", "inboundintent", "httpbin", "-n", "bar").exit_code == 0
    assert cli("delete", "app", "httpbin", "-n", "bar").exit_code == 0
    missing = cli("get", "app", "httpbin", "-n", "bar")
    assert missing.exit_code == 1 and "not found" in missing.stderr
    assert cli("get", "widgets").exit_code == 2


def test_apply_problems_name_the_users_files(cli, tmp_path: Path) -> None:
    good = (EXAMPLES / "sleep-httpbin" / "mesh.yaml").read_text()
    path = tmp_path / "apps.yaml"
    path.write_text(yaml.safe_dump({
        "apiVersion": "meshbridge.dev/v1alpha1", "kind": "InboundIntent",
        "metadata": {"name": "x", "namespace": "foo"}, "spec": {"app": "ghost", "port": 80}}))
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(good)
    r = cli("apply", "-f", str(mesh), "-f", str(path))
    assert r.exit_code == 2
    assert f"{path}#1 InboundIntent/" in r.stderr and "ghost" in r.stderr
    typo = tmp_path / "typo.yaml"
    typo.write_text(good.replace("gateway:", "gatway:", 1))
    r = cli("apply", "-f", str(typo))
    assert r.exit_code == 2 and f"{typo}#" in r.stderr and "gatway" in r.stderr
    assert cli("get", "clusters").stdout.strip() == ""


def test_render_from_the_server_equals_a_local_render(cli, tmp_path: Path) -> None:
    from meshbridge.loading import Source
    from meshbridge.usecases import render as render_service

    assert cli("apply", "-f", str(EXAMPLES / "helloworld-lb")).exit_code == 0
    remote_out = tmp_path / "remote"
    r = cli("render", "-o", str(remote_out))
    assert r.exit_code == 0, r.stderr
    sources = [Source(str(p), p.read_text())
               for p in sorted((EXAMPLES / "helloworld-lb").glob("*.yaml"))]
    store = open_store(str(tmp_path / "local.db"))
    render_service.render(render_service.validate(sources), tmp_path / "local", store)
    store.close()
    assert _digest(remote_out) == _digest(tmp_path / "local")
    assert cli("render", "-o", str(remote_out), "-f", "x.yaml").exit_code == 2


def test_without_a_server_the_commands_say_so(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESHBRIDGE_SERVER")
    r = cli("apply", "-f", str(EXAMPLES / "sleep-httpbin"))
    assert r.exit_code == 2 and "--server" in r.stderr


def test_bad_token_and_unreachable_server(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHBRIDGE_TOKEN", "mbt_000000000000_" + "x" * 43)
    r = cli("get", "apps")
    assert r.exit_code == 1 and "401" in r.stderr
    monkeypatch.setenv("MESHBRIDGE_SERVER", "http://user:pw@127.0.0.1:1")
    r = cli("get", "apps")
    assert r.exit_code == 1 and "cannot reach" in r.stderr and "pw" not in r.stderr


def test_token_and_db_commands(cli) -> None:
    r = cli("token", "create", "--name", "ops", "--role", "admin")
    assert r.exit_code == 0 and r.stdout.startswith("mbt_")
    assert cli("token", "create", "--name", "ops", "--role", "admin").exit_code == 1
    assert cli("token", "create", "--name", "x", "--role", "root").exit_code == 2
    listed = cli("token", "list").stdout
    assert any(line.split()[:2] == ["ops", "admin"] for line in listed.splitlines())
    assert r.stdout.strip() not in listed
    assert cli("token", "revoke", "--name", "ops").exit_code == 0
    assert "revoked" in cli("token", "list").stdout
    up = cli("db", "upgrade")
    assert up.exit_code == 0 and "already at schema revision" in up.stdout


def test_render_from_a_server_with_pki_equals_render_on_its_store(
    live: Callable[..., LiveServer], db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With certificates: the server issues them into its store; `render --server` writes the
    same tree as a local `render` against that same store (and its key file)."""
    from meshbridge.loading import Source
    from meshbridge.usecases import render as render_service
    from meshbridge.usecases.pki import material_provider

    srv = live(None, "--pki")
    store = open_store(db_url)
    token = create_token(store, "pki-user", "editor")
    store.close()
    monkeypatch.setenv("MESHBRIDGE_SERVER", srv.url)
    monkeypatch.setenv("MESHBRIDGE_TOKEN", token)
    docs = [d for p in sorted((EXAMPLES / "external-mtls").glob("*.yaml"))
            for d in yaml.safe_load_all(p.read_text()) if d]
    assert not any(d["kind"] == "Mesh" for d in docs)
    docs.insert(0, {"apiVersion": "meshbridge.dev/v1alpha1", "kind": "Mesh",  # fast keys
                    "metadata": {"name": "default"},
                    "spec": {"rootCA": {"keyAlgorithm": "ECDSA-P256"}}})
    src = tmp_path / "in" / "mesh.yaml"
    src.parent.mkdir()
    src.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    run = lambda *a: CliRunner().invoke(_app(), list(a), catch_exceptions=False)  # noqa: E731
    assert run("apply", "-f", str(src)).exit_code == 0
    remote_out, remote_keys = tmp_path / "remote", tmp_path / "remote-keys"
    result = run("render", "-o", str(remote_out))  # by default: the keys left out
    assert result.exit_code == 0, result.stderr
    assert _private_keys(remote_out) == []
    assert ("left out 2 Secrets holding private keys (cacerts in 1 cluster, 1 ingress "
            "credential): not for a Git tree") in result.stderr
    result = run("render", "-o", str(remote_out), "--secrets-dir", str(remote_keys))
    assert result.exit_code == 0, result.stderr
    assert _private_keys(remote_out) == []
    assert sorted(_private_keys(remote_keys)) == [
        "cluster1/istio-system/secret.cacerts.yaml",
        "cluster1/istio-system/secret.httpbin.example.com-credential.yaml",
    ]
    for path in [remote_keys, *remote_keys.rglob("*")]:
        assert path.stat().st_mode & 0o777 == (0o700 if path.is_dir() else 0o600), path
    store = open_store(db_url)
    checked = render_service.validate([Source(str(src), src.read_text())])
    render_service.render(checked, tmp_path / "local", store, material_provider(db_url),
                          KeyPlacement(secrets_dir=tmp_path / "local-keys"))
    store.close()
    assert _digest(remote_out) == _digest(tmp_path / "local")
    assert _digest(remote_keys) == _digest(tmp_path / "local-keys")
    included = tmp_path / "included"
    result = run("render", "-o", str(included), "--include-secrets")
    assert result.exit_code == 0, result.stderr
    both = {**_digest(remote_out),
            **{rel: d for rel, d in _digest(remote_keys).items() if rel.endswith(".yaml")}}
    assert _digest(included) == both
    for rel in _private_keys(included):
        assert (included / rel).stat().st_mode & 0o777 == 0o600
    clash = run("render", "-o", str(included), "--secrets-dir", str(included / "keys"))
    assert clash.exit_code == 2 and "is inside the output directory" in clash.stderr
    assert _digest(included) == both, "a refused render changed the output"


def test_apply_dry_run_to_a_server_stores_nothing(cli, db_url: str, tmp_path: Path) -> None:
    """`meshbridge apply --server URL --dry-run` (the command users run) reports what the
    server would do and changes nothing there: no document, no revision, no audit entry (so
    no reconciler has anything to push)."""
    from meshbridge.cli import app as meshbridge

    def main(*args: str):
        return CliRunner().invoke(meshbridge, list(args), catch_exceptions=False)

    def server_state() -> tuple[object, ...]:
        store = open_store(db_url)
        try:
            with store.reading():
                return (store.revisions().resources, len(store.list_audit()),
                        sorted((r.kind, r.name, r.resource_version) for r in store.list_resources()))
        finally:
            store.close()

    empty = server_state()
    r = main("apply", "--dry-run", "-f", str(EXAMPLES / "sleep-httpbin"))
    assert r.exit_code == 0, r.stderr
    assert server_state() == empty
    assert "app foo/sleep created (dry run)" in r.stdout
    assert cli("get", "apps", "-A").stdout.strip() == ""

    assert main("apply", "-f", str(EXAMPLES / "sleep-httpbin")).exit_code == 0
    stored = server_state()
    apps = (EXAMPLES / "sleep-httpbin" / "apps.yaml").read_text()
    (tmp_path / "apps.yaml").write_text(apps.replace("clusters: [cluster2]", "clusters: [cluster1, cluster2]"))
    r = main("apply", "--dry-run", "-f", str(EXAMPLES / "sleep-httpbin" / "mesh.yaml"),
             "-f", str(tmp_path / "apps.yaml"))
    assert r.exit_code == 0, r.stderr
    assert server_state() == stored
    assert "app bar/httpbin configured (dry run)" in r.stdout
