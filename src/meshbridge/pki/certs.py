"""Certificate profiles: the mesh root, per-cluster intermediates, ingress CAs and leaves.

Each ``issue_*`` function is one profile, written out so a reader can check it against what the
consumer expects:

* **root** — self-signed, CA:TRUE without path length limit, keyCertSign/cRLSign; subject O/CN
  from ``Mesh.spec.rootCA`` (what Istio's ``tools/certs`` ``root-ca`` target makes).
* **intermediate** — one per cluster, for Istio's plug-in CA (``cacerts``): CA:TRUE pathlen 0,
  keyCertSign/cRLSign, subject O/CN from ``Mesh.spec.intermediateCA`` plus ``L=<cluster>``, and
  the SAN ``DNS:istiod.istio-system.svc`` — exactly what Istio's ``intermediate.conf`` gives
  istiod (``INTERMEDIATE_SAN_DNS``).
* **ingress CA** — self-signed, CA:TRUE pathlen 0: a root of its own, never the workload root, so
  no certificate an external party holds is trusted by a sidecar.
* **server** / **client** — leaves for external TLS at the ingress gateway (serverAuth with the
  host as DNS SAN; clientAuth).
* **workload** — an Istio-style workload leaf (empty subject, critical SPIFFE URI SAN, serverAuth
  and clientAuth), used by tests and tooling to speak mTLS like a sidecar would.

Everything is SHA-256 signed; serial numbers are random; validity starts five minutes before
``now`` (clock skew between nodes) and never outlasts the issuer. Nothing here stores anything:
reproducible output comes from storing what was issued, not from re-deriving it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshbridge.errors import PKIError
from meshbridge.model import CASettings, IntermediateCASettings, KeyAlgorithm
from meshbridge.pki.keys import (
    PrivateKey,
    generate_key,
    key_algorithm_of,
    key_pem,
    leaf_algorithm,
)

__all__ = [
    "CLOCK_SKEW",
    "ISTIOD_SAN",
    "Issued",
    "intermediate_algorithm",
    "issue_client",
    "issue_ingress_ca",
    "issue_intermediate",
    "issue_root",
    "issue_server",
    "issue_workload",
]

ISTIOD_SAN = "istiod.istio-system.svc"
CLOCK_SKEW = timedelta(minutes=5)
_NAME_MAX = 64  # ub-common-name and friends (RFC 5280)


@dataclass(frozen=True)
class Issued:
    """A certificate with its private key: a CA that can sign, or a leaf to hand out."""

    cert: x509.Certificate
    key: PrivateKey

    @property
    def cert_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode("ascii")

    @property
    def key_pem(self) -> str:
        return key_pem(self.key).decode("ascii")


# ------------------------------------------------------------------------------- building blocks


def _name(
    organization: str | None, common_name: str | None, locality: str | None = None
) -> x509.Name:
    attrs = []
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization[:_NAME_MAX]))
    if common_name:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name[:_NAME_MAX]))
    if locality:
        attrs.append(x509.NameAttribute(NameOID.LOCALITY_NAME, locality[:_NAME_MAX]))
    return x509.Name(attrs)


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _leaf_usage(key: PrivateKey) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=isinstance(key, rsa.RSAPrivateKey),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _authority_key_id(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key())  # type: ignore[arg-type]
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _window(now: datetime, days: int, issuer: x509.Certificate | None) -> tuple[datetime, datetime]:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    now = now.replace(microsecond=0)
    not_after = now + timedelta(days=days)
    if issuer is not None:
        not_after = min(not_after, issuer.not_valid_after_utc)
        if not_after <= now:
            raise PKIError(
                f"the issuing CA {issuer.subject.rfc4514_string()} has expired; rotate it first"
            )
    return now - CLOCK_SKEW, not_after


def _sign(
    *,
    subject: x509.Name,
    key: PrivateKey,
    signer: Issued | None,
    window: tuple[datetime, datetime],
    constraints: x509.BasicConstraints,
    usage: x509.KeyUsage,
    extra: list[tuple[x509.ExtensionType, bool]],
) -> Issued:
    """Build and sign one certificate; ``signer`` None means self-signed."""
    issuer_name = subject if signer is None else signer.cert.subject
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(window[0])
        .not_valid_after(window[1])
        .add_extension(constraints, critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if signer is None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
    else:
        builder = builder.add_extension(_authority_key_id(signer.cert), critical=False)
    for extension, critical in extra:
        builder = builder.add_extension(extension, critical=critical)
    signing_key = key if signer is None else signer.key
    return Issued(cert=builder.sign(signing_key, hashes.SHA256()), key=key)


# ------------------------------------------------------------------------------------- profiles


def issue_root(settings: CASettings, now: datetime, unit: str | None = None) -> Issued:
    """The mesh's self-signed root CA, per ``Mesh.spec.rootCA``; ``unit`` adds an OU (what
    tells a rotation's new root from the old one when both come from the same settings)."""
    key = generate_key(settings.key_algorithm)
    subject = list(_name(settings.organization, settings.common_name))
    if unit:
        subject.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit[:_NAME_MAX]))
    return _sign(
        subject=x509.Name(subject),
        key=key,
        signer=None,
        window=_window(now, settings.validity_days, None),
        constraints=x509.BasicConstraints(ca=True, path_length=None),
        usage=_ca_usage(),
        extra=[],
    )


def intermediate_algorithm(
    settings: IntermediateCASettings, signer: Issued, fallback: KeyAlgorithm
) -> KeyAlgorithm:
    """``intermediateCA.keyAlgorithm`` if set, else the signing CA's own (``fallback`` when the
    signer's key is a size or curve the Mesh cannot name, e.g. an imported RSA-8192 root)."""
    return settings.key_algorithm or key_algorithm_of(signer.key) or fallback


def issue_intermediate(
    signer: Issued,
    settings: IntermediateCASettings,
    cluster: str,
    algorithm: KeyAlgorithm,
    now: datetime,
) -> Issued:
    """A cluster's intermediate CA for istiod's plug-in CA (the ``cacerts`` Secret)."""
    key = generate_key(algorithm)
    return _sign(
        subject=_name(settings.organization, settings.common_name, cluster),
        key=key,
        signer=signer,
        window=_window(now, settings.validity_days, signer.cert),
        constraints=x509.BasicConstraints(ca=True, path_length=0),
        usage=_ca_usage(),
        extra=[(x509.SubjectAlternativeName([x509.DNSName(ISTIOD_SAN)]), False)],
    )


def issue_ingress_ca(
    common_name: str,
    organization: str,
    validity_days: int,
    algorithm: KeyAlgorithm,
    now: datetime,
    unit: str | None = None,
) -> Issued:
    """A self-signed CA for the ingress (server or client side), separate from the mesh root."""
    key = generate_key(algorithm)
    subject_attrs = list(_name(organization, common_name))
    if unit:
        subject_attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit[:_NAME_MAX]))
    return _sign(
        subject=x509.Name(subject_attrs),
        key=key,
        signer=None,
        window=_window(now, validity_days, None),
        constraints=x509.BasicConstraints(ca=True, path_length=0),
        usage=_ca_usage(),
        extra=[],
    )


def issue_server(
    signer: Issued, host: str, organization: str, now: datetime, validity_days: int = 365
) -> Issued:
    """A TLS server certificate for ``host`` (DNS SAN, serverAuth)."""
    key = generate_key(leaf_algorithm(signer.key))
    common_name = host if len(host) <= _NAME_MAX else None
    return _sign(
        subject=_name(organization, common_name),
        key=key,
        signer=signer,
        window=_window(now, validity_days, signer.cert),
        constraints=x509.BasicConstraints(ca=False, path_length=None),
        usage=_leaf_usage(key),
        extra=[
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
            (x509.SubjectAlternativeName([x509.DNSName(host)]), False),
        ],
    )


def issue_client(
    signer: Issued, common_name: str, organization: str, now: datetime, validity_days: int = 365
) -> Issued:
    """A TLS client certificate (clientAuth) named ``common_name``."""
    if not 1 <= len(common_name) <= _NAME_MAX:
        raise PKIError(f"a client name must be 1 to {_NAME_MAX} characters long")
    key = generate_key(leaf_algorithm(signer.key))
    return _sign(
        subject=_name(organization, common_name),
        key=key,
        signer=signer,
        window=_window(now, validity_days, signer.cert),
        constraints=x509.BasicConstraints(ca=False, path_length=None),
        usage=_leaf_usage(key),
        extra=[(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)],
    )


def issue_workload(signer: Issued, spiffe_id: str, now: datetime, validity_days: int = 1) -> Issued:
    """An Istio-style workload certificate: empty subject, critical SPIFFE URI SAN."""
    if not spiffe_id.startswith("spiffe://"):
        raise PKIError(
            f"{spiffe_id!r} is not a SPIFFE ID (spiffe://<trust domain>/ns/<ns>/sa/<sa>)"
        )
    key = generate_key(leaf_algorithm(signer.key))
    return _sign(
        subject=x509.Name([]),
        key=key,
        signer=signer,
        window=_window(now, validity_days, signer.cert),
        constraints=x509.BasicConstraints(ca=False, path_length=None),
        usage=_leaf_usage(key),
        extra=[
            (
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                False,
            ),
            (x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]), True),
        ],
    )
