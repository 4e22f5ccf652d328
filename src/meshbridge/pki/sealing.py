"""Sealing: private keys are encrypted before they reach the state store.

The state store may be a file in a repository checkout or a shared PostgreSQL database; neither
should be enough to impersonate the mesh. Every private key is sealed with AES-256-GCM under a
key-encryption key (KEK) that lives outside the store. The associated data is the identity of the
row the blob is stored in, so a sealed key copied into another row (say, a cluster's intermediate
key pasted over the root's) does not open.

Blob layout (all binary)::

    b"MBK1" | key id (8 bytes) | nonce (12 bytes) | ciphertext + GCM tag

The key id is a keyed hash of the KEK: a blob sealed under another KEK is recognised as such and
reported as "wrong state key", not as corruption. Where the KEK comes from (environment, key
file) is the use cases' business (``usecases.statekey``); this module only turns text into a key and back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from meshbridge.errors import SealingError

__all__ = ["KEY_BYTES", "Sealer", "new_key_text", "parse_key_text", "row_aad"]

KEY_BYTES = 32
_MAGIC = b"MBK1"
_KID_BYTES = 8
_NONCE_BYTES = 12
_HEADER = len(_MAGIC) + _KID_BYTES + _NONCE_BYTES
_B64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_B64URL = re.compile(r"(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2}==|[A-Za-z0-9_-]{3}=)?")


def new_key_text() -> str:
    """A fresh KEK as the base64 text written to key files (44 characters)."""
    return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode("ascii")


def parse_key_text(text: str, origin: str) -> bytes:
    """32 key bytes from hex (64 digits) or base64 (standard or URL-safe) text.

    ``origin`` names where the text came from for the error message; the text itself is never
    repeated.
    """
    value = text.strip()
    if len(value) == 2 * KEY_BYTES and all(c in "0123456789abcdefABCDEF" for c in value):
        return bytes.fromhex(value)
    raw = b""
    if _B64.fullmatch(value):
        raw = base64.b64decode(value)
    elif _B64URL.fullmatch(value):
        raw = base64.urlsafe_b64decode(value)
    if len(raw) == KEY_BYTES:
        return raw
    raise SealingError(
        f"{origin} is not a state key: it must be {KEY_BYTES} bytes written as base64 "
        f"(44 characters) or hex ({2 * KEY_BYTES} digits)"
    )


def row_aad(kind: str, name: str) -> bytes:
    """Associated data binding a sealed value to the store row it lives in."""
    return f"meshbridge/{kind}/{name}".encode()


class Sealer:
    """Seals and opens blobs under one key-encryption key.

    ``origin`` says where the KEK came from (``MESHBRIDGE_STATE_KEY``, ``key file ...``); it is
    used in error messages so a user knows which key to fix.
    """

    def __init__(self, key: bytes, origin: str = "the state key") -> None:
        if len(key) != KEY_BYTES:
            raise SealingError(f"{origin} must be {KEY_BYTES} bytes, not {len(key)}")
        self._aead = AESGCM(key)
        self.key_id = hmac.new(key, b"meshbridge key id v1", hashlib.sha256).digest()[:_KID_BYTES]
        self.origin = origin

    def __repr__(self) -> str:  # never show the key
        return f"Sealer(origin={self.origin!r}, key_id={self.key_id.hex()})"

    def seal(self, data: bytes, aad: bytes) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return _MAGIC + self.key_id + nonce + self._aead.encrypt(nonce, data, aad)

    def opens(self, blob: bytes) -> bool:
        """Whether ``blob`` was sealed under this KEK (by its key id; no decryption)."""
        return (
            blob.startswith(_MAGIC) and blob[len(_MAGIC) : len(_MAGIC) + _KID_BYTES] == self.key_id
        )

    def open(self, blob: bytes, aad: bytes) -> bytes:
        if len(blob) <= _HEADER or not blob.startswith(_MAGIC):
            raise SealingError("a sealed record in the state store is not in meshbridge's format")
        if not self.opens(blob):
            raise SealingError(
                f"the state key ({self.origin}) does not open this store: it was sealed under "
                "another key"
            )
        nonce = blob[len(_MAGIC) + _KID_BYTES : _HEADER]
        try:
            return self._aead.decrypt(nonce, blob[_HEADER:], aad)
        except InvalidTag:
            raise SealingError(
                "a sealed record in the state store failed authentication: it was altered or "
                "moved to another row"
            ) from None
