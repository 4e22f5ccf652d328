"""A throwaway PostgreSQL cluster for tests: initdb, pg_ctl start on 127.0.0.1, stop, remove.

Debian's ``postgresql`` package puts the server under /usr/lib/postgresql/<version>/bin. The
server refuses to run as root, so as root the cluster is made and run by the ``postgres`` user
(``runuser``). Settings favour speed over durability: this data is thrown away.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    which = shutil.which("pg_ctl")
    return Path(which).parent if which else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    port: int
    control: list[str] | None = None  # pg_ctl with its -D, as the right user (running())
    options: str = ""
    log: Path | None = None

    def stop(self) -> None:
        """Stop the server, ending every client's connection (``-m fast``, as a restart or a
        fail-over does; committed data kept, which ``immediate`` with this cluster's
        ``synchronous_commit=off`` would not promise)."""
        assert self.control is not None
        subprocess.run([*self.control, "-m", "fast", "-w", "stop"], check=True,
                       capture_output=True)

    def start(self) -> None:
        """Start it again on the same port, with the same data."""
        assert self.control is not None and self.log is not None
        subprocess.run([*self.control, "-o", self.options, "-l", str(self.log), "-w", "-t", "60",
                        "start"], check=True, capture_output=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def create_database(self, template: str | None = None) -> str:
        name = f"mb_{uuid.uuid4().hex[:12]}"
        self._admin(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
        return name

    def drop_database(self, name: str) -> None:
        self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class PostgresMissing(RuntimeError):
    """No PostgreSQL server binaries. Deliberately not a FileNotFoundError: a test that skips on
    that must fail here instead (scripts/test installs Debian's postgresql as root, and names it
    otherwise)."""


@contextmanager
def running() -> Iterator[Cluster]:
    """Start a cluster; stop and remove it on exit. Raises PostgresMissing without binaries."""
    bindir = bin_dir()
    if bindir is None:
        raise PostgresMissing("PostgreSQL server binaries (pg_ctl, initdb) not found: install "
                              "Debian's postgresql (scripts/test does, as root)")
    root = Path(tempfile.mkdtemp(prefix="mb-pg-"))
    data, log = root / "data", root / "log"
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    subprocess.run(
        [*as_user, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
         "-E", "UTF8", "--no-sync"],
        check=True, capture_output=True,
    )
    options = (f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
    subprocess.run(
        [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w",
         "-t", "60", "start"],
        check=True, capture_output=True,
    )
    control = [*as_user, str(bindir / "pg_ctl"), "-D", str(data)]
    try:
        yield Cluster(port, control, options, log)
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            check=False, capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)
