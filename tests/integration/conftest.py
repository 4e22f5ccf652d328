"""Integration fixtures: real Kubernetes API servers for meshbridge's tests.

meshbridge writes Istio config to live clusters, so tests that exercise that
path talk to a real kube-apiserver with Istio's real CRDs (server-side apply,
schema validation and discovery are the API server's, not ours) and a real
istiod whose validating webhook the API server calls (Istio's own admission:
what a real cluster rejects, these reject). The servers come from
``scripts/k8s-testenv``: kube-apiserver, etcd and istiod built from their
pinned upstream Go modules, one etcd + API server + istiod + CA per cluster on
free 127.0.0.1 ports.

Usage::

    @pytest.mark.k8s
    def test_something(testenv):
        a, b = testenv.clusters(2)          # starts them once per session
        kubeconfig_path = a.kubeconfig      # or testenv.kubeconfig("c1")
        with a.client() as http:            # httpx.Client on the API server
            http.get("/version")

Clusters are shared by the whole session (``clusters(n)`` returns the first
``n``, starting any that are missing) and torn down at session end. If the
binaries are not built yet the fixture builds them (``k8s-testenv build``,
a long cold build the first time): a missing environment is an error, never a
silent skip.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import build_test_tools

REPO = Path(__file__).resolve().parents[2]
TESTENV_SCRIPT = REPO / "scripts" / "k8s-testenv"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "k8s: needs real Kubernetes API servers from scripts/k8s-testenv"
    )


def run_testenv(*args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run scripts/k8s-testenv with the interpreter running pytest (stdlib only)."""
    return subprocess.run(
        [sys.executable, str(TESTENV_SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@dataclass(frozen=True)
class Cluster:
    """One running test cluster and the credentials `up` wrote for it."""

    name: str
    kubeconfig: Path

    def _config(self) -> dict[str, Any]:
        import yaml

        data: dict[str, Any] = yaml.safe_load(self.kubeconfig.read_text())
        return data

    @property
    def server(self) -> str:
        server: str = self._config()["clusters"][0]["cluster"]["server"]
        return server

    def ca_pem(self) -> str:
        """This cluster's own CA certificate (PEM), from the kubeconfig."""
        data = self._config()["clusters"][0]["cluster"]["certificate-authority-data"]
        return base64.b64decode(data).decode()

    def client_cert_files(self) -> tuple[Path, Path]:
        """The kubeconfig's admin client certificate and key, written out as PEM files."""
        user = self._config()["users"][0]["user"]
        creds = self.kubeconfig.parent / self.name / "kubeconfig-client"
        creds.mkdir(mode=0o700, parents=True, exist_ok=True)
        cert, key = creds / "tls.crt", creds / "tls.key"
        cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
        key.touch(mode=0o600)
        key.write_bytes(base64.b64decode(user["client-key-data"]))
        return cert, key

    def ssl_context(self) -> ssl.SSLContext:
        """TLS context from the kubeconfig: the cluster CA + its admin client certificate."""
        ctx = ssl.create_default_context(cadata=self.ca_pem())
        cert, key = self.client_cert_files()
        ctx.load_cert_chain(str(cert), str(key))
        return ctx

    def client(self, **kwargs: Any) -> Any:
        """An ``httpx.Client`` with base_url on this cluster's API server."""
        import httpx

        return httpx.Client(
            base_url=self.server, verify=self.ssl_context(), timeout=30, **kwargs
        )

    def lightkube(self) -> Any:
        """A ``lightkube.Client`` configured from this cluster's kubeconfig file."""
        from lightkube import Client, KubeConfig

        return Client(config=KubeConfig.from_file(str(self.kubeconfig)))


class TestEnv:
    """Clusters of one pytest session, all under one k8s-testenv ``--dir``."""

    __test__ = False  # not a test class, despite the name

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self._names: list[str] = []

    def clusters(self, n: int) -> list[Cluster]:
        """The first n session clusters (c1..cn), starting the missing ones in one ``up``."""
        missing = [f"c{i}" for i in range(len(self._names) + 1, n + 1)]
        if missing:
            # Every cluster runs istiod with its validating webhook: the API server admits
            # Istio objects only as a real Istio cluster does.
            proc = run_testenv("up", "--istiod", "--dir", str(self.dir), *missing, timeout=900)
            if proc.returncode != 0:
                pytest.fail(
                    f"k8s-testenv up {' '.join(missing)} failed (exit {proc.returncode}):\n"
                    f"{proc.stderr}",
                    pytrace=False,
                )
            self._names.extend(missing)
        return [self.cluster(name) for name in self._names[:n]]

    def cluster(self, name: str) -> Cluster:
        if name not in self._names:
            raise KeyError(f"cluster {name!r} is not up (have {self._names})")
        return Cluster(name, self.kubeconfig(name))

    def kubeconfig(self, name: str) -> Path:
        return self.dir / f"{name}.kubeconfig"

    def state(self) -> dict[str, Any]:
        """k8s-testenv's record of PIDs and ports for this directory."""
        path = self.dir / "k8s-testenv.json"
        return json.loads(path.read_text()) if path.exists() else {"clusters": {}}

    def down(self) -> subprocess.CompletedProcess[str]:
        return run_testenv("down", "--purge", "--dir", str(self.dir), timeout=300)


@pytest.fixture(scope="session")
def testenv_binaries(pytestconfig: pytest.Config) -> None:
    """Build (or reuse) kube-apiserver, etcd and istiod, fetch Istio's CRDs: never skip."""
    build_test_tools(pytestconfig)


@pytest.fixture(scope="session")
def testenv(
    testenv_binaries: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestEnv]:
    """Session-wide test environment; ``testenv.clusters(n)`` starts clusters on demand."""
    env = TestEnv(tmp_path_factory.mktemp("k8s-testenv"))
    try:
        yield env
    finally:
        proc = env.down()
        if proc.returncode != 0:
            pytest.fail(f"k8s-testenv down failed:\n{proc.stderr}", pytrace=False)


@pytest.fixture(scope="session")
def k8s_clusters(testenv: TestEnv) -> list[Cluster]:
    """Three independent clusters (c1, c2, c3), shared by the session."""
    return testenv.clusters(3)
