"""Which CA a workload's certificate comes from, as its sidecar presents it now.

A rotation is only proven when the workloads' certificates changed: comparing what meshbridge
wrote with what it meant to write says nothing about what istiod signs, or what Envoy presents.
So this reads the certificate from the proxy itself: Envoy's admin interface
(``/config_dump?resource=dynamic_active_secrets``) holds the secrets pilot-agent served it over
SDS, ``default`` (the certificate chain it presents to peers) and ``ROOTCA`` (the roots it
accepts peers under). Only the certificates are read; Envoy redacts the private key.

``mesh-lab certs APP.NAMESPACE@CLUSTER`` prints one JSON object:

* ``spiffe``: the identity (the leaf's URI SAN);
* ``chain``: SHA-256 fingerprints (hex, of the DER) of every certificate presented, leaf first,
  as Envoy sends them (istiod's answer: leaf, intermediate, its issuers, then the trusted roots);
* ``root``: the fingerprint of the self-signed root the leaf chains to, following signatures
  through the presented certificates and the trusted roots (null if the chain ends elsewhere);
* ``trusts``: the fingerprints of the roots the sidecar accepts peers under (``ROOTCA``);
* ``expires``: when the leaf expires (UTC, ISO 8601).
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from ..common import LabError

SECRETS_PATH = "/config_dump?resource=dynamic_active_secrets"


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def anchor(leaf: x509.Certificate, candidates: list[x509.Certificate]) -> x509.Certificate | None:
    """The self-signed root ``leaf`` chains to through ``candidates`` (None: it does not)."""
    current, seen = leaf, {fingerprint(leaf)}
    while True:
        if _issued_by(current, current):
            return current if current is not leaf else None
        issuer = next((c for c in candidates if _issued_by(current, c)), None)
        if issuer is None or fingerprint(issuer) in seen:
            return None
        seen.add(fingerprint(issuer))
        current = issuer


def _pem(secret: dict[str, Any], *path: str) -> list[x509.Certificate]:
    node: Any = secret
    for key in path:
        node = (node or {}).get(key)
    if not node:
        return []
    return x509.load_pem_x509_certificates(base64.b64decode(node))


def describe(config_dump: dict[str, Any]) -> dict[str, Any]:
    """The JSON object of ``mesh-lab certs`` from an Envoy secrets config dump."""
    secrets = {c["secret"]["name"]: c["secret"] for c in config_dump.get("configs") or []
               if "secret" in c}
    chain = _pem(secrets.get("default", {}), "tls_certificate", "certificate_chain",
                 "inline_bytes")
    if not chain:
        raise LabError(f"the proxy holds no workload certificate yet (secrets: "
                       f"{', '.join(sorted(secrets)) or 'none'})")
    trusted = _pem(secrets.get("ROOTCA", {}), "validation_context", "trusted_ca", "inline_bytes")
    leaf = chain[0]
    uris = []
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        pass
    root = anchor(leaf, [*chain[1:], *trusted])
    return {
        "spiffe": uris[0] if uris else None,
        "chain": [fingerprint(c) for c in chain],
        "root": fingerprint(root) if root is not None else None,
        "trusts": [fingerprint(c) for c in trusted],
        "expires": leaf.not_valid_after_utc.isoformat(),
    }


def read(admin_command: list[str]) -> dict[str, Any]:
    """Run the admin helper's GET of SECRETS_PATH (in the pod's network namespace) and
    describe what the sidecar presents."""
    proc = subprocess.run(admin_command, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        raise LabError(f"the proxy's admin interface: {proc.stderr.strip()}")
    try:
        dump = json.loads(proc.stdout)
    except ValueError as e:
        raise LabError(f"the proxy's admin interface answered no JSON: {e}") from None
    return describe(dump)
