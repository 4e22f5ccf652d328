"""The lab's kubelet stand-in against a real API server: a Secret's keys reach the folder when
the Secret is created, change when it changes, and stay when it is deleted (as a mounted volume
keeps its last content)."""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.k8s

NAMESPACE = "volumes-test"
SECRETS = f"/api/v1/namespaces/{NAMESPACE}/secrets"


def secret(value: bytes) -> dict:
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "cacerts", "namespace": NAMESPACE},
            "data": {"ca-cert.pem": base64.b64encode(value).decode()}}


def wait_for(what: str, check, timeout: float = 30) -> None:
    """Poll ``check`` until it is true; the timeout only catches a hang."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def keeper(k8s_clusters, tmp_path: Path) -> Iterator[tuple[object, Path]]:
    cluster = k8s_clusters[0]
    with cluster.client() as http:
        http.post("/api/v1/namespaces", json={"metadata": {"name": NAMESPACE}})
        http.delete(f"{SECRETS}/cacerts")
    folder = tmp_path / "cacerts"
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshbridge_dev.lab.programs.volumes", "--kubeconfig",
         str(cluster.kubeconfig), "--volume", f"secret:{NAMESPACE}/cacerts={folder}"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        yield cluster, folder
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_secret_reaches_the_folder_and_follows_its_changes(keeper) -> None:
    cluster, folder = keeper
    file = folder / "ca-cert.pem"
    time.sleep(0.5)  # the keeper has listed an absent Secret: the folder stays empty
    assert not file.exists()
    with cluster.client() as http:
        assert http.post(SECRETS, json=secret(b"first")).status_code == 201
        wait_for("the first version", lambda: file.is_file() and file.read_bytes() == b"first")
        assert http.put(f"{SECRETS}/cacerts", json=secret(b"second")).status_code == 200
        wait_for("the second version", lambda: file.read_bytes() == b"second")
        assert http.delete(f"{SECRETS}/cacerts").status_code == 200
        time.sleep(1)  # what a deleted Secret's volume keeps: its last content
        assert file.read_bytes() == b"second"
        assert http.post(SECRETS, json=secret(b"third")).status_code == 201
        wait_for("the Secret made again", lambda: file.read_bytes() == b"third")
