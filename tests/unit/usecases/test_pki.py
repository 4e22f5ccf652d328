"""PKI use cases over a real store: issue on first need, reuse byte for byte, rotate on request."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from meshbridge.compile.inputs import ClusterCA, Material
from meshbridge.errors import PKIError, SealingError
from meshbridge.model import KeyAlgorithm, Mesh
from meshbridge.pki.bundle import CacertsFacts, pem_fingerprints
from meshbridge.pki.certs import Issued, issue_workload
from meshbridge.pki.chain import Health, fingerprint, load_cert, load_certs, pem_of
from meshbridge.pki.keys import generate_key, key_pem, load_key_pem
from meshbridge.pki.records import CertRecord
from meshbridge.pki.sealing import Sealer
from meshbridge.store import SqlStore, open_store
from meshbridge.usecases import pki as service
from meshbridge.usecases.istiod_roots import record_istiod
from meshbridge.usecases.seen_cacerts import record_seen

NOW = datetime(2030, 1, 2, tzinfo=UTC)
LATER = NOW + timedelta(days=3)


def mesh(**spec: object) -> Mesh:
    body = {"rootCA": {"keyAlgorithm": "ECDSA-P256"}, **spec}
    return Mesh.model_validate(
        {
            "apiVersion": "meshbridge.dev/v1alpha1",
            "kind": "Mesh",
            "metadata": {"name": "default"},
            "spec": body,
        }
    )


MESH = mesh()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    s = open_store(str(tmp_path / "state.db"))
    yield s
    s.close()


@pytest.fixture
def sealer() -> Sealer:
    return Sealer(b"k" * 32, "test key")


def ensure(
    store: SqlStore,
    sealer: Sealer,
    clusters: list[str],
    external: list[tuple[str, str]] | None = None,
    now: datetime = NOW,
    m: Mesh = MESH,
) -> Material:
    with store.transaction():
        return service.ensure_material(store, sealer, m, clusters, external or [], now)


def hold(store: SqlStore, material: Material, clusters: list[str]) -> None:
    """Record, as apply does after writing them, that ``clusters`` hold ``material``'s cacerts."""
    for cluster in clusters:
        ca = material.cacerts[cluster]
        files = {"root-cert.pem": ca.root_cert, "ca-cert.pem": ca.ca_cert,
                 "cert-chain.pem": ca.cert_chain}
        record_seen(store, cluster, CacertsFacts.of(files), "applied", "2030-01-02T00:00:00+00:00")


def istiod_on(store: SqlStore, material: Material, clusters: list[str], since: datetime) -> None:
    """Record, as apply does when it reads them, that ``clusters``' istiod publish the roots of
    ``material``'s cacerts, first seen at ``since``."""
    for cluster in clusters:
        roots = pem_fingerprints(material.cacerts[cluster].root_cert)
        record_istiod(store, cluster, roots, since.isoformat(timespec="seconds"))


def chain_certs(ca: ClusterCA) -> list[x509.Certificate]:
    return load_certs(ca.cert_chain)


def verify(tmp: Path, trust_pem: str, leaf_pem: str, untrusted: str = "") -> bool:
    (tmp / "trust.pem").write_text(trust_pem)
    (tmp / "leaf.pem").write_text(leaf_pem)
    args = [
        "openssl",
        "verify",
        "-attime",
        str(int((NOW + timedelta(days=5)).timestamp())),
        "-CAfile",
        str(tmp / "trust.pem"),
    ]
    if untrusted:
        (tmp / "untrusted.pem").write_text(untrusted)
        args += ["-untrusted", str(tmp / "untrusted.pem")]
    return (
        subprocess.run([*args, str(tmp / "leaf.pem")], capture_output=True, check=False).returncode
        == 0
    )


# ------------------------------------------------------------------------------ ensure_material


def test_every_cluster_gets_its_own_intermediate_under_one_root(
    store: SqlStore, sealer: Sealer, tmp_path: Path
) -> None:
    material = ensure(store, sealer, ["c2", "c1"])
    assert list(material.cacerts) == ["c1", "c2"]
    c1, c2 = material.cacerts["c1"], material.cacerts["c2"]
    assert c1.root_cert == c2.root_cert
    assert c1.ca_cert != c2.ca_cert and c1.ca_key != c2.ca_key
    for ca in (c1, c2):
        inter, root = chain_certs(ca)
        assert pem_of(inter) == ca.ca_cert
        assert pem_of(root) == ca.root_cert
        assert verify(tmp_path, ca.root_cert, ca.ca_cert)
        assert "PRIVATE KEY" in ca.ca_key


def test_same_store_gives_byte_identical_material(store: SqlStore, sealer: Sealer) -> None:
    ext = [("a.example.com", "MUTUAL"), ("b.example.com", "SIMPLE")]
    first = ensure(store, sealer, ["c1", "c2"], ext)
    again = ensure(store, sealer, ["c2", "c1"], list(reversed(ext)), now=LATER)
    assert again == first


def test_adding_a_cluster_leaves_the_others_untouched(store: SqlStore, sealer: Sealer) -> None:
    first = ensure(store, sealer, ["c1"])
    second = ensure(store, sealer, ["c1", "c3"], now=LATER)
    assert second.cacerts["c1"] == first.cacerts["c1"]
    assert second.cacerts["c3"].root_cert == first.cacerts["c1"].root_cert
    # a cluster left out is not forgotten: it comes back with the same intermediate
    assert ensure(store, sealer, ["c3"]).cacerts["c3"] == second.cacerts["c3"]


def test_intermediate_settings_and_algorithm(store: SqlStore, sealer: Sealer) -> None:
    m = mesh(
        intermediateCA={"commonName": "Corp Int", "validityDays": 90, "keyAlgorithm": "ECDSA-P384"}
    )
    ca = ensure(store, sealer, ["c1"], m=m).cacerts["c1"]
    cert = load_cert(ca.ca_cert)
    assert "CN=Corp Int" in cert.subject.rfc4514_string()
    assert cert.not_valid_after_utc == NOW + timedelta(days=90)
    assert "BEGIN PRIVATE" + " KEY" in ca.ca_key
    assert cert.public_key().key_size == 384  # type: ignore[union-attr]


def test_ingress_credentials_mutual_and_simple(
    store: SqlStore, sealer: Sealer, tmp_path: Path
) -> None:
    material = ensure(
        store, sealer, ["c1"], [("a.example.com", "MUTUAL"), ("b.example.com", "SIMPLE")]
    )
    mutual, simple = material.ingress["a.example.com"], material.ingress["b.example.com"]
    assert simple.ca is None
    assert mutual.ca is not None
    san = load_cert(mutual.cert).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.DNSName) == ["a.example.com"]
    # the client CA is a root of its own: never the workload root, never the server's CA
    root_pem = material.cacerts["c1"].root_cert
    assert fingerprint(load_cert(mutual.ca)) != fingerprint(load_cert(root_pem))
    server_ca = service.ingress_server_ca_pem(store)
    assert mutual.ca != server_ca
    assert verify(tmp_path, server_ca, mutual.cert)
    assert not verify(tmp_path, root_pem, mutual.cert)
    assert not verify(tmp_path, mutual.ca, mutual.cert)


def test_client_certificate_is_trusted_by_the_gateway_only(
    store: SqlStore, sealer: Sealer, tmp_path: Path
) -> None:
    material = ensure(store, sealer, ["c1"], [("a.example.com", "MUTUAL")])
    with store.transaction():
        bundle = service.issue_client_cert(store, sealer, MESH, "a.example.com", "partner", NOW, 30)
    ca = material.ingress["a.example.com"].ca
    assert ca is not None
    assert verify(tmp_path, ca, bundle.cert)
    assert not verify(tmp_path, material.cacerts["c1"].root_cert, bundle.cert)
    assert bundle.server_ca == service.ingress_server_ca_pem(store)
    assert "PRIVATE KEY" in bundle.key
    # the client key is not kept; the issuance is recorded
    assert all(b"PRIVATE" not in v for v in store.list_blobs("pki.client").values())
    roles = [e.cert.role for e in service.pki_status(store, NOW).entries]
    assert "client" in roles
    # the credential rendered afterwards is unchanged
    assert ensure(store, sealer, ["c1"], [("a.example.com", "MUTUAL")]) == material


def test_wrong_sealer_cannot_read_material(store: SqlStore, sealer: Sealer) -> None:
    ensure(store, sealer, ["c1"])
    with pytest.raises(SealingError):
        ensure(store, Sealer(b"x" * 32), ["c1"])


# ------------------------------------------------------------------------------ roots


def test_init_refuses_to_replace_without_force(store: SqlStore, sealer: Sealer) -> None:
    with store.transaction():
        first = service.init_root(store, sealer, MESH, NOW)
    with pytest.raises(PKIError, match="--force"), store.transaction():
        service.init_root(store, sealer, MESH, NOW)
    before = ensure(store, sealer, ["c1"])
    assert fingerprint(load_cert(before.cacerts["c1"].root_cert)) == first.fingerprint
    with store.transaction():
        second = service.init_root(store, sealer, MESH, NOW, force=True)
    after = ensure(store, sealer, ["c1"])
    assert fingerprint(load_cert(after.cacerts["c1"].root_cert)) == second.fingerprint
    assert after.cacerts["c1"].ca_cert != before.cacerts["c1"].ca_cert


def test_import_enterprise_ca_puts_the_enterprise_root_in_cacerts(
    store: SqlStore, sealer: Sealer, tmp_path: Path
) -> None:
    ent = Sealer(b"e" * 32)  # any: we only want a root and a sub-CA from another store
    other = open_store(str(tmp_path / "enterprise.db"))
    with other.transaction():
        service.init_root(other, ent, mesh(), NOW)
    ent_root_pem = service.root_bundle_pem(other)
    ent_root_key = other.list_blobs("pki.root")
    assert ent_root_key
    # a self-signed root imports as is
    rid, data = next(iter(ent_root_key.items()))
    record = CertRecord.from_json(data, "x")
    key_pem = record.key_pem(ent, "pki.root", rid).encode()
    other.close()
    with store.transaction():
        summary = service.import_root(store, sealer, ent_root_pem.encode(), key_pem, None, NOW)
    assert summary.fingerprint == fingerprint(load_cert(ent_root_pem))
    ca = ensure(store, sealer, ["c1"]).cacerts["c1"]
    assert ca.root_cert == ent_root_pem
    assert verify(tmp_path, ca.root_cert, ca.ca_cert)
    assert "PRIVATE KEY" not in summary.subject


def test_import_enterprise_intermediate_chains_to_the_enterprise_root(
    store: SqlStore, sealer: Sealer, tmp_path: Path
) -> None:
    ent_root = _enterprise(None, "Enterprise Root")
    issuing = _enterprise(ent_root, "Issuing CA")
    with store.transaction():
        service.import_root(
            store,
            sealer,
            issuing.cert_pem.encode(),
            key_pem(issuing.key),
            ent_root.cert_pem.encode(),
            NOW,
        )
    ca = ensure(store, sealer, ["c1"]).cacerts["c1"]
    assert ca.root_cert == ent_root.cert_pem
    assert ca.cert_chain == ca.ca_cert + issuing.cert_pem + ent_root.cert_pem
    inter = Issued(load_cert(ca.ca_cert), load_key_pem(ca.ca_key.encode()))
    leaf = issue_workload(inter, "spiffe://cluster.local/ns/a/sa/b", NOW, validity_days=30)
    assert verify(tmp_path, ca.root_cert, leaf.cert_pem, ca.cert_chain)
    assert not verify(tmp_path, ca.root_cert, leaf.cert_pem, ca.ca_cert)  # needs the sub-CA
    note = next(e.note for e in service.pki_status(store, NOW).entries if e.cert.role == "root")
    assert "Enterprise Root" in note


def _enterprise(signer: Issued | None, name: str) -> Issued:
    key = generate_key(KeyAlgorithm.ECDSA_P256)
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer.cert.subject if signer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1000))
        .add_extension(
            x509.BasicConstraints(ca=True, path_length=1 if signer else None), critical=True
        )
        .sign(signer.key if signer else key, hashes.SHA256())
    )
    return Issued(cert, key)


def test_import_refuses_a_bad_ca_and_stores_nothing(store: SqlStore, sealer: Sealer) -> None:
    with pytest.raises(PKIError), store.transaction():
        service.import_root(store, sealer, b"junk", b"junk", None, NOW)
    assert store.list_blobs("pki.root") == {}
    assert store.list_blobs("pki.kek") == {}


# ------------------------------------------------------------------------------ rotation


def test_rotate_one_cluster_keeps_the_root_and_the_others(store: SqlStore, sealer: Sealer) -> None:
    before = ensure(store, sealer, ["c1", "c2"])
    with store.transaction():
        service.rotate_intermediate(store, sealer, MESH, "c1", LATER)
    after = ensure(store, sealer, ["c1", "c2"])
    assert after.cacerts["c2"] == before.cacerts["c2"]
    assert after.cacerts["c1"].root_cert == before.cacerts["c1"].root_cert
    assert after.cacerts["c1"].ca_cert != before.cacerts["c1"].ca_cert
    with pytest.raises(PKIError, match="no intermediate"), store.transaction():
        service.rotate_intermediate(store, sealer, MESH, "nope", LATER)


def test_root_rotation_phases(store: SqlStore, sealer: Sealer, tmp_path: Path) -> None:
    phase0 = ensure(store, sealer, ["c1", "c2"])
    old_root = phase0.cacerts["c1"].root_cert

    with store.transaction():
        assert service.rotate_root_begin(store, sealer, MESH, NOW).phase == 1
    phase1 = ensure(store, sealer, ["c1", "c2", "c3"])
    roots = load_certs(phase1.cacerts["c1"].root_cert)
    assert len(roots) == 2 and pem_of(roots[0]) == old_root
    new_root = pem_of(roots[1])
    for cluster in ("c1", "c2"):  # intermediates unchanged, still chained to the old root
        assert phase1.cacerts[cluster].ca_cert == phase0.cacerts[cluster].ca_cert
        assert phase1.cacerts[cluster].cert_chain == phase0.cacerts[cluster].cert_chain
    assert verify(tmp_path, old_root, phase1.cacerts["c3"].ca_cert)  # new cluster: old root
    assert service.pki_status(store, NOW).phase == 1
    # the new root is told apart from the old one by its subject, not only by its key
    assert load_cert(new_root).subject != load_cert(old_root).subject
    assert "OU=generation 2" in load_cert(new_root).subject.rfc4514_string()

    # a phase does not advance until every cluster holds the previous phase's bundle
    hold(store, phase0, ["c1", "c2"])
    hold(store, phase1, ["c1"])
    with pytest.raises(PKIError) as refused, store.transaction():
        service.rotate_root_advance(store, sealer, MESH, NOW)
    assert "c2: holds roots" in str(refused.value) and "c3: no apply recorded" in str(refused.value)
    assert "\n  c1:" not in str(refused.value)
    assert service.pki_status(store, NOW).phase == 1
    hold(store, phase1, ["c2", "c3"])
    # nor until every istiod publishes both roots, and its workloads could renew since
    with pytest.raises(PKIError, match=r"c1: istiod not seen"), store.transaction():
        service.rotate_root_advance(store, sealer, MESH, NOW)
    istiod_on(store, phase0, ["c1"], NOW)
    istiod_on(store, phase1, ["c2", "c3"], NOW)
    with pytest.raises(PKIError) as refused, store.transaction():
        service.rotate_root_advance(store, sealer, MESH, NOW + timedelta(hours=1))
    assert "c1: istiod publishes sha256:" in str(refused.value)
    assert "not yet this phase's" in str(refused.value)
    istiod_on(store, phase1, ["c1"], NOW)
    with pytest.raises(PKIError) as refused, store.transaction():
        service.rotate_root_advance(store, sealer, MESH, NOW + timedelta(hours=1))
    # workload certificates live 24 hours (Istio's default: the Mesh sets no other)
    assert "c2: workloads may hold certificates from before 2030-01-02T00:00:00+00:00" in str(
        refused.value)
    assert "wait until 2030-01-03T00:00:00+00:00" in str(refused.value)
    assert service.pki_status(store, NOW).phase == 1
    with store.transaction():
        assert service.rotate_root_advance(store, sealer, MESH, NOW + timedelta(days=1)).phase == 2
    phase2 = ensure(store, sealer, ["c1", "c2", "c3"])
    for cluster in ("c1", "c2", "c3"):
        ca = phase2.cacerts[cluster]
        assert ca.root_cert == phase1.cacerts["c1"].root_cert  # both roots still trusted
        assert ca.ca_cert != phase1.cacerts[cluster].ca_cert
        assert verify(tmp_path, new_root, ca.ca_cert)
        assert not verify(tmp_path, old_root, ca.ca_cert)
        assert chain_certs(ca)[1] == load_cert(new_root)
        # an old intermediate (still in use by running workloads) verifies against the bundle
        assert verify(tmp_path, ca.root_cert, phase0.cacerts["c1"].ca_cert)

    # same roots as phase 1, but the old intermediates
    with pytest.raises(PKIError, match=r"c1: holds roots .*, with another intermediate"):
        service.rotate_root_finish(store, MESH, LATER)
    hold(store, phase2, ["c1", "c2", "c3"])  # applied at NOW
    # istiod publishes the same roots in phase 2: the wait counts from apply (plus the time the
    # kubelet may take to hand istiod its new cacerts), a certificate lifetime
    with pytest.raises(PKIError, match=r"wait until 2030-01-03T00:02:00\+00:00"):
        service.rotate_root_finish(store, MESH, NOW + timedelta(days=1))
    with store.transaction():
        done = service.rotate_root_finish(store, MESH, NOW + timedelta(days=1, minutes=2))
        assert done.phase == 0
    phase3 = ensure(store, sealer, ["c1", "c2", "c3"])
    for cluster in ("c1", "c2", "c3"):
        assert phase3.cacerts[cluster].root_cert == new_root
        assert phase3.cacerts[cluster].ca_cert == phase2.cacerts[cluster].ca_cert
    assert len(store.list_blobs("pki.root")) == 1
    assert service.pki_status(store, NOW).phase == 0


def test_rotation_abort_and_wrong_order(store: SqlStore, sealer: Sealer) -> None:
    phase0 = ensure(store, sealer, ["c1"])
    with pytest.raises(PKIError, match="begin"), store.transaction():
        service.rotate_root_advance(store, sealer, MESH, NOW)
    with store.transaction():
        service.rotate_root_begin(store, sealer, MESH, NOW)
    with pytest.raises(PKIError, match="advance"), store.transaction():
        service.rotate_root_finish(store, MESH, NOW, force=True)
    with store.transaction():
        service.rotate_root_abort(store)
    assert ensure(store, sealer, ["c1"]) == phase0
    assert len(store.list_blobs("pki.root")) == 1


def test_rotate_ingress_server_and_client_ca(store: SqlStore, sealer: Sealer) -> None:
    first = ensure(store, sealer, ["c1"], [("a.example.com", "MUTUAL")])
    with store.transaction():
        service.rotate_server(store, sealer, MESH, "a.example.com", LATER)
    second = ensure(store, sealer, ["c1"], [("a.example.com", "MUTUAL")])
    assert second.ingress["a.example.com"].cert != first.ingress["a.example.com"].cert
    assert second.ingress["a.example.com"].ca == first.ingress["a.example.com"].ca
    with store.transaction():
        service.rotate_client_ca(store, sealer, MESH, "a.example.com", LATER)
    third = ensure(store, sealer, ["c1"], [("a.example.com", "MUTUAL")])
    assert third.ingress["a.example.com"].ca != first.ingress["a.example.com"].ca


# ------------------------------------------------------------------------------ status & misc


def test_status_reports_expiry(store: SqlStore, sealer: Sealer) -> None:
    short = mesh(intermediateCA={"validityDays": 20})
    ensure(store, sealer, ["c1"], m=short)
    report = service.pki_status(store, NOW)
    health = {(e.cert.role, e.cert.name): e.cert.health for e in report.entries}
    assert health[("intermediate", "c1")] is Health.EXPIRING
    assert not report.expired
    assert any(e.deployed and e.cert.health is Health.EXPIRING for e in report.entries)
    assert service.pki_status(store, NOW + timedelta(days=21)).expired


def test_status_without_a_root(store: SqlStore) -> None:
    report = service.pki_status(store, NOW)
    assert report.entries == () and not report.expired


def test_settings_of_the_last_render_are_remembered(store: SqlStore, sealer: Sealer) -> None:
    m = mesh(intermediateCA={"commonName": "Remembered"})
    ensure(store, sealer, ["c1"], m=m)
    assert service.mesh_for(store, None).spec.intermediate_ca.common_name == "Remembered"
    assert service.mesh_for(store, MESH) is MESH


def test_key_file_path_rules() -> None:
    assert service.key_file_path("x/state.db") == Path("x/state.db.key")
    assert service.key_file_path("sqlite:////abs/s.db") == Path("/abs/s.db.key")
    assert service.key_file_path("postgresql://db/mesh") is None
    assert service.key_file_path(None) is None


def test_database_url_needs_the_env_key(store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(service.STATE_KEY_ENV, raising=False)
    with pytest.raises(SealingError, match="MESHBRIDGE_STATE_KEY"):
        service.load_sealer("postgresql://db/mesh", store)
    monkeypatch.setenv(service.STATE_KEY_ENV, "cd" * 32)
    assert service.load_sealer("postgresql://db/mesh", store).origin == service.STATE_KEY_ENV


def test_an_expired_client_certificate_is_reported_but_not_a_failure(
    store: SqlStore, sealer: Sealer
) -> None:
    ensure(store, sealer, ["c1"], [("a.example.com", "MUTUAL")])
    with store.transaction():
        service.issue_client_cert(store, sealer, MESH, "a.example.com", "p", NOW, days=1)
    report = service.pki_status(store, NOW + timedelta(days=2))
    client = next(e for e in report.entries if e.cert.role == "client")
    assert client.cert.health is Health.EXPIRED and not client.deployed
    assert not report.expired


def test_no_cluster_no_root(store: SqlStore, sealer: Sealer) -> None:
    material = ensure(store, sealer, [], [("a.example.com", "SIMPLE")])
    assert material.cacerts == {} and material.ingress["a.example.com"].ca is None
    assert store.list_blobs("pki.root") == {}
