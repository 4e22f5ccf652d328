"""``scripts/test``: meshbridge's whole test suite, set-up included, in timed phases.

A newcomer on a fresh machine runs one command. It installs the system packages the tests use
when it may (as root; otherwise it names them and fails: a test that cannot run must not look
like one that passed), builds or reuses the Go tools (``k8s-testenv build --istio``: ~15 min
cold on 2 cores, reused while the pins are unchanged), creates or reuses ``.venv``, then runs
ruff, mypy strict, import-linter and pytest. Each phase's wall time is printed at the end, also
when one fails, so a slow CI run says where its time went.

It runs before the venv exists, with the system's python3: standard library only, like
``meshbridge_dev.testenv``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path

from .testenv import TestenvError, build_all
from .testenv.common import REPO

VENV_BIN = REPO / ".venv" / "bin"
DEVTOOLS = REPO / "devtools"
# Debian package -> what proves it is there: commands on PATH, file globs, ``module:NAME`` (a
# module of this python3, which scripts/venv makes the venv with).
PACKAGES = {
    "openssl": ["openssl"],
    "iproute2": ["ip", "ss"],
    "iptables": ["iptables-restore"],
    "postgresql": ["/usr/lib/postgresql/*/bin/pg_ctl|pg_ctl"],
    "python3-venv": ["module:ensurepip"],
    # the page tests (tests/ui) drive Debian's browser through its driver, never a downloaded one
    "chromium": ["/usr/bin/chromium"],
    "chromium-driver": ["/usr/bin/chromedriver"],
}


@dataclass
class PhaseFailed(Exception):
    """A phase could not do its work: why, and the exit status scripts/test ends with."""

    why: str
    status: int = 1

    def __str__(self) -> str:
        return self.why


def log(msg: str) -> None:
    print(f"scripts/test: {msg}", file=sys.stderr, flush=True)


def present(probe: str) -> bool:
    """One of the ``|``-separated alternatives exists."""
    def found(alt: str) -> bool:
        if alt.startswith("module:"):
            return importlib.util.find_spec(alt.removeprefix("module:")) is not None
        return bool(glob(alt) if "/" in alt else shutil.which(alt))
    return any(found(alt) for alt in probe.split("|"))


def missing_packages() -> list[str]:
    return sorted(pkg for pkg, probes in PACKAGES.items() if not all(map(present, probes)))


def online_postgres() -> set[str]:
    """The PostgreSQL clusters Debian's tools say are online ("version name")."""
    if not shutil.which("pg_lsclusters"):
        return set()
    out = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, check=False)
    return {" ".join(f[:2]) for f in (line.split() for line in out.stdout.splitlines())
            if len(f) > 3 and f[3] == "online"}


def run(cmd: list[str], env: dict[str, str] | None = None, cwd: Path = REPO) -> None:
    rc = subprocess.run(cmd, cwd=cwd, stdin=subprocess.DEVNULL, env=env, check=False).returncode
    if rc != 0:
        raise PhaseFailed(f"{' '.join(cmd)} exited {rc}", rc)


def system_packages() -> None:
    missing = missing_packages()
    if not missing:
        return
    if os.geteuid() != 0:
        raise PhaseFailed(f"missing system packages: {' '.join(missing)}. Install them "
                          f"(Debian/Ubuntu: sudo apt-get install -y --no-install-recommends "
                          f"{' '.join(missing)}), or run scripts/test as root, which does")
    log(f"installing {' '.join(missing)} (apt-get)")
    before = online_postgres()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-qq"], env)
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env)
    # The tests start throwaway PostgreSQL clusters of their own; stop any default cluster the
    # package installation itself just started, so no server is left running that nobody uses.
    for cluster in sorted(online_postgres() - before):
        subprocess.run(["pg_ctlcluster", *cluster.split(), "stop"], check=False)
    still = missing_packages()
    if still:
        raise PhaseFailed(f"apt-get installed them, but these are still missing: {still}")


def tools() -> None:
    try:
        for name, path in build_all(istio=True).items():
            log(f"{name}={path}")
    except TestenvError as e:
        raise PhaseFailed(f"k8s-testenv build --istio: {e}") from None


# With no arguments, the tests run as four pytest processes at once. Three start real servers
# and spend most of their time waiting on them: the mesh lab's rotations (six minutes of
# certificate lifetimes waited out), the rest of the mesh lab (istiods and Envoys) and the rest
# (API servers, istioctl, PostgreSQL for the replicas, Chromium); the fourth keeps a core busy
# in-process. On two cores they overlap instead of adding up. Every test folder is in exactly
# one group and a module may be carved out of its folder's group into another (a devtools test
# holds to both), so none is left out and none runs twice.
GROUPS: dict[str, list[str]] = {
    "rotation": ["tests/lab/test_lab_rotation.py"],
    "lab": ["tests/lab"],
    "servers": ["tests/integration", "tests/istio", "tests/ui"],
    "in-process": ["tests/unit", "tests/api", "tests/golden", "devtools/tests"],
}


def carved_out(group: str) -> list[str]:
    """The paths of other groups that lie inside one of ``group``'s folders: not its to run."""
    return sorted(other for name, paths in GROUPS.items() if name != group for other in paths
                  if any(other.startswith(f"{mine}/") for mine in GROUPS[group]))


def pytest_command(args: list[str], group: str | None = None) -> list[str]:
    cmd = [str(VENV_BIN / "python"), "-m", "pytest", *args]
    if group is not None:  # a cache of its own: two processes do not share one
        cmd += [*GROUPS[group], *(f"--ignore={path}" for path in carved_out(group)),
                "-o", f"cache_dir=.pytest_cache/{group}"]
    return cmd


def pytest_status(rc: int, what: str) -> None:
    if rc == 5:
        raise PhaseFailed(f"{what} collected no tests")
    if rc != 0:
        raise PhaseFailed(f"{what} exited {rc}", rc)


def pytest(args: list[str]) -> None:
    """Arguments given: one pytest with them (its testpaths when no path is among them)."""
    rc = subprocess.run(pytest_command(args), cwd=REPO, stdin=subprocess.DEVNULL,
                        check=False).returncode
    pytest_status(rc, "pytest")


def pytest_groups(timings: Timings) -> None:
    """Every group at once, each line of their output prefixed with its group's name; each
    group's time goes in the table."""
    started = time.monotonic()
    procs = {g: subprocess.Popen(pytest_command([], g), cwd=REPO, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for g in GROUPS}

    def relay(group: str, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(f"[{group}] {line}", end="", flush=True)
        rc = proc.wait()
        result = "ok" if rc == 0 else ("no tests" if rc == 5 else f"FAILED: exit {rc}")
        timings.rows[f"pytest: {group}"] = (time.monotonic() - started, result)

    threads = [threading.Thread(target=relay, args=item) for item in procs.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for group, proc in procs.items():
        pytest_status(proc.returncode, f"pytest ({group})")


@dataclass
class Timings:
    """Each phase's wall time and result, for the table at the end."""

    names: list[str]
    rows: dict[str, tuple[float, str]] = field(default_factory=dict)

    def phase(self, name: str, work: Callable[[], None]) -> None:
        print(f"== {name}", file=sys.stderr, flush=True)
        start = time.monotonic()
        result = "ok"
        try:
            work()
        except PhaseFailed as e:
            result = f"FAILED: {e}"
            raise
        except BaseException as e:
            result = f"FAILED: {e!r}"
            raise
        finally:
            self.rows[name] = (time.monotonic() - start, result)

    def table(self) -> str:
        """One line per phase, then the phases' total; parts of a phase (``pytest: GROUP``,
        which ran at once) follow their phase and are not added to the total."""
        names = list(self.names)
        names += [n for n in self.rows if n not in names]
        width = max(map(len, names))
        lines = [f"{'phase':<{width}}  {'seconds':>8}  result"]
        for name in names:
            seconds, result = self.rows.get(name, (None, "not run"))
            shown = f"{seconds:8.1f}" if seconds is not None else f"{'-':>8}"
            lines.append(f"{name:<{width}}  {shown}  {result.splitlines()[0][:100]}")
        total = sum(s for n, (s, _) in self.rows.items() if n in self.names)
        lines.append(f"{'total':<{width}}  {total:8.1f}")
        return "\n".join(lines)


def ruff() -> None:
    """One run: devtools/ has its own config, which extends the root one."""
    run([str(VENV_BIN / "ruff"), "check", "src", "tests", "bench", "devtools"])


def mypy() -> None:
    """Strict, on src/ (the root config) and on devtools/ (its own)."""
    run([str(VENV_BIN / "mypy")])
    run([str(VENV_BIN / "mypy")], cwd=DEVTOOLS)


def import_linter() -> None:
    """meshbridge's layers (the root config), then devtools' contracts."""
    run([str(VENV_BIN / "lint-imports"), "--no-cache"])
    run([str(VENV_BIN / "lint-imports"), "--no-cache"], cwd=DEVTOOLS)


def phases(args: list[str], timings: Timings) -> list[tuple[str, Callable[[], None]]]:
    return [
        ("system packages", system_packages),
        ("tools", tools),
        ("venv", lambda: run([str(REPO / "scripts" / "venv")])),
        ("ruff", ruff),
        ("mypy", mypy),
        ("import-linter", import_linter),
        ("pytest", (lambda: pytest(args)) if args else (lambda: pytest_groups(timings))),
    ]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    timings = Timings([])
    steps = phases(args, timings)
    timings.names = [name for name, _ in steps]
    status = 0
    try:
        for name, work in steps:
            timings.phase(name, work)
    except PhaseFailed as e:
        log(f"error: {e}")
        status = e.status
    except KeyboardInterrupt:
        status = 130
    finally:
        print("\n" + timings.table(), file=sys.stderr, flush=True)
    return status
