"""`meshbridge credential add|list|delete` against a real `meshbridge serve`, and `apply
--server` of Clusters naming credentials (or, refused, files)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from apitest import LiveServer
from intents import doc
from tlsfiles import throwaway_key
from typer.testing import CliRunner

from meshbridge.cli import app
from meshbridge.server.tokens import create_token
from meshbridge.store import open_store

CLIENT_KEY = throwaway_key()  # made now: no key in the source tree


@pytest.fixture
def backend() -> str:
    return "sqlite"  # the client does not care which database the server has


@pytest.fixture
def run(live: Callable[..., LiveServer], db_url: str, monkeypatch: pytest.MonkeyPatch):
    server = live()
    store = open_store(db_url)
    tokens = {role: create_token(store, f"{role}-cli", role) for role in ("editor", "admin")}
    store.close()
    monkeypatch.setenv("MESHBRIDGE_SERVER", server.url)
    monkeypatch.delenv("MESHBRIDGE_SERVER_CA", raising=False)

    def invoke(role: str, *args: str):
        monkeypatch.setenv("MESHBRIDGE_TOKEN", tokens[role])
        return CliRunner().invoke(app, list(args), catch_exceptions=False)

    return invoke


def _kubeconfig_with_files(directory: Path) -> Path:
    """A kubeconfig as many tools write it: CA and client key pair in files beside it."""
    directory.mkdir()
    (directory / "ca.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nca\n")
    (directory / "client.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nclient\n")
    (directory / "client-key.pem").write_bytes(CLIENT_KEY)
    config = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [
            {"name": "prod", "cluster": {"server": "https://10.9.8.7:6443",
                                         "certificate-authority": "ca.pem"}},
            {"name": "dev", "cluster": {"server": "https://10.9.8.8:6443"}},
        ],
        "users": [
            {"name": "admin", "user": {"client-certificate": "client.pem",
                                       "client-key": str(directory / "client-key.pem")}},
            {"name": "dev", "user": {"exec": {"apiVersion": "v1", "command": "gcloud"}}},
        ],
        "contexts": [{"name": "prod", "context": {"cluster": "prod", "user": "admin"}},
                     {"name": "dev", "context": {"cluster": "dev", "user": "dev"}}],
        "current-context": "dev",
    }
    path = directory / "config"
    path.write_text(yaml.safe_dump(config))
    return path


def test_register_name_and_delete_credentials(run, tmp_path: Path) -> None:
    kubeconfig = _kubeconfig_with_files(tmp_path / "kube")

    # the whole file: its dev user runs a program, which the server refuses (exit 2, located)
    whole = run("admin", "credential", "add", "prod", "--kubeconfig", str(kubeconfig))
    assert whole.exit_code == 2, whole.stdout + whole.stderr
    assert f"{kubeconfig}#1 Credential/prod users[1].user.exec: runs a program" in whole.stderr

    added = run("admin", "credential", "add", "prod", "--kubeconfig", str(kubeconfig),
                "--context", "prod")
    assert added.exit_code == 0, added.stderr
    assert "credential prod registered (contexts: prod)" in added.stdout
    listed = run("admin", "credential", "list")
    assert listed.exit_code == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith("prod"))
    assert row.split()[:4] == ["prod", "*prod", "https://10.9.8.7:6443", "client-certificate"]
    assert CLIENT_KEY.decode().splitlines()[1] not in listed.stdout + added.stdout
    assert base64.b64encode(CLIENT_KEY).decode() not in listed.stdout

    # editors cannot
    editor = run("editor", "credential", "add", "x", "--kubeconfig", str(kubeconfig),
                 "--context", "prod")
    assert editor.exit_code == 1 and "403" in editor.stderr
    assert run("editor", "credential", "list").exit_code == 1

    # a Cluster naming a file is refused, located in the user's own file
    cluster = doc("Cluster", "east", {"gateway": {"address": "10.0.0.1"},
                                      "kubeconfig": {"path": str(kubeconfig)}})
    mesh = tmp_path / "cluster.yaml"
    mesh.write_text(yaml.safe_dump(cluster))
    refused = run("editor", "apply", "-f", str(mesh))
    assert refused.exit_code == 2
    assert (f"{mesh}#1 Cluster/east spec.kubeconfig.path: a meshbridge server reads no "
            "kubeconfig file") in refused.stderr
    cluster["spec"]["kubeconfig"] = {"credential": "prod"}
    mesh.write_text(yaml.safe_dump(cluster))
    applied = run("editor", "apply", "-f", str(mesh))
    assert applied.exit_code == 0, applied.stderr

    in_use = run("admin", "credential", "delete", "prod")
    assert in_use.exit_code == 1 and "named by the Cluster east" in in_use.stderr
    assert run("editor", "delete", "cluster", "east").exit_code == 0
    deleted = run("admin", "credential", "delete", "prod")
    assert deleted.exit_code == 0 and "credential prod deleted" in deleted.stdout
    assert "no credentials registered" in run("admin", "credential", "list").stderr


def test_a_credential_named_locally_is_explained(cli, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's own apply reads kubeconfig files: a Cluster naming a server's credential
    is reported as such, not as a missing kubeconfig."""
    cluster = doc("Cluster", "east", {"gateway": {"address": "10.0.0.1"},
                                      "kubeconfig": {"credential": "prod"}})
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(yaml.safe_dump_all([doc("Mesh", "m"), cluster]))
    monkeypatch.setenv("COLUMNS", "400")  # the report's table, not cut
    result = cli("apply", "-f", str(mesh))
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "spec.kubeconfig.credential names a credential registered on a meshbridge server" \
        in result.stdout + result.stderr
