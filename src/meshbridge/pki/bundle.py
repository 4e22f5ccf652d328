"""What a ``cacerts`` Secret trusts, as fingerprints: read without parsing X.509.

A cluster's workloads hold certificates under its intermediate CA, and its sidecars accept
peers chained to a root in ``root-cert.pem``. Writing another ``cacerts`` keeps trust only when
the two overlap the right way (:func:`keeps_trust`); apply checks that for every cluster before
it writes to any, and records per cluster what it holds (:class:`CacertsFacts`), so root
rotation phases can wait for every cluster.

Fingerprints are SHA-256 of each certificate's DER, lower-case hex: the same as
``meshbridge.pki.fingerprint`` and ``openssl x509 -noout -fingerprint -sha256`` (without the
colons). Decoding the PEM armour is enough for that, which keeps the X.509 machinery out of an
apply that changes nothing. Only public files are ever read here: never ``ca-key.pem``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["PUBLIC_FILES", "CacertsFacts", "keeps_trust", "pem_fingerprints"]

# The files of a cacerts Secret that hold no secret (ca-key.pem is the fourth).
PUBLIC_FILES = ("root-cert.pem", "ca-cert.pem", "cert-chain.pem")

_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.S)


def pem_fingerprints(pem: str) -> tuple[str, ...]:
    """SHA-256 of every certificate in a PEM bundle, in order; ValueError when a block is not
    base64."""
    out = []
    for body in _BLOCK.findall(pem):
        try:
            der = base64.b64decode("".join(body.split()), validate=True)
        except binascii.Error:
            raise ValueError("a PEM certificate block is not base64") from None
        out.append(hashlib.sha256(der).hexdigest())
    return tuple(out)


@dataclass(frozen=True)
class CacertsFacts:
    """The public facts of one ``cacerts``: its roots (``root-cert.pem``, in order), the anchor
    its intermediate chains to (the last certificate of ``cert-chain.pem``) and the intermediate
    itself (``ca-cert.pem``). Empty strings where a file is missing."""

    roots: tuple[str, ...]
    anchor: str = ""
    intermediate: str = ""

    @classmethod
    def of(cls, files: Mapping[str, str]) -> CacertsFacts:
        """From the PEM text of the public files; ValueError when one is not PEM."""
        chain = pem_fingerprints(files.get("cert-chain.pem", ""))
        inter = pem_fingerprints(files.get("ca-cert.pem", ""))
        return cls(
            roots=pem_fingerprints(files.get("root-cert.pem", "")),
            anchor=chain[-1] if chain else "",
            intermediate=inter[0] if inter else "",
        )

    def same_bundle(self, other: CacertsFacts) -> bool:
        """The same roots (in any order) and the same intermediate."""
        return set(self.roots) == set(other.roots) and self.intermediate == other.intermediate


def keeps_trust(new: CacertsFacts, live: CacertsFacts) -> bool:
    """Whether writing ``new`` over ``live`` keeps workloads of both sides trusting each other.

    Two conditions, both met by every phase of ``pki rotate-root`` and by re-issued
    intermediates, and both broken by a root minted in place of the live one:

    * the root ``new``'s intermediate chains to is one ``live`` already trusts (what the
      cluster issues next is accepted by peers that have not been updated yet), and
    * the root the live intermediate chains to is one ``new`` still trusts (the certificates
      workloads hold now stay valid). A live ``cacerts`` without a chain counts as chaining to
      any of its roots.
    """
    if not live.roots and not live.anchor:
        return False  # nothing readable: nothing shows that trust would hold
    signs_next = new.anchor in live.roots if new.anchor else False
    signs_now = (live.anchor,) if live.anchor else live.roots
    return signs_next and any(a in new.roots for a in signs_now)
