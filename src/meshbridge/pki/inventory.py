"""The mesh's certificates as plain data: ``cacerts`` assembly and the status inventory.

Two read-only views over stored records that must agree with each other and with Istio:

* :func:`assemble_cacerts` — the four files of a cluster's ``cacerts`` Secret: ``ca-cert.pem``
  (the intermediate), ``ca-key.pem``, ``cert-chain.pem`` (intermediate, then its issuers up to
  and including the anchor) and ``root-cert.pem`` (every trusted anchor, old first, so a cluster
  mid-rotation trusts workloads of both roots).
* :func:`build_status` — what ``pki status`` prints: public facts per certificate, expiry
  health, the rotation phase. It needs no key, so it works even without the state key.

The use cases read the rows; this module never touches the store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from meshbridge.compile.inputs import ClusterCA
from meshbridge.pki.chain import CertSummary, Health, dedupe, pem_of, summarize
from meshbridge.pki.records import CertRecord
from meshbridge.pki.trust import PHASE_TEXT, Trust

__all__ = [
    "SERVER_CA",
    "Inventory",
    "PkiStatus",
    "StatusEntry",
    "assemble_cacerts",
    "build_status",
    "client_ca_name",
    "trust_bundle",
]

SERVER_CA = "server"  # name of the ingress server CA among the ingress CAs


def client_ca_name(host: str) -> str:
    """Name of ``host``'s ingress client CA among the ingress CAs."""
    return f"client/{host}"


def trust_bundle(roots: Sequence[CertRecord]) -> str:
    """root-cert.pem: the anchors of ``roots`` in order, each once."""
    return "".join(pem_of(a) for a in dedupe(r.anchor for r in roots))


def assemble_cacerts(
    intermediate: CertRecord, key_pem: str, signer: CertRecord, trusted: Sequence[CertRecord]
) -> ClusterCA:
    chain = [intermediate.cert_pem, signer.cert_pem, *signer.chain_pem]
    return ClusterCA(
        ca_cert=intermediate.cert_pem,
        ca_key=key_pem,
        root_cert=trust_bundle(trusted),
        cert_chain="".join(chain),
    )


@dataclass(frozen=True)
class StatusEntry:
    """One certificate in the status. ``deployed`` is False for client certificates handed out
    to external callers: their expiry is reported but is not the mesh's failure."""

    cert: CertSummary
    note: str = ""
    deployed: bool = True


@dataclass(frozen=True)
class PkiStatus:
    """Public facts only: what ``pki status`` prints."""

    phase: int
    phase_text: str
    entries: tuple[StatusEntry, ...]

    @property
    def expired(self) -> bool:
        """Something the mesh runs on has expired (``pki status`` exits non-zero)."""
        return any(e.deployed and e.cert.health is Health.EXPIRED for e in self.entries)


@dataclass(frozen=True)
class Inventory:
    """Every stored record by row name, as read from the store."""

    trust: Trust | None
    roots: Mapping[str, CertRecord]
    intermediates: Mapping[str, CertRecord]
    ingress_cas: Mapping[str, CertRecord]
    servers: Mapping[str, CertRecord]
    clients: Mapping[str, CertRecord]


def _root_entries(inv: Inventory, trust: Trust, now: datetime) -> list[StatusEntry]:
    out = []
    for rid in trust.trusted:
        record = inv.roots.get(rid)
        if record is None:
            continue
        note = "active" if rid == trust.active else "next"
        if rid == trust.signing:
            note += ", signs new intermediates"
        if record.chain_pem:
            note += f", under {record.anchor.subject.rfc4514_string()}"
        if not record.sealed_key:
            note += ", kept without its key (signs nothing)"
        out.append(StatusEntry(summarize(record.cert, "root", rid, now), note))
    return out


def _leaf_entries(inv: Inventory, now: datetime) -> list[StatusEntry]:
    out = []
    for name, record in sorted(inv.ingress_cas.items()):
        role, _, host = name.partition("/")
        if role == SERVER_CA:
            entry = StatusEntry(
                summarize(record.cert, "ingress server CA", "-", now), "external callers trust it"
            )
        else:
            entry = StatusEntry(
                summarize(record.cert, "ingress client CA", host, now), "ca.crt of the host"
            )
        out.append(entry)
    for host, record in sorted(inv.servers.items()):
        out.append(StatusEntry(summarize(record.cert, "ingress server", host, now)))
    for _, record in sorted(inv.clients.items()):
        shown = f"{record.labels.get('host', '?')} {record.labels.get('name', '')}".strip()
        out.append(
            StatusEntry(summarize(record.cert, "client", shown, now), "handed out", deployed=False)
        )
    return out


def build_status(inv: Inventory, now: datetime) -> PkiStatus:
    """Every certificate with its expiry health, roots first, then clusters, then ingress."""
    if inv.trust is None:
        return PkiStatus(0, "no root CA yet", tuple(_leaf_entries(inv, now)))
    trust = inv.trust
    entries = _root_entries(inv, trust, now)
    for cluster, record in sorted(inv.intermediates.items()):
        note = f"under root {record.issuer_id}"
        if record.issuer_id not in trust.trusted:
            note += " (NOT TRUSTED: run 'pki rotate --cluster')"
        entries.append(StatusEntry(summarize(record.cert, "intermediate", cluster, now), note))
    entries.extend(_leaf_entries(inv, now))
    return PkiStatus(trust.phase, PHASE_TEXT[trust.phase], tuple(entries))
