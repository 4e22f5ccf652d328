"""The mesh PKI as pure functions: issue, inspect, seal — no store, no environment, no files.

One root of trust for the whole mesh, an intermediate CA per cluster for istiod, and separate
ingress CAs for traffic from outside the mesh. The clock (``now``) is always an argument and
randomness comes only from key generation, serial numbers and nonces, so the service layer
decides when anything is issued and stores it; this package only says *how*.
"""

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
from meshbridge.pki.records import CertRecord, row_aad
from meshbridge.pki.sealing import KEY_BYTES, Sealer, new_key_text, parse_key_text
from meshbridge.pki.trust import PHASE_TEXT, Trust

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
    "parse_key_text",
    "parse_signing_ca",
    "pem_of",
    "public_der",
    "row_aad",
    "self_signed",
    "summarize",
    "trust_bundle",
]
