"""Private keys: generated per the Mesh's ``KeyAlgorithm``, serialized one way only.

Every key meshbridge makes or accepts goes through here so that there is exactly one PEM form
(unencrypted PKCS#8, what Istio's plug-in CA and Envoy both read) and one list of algorithms a
CA may sign with (RSA and NIST EC curves, always with SHA-256). Keeping serialization in one
place is also what makes sealed keys byte-stable: a key is serialized once, sealed, and the same
bytes come back out on every later run.
"""

from __future__ import annotations

from typing import TypeAlias

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from meshbridge.errors import PKIError
from meshbridge.model import KeyAlgorithm

__all__ = [
    "PrivateKey",
    "generate_key",
    "key_algorithm_of",
    "key_pem",
    "leaf_algorithm",
    "load_key_pem",
    "public_der",
]

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

RSA_PUBLIC_EXPONENT = 65537

_RSA_BITS = {
    KeyAlgorithm.RSA_2048: 2048,
    KeyAlgorithm.RSA_3072: 3072,
    KeyAlgorithm.RSA_4096: 4096,
}
_CURVES: dict[KeyAlgorithm, type[ec.EllipticCurve]] = {
    KeyAlgorithm.ECDSA_P256: ec.SECP256R1,
    KeyAlgorithm.ECDSA_P384: ec.SECP384R1,
}


def generate_key(algorithm: KeyAlgorithm) -> PrivateKey:
    """A fresh private key of ``algorithm`` (randomness from cryptography's backend)."""
    bits = _RSA_BITS.get(algorithm)
    if bits is not None:
        return rsa.generate_private_key(public_exponent=RSA_PUBLIC_EXPONENT, key_size=bits)
    return ec.generate_private_key(_CURVES[algorithm]())


def key_algorithm_of(key: PrivateKey) -> KeyAlgorithm | None:
    """The ``KeyAlgorithm`` a key corresponds to, or None for a size/curve we do not name."""
    if isinstance(key, rsa.RSAPrivateKey):
        for algorithm, bits in _RSA_BITS.items():
            if key.key_size == bits:
                return algorithm
        return None
    for algorithm, curve in _CURVES.items():
        if isinstance(key.curve, curve):
            return algorithm
    return None


def leaf_algorithm(ca_key: PrivateKey) -> KeyAlgorithm:
    """Key algorithm for leaf certificates under ``ca_key``: the same family, the cheap size.

    Ingress server and client certificates are handed to arbitrary external software; RSA-2048
    and P-256 are what every TLS stack accepts.
    """
    return (
        KeyAlgorithm.RSA_2048 if isinstance(ca_key, rsa.RSAPrivateKey) else KeyAlgorithm.ECDSA_P256
    )


def key_pem(key: PrivateKey) -> bytes:
    """The one serialized form: unencrypted PKCS#8 PEM."""
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def load_key_pem(data: bytes, what: str = "private key") -> PrivateKey:
    """Parse an unencrypted PEM private key (PKCS#1, SEC1 or PKCS#8) that a CA can sign with.

    Errors never quote the key material, only what was wrong with it.
    """
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise PKIError(
            f"the {what} is encrypted; decrypt it first (openssl pkey -in ...)"
        ) from None
    except ValueError:
        raise PKIError(f"the {what} is not a readable PEM private key") from None
    except UnsupportedAlgorithm:
        raise PKIError(f"the {what} uses an algorithm this system cannot load") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise PKIError(
            f"the {what} is a {type(key).__name__}; only RSA and ECDSA keys can sign here"
        )
    return key


def public_der(key: PrivateKey) -> bytes:
    """DER of the public half, to compare a key with a certificate."""
    return key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
