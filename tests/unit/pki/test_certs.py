"""Certificate profiles: what Istio, Envoy and openssl will see in each certificate we issue."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshbridge.errors import PKIError
from meshbridge.model import CASettings, IntermediateCASettings, KeyAlgorithm
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
from meshbridge.pki.keys import key_algorithm_of

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
P256 = KeyAlgorithm.ECDSA_P256


def root_settings(algorithm: KeyAlgorithm = P256, days: int = 3650) -> CASettings:
    return CASettings.model_validate(
        {
            "commonName": "Test Root",
            "organization": "example.org",
            "validityDays": days,
            "keyAlgorithm": algorithm,
        }
    )


def inter_settings(
    algorithm: KeyAlgorithm | None = None, days: int = 730
) -> IntermediateCASettings:
    return IntermediateCASettings.model_validate(
        {
            "commonName": "Test Intermediate",
            "organization": "example.org",
            "validityDays": days,
            "keyAlgorithm": algorithm,
        }
    )


def ext(
    cert: x509.Certificate, kind: type[x509.ExtensionType]
) -> x509.Extension[x509.ExtensionType]:
    return cert.extensions.get_extension_for_class(kind)


def write(tmp: Path, name: str, *items: Issued | x509.Certificate) -> str:
    path = tmp / name
    path.write_text("".join(i.cert_pem if isinstance(i, Issued) else _pem(i) for i in items))
    return str(path)


def _pem(cert: x509.Certificate) -> str:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM).decode()


def openssl_verify(
    tmp: Path, root: Issued, leaf: Issued, *untrusted: Issued, purpose: str = ""
) -> None:
    args = ["openssl", "verify", "-attime", str(int((NOW + timedelta(hours=1)).timestamp()))]
    args += ["-CAfile", write(tmp, "root.pem", root)]
    if untrusted:
        args += ["-untrusted", write(tmp, "untrusted.pem", *untrusted)]
    if purpose:
        args += ["-purpose", purpose]
    args.append(write(tmp, "leaf.pem", leaf))
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(": OK")


@pytest.fixture(scope="module")
def root() -> Issued:
    return issue_root(root_settings(), NOW)


@pytest.fixture(scope="module")
def inter(root: Issued) -> Issued:
    return issue_intermediate(root, inter_settings(), "cluster1", P256, NOW)


# ------------------------------------------------------------------------------------- root


def test_root_is_a_self_signed_ca_with_the_mesh_subject(root: Issued) -> None:
    cert = root.cert
    assert cert.subject == cert.issuer
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Test Root"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "example.org"
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length is None
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    cert.verify_directly_issued_by(cert)


def test_root_validity_follows_settings(root: Issued) -> None:
    assert root.cert.not_valid_after_utc == NOW + timedelta(days=3650)
    assert root.cert.not_valid_before_utc <= NOW


@pytest.mark.parametrize("algorithm", list(KeyAlgorithm))
def test_every_key_algorithm_of_the_contract(algorithm: KeyAlgorithm) -> None:
    issued = issue_root(root_settings(algorithm), NOW)
    assert key_algorithm_of(issued.key) is algorithm
    if algorithm.value.startswith("RSA"):
        assert isinstance(issued.key, rsa.RSAPrivateKey)
        assert issued.key.public_key().public_numbers().e == 65537
    else:
        assert isinstance(issued.key, ec.EllipticCurvePrivateKey)
    assert isinstance(issued.cert.signature_hash_algorithm, hashes.SHA256)


def test_serial_numbers_are_random() -> None:
    a, b = issue_root(root_settings(), NOW), issue_root(root_settings(), NOW)
    assert a.cert.serial_number != b.cert.serial_number
    assert a.cert.serial_number.bit_length() > 64


# ------------------------------------------------------------------------------ intermediate


def test_intermediate_matches_istio_tools_certs(root: Issued, inter: Issued) -> None:
    cert = inter.cert
    assert cert.issuer == root.cert.subject
    bc = ext(cert, x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    san = ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [ISTIOD_SAN]
    assert ISTIOD_SAN == "istiod.istio-system.svc"
    assert cert.subject.get_attributes_for_oid(NameOID.LOCALITY_NAME)[0].value == "cluster1"
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Test Intermediate"
    aki = ext(cert, x509.AuthorityKeyIdentifier).value
    ski = ext(root.cert, x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    cert.verify_directly_issued_by(root.cert)


def test_intermediate_validity_follows_settings_but_not_past_the_root() -> None:
    root = issue_root(root_settings(days=100), NOW)
    short = issue_intermediate(root, inter_settings(days=10), "c", P256, NOW)
    assert short.cert.not_valid_after_utc == NOW + timedelta(days=10)
    long = issue_intermediate(root, inter_settings(days=730), "c", P256, NOW)
    assert long.cert.not_valid_after_utc == root.cert.not_valid_after_utc


def test_intermediate_key_algorithm_is_the_roots_unless_set(root: Issued) -> None:
    assert intermediate_algorithm(inter_settings(), root, KeyAlgorithm.RSA_4096) is P256
    chosen = intermediate_algorithm(inter_settings(KeyAlgorithm.ECDSA_P384), root, P256)
    assert chosen is KeyAlgorithm.ECDSA_P384
    inter = issue_intermediate(root, inter_settings(), "c", chosen, NOW)
    assert isinstance(inter.key, ec.EllipticCurvePrivateKey)
    assert isinstance(inter.key.curve, ec.SECP384R1)


def test_an_expired_issuer_cannot_sign() -> None:
    root = issue_root(root_settings(days=1), NOW)
    with pytest.raises(PKIError, match="expired"):
        issue_intermediate(root, inter_settings(), "c", P256, NOW + timedelta(days=2))


def test_naive_clock_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        issue_root(root_settings(), datetime(2030, 1, 1))


# -------------------------------------------------------------------------------- leaves


def test_workload_chain_verifies_with_openssl(tmp_path: Path, root: Issued, inter: Issued) -> None:
    leaf = issue_workload(inter, "spiffe://cluster.local/ns/bar/sa/httpbin", NOW)
    san = ext(leaf.cert, x509.SubjectAlternativeName)
    assert san.critical
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://cluster.local/ns/bar/sa/httpbin"
    ]
    eku = ext(leaf.cert, x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert not ext(leaf.cert, x509.BasicConstraints).value.ca
    openssl_verify(tmp_path, root, leaf, inter, purpose="sslclient")
    openssl_verify(tmp_path, root, leaf, inter, purpose="sslserver")


def test_intermediate_verifies_with_openssl(tmp_path: Path, root: Issued, inter: Issued) -> None:
    openssl_verify(tmp_path, root, inter)


def test_pathlen_zero_stops_a_ca_under_the_intermediate(
    tmp_path: Path, root: Issued, inter: Issued
) -> None:
    rogue = issue_intermediate(inter, inter_settings(), "rogue", P256, NOW)
    leaf = issue_workload(rogue, "spiffe://cluster.local/ns/x/sa/y", NOW)
    args = [
        "openssl",
        "verify",
        "-attime",
        str(int((NOW + timedelta(hours=1)).timestamp())),
        "-CAfile",
        write(tmp_path, "r.pem", root),
        "-untrusted",
        write(tmp_path, "u.pem", rogue, inter),
        write(tmp_path, "l.pem", leaf),
    ]
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "path length" in (result.stdout + result.stderr).lower()


def test_server_certificate_names_the_host(tmp_path: Path) -> None:
    ca = issue_ingress_ca("Ingress Server CA", "example.org", 3650, P256, NOW)
    assert ext(ca.cert, x509.BasicConstraints).value.path_length == 0
    server = issue_server(ca, "httpbin.example.com", "example.org", NOW)
    san = ext(server.cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["httpbin.example.com"]
    assert list(ext(server.cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert server.cert.not_valid_after_utc == NOW + timedelta(days=365)
    openssl_verify(tmp_path, ca, server, purpose="sslserver")


def test_client_certificate_is_for_clients_only(tmp_path: Path) -> None:
    ca = issue_ingress_ca("Ingress Client CA", "example.org", 3650, KeyAlgorithm.RSA_2048, NOW)
    client = issue_client(ca, "partner-a", "example.org", NOW, 30)
    assert client.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "partner-a"
    assert list(ext(client.cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert ext(client.cert, x509.KeyUsage).value.key_encipherment  # RSA leaf
    assert client.cert.not_valid_after_utc == NOW + timedelta(days=30)
    openssl_verify(tmp_path, ca, client, purpose="sslclient")
    with pytest.raises(PKIError, match="1 to 64"):
        issue_client(ca, "x" * 65, "example.org", NOW)


def test_a_workload_certificate_needs_a_spiffe_id(inter: Issued) -> None:
    with pytest.raises(PKIError, match="SPIFFE"):
        issue_workload(inter, "https://example.com", NOW)


def test_cert_chain_from_leaf_to_root_verifies(tmp_path: Path, root: Issued, inter: Issued) -> None:
    """The cacerts shape: cert-chain = intermediate + root; root-cert = root."""
    leaf = issue_workload(inter, "spiffe://cluster.local/ns/a/sa/b", NOW)
    openssl_verify(tmp_path, root, leaf, inter, root)
