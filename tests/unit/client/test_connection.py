"""The client never sends a token in clear text off this machine, and refuses before it
connects: no name is looked up, no socket is opened."""

from __future__ import annotations

import socket

import pytest

from meshbridge.client import ServerClient, check_server_url
from meshbridge.errors import UnsafeConnection
from meshbridge.loopback import is_loopback


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "127.0.0.2", "127.255.0.9", "::1", "[::1]", "localhost", "LOCALHOST",
     "localhost."],
)
def test_loopback_spellings(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host",
    ["0.0.0.0", "::", "10.0.0.1", "192.0.2.7", "example.invalid", "localhost.example.com",
     "meshbridge.internal", "", "api.localhost"],  # as kubectl: *.localhost depends on DNS
)
def test_anything_else_is_not_loopback(host: str) -> None:
    assert not is_loopback(host)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Any name lookup or connection fails the test (and sends nothing)."""
    attempts: list[str] = []

    def refuse(*args, **kwargs):
        attempts.append(repr(args[:2]))
        raise AssertionError(f"a connection was attempted: {args[:2]!r}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


@pytest.mark.parametrize(
    "url", ["http://example.invalid", "http://example.invalid:8080/", "http://192.0.2.7:80",
            "http://[2001:db8::1]:8080", "HTTP://example.invalid"]
)
def test_a_token_is_not_sent_over_plain_http_off_loopback(url: str, no_network: list[str]) -> None:
    with pytest.raises(UnsafeConnection, match="refusing to send the API token over plain HTTP"):
        ServerClient(url, "mbt_0123456789ab_" + "x" * 43)
    assert no_network == []


def test_the_refusal_names_neither_token_nor_password(no_network: list[str]) -> None:
    token = "mbt_0123456789ab_" + "s" * 43
    with pytest.raises(UnsafeConnection) as caught:
        check_server_url("http://alice:hunter2@example.invalid:8080", token)
    assert "hunter2" not in str(caught.value) and token not in str(caught.value)
    assert "https://example.invalid:8080" in str(caught.value)


@pytest.mark.parametrize("url", ["ftp://example.invalid", "example.invalid:8080", "//x", ""])
def test_only_http_urls(url: str, no_network: list[str]) -> None:
    with pytest.raises(UnsafeConnection, match="server URL"):
        check_server_url(url, "t")


def test_https_and_loopback_http_are_accepted(no_network: list[str]) -> None:
    assert check_server_url("https://meshbridge.example:8443", "t").host == "meshbridge.example"
    assert check_server_url("http://127.0.0.1:8080", "t").port == 8080
    assert check_server_url("http://[::1]:8080", "t").host == "::1"
    assert check_server_url("http://example.invalid", None).host == "example.invalid"  # no token


def test_a_missing_server_ca_file_is_named(tmp_path, no_network: list[str]) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(UnsafeConnection, match=f"cannot use the server CA file {missing}"):
        ServerClient("https://meshbridge.example", "t", server_ca=missing)


@pytest.mark.parametrize(
    "args",
    [
        ["get", "clusters"],
        ["delete", "cluster", "c1"],
        ["render", "-o", "out"],
        ["apply", "-f", "mesh.yaml"],
    ],
)
def test_cli_commands_refuse_before_connecting(
    cli, tmp_path, monkeypatch: pytest.MonkeyPatch, no_network: list[str], args: list[str]
) -> None:
    (tmp_path / "mesh.yaml").write_text(
        "apiVersion: meshbridge.dev/v1alpha1\nkind: Cluster\nmetadata: {name: c1}\n"
        "spec: {gateway: {address: 10.0.0.1}}\n"
    )
    monkeypatch.setenv("MESHBRIDGE_SERVER", "http://example.invalid:8080")
    monkeypatch.setenv("MESHBRIDGE_TOKEN", "mbt_0123456789ab_" + "x" * 43)
    result = cli(*args)
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "refusing to send the API token over plain HTTP to example.invalid" in result.stderr
    assert "https://example.invalid:8080" in result.stderr
    assert no_network == []
    assert not (tmp_path / "out").exists()
