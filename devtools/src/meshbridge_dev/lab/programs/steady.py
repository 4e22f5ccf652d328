"""Steady traffic: requests flowing without pause from one pod, every one counted.

A change to the mesh's certificates is safe only if nothing that was flowing fails while it
happens, so this program runs in a client pod's network namespace (``mesh-lab traffic start``)
and keeps, for each target URL, two kinds of callers going until it is stopped:

* ``new``: every request on a new connection (a TLS handshake through the sidecars each time,
  so each request meets the certificates and roots of that moment);
* ``held``: one connection kept open and reused for every request (HTTP/1.1 keep-alive; for
  ``tcp://`` a line sent and a line read back, as the lab's stub answers), opened again only
  when the peer closed it between requests: a connection made before a change that must keep
  working after it.

A request succeeds when it gets its answer: an HTTP status 200 with the stub's JSON, or for
``tcp://`` a JSON line. Anything else is a failure, counted and described (time, target,
reason): an error, a timeout, another status, a connection closed while a request was on it.
The report (``--out``, JSON, replaced atomically every second and at the end) holds per target
and kind the requests that succeeded and failed, the connections opened, who answered
(``cluster/app`` from the stub's JSON), and the first failures. SIGTERM or SIGINT stops every
caller after its current request; the report is written a last time, and the exit status is 0.

Standard library only. Run as ``python -m meshbridge_dev.lab.programs.steady --out FILE
[--interval SECONDS] [--timeout SECONDS] (--new URL | --held URL)...``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MAX_FAILURES_KEPT = 200
REPORT_EVERY = 1.0


class Failed(Exception):
    """A request that did not get its answer; the message says why."""


@dataclass
class Counts:
    ok: int = 0
    failed: int = 0
    connections: int = 0
    answered_by: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "failed": self.failed, "connections": self.connections,
                "answered_by": dict(sorted(self.answered_by.items()))}


class Report:
    """Every caller's counts and the first failures, shared by the caller threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.counts: dict[str, Counts] = {}
        self.failures: list[dict[str, Any]] = []
        self.failed_total = 0
        self.started = time.time()

    def caller(self, name: str) -> Counts:
        with self.lock:
            return self.counts.setdefault(name, Counts())

    def success(self, counts: Counts, answer: dict[str, Any]) -> None:
        who = f"{answer.get('cluster')}/{answer.get('app')}"
        with self.lock:
            counts.ok += 1
            counts.answered_by[who] = counts.answered_by.get(who, 0) + 1

    def failure(self, name: str, counts: Counts, why: str) -> None:
        with self.lock:
            counts.failed += 1
            self.failed_total += 1
            if len(self.failures) < MAX_FAILURES_KEPT:
                self.failures.append({"t": round(time.time(), 3), "caller": name, "error": why})

    def write(self, running: bool) -> None:
        with self.lock:
            body = {
                "started": round(self.started, 3), "updated": round(time.time(), 3),
                "running": running,
                "ok": sum(c.ok for c in self.counts.values()), "failed": self.failed_total,
                "callers": {n: c.as_json() for n, c in sorted(self.counts.items())},
                "failures": list(self.failures),
            }
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(body, indent=1) + "\n")
        os.replace(tmp, self.path)


@dataclass(frozen=True)
class Target:
    url: str
    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "tcp") or not parts.hostname:
            raise argparse.ArgumentTypeError(f"{url!r}: an http:// or tcp://HOST:PORT URL")
        port = parts.port or (80 if parts.scheme == "http" else None)
        if port is None:
            raise argparse.ArgumentTypeError(f"{url!r}: a tcp:// URL needs a port")
        return cls(url, parts.scheme, parts.hostname, port, parts.path or "/")

    @property
    def host_header(self) -> str:
        return f"{self.host}:{self.port}"


def describe(exc: BaseException) -> str:
    if isinstance(exc, Failed):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return f"name resolution failed: {exc.strerror}"
    if isinstance(exc, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError):
        return "connection closed without an answer"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


def _json_answer(data: bytes) -> dict[str, Any]:
    try:
        answer = json.loads(data)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise Failed(f"not the stub's answer: {data[:80]!r}")
    return answer


class Connection:
    """One connection to a target: HTTP/1.1 keep-alive, or the stub's line protocol."""

    def __init__(self, target: Target, timeout: float) -> None:
        self.target = target
        self.sock = socket.create_connection((target.host, target.port), timeout=timeout)
        self.file = self.sock.makefile("rb")
        self.greeted = False

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def closed_by_peer(self) -> bool:
        """The peer closed (or reset) the idle connection: reopen it, no request was lost."""
        readable, _, _ = select.select([self.sock], [], [], 0)
        if not readable:
            return False
        try:
            return self.sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def request(self) -> tuple[dict[str, Any], bool]:
        """One request on this connection: the answer, and whether the connection stays open."""
        if self.target.scheme == "tcp":
            return self._line(), True
        return self._http()

    def _line(self) -> dict[str, Any]:
        if self.greeted:
            self.sock.sendall(b"again\n")
        self.greeted = True  # the stub speaks first, then once per line
        line = self.file.readline(64 * 1024)
        if not line:
            raise Failed("connection closed without an answer")
        return _json_answer(line)

    def _http(self) -> tuple[dict[str, Any], bool]:
        t = self.target
        self.sock.sendall(f"GET {t.path} HTTP/1.1\r\nHost: {t.host_header}\r\n"
                          f"User-Agent: meshlab-steady\r\n\r\n".encode())
        # a reader of its own per answer, as http.client does (nothing is pipelined)
        response = http.client.HTTPResponse(self.sock)
        response.begin()
        body = response.read()
        if response.status != 200:
            raise Failed(f"status {response.status}")
        return _json_answer(body), not response.will_close


def run_caller(name: str, target: Target, held: bool, interval: float, timeout: float,
               report: Report, stop: threading.Event) -> None:
    counts = report.caller(name)
    conn: Connection | None = None
    next_start = time.monotonic()
    while not stop.is_set():
        try:
            if conn is not None and conn.closed_by_peer():
                conn.close()
                conn = None
            if conn is None:
                conn = Connection(target, timeout)
                counts.connections += 1
            answer, keep = conn.request()
            report.success(counts, answer)
            if not (held and keep):
                conn.close()
                conn = None
        except Exception as exc:  # every failure is counted, none ends the caller
            report.failure(name, counts, describe(exc))
            if conn is not None:
                conn.close()
                conn = None
        next_start = max(next_start + interval, time.monotonic())  # no burst after a slow one
        stop.wait(next_start - time.monotonic())
    if conn is not None:
        conn.close()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="steady", description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="the report (JSON)")
    ap.add_argument("--interval", type=float, default=0.5,
                    help="seconds between one caller's requests (default 0.5)")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds per request")
    ap.add_argument("--new", action="append", default=[], type=Target.parse, metavar="URL",
                    help="a caller opening a new connection for every request (repeat)")
    ap.add_argument("--held", action="append", default=[], type=Target.parse, metavar="URL",
                    help="a caller reusing one connection for every request (repeat)")
    args = ap.parse_args(argv)
    if not args.new and not args.held:
        ap.error("give at least one --new or --held URL")
    # The handlers only raise a flag: an Event.set() in a handler can deadlock when a second
    # signal lands while the main thread holds the Event's lock (``mesh-lab traffic stop``
    # signals twice: every program at once, then each as it waits for it to end). The main
    # thread sets ``stop`` for the callers.
    signalled: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _: signalled.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _: signalled.append(signum))
    stop = threading.Event()
    report = Report(args.out)
    callers = [(f"new {t.url}", t, False) for t in args.new] + \
              [(f"held {t.url}", t, True) for t in args.held]
    threads = []
    for i, (name, target, held) in enumerate(callers):
        thread = threading.Thread(target=run_caller, name=name, daemon=True, args=(
            name, target, held, args.interval, args.timeout, report, stop))
        # spread the callers over one interval rather than starting them all at once
        if i and not signalled:
            time.sleep(args.interval / len(callers))
        thread.start()
        threads.append(thread)
    next_report = time.monotonic()
    while not signalled:
        if time.monotonic() >= next_report:
            report.write(running=True)
            next_report += REPORT_EVERY
        time.sleep(0.1)
    stop.set()
    deadline = time.monotonic() + args.timeout + 5  # each caller ends its current request
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    report.write(running=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
