"""``mesh-lab certs``: which root a workload's certificate chains to, from Envoy's secrets.

The tests of root and intermediate rotations read their verdict from it, so it must follow
signatures (not names) to the root, report the chain as presented, and say so when the chain
ends nowhere it knows.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshbridge_dev.lab.ops.certs import describe, fingerprint

NOW = dt.datetime.now(dt.UTC)
SPIFFE = "spiffe://cluster.local/ns/bar/sa/httpbin"


def issue(name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
          ca: bool = True) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    signer_name, signer_key = (issuer[0].subject, issuer[1]) if issuer else (subject, key)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(signer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - dt.timedelta(minutes=1))
               .not_valid_after(NOW + dt.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.UniformResourceIdentifier(SPIFFE)]), critical=False)
    return builder.sign(signer_key, hashes.SHA256()), key


def pem(*certs: x509.Certificate) -> str:
    data = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    return base64.b64encode(data).decode()


def dump(chain: list[x509.Certificate], trusted: list[x509.Certificate]) -> dict[str, Any]:
    """What Envoy's /config_dump?resource=dynamic_active_secrets holds after SDS."""
    return {"configs": [
        {"name": "default", "secret": {"name": "default", "tls_certificate": {
            "certificate_chain": {"inline_bytes": pem(*chain)},
            "private_key": {"inline_bytes": "W3JlZGFjdGVkXQ=="}}}},
        {"name": "ROOTCA", "secret": {"name": "ROOTCA", "validation_context": {
            "trusted_ca": {"inline_bytes": pem(*trusted)}}}},
    ]}


def test_the_root_is_found_by_signature_among_the_presented_and_trusted_certificates() -> None:
    old, new = issue("root", None), issue("root", None)  # the same name, two keys
    inter = issue("intermediate", new)
    leaf, _ = issue("leaf", inter, ca=False)
    # istiod presents leaf, intermediate, its issuer, then every trusted root: old first
    got = describe(dump([leaf, inter[0], new[0], old[0], new[0]], [old[0], new[0]]))
    assert got["spiffe"] == SPIFFE
    assert got["chain"] == [fingerprint(c) for c in (leaf, inter[0], new[0], old[0], new[0])]
    assert got["root"] == fingerprint(new[0])
    assert got["trusts"] == [fingerprint(old[0]), fingerprint(new[0])]
    # the root may come from the trusted roots alone
    assert describe(dump([leaf, inter[0]], [old[0], new[0]]))["root"] == fingerprint(new[0])


def test_a_chain_that_ends_at_no_known_root_has_none() -> None:
    root = issue("root", None)
    other = issue("root", None)
    inter = issue("intermediate", root)
    leaf, _ = issue("leaf", inter, ca=False)
    assert describe(dump([leaf, inter[0]], [other[0]]))["root"] is None
