"""The processes the test environment starts, and the ports they listen on.

Every server runs in a session of its own (so its whole group can be signalled) and is recorded
with its PID and kernel start time: a later ``down``, in another process, signals exactly what
``up`` started and never a process that happens to have reused the PID.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .common import Record, TestenvError, log

T = TypeVar("T")


class ProcessDied(TestenvError):
    """A server exited during start-up."""

    def __init__(self, msg: str, entry: Record) -> None:
        super().__init__(msg)
        self.entry = entry

    def port_taken(self) -> bool:
        """It lost the race for its port (free_ports released it just before the start)."""
        tail = log_tail(self.entry.get("log", ""), 60).lower()
        return "address already in use" in tail


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (held together, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _stat_fields(stat: str) -> list[str]:
    """/proc/PID/stat after the command name: state first, start time at index 19."""
    return stat[stat.rfind(")") + 2:].split()


def proc_start_time(pid: int) -> str | None:
    """Kernel start time of pid (guards against PID reuse), None if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = _stat_fields(stat)
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def is_ours(entry: Record) -> bool:
    """The recorded process is still running (not exited, PID not reused)."""
    pid = entry.get("pid")
    if not pid:
        return False
    return proc_start_time(int(pid)) == entry.get("start_time")


def wait_reaped(entry: Record, timeout: float = 15.0) -> None:
    """Wait until an exited process's /proc entry is gone.

    `up` exits after starting the servers, so they are reparented to PID 1,
    which reaps them; until it does they linger as zombies (no code, memory or
    sockets, but still a PID). Wait for that so `down` really leaves no process.
    """
    pid = entry.get("pid")
    path = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + timeout
    while pid and time.monotonic() < deadline:
        try:
            stat = path.read_text()
        except (FileNotFoundError, ProcessLookupError):
            return
        fields = _stat_fields(stat)
        if fields[19] != entry.get("start_time") and fields[0] not in ("Z", "X"):
            return  # PID reused by an unrelated process
        time.sleep(0.1)
    if pid and path.exists():
        log(f"pid {pid} has exited but its parent has not reaped it yet (zombie)")


def spawn(cmd: list[str], logfile: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> Record:
    """Start cmd in a session of its own, output to logfile; its record."""
    with open(logfile, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                close_fds=True, env=env)
    return {"pid": proc.pid, "start_time": proc_start_time(proc.pid), "log": str(logfile),
            "cmd": cmd[0]}


def _gone_within(entry: Record, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not is_ours(entry):
            return True
        time.sleep(0.1)
    return False


def stop_process(entry: Record, label: str, grace: float = 15.0) -> bool:
    """SIGTERM then SIGKILL the recorded process group; True if it is gone."""
    pid = entry.get("pid")
    if not pid or not is_ours(entry):
        return True
    try:
        os.killpg(pid, signal.SIGTERM)  # spawned with start_new_session: pgid == pid
    except ProcessLookupError:
        return True
    except PermissionError:
        os.kill(pid, signal.SIGTERM)
    if _gone_within(entry, grace):
        return True
    log(f"{label} (pid {pid}) did not exit on SIGTERM within {grace:.0f}s; sending SIGKILL")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return _gone_within(entry, 10)


def log_tail(path: str | Path, lines: int = 25) -> str:
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join("    " + ln for ln in text[-lines:])


def wait_for(desc: str, pred: Callable[[], T], deadline: float,
             procs: list[tuple[str, Record]], interval: float = 0.25) -> T:
    """Poll pred() until it returns a truthy value; fail fast if a process died."""
    last_err: Exception | None = None
    while True:
        for label, entry in procs:
            if not is_ours(entry):
                raise ProcessDied(f"{label} exited while waiting for {desc}; last lines of "
                                  f"{entry['log']}:\n{log_tail(entry['log'])}", entry)
        try:
            result = pred()
            if result:
                return result
        except (OSError, ssl.SSLError, http.client.HTTPException, ValueError) as e:
            last_err = e
        if time.monotonic() > deadline:
            raise TestenvError(f"timed out waiting for {desc}"
                               + (f" (last error: {last_err})" if last_err else ""))
        time.sleep(interval)
