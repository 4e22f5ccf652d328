"""The retry policy (kube/retry.py) as a user meets it, through lightkube's real client.

A small local HTTP server stands in for an API server that is busy: it answers as each test
scripts it (429 with ``Retry-After``, 503, nothing at all) and records what it was sent.
Everything between meshbridge and that server is the real thing: lightkube, httpx2, stamina.

No test measures time: each reads the waits the policy schedules, as stamina reports them to
its retry hooks before it sleeps (``waits``), so a busy machine cannot fail them.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest
import stamina
import yaml

from meshbridge.kube import ClusterAccess, MeshRef, ReconcileOptions, read_cacerts
from meshbridge.kube import retry as policy
from meshbridge.kube.fleet import reconcile_one

MESH = MeshRef("default", "0d9c2f4e-6c1b-4f0e-9a57-3c2b1d0e9f8a")


@pytest.fixture
def waits() -> Iterator[list[float]]:
    """The seconds each retry was scheduled to wait, in order."""
    scheduled: list[float] = []
    before = stamina.instrumentation.get_on_retry_hooks()
    stamina.instrumentation.set_on_retry_hooks([lambda details: scheduled.append(details.wait_for)])
    yield scheduled
    stamina.instrumentation.set_on_retry_hooks(before)


@dataclass
class Seen:
    method: str
    path: str
    body: bytes


Answer = tuple[int, dict[str, str], Any]  # status, headers, JSON body
Script = Callable[[str, str, int], Answer]  # (method, path, how many times it was asked) -> answer


@dataclass
class FakeApiServer:
    url: str
    seen: list[Seen] = field(default_factory=list)

    def asked(self, method: str, path: str = "") -> list[Seen]:
        return [s for s in self.seen if s.method == method and s.path.startswith(path)]


def status(code: int, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
            "code": code}


def a_list(*items: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
            "items": list(items)}


@contextmanager
def api_server(script: Script) -> Iterator[FakeApiServer]:
    counts: dict[tuple[str, str], int] = {}
    lock = threading.Lock()
    state = FakeApiServer("")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            path = urlsplit(self.path).path
            with lock:
                state.seen.append(Seen(self.command, self.path, body))
                n = counts[(self.command, path)] = counts.get((self.command, path), 0) + 1
            code, headers, payload = script(self.command, path, n)
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PATCH = do_DELETE = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def target(tmp_path: Path, url: str) -> ClusterAccess:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": url}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return ClusterAccess("c1", str(path))


CACERTS_PATH = "/api/v1/namespaces/istio-system/secrets/cacerts"
CACERTS = {"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": "cacerts", "namespace": "istio-system"},
           "data": {"root-cert.pem": "cm9vdA=="}}


def busy_then(answer: Answer, retry_after: str | None, times: int = 1) -> Script:
    """429 (with ``retry_after``) to the first ``times`` requests of each path, then ``answer``."""

    def script(method: str, path: str, n: int) -> Answer:
        if n <= times:
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            return 429, headers, status(429, "too many requests, please try again later")
        return answer

    return script


# ------------------------------------------------------------------------- one request: 429


def test_a_read_answered_429_is_sent_again_after_the_retry_after_it_asks(
    tmp_path: Path, waits: list[float]
) -> None:
    with api_server(busy_then((200, {}, CACERTS), retry_after="1")) as server:
        [read] = asyncio.run(read_cacerts([target(tmp_path, server.url)], ReconcileOptions(retries=1)))
    assert read.state == "found" and read.files == {"root-cert.pem": "root"}
    assert len(server.asked("GET", CACERTS_PATH)) == 2
    assert waits == [1.0], "Retry-After: 1 was not what the retry waited"


def test_a_retry_after_given_as_a_date_is_waited_too(
    tmp_path: Path, waits: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    when = datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)
    monkeypatch.setattr(policy, "_now", lambda: when - timedelta(seconds=2))
    date = format_datetime(when, usegmt=True)
    with api_server(busy_then((200, {}, CACERTS), retry_after=date)) as server:
        [read] = asyncio.run(read_cacerts([target(tmp_path, server.url)], ReconcileOptions(retries=1)))
    assert read.state == "found"
    assert waits == [2.0]


def test_a_long_retry_after_is_capped(
    tmp_path: Path, waits: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(policy, "REQUEST_WAIT_MAX", 0.3)
    with api_server(busy_then((200, {}, CACERTS), retry_after="3600")) as server:
        [read] = asyncio.run(read_cacerts([target(tmp_path, server.url)], ReconcileOptions(retries=1)))
    assert read.state == "found"
    assert waits == [0.3]


def test_without_retry_after_the_waits_grow_and_stop_at_the_deadline(
    tmp_path: Path, waits: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(policy, "REQUEST_TIMEOUT", 6.0)
    with api_server(busy_then((200, {}, CACERTS), retry_after=None, times=1000)) as server:
        [read] = asyncio.run(read_cacerts([target(tmp_path, server.url)], ReconcileOptions(retries=1)))
    assert read.state == "failed" and read.error.startswith("429: too many requests")
    assert len(server.asked("GET", CACERTS_PATH)) == len(waits) + 1
    # 0.1 s doubling up to 1 s, each with up to 0.1 s of jitter, until 6 s have gone by
    assert 0.1 <= waits[0] <= 0.2 and 0.2 <= waits[1] <= 0.3 and 0.4 <= waits[2] <= 0.5, waits
    # (the last wait may be cut short to end at the deadline)
    assert all(0.999 <= w <= 1.1 for w in waits[4:-1]) and waits[-1] <= 1.1, waits
    assert sum(waits[:-1]) < 6.0, "a try was scheduled after the deadline"


# ------------------------------------------------------------------- a delete, like a write


def owned_service_entry() -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "ServiceEntry",
        "metadata": {
            "name": "old", "namespace": "foo", "uid": "u-1", "resourceVersion": "42",
            "labels": {"app.kubernetes.io/managed-by": "meshbridge",
                       "meshbridge.dev/mesh": MESH.name, "meshbridge.dev/mesh-id": MESH.uid},
        },
        "spec": {"hosts": ["old.foo.global"]},
    }


SE_LIST = "/apis/networking.istio.io/v1beta1/serviceentries"
SE_OLD = "/apis/networking.istio.io/v1beta1/namespaces/foo/serviceentries/old"


def cluster_with_one_stale_object(delete: Script) -> Script:
    """Lists: one ServiceEntry this mesh owns and no longer wants; DELETE: as ``delete`` says."""

    def script(method: str, path: str, n: int) -> Answer:
        if method == "DELETE":
            return delete(method, path, n)
        if path == SE_LIST:
            return 200, {}, a_list(owned_service_entry())
        return 200, {}, a_list()

    return script


def test_a_delete_answered_429_is_sent_again_with_its_preconditions(tmp_path: Path) -> None:
    deleted = (200, {}, {"kind": "Status", "apiVersion": "v1", "status": "Success"})
    script = cluster_with_one_stale_object(busy_then(deleted, retry_after="0"))
    with api_server(script) as server:
        report = asyncio.run(reconcile_one(target(tmp_path, server.url), [], MESH, ReconcileOptions()))
    assert report.state == "Applied", report.error
    assert [c.action for c in report.outcome.changes] == ["delete"]
    sent = server.asked("DELETE", SE_OLD)
    assert len(sent) == 2
    for s in sent:
        body = json.loads(s.body)
        assert body["preconditions"] == {"uid": "u-1", "resourceVersion": "42"}


# ------------------------------------------------------------------------- a whole cluster


def test_a_cluster_that_answers_503_is_read_again_and_then_applied(
    tmp_path: Path, waits: list[float]
) -> None:
    def script(method: str, path: str, n: int) -> Answer:
        if path == "/api/v1/namespaces" and n == 1:
            return 503, {"Retry-After": "1"}, status(503, "the server is shutting down")
        return 200, {}, a_list()

    with api_server(script) as server:
        report = asyncio.run(reconcile_one(target(tmp_path, server.url), [], MESH,
                                           ReconcileOptions(retries=3, backoff=0.05)))
    assert report.state == "Applied" and report.attempts == 2
    assert waits == [1.0], "the 503's Retry-After was not what the retry waited"


def test_a_cluster_that_keeps_failing_is_reported_with_every_attempt(
    tmp_path: Path, waits: list[float]
) -> None:
    def script(method: str, path: str, n: int) -> Answer:
        return 500, {}, status(500, "etcdserver: request timed out")

    with api_server(script) as server:
        report = asyncio.run(reconcile_one(target(tmp_path, server.url), [], MESH,
                                           ReconcileOptions(retries=3, backoff=0.2)))
        # the namespaces' list (istio-system's Secrets are listed under the same prefix)
        lists = [s for s in server.asked("GET", "/api/v1/namespaces")
                 if s.path == "/api/v1/namespaces"]
    assert report.state == "Failed" and report.attempts == 3 and len(lists) == 3
    assert report.error == "500: etcdserver: request timed out"
    assert len(waits) == 2
    assert 0.2 <= waits[0] <= 0.4 and 0.4 <= waits[1] <= 0.6, waits  # doubling + jitter


def test_an_unreachable_cluster_is_tried_again_then_reported(
    tmp_path: Path, waits: list[float]
) -> None:
    report = asyncio.run(reconcile_one(target(tmp_path, "https://127.0.0.1:1"), [], MESH,
                                       ReconcileOptions(retries=3, backoff=0.2)))
    assert report.state == "Unreachable" and report.attempts == 3
    assert len(waits) == 2
    assert 0.2 <= waits[0] <= 0.4 and 0.4 <= waits[1] <= 0.6, waits  # doubling + jitter


def test_an_answer_that_means_no_is_not_asked_again(tmp_path: Path) -> None:
    with api_server(lambda m, p, n: (403, {}, status(403, "forbidden"))) as server:
        [read] = asyncio.run(read_cacerts([target(tmp_path, server.url)], ReconcileOptions(retries=3)))
    assert read.state == "failed" and read.attempts == 1
    assert len(server.asked("GET", CACERTS_PATH)) == 1


def test_retry_after_reads_seconds_and_dates_and_ignores_the_rest() -> None:
    def answer(value: str) -> httpx2.HTTPStatusError:
        request = httpx2.Request("GET", "https://example.invalid/")
        response = httpx2.Response(429, headers={"Retry-After": value}, request=request)
        return httpx2.HTTPStatusError("busy", request=request, response=response)

    assert policy.retry_after(answer("7")) == 7.0
    past = format_datetime(datetime(2001, 1, 1, tzinfo=UTC), usegmt=True)
    assert policy.retry_after(answer(past)) == 0.0
    assert policy.retry_after(answer("soon")) is None
    assert policy.retry_after(ValueError("not an answer")) is None
