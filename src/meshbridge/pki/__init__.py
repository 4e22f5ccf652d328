"""The mesh PKI as pure functions: issue, inspect, seal — no store, no environment, no files.

One root of trust for the whole mesh, an intermediate CA per cluster for istiod, and separate
ingress CAs for traffic from outside the mesh. The clock (``now``) is always an argument and
randomness comes only from key generation, serial numbers and nonces, so the service layer
decides when anything is issued and stores it; this package only says *how*.

The names below load on first use: reading the state key needs ``pki.sealing`` alone, without
the X.509 machinery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshbridge.lazy import attributes

if TYPE_CHECKING:
    from meshbridge.pki.certs import (
        ISTIOD_SAN,
        Issued,
        intermediate_algorithm,
        issue_client,
        issue_ingress_ca,
        issue_intermediate,
        issue_root,
        issue_server,
        issue_workload,
    )
    from meshbridge.pki.chain import (
        WARN_DAYS,
        CertSummary,
        Health,
        anchor_of,
        cert_id,
        check_signing_ca,
        dedupe,
        fingerprint,
        load_cert,
        load_certs,
        parse_cluster_ca,
        parse_signing_ca,
        pem_of,
        self_signed,
        summarize,
    )
    from meshbridge.pki.inventory import (
        SERVER_CA,
        Inventory,
        PkiStatus,
        StatusEntry,
        assemble_cacerts,
        build_status,
        client_ca_name,
        trust_bundle,
    )
    from meshbridge.pki.keys import (
        PrivateKey,
        generate_key,
        key_algorithm_of,
        key_pem,
        leaf_algorithm,
        load_key_pem,
        public_der,
    )
    from meshbridge.pki.records import CertRecord
    from meshbridge.pki.sealing import KEY_BYTES, Sealer, new_key_text, parse_key_text, row_aad
    from meshbridge.pki.trust import PHASE_TEXT, Trust

_HOMES = {
    "CertRecord": "meshbridge.pki.records",
    "CertSummary": "meshbridge.pki.chain",
    "Health": "meshbridge.pki.chain",
    "ISTIOD_SAN": "meshbridge.pki.certs",
    "Inventory": "meshbridge.pki.inventory",
    "Issued": "meshbridge.pki.certs",
    "KEY_BYTES": "meshbridge.pki.sealing",
    "PHASE_TEXT": "meshbridge.pki.trust",
    "PkiStatus": "meshbridge.pki.inventory",
    "PrivateKey": "meshbridge.pki.keys",
    "SERVER_CA": "meshbridge.pki.inventory",
    "Sealer": "meshbridge.pki.sealing",
    "StatusEntry": "meshbridge.pki.inventory",
    "Trust": "meshbridge.pki.trust",
    "WARN_DAYS": "meshbridge.pki.chain",
    "anchor_of": "meshbridge.pki.chain",
    "assemble_cacerts": "meshbridge.pki.inventory",
    "build_status": "meshbridge.pki.inventory",
    "cert_id": "meshbridge.pki.chain",
    "check_signing_ca": "meshbridge.pki.chain",
    "client_ca_name": "meshbridge.pki.inventory",
    "dedupe": "meshbridge.pki.chain",
    "fingerprint": "meshbridge.pki.chain",
    "generate_key": "meshbridge.pki.keys",
    "intermediate_algorithm": "meshbridge.pki.certs",
    "issue_client": "meshbridge.pki.certs",
    "issue_ingress_ca": "meshbridge.pki.certs",
    "issue_intermediate": "meshbridge.pki.certs",
    "issue_root": "meshbridge.pki.certs",
    "issue_server": "meshbridge.pki.certs",
    "issue_workload": "meshbridge.pki.certs",
    "key_algorithm_of": "meshbridge.pki.keys",
    "key_pem": "meshbridge.pki.keys",
    "leaf_algorithm": "meshbridge.pki.keys",
    "load_cert": "meshbridge.pki.chain",
    "load_certs": "meshbridge.pki.chain",
    "load_key_pem": "meshbridge.pki.keys",
    "new_key_text": "meshbridge.pki.sealing",
    "parse_key_text": "meshbridge.pki.sealing",
    "parse_cluster_ca": "meshbridge.pki.chain",
    "parse_signing_ca": "meshbridge.pki.chain",
    "pem_of": "meshbridge.pki.chain",
    "public_der": "meshbridge.pki.keys",
    "row_aad": "meshbridge.pki.sealing",
    "self_signed": "meshbridge.pki.chain",
    "summarize": "meshbridge.pki.chain",
    "trust_bundle": "meshbridge.pki.inventory",
}

__all__ = [
    "ISTIOD_SAN",
    "KEY_BYTES",
    "PHASE_TEXT",
    "SERVER_CA",
    "WARN_DAYS",
    "CertRecord",
    "CertSummary",
    "Health",
    "Inventory",
    "Issued",
    "PkiStatus",
    "PrivateKey",
    "Sealer",
    "StatusEntry",
    "Trust",
    "anchor_of",
    "assemble_cacerts",
    "build_status",
    "cert_id",
    "check_signing_ca",
    "client_ca_name",
    "dedupe",
    "fingerprint",
    "generate_key",
    "intermediate_algorithm",
    "issue_client",
    "issue_ingress_ca",
    "issue_intermediate",
    "issue_root",
    "issue_server",
    "issue_workload",
    "key_algorithm_of",
    "key_pem",
    "leaf_algorithm",
    "load_cert",
    "load_certs",
    "load_key_pem",
    "new_key_text",
    "parse_cluster_ca",
    "parse_key_text",
    "parse_signing_ca",
    "pem_of",
    "public_der",
    "row_aad",
    "self_signed",
    "summarize",
    "trust_bundle",
]


__getattr__ = attributes(__name__, _HOMES)
