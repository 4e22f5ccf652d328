"""PKI use cases over the state store: issue once, keep sealed, reuse, rotate on request.

``render`` needs, for every cluster, the ``cacerts`` Secret (one shared root, an intermediate of
the cluster's own) and, for every external host, an ingress credential. This module issues each
piece the first time it is needed, stores it (private keys sealed under the KEK, see
:mod:`meshbridge.pki.sealing`) and hands the same bytes back on every later run, so rendering the
same intents against the same state is byte-identical and nothing already issued changes unless
a command asks for it (``pki rotate``, ``pki rotate-root``, ``pki init --force``).

Store rows (kind / name), all JSON (:class:`meshbridge.pki.records.CertRecord` unless noted)::

    pki.kek            check            a sealed constant: tells a wrong KEK from a damaged row
    pki.trust          mesh             Trust (active / next root id, rotation phase)
    pki.settings       mesh             the Mesh CA settings last used (for commands without -f)
    pki.root           <root id>        a signing CA of the mesh (self-signed or imported)
    pki.intermediate   <cluster>        the cluster's istiod CA, issued by a root
    pki.ingress-ca     server           signs ingress server certificates (callers trust it)
    pki.ingress-ca     client/<host>    the client CA in <host>'s ca.crt (one per MUTUAL host)
    pki.server         <host>           the ingress server certificate of <host>
    pki.client         <host>/<serial>  a client certificate handed out (no key kept)

The KEK comes from ``MESHBRIDGE_STATE_KEY`` or, for a SQLite file, from ``<state file>.key``
(see :mod:`meshbridge.usecases.statekey`); the CLI and the render command share it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.x509.oid import NameOID

from meshbridge.compile import Blueprint
from meshbridge.compile.inputs import ClusterCA, IngressCredential, Material
from meshbridge.errors import PKIError, StateError
from meshbridge.model import CASettings, Mesh
from meshbridge.pki.bundle import CacertsFacts
from meshbridge.pki.certs import (
    Issued,
    intermediate_algorithm,
    issue_client,
    issue_ingress_ca,
    issue_intermediate,
    issue_root,
    issue_server,
)
from meshbridge.pki.chain import (
    CertSummary,
    cert_id,
    fingerprint,
    parse_cluster_ca,
    parse_signing_ca,
    pem_of,
    summarize,
)
from meshbridge.pki.inventory import (
    SERVER_CA,
    Inventory,
    PkiStatus,
    assemble_cacerts,
    build_status,
    client_ca_name,
    trust_bundle,
)
from meshbridge.pki.records import CertRecord
from meshbridge.pki.sealing import Sealer, row_aad
from meshbridge.pki.trust import Trust
from meshbridge.store.base import Store
from meshbridge.usecases.istiod_roots import rollout_waits
from meshbridge.usecases.seen_cacerts import not_holding_expected
from meshbridge.usecases.statekey import (
    CHECK_NAME,
    CHECK_TEXT,
    KIND_INGRESS_CA,
    KIND_INTERMEDIATE,
    KIND_KEK,
    KIND_ROOT,
    KIND_SERVER,
    STATE_KEY_ENV,
    key_file_path,
    load_sealer,
    pair_key_file,
    refuse_lost_store,
)

__all__ = [
    "STATE_KEY_ENV",
    "ClientBundle",
    "PkiStatus",
    "ensure_material",
    "export_cacerts",
    "export_root",
    "import_intermediate",
    "import_root",
    "ingress_server_ca_pem",
    "init_root",
    "issue_client_cert",
    "key_file_path",
    "load_sealer",
    "material_provider",
    "mesh_for",
    "pair_key_file",
    "pki_status",
    "refuse_lost_store",
    "root_bundle_pem",
    "rotate_client_ca",
    "rotate_intermediate",
    "rotate_root_abort",
    "rotate_root_advance",
    "rotate_root_begin",
    "rotate_root_finish",
    "rotate_server",
    "trusted_fingerprints",
]

SERVER_CERT_DAYS = 365

KIND_TRUST = "pki.trust"
KIND_SETTINGS = "pki.settings"
KIND_CLIENT = "pki.client"
_MESH = "mesh"


# ============================================================================ rows and records


def _get(store: Store, kind: str, name: str) -> CertRecord | None:
    data = store.get_blob(kind, name)
    return None if data is None else CertRecord.from_json(data, f"{kind}/{name}")


def _put(store: Store, sealer: Sealer, kind: str, name: str, record: CertRecord) -> None:
    if store.get_blob(KIND_KEK, CHECK_NAME) is None:
        store.put_blob(KIND_KEK, CHECK_NAME, sealer.seal(CHECK_TEXT, row_aad(KIND_KEK, CHECK_NAME)))
    store.put_blob(kind, name, record.to_json())


def _seal(
    store: Store, sealer: Sealer, kind: str, name: str, issued: Issued, now: datetime, **extra: str
) -> CertRecord:
    record = CertRecord.seal(
        issued,
        sealer,
        kind,
        name,
        issuer_id=extra.pop("issuer_id", ""),
        created=now.isoformat(timespec="seconds"),
        labels=extra,
    )
    _put(store, sealer, kind, name, record)
    return record


def _trust(store: Store) -> Trust | None:
    data = store.get_blob(KIND_TRUST, _MESH)
    return None if data is None else Trust.from_json(data)


def _require_trust(store: Store) -> Trust:
    trust = _trust(store)
    if trust is None:
        raise PKIError("the mesh has no root CA yet: run 'meshbridge pki init' (or render) first")
    return trust


def _root(store: Store, root_id: str) -> CertRecord:
    record = _get(store, KIND_ROOT, root_id)
    if record is None:
        raise StateError(f"the state store lost root CA {root_id}: restore it from a backup")
    return record


# ================================================================================= settings


# What commands without -f take from the last render: the CA settings, and the workload
# certificate lifetime root rotations wait for.
_REMEMBERED: dict[str, bool | set[str]] = {
    "root_ca": True,
    "intermediate_ca": True,
    "istio": {"workload_cert_ttl"},
}


def _remember(store: Store, mesh: Mesh) -> None:
    spec = mesh.spec.model_dump(mode="json", by_alias=True, include=_REMEMBERED)
    data = json.dumps(spec, sort_keys=True).encode()
    if store.get_blob(KIND_SETTINGS, _MESH) != data:
        store.put_blob(KIND_SETTINGS, _MESH, data)


def mesh_for(store: Store, given: Mesh | None) -> Mesh:
    """The Mesh to take CA settings (and the workload certificate lifetime) from: ``given``
    (-f), else the one last used, else defaults."""
    if given is not None:
        return given
    data = store.get_blob(KIND_SETTINGS, _MESH)
    spec = json.loads(data) if data is not None else {}
    return Mesh.model_validate(
        {
            "apiVersion": "meshbridge.dev/v1alpha1",
            "kind": "Mesh",
            "metadata": {"name": "default"},
            "spec": spec,
        }
    )


# ================================================================================ issuing


def _install_root(
    store: Store,
    sealer: Sealer,
    issued: Issued,
    chain: tuple[x509.Certificate, ...],
    now: datetime,
) -> str:
    root_id = cert_id(issued.cert)
    created = now.isoformat(timespec="seconds")
    record = CertRecord.seal(issued, sealer, KIND_ROOT, root_id, chain=chain, created=created)
    _put(store, sealer, KIND_ROOT, root_id, record)
    return root_id


def _ensure_root(store: Store, sealer: Sealer, mesh: Mesh, now: datetime) -> Trust:
    trust = _trust(store)
    if trust is None:
        root_id = _install_root(store, sealer, issue_root(mesh.spec.root_ca, now), (), now)
        trust = Trust(active=root_id)
        store.put_blob(KIND_TRUST, _MESH, trust.to_json())
    return trust


def _issue_intermediate(
    store: Store, sealer: Sealer, mesh: Mesh, cluster: str, signing_id: str, now: datetime
) -> CertRecord:
    root = _root(store, signing_id)
    if not root.sealed_key:
        raise PKIError(
            f"cluster {cluster} needs an intermediate CA, but root {signing_id} is kept without "
            f"its key and signs nothing: take the cluster's own back from its live cacerts "
            f"('pki import --cluster {cluster} --cert ca-cert.pem --key ca-key.pem'), or move "
            "the mesh to a new root ('pki rotate-root begin')"
        )
    signer = root.open(sealer, KIND_ROOT, signing_id)
    settings = mesh.spec.intermediate_ca
    algorithm = intermediate_algorithm(settings, signer, mesh.spec.root_ca.key_algorithm)
    issued = issue_intermediate(signer, settings, cluster, algorithm, now)
    return _seal(store, sealer, KIND_INTERMEDIATE, cluster, issued, now, issuer_id=signing_id)


def _cluster_ca(
    store: Store, sealer: Sealer, trust: Trust, cluster: str, inter: CertRecord
) -> ClusterCA:
    if inter.issuer_id not in trust.trusted:
        raise PKIError(
            f"cluster {cluster}'s intermediate CA was issued by a root the mesh no longer trusts; "
            f"run 'meshbridge pki rotate --cluster {cluster}'"
        )
    return assemble_cacerts(
        inter,
        inter.key_pem(sealer, KIND_INTERMEDIATE, cluster),
        _root(store, inter.issuer_id),
        [_root(store, rid) for rid in trust.trusted],
    )


def _ensure_ingress_ca(
    store: Store, sealer: Sealer, mesh: Mesh, name: str, now: datetime, host: str | None = None
) -> CertRecord:
    record = _get(store, KIND_INGRESS_CA, name)
    if record is None:
        root = mesh.spec.root_ca
        title = "Ingress Server CA" if host is None else "Ingress Client CA"
        issued = issue_ingress_ca(
            f"{root.organization} {title}",
            root.organization,
            root.validity_days,
            root.key_algorithm,
            now,
            unit=host,
        )
        record = _seal(store, sealer, KIND_INGRESS_CA, name, issued, now)
    return record


def _ensure_server(
    store: Store, sealer: Sealer, mesh: Mesh, host: str, now: datetime
) -> CertRecord:
    record = _get(store, KIND_SERVER, host)
    if record is None:
        ca = _ensure_ingress_ca(store, sealer, mesh, SERVER_CA, now)
        signer = ca.open(sealer, KIND_INGRESS_CA, SERVER_CA)
        issued = issue_server(signer, host, mesh.spec.root_ca.organization, now, SERVER_CERT_DAYS)
        record = _seal(store, sealer, KIND_SERVER, host, issued, now, issuer_id=SERVER_CA)
    return record


def ensure_material(
    store: Store,
    sealer: Sealer,
    mesh: Mesh,
    clusters: Sequence[str],
    external: Sequence[tuple[str, str]],
    now: datetime,
) -> Material:
    """Every cluster's ``cacerts`` and every external host's credential, issuing what is missing.

    ``external`` holds (host, tlsMode) pairs; a PASSTHROUGH host gets nothing (its service
    presents its own certificate). Call inside ``store.transaction()``; nothing that exists is
    re-issued, so an unchanged store gives byte-identical material.
    """
    _remember(store, mesh)
    cacerts: dict[str, ClusterCA] = {}
    trust = _ensure_root(store, sealer, mesh, now) if clusters else None
    for cluster in sorted(set(clusters)):
        assert trust is not None
        inter = _get(store, KIND_INTERMEDIATE, cluster)
        if inter is None:
            inter = _issue_intermediate(store, sealer, mesh, cluster, trust.signing, now)
        cacerts[cluster] = _cluster_ca(store, sealer, trust, cluster, inter)
    ingress: dict[str, IngressCredential] = {}
    for host, mode in sorted(set(external)):
        if mode == "PASSTHROUGH":
            continue
        server = _ensure_server(store, sealer, mesh, host, now)
        client_ca = None
        if mode == "MUTUAL":
            client_ca = _ensure_ingress_ca(
                store, sealer, mesh, client_ca_name(host), now, host
            ).cert_pem
        ingress[host] = IngressCredential(
            cert=server.cert_pem, key=server.key_pem(sealer, KIND_SERVER, host), ca=client_ca
        )
    return Material(cacerts=cacerts, ingress=ingress)


# ========================================================================= roots: init, import


def _refuse_replacing(store: Store, force: bool) -> None:
    trust = _trust(store)
    if trust is not None and not force:
        raise PKIError(
            f"the mesh already has a root CA ({trust.active}); pass --force to replace it (every "
            "cluster's intermediate is re-issued, and workloads distrust each other until all "
            "clusters have the new cacerts: prefer 'pki rotate-root')"
        )


def _replace_root(store: Store, root_id: str) -> None:
    """Make ``root_id`` the only root; drop intermediates (they re-issue under it on render)."""
    for old in store.list_blobs(KIND_ROOT):
        if old != root_id:
            store.delete_blob(KIND_ROOT, old)
    for cluster in store.list_blobs(KIND_INTERMEDIATE):
        store.delete_blob(KIND_INTERMEDIATE, cluster)
    store.put_blob(KIND_TRUST, _MESH, Trust(active=root_id).to_json())


def init_root(
    store: Store, sealer: Sealer, mesh: Mesh, now: datetime, *, force: bool = False
) -> CertSummary:
    """Create the mesh root per ``Mesh.spec.rootCA``; refuse to replace one unless ``force``."""
    _refuse_replacing(store, force)
    _remember(store, mesh)
    issued = issue_root(mesh.spec.root_ca, now)
    _replace_root(store, _install_root(store, sealer, issued, (), now))
    return summarize(issued.cert, "root", cert_id(issued.cert), now)


def import_root(
    store: Store,
    sealer: Sealer,
    cert_pem: bytes,
    key_pem: bytes | None,
    chain_pem: bytes | None,
    now: datetime,
    *,
    force: bool = False,
) -> CertSummary:
    """Bring your own root (cert + key) or an enterprise-issued CA (cert, key, chain to root).

    The CA is checked first (key matches, may sign CAs, chain links to a self-signed root, in
    validity); nothing is stored when it would not work. ``key_pem`` None keeps the root
    without its key (a root whose key is lost: trusted, signing nothing; see
    :func:`import_intermediate`).
    """
    cert, key, chain = parse_signing_ca(cert_pem, key_pem, chain_pem, now)
    _refuse_replacing(store, force)
    if key is not None:
        root_id = _install_root(store, sealer, Issued(cert, key), chain, now)
    else:
        root_id = cert_id(cert)
        record = CertRecord(
            cert_pem=pem_of(cert),
            chain_pem=tuple(pem_of(c) for c in chain),
            created=now.isoformat(timespec="seconds"),
            labels={"key": "none"},
        )
        _put(store, sealer, KIND_ROOT, root_id, record)
    _replace_root(store, root_id)
    return summarize(cert, "root", root_id, now)


def import_intermediate(
    store: Store,
    sealer: Sealer,
    cluster: str,
    cert_pem: bytes,
    key_pem: bytes,
    now: datetime,
    *,
    force: bool = False,
) -> CertSummary:
    """Take a cluster's intermediate CA back from its live ``cacerts`` (``ca-cert.pem``,
    ``ca-key.pem``), as it is: issued by a root the mesh trusts, the key its own.

    The way back when a store is lost with the root's key: the root comes back without its key
    (``import_root``), each cluster's intermediate from its ``cacerts``; apply then writes
    nothing new, and ``pki rotate-root`` moves the mesh to a root with a key, without an outage.
    """
    trust = _require_trust(store)
    if _get(store, KIND_INTERMEDIATE, cluster) is not None and not force:
        raise PKIError(
            f"cluster {cluster} has an intermediate CA already; pass --force to replace it"
        )
    errors = []
    for root_id in trust.trusted:
        try:
            cert, key = parse_cluster_ca(cert_pem, key_pem, _root(store, root_id).cert, now)
        except PKIError as exc:
            errors.append(str(exc))
            continue
        record = _seal(
            store, sealer, KIND_INTERMEDIATE, cluster, Issued(cert, key), now, issuer_id=root_id
        )
        return summarize(record.cert, "intermediate", cluster, now)
    raise PKIError(errors[-1])


# ================================================================================== rotation


def rotate_intermediate(
    store: Store, sealer: Sealer, mesh: Mesh, cluster: str, now: datetime
) -> CertSummary:
    """A new intermediate for ``cluster`` under the root that signs now (same trust, new key)."""
    trust = _require_trust(store)
    if _get(store, KIND_INTERMEDIATE, cluster) is None:
        known = ", ".join(sorted(store.list_blobs(KIND_INTERMEDIATE))) or "none yet"
        raise PKIError(f"cluster {cluster} has no intermediate CA to rotate (clusters: {known})")
    record = _issue_intermediate(store, sealer, mesh, cluster, trust.signing, now)
    return summarize(record.cert, "intermediate", cluster, now)


def rotate_server(
    store: Store, sealer: Sealer, mesh: Mesh, host: str, now: datetime
) -> CertSummary:
    """A new ingress server certificate (and key) for ``host``."""
    if _get(store, KIND_SERVER, host) is None:
        raise PKIError(
            f"host {host} has no ingress server certificate yet (render creates it for a SIMPLE "
            "or MUTUAL host; a PASSTHROUGH host has none: its service presents its own)"
        )
    store.delete_blob(KIND_SERVER, host)
    return summarize(
        _ensure_server(store, sealer, mesh, host, now).cert, "ingress server", host, now
    )


def rotate_client_ca(
    store: Store, sealer: Sealer, mesh: Mesh, host: str, now: datetime
) -> CertSummary:
    """A new client CA for ``host``: every client certificate issued for it stops working."""
    name = client_ca_name(host)
    if _get(store, KIND_INGRESS_CA, name) is None:
        raise PKIError(f"host {host} has no ingress client CA yet (render a MUTUAL intent first)")
    store.delete_blob(KIND_INGRESS_CA, name)
    for key in store.list_blobs(KIND_CLIENT):
        if key.startswith(f"{host}/"):
            store.delete_blob(KIND_CLIENT, key)
    record = _ensure_ingress_ca(store, sealer, mesh, name, now, host)
    return summarize(record.cert, "ingress client CA", host, now)


def _distinct_unit(active: x509.Certificate, settings: CASettings) -> str | None:
    """The OU that sets a new root apart from ``active`` when ``rootCA`` would give both the
    same subject: ``generation N``, one more than the active root's (which is 1 without one)."""
    same = [
        (NameOID.ORGANIZATION_NAME, settings.organization),
        (NameOID.COMMON_NAME, settings.common_name),
    ]
    if any(
        [a.value for a in active.subject.get_attributes_for_oid(oid)] != [value[:64]]
        for oid, value in same
    ):
        return None
    units = active.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    text = str(units[0].value) if units else ""
    number = text.removeprefix("generation ")
    return f"generation {int(number) + 1 if number.isdigit() else 2}"


def _phase_cacerts(store: Store, trust: Trust) -> dict[str, CacertsFacts]:
    """What every cluster's cacerts holds in the current phase, as fingerprints."""
    roots = trusted_fingerprints(store)
    out = {}
    for cluster, data in store.list_blobs(KIND_INTERMEDIATE).items():
        inter = CertRecord.from_json(data, f"{KIND_INTERMEDIATE}/{cluster}")
        out[cluster] = CacertsFacts(roots, intermediate=fingerprint(inter.cert))
    return out


_BREAKS = {
    "advance": "clusters still without the new root would refuse workloads certified under it",
    "finish": "workloads certified under intermediates of the old root would be refused",
}


def _require_rolled_out(
    store: Store, trust: Trust, verb: str, force: bool, mesh: Mesh, now: datetime
) -> None:
    """Refuse to leave a phase before every cluster holds its cacerts, as apply recorded it,
    and before every cluster's istiod and workloads can be on it (``istiod_roots``)."""
    if force:
        return
    expected = _phase_cacerts(store, trust)
    behind = not_holding_expected(store, expected)
    if behind:
        raise PKIError(
            f"not every cluster holds the cacerts of phase {trust.phase} yet, and after '{verb}' "
            f"{_BREAKS[verb]}. As apply last recorded:\n  "
            + "\n  ".join(behind)
            + f"\nrender and apply those clusters, then run 'pki rotate-root {verb}' again; if "
            "their cacerts reached them another way (GitOps, pki export), pass --force"
        )
    roots = next(iter(expected.values())).roots if expected else ()
    waits = rollout_waits(
        store,
        roots,
        list(expected),
        count_from="istiod" if trust.phase == 1 else "cacerts",  # phase 2 keeps phase 1's roots
        cert_ttl=timedelta(seconds=mesh.spec.istio.cert_ttl_seconds),
        now=now,
    )
    if waits:
        raise PKIError(
            f"every cluster holds the cacerts of phase {trust.phase}, but not every istiod and "
            f"its workloads are known to run on it, and after '{verb}' {_BREAKS[verb]}:\n  "
            + "\n  ".join(waits)
            + f"\nistiod is seen by apply (the roots it publishes in istio-ca-root-cert): run "
            f"'pki rotate-root {verb} -f INTENTS' to look at the clusters now. If you know "
            "better (every workload restarted since), pass --force"
        )


def rotate_root_begin(
    store: Store,
    sealer: Sealer,
    mesh: Mesh,
    now: datetime,
    imported: tuple[bytes, bytes | None, bytes | None] | None = None,
) -> Trust:
    """Phase 1: a new root (issued per rootCA, or imported: cert, key, chain) trusted alongside."""
    trust = _require_trust(store)
    active = _root(store, trust.active).cert
    chain: tuple[x509.Certificate, ...] = ()
    if imported is not None:
        cert, key, chain = parse_signing_ca(*imported, now)
        if key is None:
            raise PKIError("a new root needs its private key: it signs every intermediate")
        issued = Issued(cert, key)
    else:
        issued = issue_root(mesh.spec.root_ca, now, _distinct_unit(active, mesh.spec.root_ca))
    next_trust = trust.begin(cert_id(issued.cert))
    if issued.cert.subject == active.subject:
        raise PKIError(
            f"the new root's subject ({active.subject.rfc4514_string()}) is the current root's: "
            "TLS stacks look issuers up by subject, so two trusted roots of one subject are "
            "confused mid-rotation; give the new CA another subject"
        )
    _install_root(store, sealer, issued, chain, now)
    store.put_blob(KIND_TRUST, _MESH, next_trust.to_json())
    return next_trust


def rotate_root_advance(
    store: Store, sealer: Sealer, mesh: Mesh, now: datetime, *, force: bool = False
) -> Trust:
    """Phase 2: every cluster's intermediate re-issued under the new root; both still trusted.

    Refused (unless ``force``) while a cluster is not recorded as holding phase 1's cacerts,
    or its istiod is not seen publishing both roots, or its workloads may not have them yet.
    """
    current = _require_trust(store)
    trust = current.advance()
    _require_rolled_out(store, current, "advance", force, mesh, now)
    for cluster in sorted(store.list_blobs(KIND_INTERMEDIATE)):
        _issue_intermediate(store, sealer, mesh, cluster, trust.signing, now)
    store.put_blob(KIND_TRUST, _MESH, trust.to_json())
    return trust


def rotate_root_finish(store: Store, mesh: Mesh, now: datetime, *, force: bool = False) -> Trust:
    """Phase 3: the old root is dropped from every root-cert.pem and from the store.

    Refused (unless ``force``) while a cluster is not recorded as holding phase 2's cacerts,
    or its workloads may still hold certificates under phase 1's intermediates.
    """
    old = _require_trust(store)
    trust = old.finish()
    _require_rolled_out(store, old, "finish", force, mesh, now)
    store.delete_blob(KIND_ROOT, old.active)
    store.put_blob(KIND_TRUST, _MESH, trust.to_json())
    return trust


def rotate_root_abort(store: Store) -> Trust:
    """Undo phase 1: forget the new root (its cacerts must be re-applied everywhere)."""
    old = _require_trust(store)
    trust = old.abort()
    if old.next:
        store.delete_blob(KIND_ROOT, old.next)
    store.put_blob(KIND_TRUST, _MESH, trust.to_json())
    return trust


# ================================================================================ hand-outs


def export_cacerts(
    store: Store, sealer: Sealer, mesh: Mesh, cluster: str, now: datetime, *, issue: bool = False
) -> ClusterCA:
    """The four ``cacerts`` files of ``cluster``.

    A cluster without an intermediate gets one only with ``issue`` (the caller knows the cluster
    is real: a typo must not mint a CA).
    """
    trust = _require_trust(store)
    inter = _get(store, KIND_INTERMEDIATE, cluster)
    if inter is None:
        if not issue:
            known = ", ".join(sorted(store.list_blobs(KIND_INTERMEDIATE))) or "none yet"
            raise PKIError(
                f"cluster {cluster} has no intermediate CA yet (clusters: {known}); render, or "
                "pass -f with the intents that declare it"
            )
        _remember(store, mesh)
        inter = _issue_intermediate(store, sealer, mesh, cluster, trust.signing, now)
    return _cluster_ca(store, sealer, trust, cluster, inter)


def export_root(store: Store, sealer: Sealer) -> tuple[str, str, str]:
    """The active root CA: certificate, private key (PEM) and its chain ("" when self-signed),
    as ``import_root`` takes them back."""
    trust = _require_trust(store)
    record = _root(store, trust.active)
    key = record.key_pem(sealer, KIND_ROOT, trust.active)
    return record.cert_pem, key, "".join(record.chain_pem)


@dataclass(frozen=True)
class ClientBundle:
    """What an external caller of a MUTUAL host gets: its certificate, key, and the CA that
    signs the ingress server certificates (to verify the server)."""

    cert: str
    key: str
    server_ca: str
    summary: CertSummary


def issue_client_cert(
    store: Store, sealer: Sealer, mesh: Mesh, host: str, name: str, now: datetime, days: int = 365
) -> ClientBundle:
    """A client certificate for ``host`` under its ingress client CA; the key is not kept."""
    ca_name = client_ca_name(host)
    ca = _ensure_ingress_ca(store, sealer, mesh, ca_name, now, host)
    issued = issue_client(
        ca.open(sealer, KIND_INGRESS_CA, ca_name), name, mesh.spec.root_ca.organization, now, days
    )
    serial = f"{issued.cert.serial_number:x}"
    record = CertRecord(
        cert_pem=issued.cert_pem,
        issuer_id=ca_name,
        created=now.isoformat(timespec="seconds"),
        labels={"host": host, "name": name},
    )
    store.put_blob(KIND_CLIENT, f"{host}/{serial}", record.to_json())
    server_ca = _ensure_ingress_ca(store, sealer, mesh, SERVER_CA, now)
    return ClientBundle(
        cert=issued.cert_pem,
        key=issued.key_pem,
        server_ca=server_ca.cert_pem,
        summary=summarize(issued.cert, "client", f"{host} {name}", now),
    )


def ingress_server_ca_pem(store: Store) -> str:
    """The CA external callers trust to verify every ingress host of the mesh."""
    record = _get(store, KIND_INGRESS_CA, SERVER_CA)
    if record is None:
        raise PKIError("no ingress server CA yet: render an intent with external access first")
    return record.cert_pem


def trusted_fingerprints(store: Store) -> tuple[str, ...]:
    """The SHA-256 fingerprints of the roots the mesh trusts now (none before its first root)."""
    trust = _trust(store)
    if trust is None:
        return ()
    return tuple(fingerprint(_root(store, rid).anchor) for rid in trust.trusted)


def root_bundle_pem(store: Store) -> str:
    """The trust anchors every cluster's root-cert.pem carries now."""
    trust = _require_trust(store)
    return trust_bundle([_root(store, rid) for rid in trust.trusted])


# =================================================================================== status


def pki_status(store: Store, now: datetime) -> PkiStatus:
    """Every certificate the mesh holds, with expiry health and the rotation phase.

    Only public certificates are read: no key is opened, so this works without the state key.
    """

    def rows(kind: str) -> dict[str, CertRecord]:
        return {
            name: CertRecord.from_json(data, f"{kind}/{name}")
            for name, data in store.list_blobs(kind).items()
        }

    inventory = Inventory(
        trust=_trust(store),
        roots=rows(KIND_ROOT),
        intermediates=rows(KIND_INTERMEDIATE),
        ingress_cas=rows(KIND_INGRESS_CA),
        servers=rows(KIND_SERVER),
        clients=rows(KIND_CLIENT),
    )
    return build_status(inventory, now)


def material_provider(
    state_path: str | None, now: datetime | None = None
) -> Callable[[Store, Blueprint], Material]:
    """What render and apply plug in: the state key, then every cluster's and host's material."""

    def provide(store: Store, blueprint: Blueprint) -> Material:
        sealer = load_sealer(state_path, store)
        refuse_lost_store(state_path, store)
        snap = blueprint.snapshot
        external = sorted(
            {
                (i.spec.external.host, i.spec.external.tls_mode)
                for intents in snap.services.values()
                for i in intents
                if i.spec.external is not None and i.spec.external.terminated
            }
        )
        clock = now or datetime.now(UTC)
        return ensure_material(store, sealer, snap.mesh, list(snap.clusters), external, clock)

    return provide
