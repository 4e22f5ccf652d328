"""What an apply sends is rendered then and there: never an older render.

``prepare`` is driven over a real SQLite store with the seed examples; no cluster is needed
(reconciling is the integration tests' business). What a user would notice if this broke: a
stale render applied after a change to the store, a store from an earlier version that keeps a
sealed copy of every CA key, a gateway discovery that fails without saying why, or a wrong state
key that goes unreported.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.helpers import EXAMPLES, write_docs

from meshbridge.errors import InvalidInput, SealingError
from meshbridge.kube import ReconcileOptions
from meshbridge.store import SqlStore, open_store
from meshbridge.usecases import apply as service
from meshbridge.usecases import pki as pki_service
from meshbridge.usecases.render import parse
from meshbridge.usecases.sources import read_sources

EXAMPLE = EXAMPLES / "sleep-httpbin"


def docs() -> list[dict[str, Any]]:
    return [
        d for p in sorted(EXAMPLE.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d
    ]


def prepare(
    paths: list[str], store: SqlStore, state: Path, only: list[str] | None = None, **options: Any
) -> service.Prepared:
    pki_service.pair_key_file(str(state), store)  # as apply does before rendering
    intents = parse(read_sources(paths))
    return service.prepare(intents, store, str(state), ReconcileOptions(**options), only)


def applied(paths: list[str], store: SqlStore, state: Path) -> service.Prepared:
    """prepare, then finish as an apply does (no cluster answered: nothing reconciled)."""
    prepared = prepare(paths, store, state)
    service.finish(store, prepared, [])
    return prepared


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("MESHBRIDGE_STATE_KEY", raising=False)
    return tmp_path / "state.db"


def _cacerts(prepared: service.Prepared) -> list[Any]:
    return [
        o["data"]
        for objs in prepared.objects.values()
        for o in objs
        if o["kind"] == "Secret" and o["metadata"]["name"] == "cacerts"
    ]


def test_an_apply_after_a_rotation_sends_the_new_certificates(state: Path) -> None:
    store = open_store(str(state))
    first = applied([str(EXAMPLE)], store, state)
    same = applied([str(EXAMPLE)], store, state)
    assert same.objects == first.objects  # same intents, same store: same objects
    with store.transaction():  # what `meshbridge pki rotate --cluster` does to the store
        mesh = pki_service.mesh_for(store, None)
        sealer = pki_service.load_sealer(str(state), store)
        pki_service.rotate_intermediate(
            store, sealer, mesh, first.targets[0].name, datetime.now(UTC)
        )
    again = prepare([str(EXAMPLE)], store, state)
    assert _cacerts(again) != _cacerts(first)
    store.close()


def test_a_render_kept_by_an_earlier_version_is_deleted_by_the_next_apply(state: Path) -> None:
    store = open_store(str(state))
    store.put_blob(service.FORMER_RENDER_KIND, "last", b"sealed render with CA keys")
    dry = prepare([str(EXAMPLE)], store, state, dry_run=True)  # reads it not, needs it not
    assert dry.objects
    applied([str(EXAMPLE)], store, state)
    assert store.list_blobs(service.FORMER_RENDER_KIND) == {}
    store.close()


def test_unknown_cluster_names_are_refused(state: Path) -> None:
    store = open_store(str(state))
    with pytest.raises(InvalidInput, match="no Cluster named 'nope'"):
        prepare([str(EXAMPLE)], store, state, ["nope"])
    chosen = prepare([str(EXAMPLE)], store, state, ["cluster2"])
    assert [t.name for t in chosen.targets] == ["cluster2"]
    store.close()


def test_a_failed_gateway_discovery_says_why(state: Path, tmp_path: Path) -> None:
    undiscovered = copy.deepcopy(docs())
    for d in undiscovered:
        if d["kind"] == "Cluster" and d["metadata"]["name"] == "cluster2":  # serves cluster1
            d["spec"].pop("gateway", None)
            d["spec"]["kubeconfig"] = {"path": str(tmp_path / "no-such-kubeconfig")}
    path = write_docs(tmp_path / "in" / "mesh.yaml", undiscovered)
    store = open_store(str(state))
    with pytest.raises(InvalidInput) as caught:  # discovery was attempted, and failed
        applied([str(path)], store, state)
    assert "gateway discovery failed: kubeconfig: kubeconfig" in str(caught.value)
    store.close()


def test_a_cluster_that_serves_no_one_needs_no_gateway_discovery(
    state: Path, tmp_path: Path
) -> None:
    """cluster1 only runs a client: without a gateway address it is not asked for one (no
    discovery, no "discovery failed")."""
    undiscovered = copy.deepcopy(docs())
    for d in undiscovered:
        if d["kind"] == "Cluster" and d["metadata"]["name"] == "cluster1":
            d["spec"].pop("gateway", None)
            d["spec"]["kubeconfig"] = {"path": str(tmp_path / "no-such-kubeconfig")}
    path = write_docs(tmp_path / "in" / "mesh.yaml", undiscovered)
    store = open_store(str(state))
    prepared = applied([str(path)], store, state)
    assert prepared.found == []
    assert prepared.objects
    store.close()


def test_no_private_key_lands_in_the_store_in_clear(state: Path) -> None:
    store = open_store(str(state))
    first = applied([str(EXAMPLE)], store, state)
    store.close()
    assert any(o["kind"] == "Secret" for objs in first.objects.values() for o in objs)
    raw = state.read_bytes()
    assert b"PRIVATE KEY" not in raw and b"ca-key.pem" not in raw


def test_a_wrong_state_key_is_reported(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(str(state))
    applied([str(EXAMPLE)], store, state)
    monkeypatch.setenv("MESHBRIDGE_STATE_KEY", "A" * 43 + "=")
    with pytest.raises(SealingError, match="does not open this store"):
        prepare([str(EXAMPLE)], store, state)
    store.close()
