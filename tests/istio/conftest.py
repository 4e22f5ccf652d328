"""Fixtures for Istio's own judges: real istioctl, built from the pinned istio.io/istio module.

``istio_tools`` (session) runs ``scripts/k8s-testenv build --istio``, which builds istioctl,
pilot-discovery and pilot-agent (about 8 minutes on 2 cold cores) or reuses them (well under a
second), and reads the ``NAME=/abs/path`` lines it prints. The build's progress goes to stderr,
shown through pytest's capture. A failed build fails the tests: it never skips them.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .judges import IstioTools

REPO = Path(__file__).resolve().parents[2]
TESTENV_SCRIPT = REPO / "scripts" / "k8s-testenv"


@contextlib.contextmanager
def _show_output(config: pytest.Config) -> Iterator[None]:
    """Let a (possibly long, cold) build print its progress through pytest's capture."""
    capman = config.pluginmanager.getplugin("capturemanager")
    if capman is None:
        yield
        return
    with capman.global_and_fixture_disabled():
        yield


def _paths(stdout: str) -> dict[str, Path]:
    """``NAME=/abs/path`` lines of ``k8s-testenv build`` -> {NAME: path}."""
    pairs = (line.split("=", 1) for line in stdout.splitlines() if "=" in line)
    return {name.strip(): Path(path.strip()) for name, path in pairs}


@pytest.fixture(scope="session")
def istio_tools(pytestconfig: pytest.Config) -> IstioTools:
    """istioctl, pilot-discovery and pilot-agent from ``k8s-testenv build --istio``: never skip."""
    with _show_output(pytestconfig):
        sys.stderr.write(
            "\nk8s-testenv: ensuring istioctl, pilot-discovery and pilot-agent "
            "(a cold build takes ~8 min on 2 cores)\n"
        )
        sys.stderr.flush()
        proc = subprocess.run(
            [sys.executable, str(TESTENV_SCRIPT), "build", "--istio"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
            check=False,
            env=os.environ.copy(),
        )
    if proc.returncode != 0:
        pytest.fail(
            f"scripts/k8s-testenv build --istio failed (exit {proc.returncode}); "
            f"see its output above",
            pytrace=False,
        )
    paths = _paths(proc.stdout)
    wanted = ("istioctl", "pilot-discovery", "pilot-agent")
    unusable = [n for n in wanted if n not in paths or not os.access(paths[n], os.X_OK)]
    if unusable:
        pytest.fail(
            f"scripts/k8s-testenv build --istio gave no executable {', '.join(unusable)}; "
            f"its stdout was:\n{proc.stdout}",
            pytrace=False,
        )
    return IstioTools(
        istioctl=paths["istioctl"],
        pilot_discovery=paths["pilot-discovery"],
        pilot_agent=paths["pilot-agent"],
    )
