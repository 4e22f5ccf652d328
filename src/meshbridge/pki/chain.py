"""Reading certificates back: PEM bundles, fingerprints, chains, expiry and import checks.

Issuing is half of a PKI; the other half is looking at what is there. ``pki status`` needs
subjects, fingerprints and days left; ``pki import`` must refuse a CA that could not work (a key
that does not match, a chain that does not link, a path length that forbids one more level of
CA) before anything is stored, because a bad root only shows up later as every cross-cluster
handshake failing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from meshbridge.errors import PKIError
from meshbridge.pki.keys import PrivateKey, load_key_pem, public_der

__all__ = [
    "WARN_DAYS",
    "CertSummary",
    "Health",
    "anchor_of",
    "cert_id",
    "check_signing_ca",
    "dedupe",
    "fingerprint",
    "load_cert",
    "load_certs",
    "parse_signing_ca",
    "pem_of",
    "self_signed",
    "summarize",
]

WARN_DAYS = 30


def pem_of(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def load_certs(data: str | bytes, what: str = "certificate file") -> list[x509.Certificate]:
    """Every certificate of a PEM bundle, in order; PKIError if there is none or one is broken."""
    raw = data.encode("ascii") if isinstance(data, str) else data
    try:
        certs = x509.load_pem_x509_certificates(raw)
    except ValueError:
        raise PKIError(f"the {what} holds no readable PEM certificate") from None
    return certs


def load_cert(data: str | bytes, what: str = "certificate file") -> x509.Certificate:
    certs = load_certs(data, what)
    if len(certs) != 1:
        raise PKIError(f"the {what} must hold exactly one certificate, not {len(certs)}")
    return certs[0]


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER, lower-case hex."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def cert_id(cert: x509.Certificate) -> str:
    """A short stable name for a CA certificate: the first 16 hex digits of its fingerprint."""
    return fingerprint(cert)[:16]


def self_signed(cert: x509.Certificate) -> bool:
    if cert.subject != cert.issuer:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def anchor_of(cert: x509.Certificate, chain: Sequence[x509.Certificate]) -> x509.Certificate:
    """The trust anchor of a signing CA: the end of its chain, or itself when self-signed."""
    return chain[-1] if chain else cert


def dedupe(certs: Iterable[x509.Certificate]) -> list[x509.Certificate]:
    """Certificates in order, each only once (two rotation roots may share an anchor)."""
    seen: set[str] = set()
    out: list[x509.Certificate] = []
    for cert in certs:
        fp = fingerprint(cert)
        if fp not in seen:
            seen.add(fp)
            out.append(cert)
    return out


# -------------------------------------------------------------------------------------- import


def _basic_constraints(cert: x509.Certificate) -> x509.BasicConstraints | None:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None


def _can_sign_cas(cert: x509.Certificate, below: int, label: str) -> None:
    """``cert`` must be a CA allowed to have ``below`` more CA certificates under it."""
    constraints = _basic_constraints(cert)
    if constraints is None or not constraints.ca:
        raise PKIError(f"the {label} is not a CA certificate (basicConstraints CA:TRUE missing)")
    if constraints.path_length is not None and constraints.path_length < below:
        raise PKIError(
            f"the {label} has pathlen {constraints.path_length}: it cannot sign the per-cluster "
            "intermediate CAs meshbridge issues under it"
        )
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not usage.key_cert_sign:
        raise PKIError(f"the {label} may not sign certificates (keyUsage lacks keyCertSign)")


def _in_validity(cert: x509.Certificate, now: datetime, label: str) -> None:
    if cert.not_valid_after_utc <= now:
        raise PKIError(f"the {label} expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    if cert.not_valid_before_utc > now:
        raise PKIError(f"the {label} is not valid before {cert.not_valid_before_utc:%Y-%m-%d}")


def _check_key(cert: x509.Certificate, key: PrivateKey) -> None:
    if public_der(key) != cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise PKIError("the private key does not belong to the certificate")


def check_signing_ca(
    cert: x509.Certificate,
    key: PrivateKey | None,
    chain: Sequence[x509.Certificate],
    now: datetime,
) -> None:
    """Refuse a CA to import unless it can sign cluster intermediates that verify to an anchor.

    ``chain`` lists the issuers of ``cert`` from the nearest up to a self-signed root (empty
    when ``cert`` is itself the root). ``key`` None: a root kept without its key (trusted,
    signing nothing), whose other properties are checked all the same.
    """
    if key is not None:
        _check_key(cert, key)
    _can_sign_cas(cert, 1, "certificate")
    _in_validity(cert, now, "certificate")
    if not chain:
        if not self_signed(cert):
            raise PKIError(
                "the certificate is not self-signed: give the chain up to your root CA (--chain)"
            )
        return
    if self_signed(cert):
        raise PKIError("the certificate is a self-signed root: it takes no --chain")
    child = cert
    for depth, issuer in enumerate(chain):
        label = f"chain certificate {depth + 1} ({issuer.subject.rfc4514_string()})"
        try:
            child.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            raise PKIError(
                f"{label} did not sign the certificate before it: list the chain from the "
                "issuer of the certificate up to the root"
            ) from None
        _in_validity(issuer, now, label)
        if depth < len(chain) - 1:
            _can_sign_cas(issuer, depth + 2, label)
        child = issuer
    if not self_signed(chain[-1]):
        raise PKIError("the chain does not end in a self-signed root CA")


# -------------------------------------------------------------------------------------- status


class Health(StrEnum):
    OK = "ok"
    EXPIRING = "expiring"
    EXPIRED = "expired"
    NOT_YET_VALID = "not yet valid"


@dataclass(frozen=True)
class CertSummary:
    """What ``pki status`` shows for one certificate: no key material, only public facts."""

    role: str
    name: str
    subject: str
    issuer: str
    fingerprint: str
    not_before: datetime
    not_after: datetime
    days_left: int
    health: Health


def summarize(cert: x509.Certificate, role: str, name: str, now: datetime) -> CertSummary:
    left = cert.not_valid_after_utc - now
    if cert.not_valid_after_utc <= now:
        health = Health.EXPIRED
    elif cert.not_valid_before_utc > now:
        health = Health.NOT_YET_VALID
    elif left.days < WARN_DAYS:
        health = Health.EXPIRING
    else:
        health = Health.OK
    return CertSummary(
        role=role,
        name=name,
        subject=cert.subject.rfc4514_string() or "(empty)",
        issuer=cert.issuer.rfc4514_string(),
        fingerprint=fingerprint(cert),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        days_left=left.days,
        health=health,
    )


def parse_signing_ca(
    cert_pem: bytes, key_pem: bytes | None, chain_pem: bytes | None, now: datetime
) -> tuple[x509.Certificate, PrivateKey | None, tuple[x509.Certificate, ...]]:
    """Read and check a CA to import: its certificate, key (None: kept without one), and
    issuers up to the anchor.

    A chain file may start with the certificate itself (as many CAs hand out "full chain"
    files); that copy is dropped.
    """
    cert = load_cert(cert_pem, "certificate file")
    key = load_key_pem(key_pem, "key file") if key_pem is not None else None
    chain = tuple(load_certs(chain_pem, "chain file")) if chain_pem else ()
    if chain and chain[0] == cert:
        chain = chain[1:]
    check_signing_ca(cert, key, chain, now)
    return cert, key, chain


def parse_cluster_ca(
    cert_pem: bytes, key_pem: bytes, issuer: x509.Certificate, now: datetime
) -> tuple[x509.Certificate, PrivateKey]:
    """Read and check a cluster's intermediate CA to take back from its live ``cacerts``
    (``ca-cert.pem``, ``ca-key.pem``): the key matches, it may sign workload certificates, it
    is in its validity, and ``issuer`` signed it."""
    cert = load_cert(cert_pem, "certificate file")
    key = load_key_pem(key_pem, "key file")
    _check_key(cert, key)
    _can_sign_cas(cert, 0, "certificate")
    _in_validity(cert, now, "certificate")
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        raise PKIError(
            f"the certificate was not signed by the mesh's root {issuer.subject.rfc4514_string()}"
        ) from None
    return cert, key
