"""The stored form of PKI material: JSON with PEM certificates and sealed private keys.

A record is what one state-store row holds: the certificate (public, PEM), the private key sealed
under the KEK (base64), the issuers above it when it was imported under an enterprise CA, and the
id of the CA that signed it. Sealing uses the row identity (``kind/name``) as associated data:
:func:`row_aad` is the single definition of that identity.

Records are serialized with sorted keys so that reading and rewriting a record never changes its
bytes by accident.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from meshbridge.errors import StateError
from meshbridge.pki.certs import Issued
from meshbridge.pki.chain import anchor_of, load_cert, load_certs, pem_of
from meshbridge.pki.keys import key_pem, load_key_pem
from meshbridge.pki.sealing import Sealer, row_aad

__all__ = ["RECORD_VERSION", "CertRecord", "row_aad"]

RECORD_VERSION = 1


@dataclass(frozen=True)
class CertRecord:
    """One stored certificate; ``sealed_key`` is empty for records kept without a key."""

    cert_pem: str
    sealed_key: bytes = b""
    chain_pem: tuple[str, ...] = ()
    issuer_id: str = ""
    created: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------------------------ building

    @classmethod
    def seal(
        cls,
        issued: Issued,
        sealer: Sealer,
        kind: str,
        name: str,
        *,
        chain: tuple[x509.Certificate, ...] = (),
        issuer_id: str = "",
        created: str = "",
        labels: dict[str, str] | None = None,
    ) -> CertRecord:
        return cls(
            cert_pem=issued.cert_pem,
            sealed_key=sealer.seal(key_pem(issued.key), row_aad(kind, name)),
            chain_pem=tuple(pem_of(c) for c in chain),
            issuer_id=issuer_id,
            created=created,
            labels=dict(labels or {}),
        )

    # ------------------------------------------------------------------------------- reading

    @property
    def cert(self) -> x509.Certificate:
        return load_cert(self.cert_pem, "stored certificate")

    @property
    def chain(self) -> tuple[x509.Certificate, ...]:
        return tuple(load_certs(pem, "stored chain")[0] for pem in self.chain_pem)

    @property
    def anchor(self) -> x509.Certificate:
        return anchor_of(self.cert, self.chain)

    def key_pem(self, sealer: Sealer, kind: str, name: str) -> str:
        """The private key in clear (PKCS#8 PEM); SealingError when the KEK does not open it."""
        if not self.sealed_key:
            raise StateError(f"the state store keeps no private key for {kind}/{name}")
        return sealer.open(self.sealed_key, row_aad(kind, name)).decode("ascii")

    def open(self, sealer: Sealer, kind: str, name: str) -> Issued:
        pem = self.key_pem(sealer, kind, name).encode("ascii")
        return Issued(cert=self.cert, key=load_key_pem(pem, f"stored key of {kind}/{name}"))

    # ------------------------------------------------------------------------------ wire form

    def to_json(self) -> bytes:
        body: dict[str, Any] = {
            "version": RECORD_VERSION,
            "cert": self.cert_pem,
            "key": base64.b64encode(self.sealed_key).decode("ascii"),
            "chain": list(self.chain_pem),
            "issuer": self.issuer_id,
            "created": self.created,
            "labels": dict(sorted(self.labels.items())),
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> CertRecord:
        try:
            body = json.loads(data)
            if body.get("version") != RECORD_VERSION:
                raise StateError(
                    f"{where}: record version {body.get('version')} is not supported by this "
                    "meshbridge"
                )
            return cls(
                cert_pem=str(body["cert"]),
                sealed_key=base64.b64decode(body.get("key", "")),
                chain_pem=tuple(str(p) for p in body.get("chain", [])),
                issuer_id=str(body.get("issuer", "")),
                created=str(body.get("created", "")),
                labels={str(k): str(v) for k, v in body.get("labels", {}).items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StateError(
                f"{where}: the stored record is damaged ({type(exc).__name__})"
            ) from None
