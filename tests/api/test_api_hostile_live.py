"""A real `meshbridge serve` (uvicorn) on hostile input (issue 26): it keeps answering /healthz
while hostile requests are being refused, closes connections that send no request head, and
answers 401 to a caller without a token before reading a body it only announced.

No timing is asserted: clients wait long (10 s and more) only to tell a hang from an answer.
What the latencies are, bench/hostile.py prints."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

import httpx
import pytest
from apitest import LiveServer
from hostile import HOSTILE

HANG = 30.0  # seconds: an answer later than this is a hang


def test_healthz_answers_while_hostile_requests_are_refused(
    live: Callable[..., LiveServer], tokens: dict[str, str]
) -> None:
    server = live(None, "--no-pki")
    editor = {"Authorization": f"Bearer {tokens['editor']}"}
    answers: dict[str, int] = {}
    passes = 0
    stop = threading.Event()

    def attack() -> None:
        nonlocal passes
        with httpx.Client(base_url=server.url, timeout=120) as client:
            while not stop.is_set():
                for hostile in HOSTILE.values():
                    answer = client.post("/api/v1/apply", content=hostile.text,
                                         headers={**editor, "Content-Type": hostile.ctype})
                    answers[hostile.name] = answer.status_code
                passes += 1

    attacker = threading.Thread(target=attack, daemon=True)
    attacker.start()
    polled_during = 0
    with httpx.Client(base_url=server.url, timeout=HANG) as client:
        while passes < 2 or polled_during < 20:
            alive = attacker.is_alive()
            assert client.get("/healthz").json() == {"status": "ok"}
            polled_during += alive and attacker.is_alive()
            assert alive, "the attacker stopped: " + repr(answers)
    stop.set()
    attacker.join(HANG * 4)
    refused = {name: status for name, status in answers.items()
               if status not in HOSTILE[name].statuses}
    assert not refused, refused
    assert server.process.poll() is None


def test_connections_that_send_no_request_head_are_closed(
    live: Callable[..., LiveServer]
) -> None:
    server = live(None, "--no-pki", "--header-timeout", "1")
    host, port = server.url.removeprefix("http://").split(":")
    idle = []
    for i in range(300):
        sock = socket.create_connection((host, int(port)), timeout=HANG)
        if i % 2:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # half a head, then nothing
        idle.append(sock)
    try:
        for sock in idle:
            assert sock.recv(100) == b"", "the server answered or kept the connection"
    finally:
        for sock in idle:
            sock.close()
    assert httpx.get(f"{server.url}/healthz", timeout=HANG).status_code == 200


@pytest.mark.parametrize("path", ["/api/v1/tokens", "/api/v1/apply", "/api/v1/credentials/x"])
def test_a_caller_without_a_token_is_refused_before_the_body_is_sent(
    live: Callable[..., LiveServer], path: str
) -> None:
    server = live(None, "--no-pki")
    host, port = server.url.removeprefix("http://").split(":")
    method = "PUT" if "credentials" in path else "POST"
    with socket.create_connection((host, int(port)), timeout=HANG) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: 1000000000000\r\n\r\n".encode())
        head = sock.recv(200)
    assert head.startswith(b"HTTP/1.1 401 "), head
