"""Importing a CA: only one that can really sign cluster intermediates is accepted."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from meshbridge.errors import PKIError
from meshbridge.model import CASettings, IntermediateCASettings, KeyAlgorithm
from meshbridge.pki.certs import Issued, issue_intermediate, issue_root, issue_workload
from meshbridge.pki.chain import anchor_of, check_signing_ca, parse_signing_ca, pem_of, self_signed
from meshbridge.pki.keys import generate_key, key_pem

NOW = datetime(2030, 1, 2, tzinfo=UTC)


def _root(name: str = "Enterprise Root") -> Issued:
    settings = CASettings.model_validate(
        {"commonName": name, "organization": "corp", "keyAlgorithm": "ECDSA-P256"}
    )
    return issue_root(settings, NOW)


def _enterprise_ca(signer: Issued, name: str, path_length: int | None) -> Issued:
    """An issuing CA as an enterprise PKI would hand it out (pathlen >= 1 or unlimited)."""
    key = generate_key(KeyAlgorithm.ECDSA_P256)
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1000))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .sign(signer.key, hashes.SHA256())
    )
    return Issued(cert, key)


def test_self_signed_root_is_accepted() -> None:
    root = _root()
    check_signing_ca(root.cert, root.key, (), NOW)
    assert self_signed(root.cert)
    assert anchor_of(root.cert, ()) == root.cert


def test_enterprise_intermediate_with_chain_is_accepted_and_verifies(tmp_path: Path) -> None:
    ent_root = _root()
    policy = _enterprise_ca(ent_root, "Policy CA", None)
    issuing = _enterprise_ca(policy, "Issuing CA", 1)
    chain_pem = (pem_of(issuing.cert) + pem_of(policy.cert) + pem_of(ent_root.cert)).encode()
    cert, key, chain = parse_signing_ca(
        pem_of(issuing.cert).encode(), key_pem(issuing.key), chain_pem, NOW
    )
    assert [c.subject for c in chain] == [
        policy.cert.subject,
        ent_root.cert.subject,
    ]  # copy dropped
    assert anchor_of(cert, chain) == ent_root.cert
    # and a cluster intermediate under it verifies to the enterprise root
    inter = issue_intermediate(
        Issued(cert, key), IntermediateCASettings(), "c1", KeyAlgorithm.ECDSA_P256, NOW
    )
    leaf = issue_workload(inter, "spiffe://cluster.local/ns/a/sa/b", NOW)
    (tmp_path / "root.pem").write_text(pem_of(ent_root.cert))
    (tmp_path / "untrusted.pem").write_text(inter.cert_pem + issuing.cert_pem + policy.cert_pem)
    (tmp_path / "leaf.pem").write_text(leaf.cert_pem)
    result = subprocess.run(
        [
            "openssl",
            "verify",
            "-attime",
            str(int((NOW + timedelta(hours=1)).timestamp())),
            "-CAfile",
            str(tmp_path / "root.pem"),
            "-untrusted",
            str(tmp_path / "untrusted.pem"),
            str(tmp_path / "leaf.pem"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_key_must_match() -> None:
    root, other = _root(), _root("Other")
    with pytest.raises(PKIError, match="does not belong"):
        check_signing_ca(root.cert, other.key, (), NOW)


def test_pathlen_zero_ca_cannot_be_the_mesh_signer() -> None:
    ent_root = _root()
    leafish = _enterprise_ca(ent_root, "Issuing CA", 0)
    with pytest.raises(PKIError, match="pathlen 0"):
        check_signing_ca(leafish.cert, leafish.key, (ent_root.cert,), NOW)


def test_chain_cert_pathlen_is_checked() -> None:
    ent_root = _root()
    policy = _enterprise_ca(ent_root, "Policy CA", 1)  # allows one CA under it: not two
    issuing = _enterprise_ca(policy, "Issuing CA", None)
    with pytest.raises(PKIError, match="pathlen 1"):
        check_signing_ca(issuing.cert, issuing.key, (policy.cert, ent_root.cert), NOW)


def test_not_self_signed_needs_a_chain_and_a_root_takes_none() -> None:
    ent_root = _root()
    issuing = _enterprise_ca(ent_root, "Issuing CA", 1)
    with pytest.raises(PKIError, match="--chain"):
        check_signing_ca(issuing.cert, issuing.key, (), NOW)
    with pytest.raises(PKIError, match="takes no --chain"):
        check_signing_ca(ent_root.cert, ent_root.key, (ent_root.cert,), NOW)


def test_chain_out_of_order_or_unrelated_is_refused() -> None:
    ent_root = _root()
    policy = _enterprise_ca(ent_root, "Policy CA", None)
    issuing = _enterprise_ca(policy, "Issuing CA", 1)
    with pytest.raises(PKIError, match="did not sign"):
        check_signing_ca(issuing.cert, issuing.key, (ent_root.cert, policy.cert), NOW)
    with pytest.raises(PKIError, match="self-signed root"):
        check_signing_ca(issuing.cert, issuing.key, (policy.cert,), NOW)


def test_expired_and_non_ca_certificates_are_refused() -> None:
    root = _root()
    with pytest.raises(PKIError, match="expired"):
        check_signing_ca(root.cert, root.key, (), NOW + timedelta(days=4000))
    inter = issue_intermediate(root, IntermediateCASettings(), "c", KeyAlgorithm.ECDSA_P256, NOW)
    leaf = issue_workload(inter, "spiffe://cluster.local/ns/a/sa/b", NOW)
    with pytest.raises(PKIError, match="not a CA"):
        check_signing_ca(leaf.cert, leaf.key, (inter.cert, root.cert), NOW)


def test_unreadable_files_give_pki_errors() -> None:
    root = _root()
    with pytest.raises(PKIError, match="no readable PEM certificate"):
        parse_signing_ca(b"nope", key_pem(root.key), None, NOW)
    with pytest.raises(PKIError, match="not a readable PEM private key"):
        parse_signing_ca(pem_of(root.cert).encode(), b"nope", None, NOW)
