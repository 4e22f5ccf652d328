"""Real Kubernetes API servers for the tests, from ``scripts/k8s-testenv``: the command
(:func:`run_testenv`), one started cluster (:class:`Cluster`) and the session's set of them
(:class:`TestEnv`). The fixtures are in ``tests/integration/conftest.py``."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
TESTENV_SCRIPT = REPO / "scripts" / "k8s-testenv"


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

    def user_kubeconfig(self, user: str, path: Path) -> Path:
        """A kubeconfig of ``user`` (no group: only what RBAC binds to the name), its client
        certificate signed by this cluster's CA; written to ``path`` (0600)."""
        import datetime

        import yaml
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        pki = self.kubeconfig.parent / self.name / "pki"
        ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
        ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user)]))
                .issuer_name(ca.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
        pem = serialization.Encoding.PEM
        key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        config = self._config()
        config["users"] = [{"name": user, "user": {
            "client-certificate-data": base64.b64encode(cert.public_bytes(pem)).decode(),
            "client-key-data": base64.b64encode(key_pem).decode()}}]
        for ctx in config["contexts"]:
            ctx["context"]["user"] = user
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(config))
        return path


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

    def apiserver(self, action: str, name: str) -> None:
        """Stop or start one cluster's kube-apiserver (its etcd, port and kubeconfig stay)."""
        proc = run_testenv("apiserver", action, "--dir", str(self.dir), name, timeout=300)
        if proc.returncode != 0:
            pytest.fail(f"k8s-testenv apiserver {action} {name} failed:\n{proc.stderr}",
                        pytrace=False)

    def down(self) -> subprocess.CompletedProcess[str]:
        return run_testenv("down", "--purge", "--dir", str(self.dir), timeout=300)
