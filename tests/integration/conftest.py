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

from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import build_test_tools, remove_mesh
from livemesh import next_mesh
from testenvrun import Cluster, TestEnv


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "k8s: needs real Kubernetes API servers from scripts/k8s-testenv"
    )


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


@pytest.fixture
def mesh(testenv, cli, tmp_path: Path):
    """A unique mesh name and namespace suffix over three clusters; pruned afterwards."""
    name = next_mesh()
    clusters = testenv.clusters(3)
    kubeconfigs = {f"cluster{i + 1}": c.kubeconfig for i, c in enumerate(clusters)}
    ctx = {"name": name, "clusters": clusters, "kubeconfigs": kubeconfigs, "tmp": tmp_path}
    yield ctx
    remove_mesh(clusters, name)
