"""Certificates for a test cluster, made with openssl: the API server's CA, serving and admin
client certificates and service-account key, and (when none is given) a CA for istiod in the
``cacerts`` layout. EC P-256 keys, files 0600, folders 0700."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from .common import TestenvError, run

ADMIN_USER = "meshbridge-admin"
KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"
EC_KEY = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
CA_EXTENSIONS = ["-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"]


def need_openssl() -> str:
    openssl = shutil.which("openssl")
    if not openssl:
        raise TestenvError("openssl not found (apt-get install -y openssl)")
    return openssl


def openssl_in(folder: Path, label: str) -> Callable[..., None]:
    """A function that runs ``openssl ARGS`` in ``folder`` (created, 0700)."""
    openssl = need_openssl()
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)

    def o(*args: str) -> None:
        run([openssl, *args], cwd=folder, what=f"openssl {args[0]} ({label})")
    return o


def gen_pki(pki: Path, name: str) -> None:
    """The cluster's CA, the API server's serving certificate, the admin client certificate
    (user ADMIN_USER in system:masters), the API server's client certificate for kubelets
    (``kubelet-client``: what it presents to a node's streaming endpoint, as kubeadm's
    ``apiserver-kubelet-client``) and the service-account signing key pair."""
    o = openssl_in(pki, name)
    o("req", "-x509", *EC_KEY, "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650",
      "-subj", f"/CN=k8s-testenv-{name}-ca", *CA_EXTENSIONS)
    (pki / "server.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
        "DNS:kubernetes.default.svc,IP:10.0.0.1\n")
    (pki / "client.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=clientAuth\n")
    for stem, subj in (("server", "/CN=kube-apiserver"),
                       ("admin", f"/O=system:masters/CN={ADMIN_USER}"),
                       ("kubelet-client", f"/O=system:masters/CN={KUBELET_CLIENT_USER}")):
        o("req", "-new", *EC_KEY, "-keyout", f"{stem}.key", "-out", f"{stem}.csr", "-subj", subj)
        o("x509", "-req", "-in", f"{stem}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
          "-CAcreateserial", "-days", "3650", "-out", f"{stem}.crt",
          "-extfile", "server.ext" if stem == "server" else "client.ext")
    # Service-account token signing key pair (required by kube-apiserver).
    o("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1",
      "-out", "sa.key")
    o("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub")
    for f in pki.iterdir():
        if f.suffix == ".key":
            os.chmod(f, 0o600)


def gen_istio_ca(dest: Path, name: str) -> None:
    """A root and an intermediate CA for istiod (the `cacerts` layout), for test clusters that
    are not given one."""
    o = openssl_in(dest, f"{name} istiod CA")
    o("req", "-x509", *EC_KEY, "-keyout", "root-key.pem", "-out", "root-cert.pem", "-days", "3650",
      "-subj", f"/O=k8s-testenv/CN=k8s-testenv {name} root CA", *CA_EXTENSIONS)
    (dest / "ca.ext").write_text("basicConstraints=critical,CA:TRUE,pathlen:0\n"
                                 "keyUsage=critical,keyCertSign,cRLSign,digitalSignature\n")
    o("req", "-new", *EC_KEY, "-keyout", "ca-key.pem", "-out", "ca.csr",
      "-subj", f"/O=k8s-testenv/CN=k8s-testenv {name} intermediate CA")
    o("x509", "-req", "-in", "ca.csr", "-CA", "root-cert.pem", "-CAkey", "root-key.pem",
      "-CAcreateserial", "-days", "3650", "-out", "ca-cert.pem", "-extfile", "ca.ext")
    chain = (dest / "ca-cert.pem").read_text() + (dest / "root-cert.pem").read_text()
    (dest / "cert-chain.pem").write_text(chain)
    for f in dest.iterdir():
        if f.name.endswith("key.pem"):
            os.chmod(f, 0o600)
