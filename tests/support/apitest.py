"""Clients of a meshbridge server in the tests: in-process (:class:`Api`, FastAPI's TestClient
with a role's token) and a real ``meshbridge serve`` process on 127.0.0.1 (:class:`LiveServer`).
The fixtures that make them are in ``tests/api/conftest.py``."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pgcluster import free_port

from meshbridge.server.tokens import create_token
from meshbridge.store import SqlStore, open_store


@dataclass
class Api:
    """An in-process client with a role's token already in its headers."""

    http: TestClient
    tokens: dict[str, str]

    def as_(self, role: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}

    def get(self, url: str, role: str | None = "viewer", **kw) -> httpx.Response:
        return self.http.get(url, headers={**self.as_(role), **kw.pop("headers", {})}, **kw)

    def put(self, url: str, body: dict, role: str | None = "editor", **kw) -> httpx.Response:
        return self.http.put(url, json=body, headers={**self.as_(role), **kw.pop("headers", {})}, **kw)

    def delete(self, url: str, role: str | None = "editor", **kw) -> httpx.Response:
        return self.http.delete(url, headers={**self.as_(role), **kw.pop("headers", {})}, **kw)

    def apply(self, text: str, role: str | None = "editor", ctype: str = "application/yaml",
              **kw) -> httpx.Response:
        headers = {**self.as_(role), "Content-Type": ctype}
        return self.http.post("/api/v1/apply", content=text.encode(), headers=headers, **kw)



def api_routes(routes: list) -> list[APIRoute]:
    """Every APIRoute of an app, through included routers (FastAPI keeps those as one route
    each)."""
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif hasattr(route, "original_router"):
            found.extend(api_routes(route.original_router.routes))
    return found


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_server(db: str, log: Path, port: int | None = None, *args: str,
                 verify: ssl.SSLContext | None = None) -> LiveServer:
    """``meshbridge serve`` in its own process; returns once /readyz answers. Without
    certificate material unless ``--pki`` is passed in ``args``. With ``verify`` (the args
    then give --tls-cert/--tls-key) it is reached over https, verified by that context."""
    port = port or free_port()
    env = {**os.environ, "MESHBRIDGE_DB": db}
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "meshbridge.cli.server", "serve", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning", *(args or ("--no-pki",))],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    url = f"{'https' if verify else 'http'}://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"meshbridge serve exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1, verify=verify or True).status_code == 200:
                return LiveServer(url, process)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"meshbridge serve did not start: {log.read_text()[-2000:]}")


def viewer_cli_server(start: Callable[..., LiveServer], db_url: str,
                      monkeypatch: pytest.MonkeyPatch,
                      prepare: Callable[[SqlStore], None]) -> LiveServer:
    """A live server on the database ``prepare`` filled, with ``MESHBRIDGE_TOKEN`` set to a
    viewer's token, for ``meshbridge ... --server URL`` run in-process."""
    store = open_store(db_url)
    try:
        prepare(store)
        token = create_token(store, "viewer-cli", "viewer")
    finally:
        store.close()
    server = start()
    monkeypatch.setenv("MESHBRIDGE_TOKEN", token)
    return server
