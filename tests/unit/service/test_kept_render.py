"""The render an apply keeps: used only while the intents and the store are what it came from.

``prepare`` is driven over a real SQLite store with the seed examples; no cluster is needed
(reconciling is the integration tests' business). What a user would notice if this broke:
a stale render applied after a change, a dry run or a discovery answer remembered, a private
key in clear in the store, or a second apply that renders again for nothing.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.support.helpers import EXAMPLES, write_docs

from meshbridge.errors import InvalidInput, SealingError
from meshbridge.kube import Options
from meshbridge.service import apply as service
from meshbridge.service import pki as pki_service
from meshbridge.service.sources import read_sources
from meshbridge.source import Source
from meshbridge.store import SqlStore, open_store

EXAMPLE = EXAMPLES / "sleep-httpbin"


def docs() -> list[dict[str, Any]]:
    return [
        d for p in sorted(EXAMPLE.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d
    ]


def prepare(
    sources: list[Source], store: SqlStore, state: Path, **options: Any
) -> service.Prepared:
    pki_service.pair_key_file(str(state), store)  # as apply does before rendering
    return service.prepare(sources, store, str(state), Options(**options))


def applied(sources: list[Source], store: SqlStore, state: Path) -> service.Prepared:
    """prepare, then finish as an apply does (no cluster answered: nothing reconciled)."""
    prepared = prepare(sources, store, state)
    service.finish(store, prepared, [])
    return prepared


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("MESHBRIDGE_STATE_KEY", raising=False)
    return tmp_path / "state.db"


def test_an_unchanged_apply_takes_the_kept_render(state: Path) -> None:
    sources = read_sources([str(EXAMPLE)])
    with_store = open_store(str(state))
    first = applied(sources, with_store, state)
    second = applied(sources, with_store, state)
    assert (first.kept, second.kept) == (False, True)
    assert second.objects == first.objects
    assert second.mesh == first.mesh
    assert [t.name for t in second.targets] == [t.name for t in first.targets]
    with_store.close()

    reopened = open_store(str(state))  # kept across processes: it lives in the store
    third = prepare(sources, reopened, state, dry_run=True)
    assert third.kept and third.objects == first.objects
    reopened.close()


def test_a_changed_intent_renders_again(state: Path, tmp_path: Path) -> None:
    store = open_store(str(state))
    applied(read_sources([str(EXAMPLE)]), store, state)
    changed = docs()
    intent = next(d for d in changed if d["kind"] == "InboundIntent")
    intent["spec"]["port"] = 8080
    path = write_docs(tmp_path / "in" / "mesh.yaml", changed)
    again = prepare(read_sources([str(path)]), store, state)
    assert not again.kept
    ports = [
        p["number"]
        for objs in again.objects.values()
        for o in objs
        if o["kind"] == "ServiceEntry"
        for p in o["spec"].get("ports", [])
    ]
    assert 8080 in ports
    store.close()


def test_a_change_in_the_store_renders_again(state: Path) -> None:
    sources = read_sources([str(EXAMPLE)])
    store = open_store(str(state))
    first = applied(sources, store, state)
    with store.transaction():  # what `meshbridge pki rotate-intermediate` does to the store
        mesh = pki_service.mesh_for(store, None)
        sealer = pki_service.load_sealer(str(state), store)
        pki_service.rotate_intermediate(store, sealer, mesh, first.targets[0].name, _now())
    again = prepare(sources, store, state)
    assert not again.kept
    assert _cacerts(again) != _cacerts(first)
    store.close()


def test_invalid_input_is_reported_even_with_a_kept_render(state: Path) -> None:
    store = open_store(str(state))
    applied(read_sources([str(EXAMPLE)]), store, state)
    broken = [Source("broken.yaml", "apiVersion: meshbridge.dev/v1alpha1\nkind: Nope\n")]
    with pytest.raises(InvalidInput):
        prepare(broken, store, state)
    store.close()


def test_unknown_cluster_names_are_refused_from_the_kept_render_too(state: Path) -> None:
    sources = read_sources([str(EXAMPLE)])
    store = open_store(str(state))
    applied(sources, store, state)
    with pytest.raises(InvalidInput, match="no Cluster named 'nope'"):
        service.prepare(sources, store, str(state), Options(), ["nope"])
    chosen = service.prepare(sources, store, str(state), Options(), ["cluster2"])
    assert chosen.kept and [t.name for t in chosen.targets] == ["cluster2"]
    store.close()


def test_dry_runs_and_discovered_gateways_are_not_kept(state: Path, tmp_path: Path) -> None:
    sources = read_sources([str(EXAMPLE)])
    store = open_store(str(state))
    dry = prepare(sources, store, state, dry_run=True)
    service.finish(store, dry, [])  # even if a caller finished it
    assert store.get_blob(service.KEPT_KIND, service.KEPT_NAME) is None

    undiscovered = copy.deepcopy(docs())
    for d in undiscovered:
        if d["kind"] == "Cluster" and d["metadata"]["name"] == "cluster2":  # serves cluster1
            d["spec"].pop("gateway", None)
            d["spec"]["kubeconfig"] = {"path": str(tmp_path / "no-such-kubeconfig")}
    path = write_docs(tmp_path / "in" / "mesh.yaml", undiscovered)
    with pytest.raises(InvalidInput) as caught:  # discovery was attempted, and failed
        applied(read_sources([str(path)]), store, state)
    assert "gateway discovery failed: kubeconfig: kubeconfig" in str(caught.value)
    assert store.get_blob(service.KEPT_KIND, service.KEPT_NAME) is None
    store.close()


def test_a_cluster_that_serves_no_one_needs_no_gateway_discovery(
    state: Path, tmp_path: Path
) -> None:
    """cluster1 only runs a client: without a gateway address it is not asked for one (no
    discovery, no "discovery failed"), and the render is kept as usual."""
    undiscovered = copy.deepcopy(docs())
    for d in undiscovered:
        if d["kind"] == "Cluster" and d["metadata"]["name"] == "cluster1":
            d["spec"].pop("gateway", None)
            d["spec"]["kubeconfig"] = {"path": str(tmp_path / "no-such-kubeconfig")}
    path = write_docs(tmp_path / "in" / "mesh.yaml", undiscovered)
    store = open_store(str(state))
    prepared = applied(read_sources([str(path)]), store, state)
    assert prepared.found == []
    assert store.get_blob(service.KEPT_KIND, service.KEPT_NAME) is not None
    store.close()


def test_the_kept_render_is_sealed(state: Path) -> None:
    store = open_store(str(state))
    first = applied(read_sources([str(EXAMPLE)]), store, state)
    store.close()
    assert any(o["kind"] == "Secret" for objs in first.objects.values() for o in objs)
    raw = state.read_bytes()
    assert b"PRIVATE KEY" not in raw and b"ca-key.pem" not in raw


def test_a_wrong_state_key_is_still_reported(state: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sources = read_sources([str(EXAMPLE)])
    store = open_store(str(state))
    applied(sources, store, state)
    monkeypatch.setenv("MESHBRIDGE_STATE_KEY", "A" * 43 + "=")
    with pytest.raises(SealingError, match="does not open this store"):
        prepare(sources, store, state)
    store.close()


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def _cacerts(prepared: service.Prepared) -> list[Any]:
    return [
        o["data"]
        for objs in prepared.objects.values()
        for o in objs
        if o["kind"] == "Secret" and o["metadata"]["name"] == "cacerts"
    ]
