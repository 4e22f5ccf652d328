"""Every object meshbridge generates is accepted by Istio's own schemas, with unknown fields
forbidden: for every example, for both Istio API versions, and for a generated large mesh."""

from __future__ import annotations

from pathlib import Path

import istio_schema
import pydantic
import pytest
import yaml
from bench.meshgen import generate
from helpers import EXAMPLES

from meshbridge import compile as mbcompile
from meshbridge.loading import Source, load
from meshbridge.usecases.sources import read_sources


def _objects(sources: list[Source]) -> list[dict]:
    blueprint = mbcompile.blueprint(load(sources), [])
    return [o for objs in mbcompile.objects(blueprint).values() for o in objs]


def test_the_strict_validator_rejects_a_misspelt_field() -> None:
    bad = {
        "apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
        "metadata": {"name": "x"},
        "spec": {"host": "x", "trafficPolicy": {"tls": {"mod": "ISTIO_MUTUAL"}}},
    }
    with pytest.raises(pydantic.ValidationError, match="mod"):
        istio_schema.validate(bad)


@pytest.mark.parametrize("api_version", ["v1beta1", "v1"])
@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()))
def test_examples_validate(example: str, api_version: str) -> None:
    docs = [d for s in read_sources([str(EXAMPLES / example)]) for d in yaml.safe_load_all(s.text)]
    meshes = [d for d in docs if d["kind"] == "Mesh"]
    if not meshes:
        meshes = [{"apiVersion": "meshbridge.dev/v1alpha1", "kind": "Mesh",
                   "metadata": {"name": "default"}, "spec": {}}]
        docs.append(meshes[0])
    meshes[0].setdefault("spec", {}).setdefault("istio", {})["apiVersion"] = api_version
    objs = _objects([Source("mesh.yaml", yaml.safe_dump_all(docs))])
    assert objs
    for obj in objs:
        if obj["kind"] not in ("Secret", "IstioOperator"):
            assert obj["apiVersion"].endswith(api_version)
        istio_schema.validate(obj)


def test_large_generated_mesh_validates(tmp_path: Path) -> None:
    docs = generate(clusters=12, servers=150, clients=2, egress=10)
    objs = _objects([Source("big.yaml", yaml.safe_dump_all(docs))])
    kinds = {o["kind"] for o in objs}
    assert {"ServiceEntry", "DestinationRule", "Gateway", "VirtualService"} <= kinds
    for obj in objs:
        istio_schema.validate(obj)
