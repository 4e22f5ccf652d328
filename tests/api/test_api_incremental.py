"""The server's incremental path (cached documents, blueprint reuse, one cluster at a time) gives
what a full local render gives, step after step, VIP history included."""

from __future__ import annotations

from pathlib import Path

import yaml
from apitest import Api
from intents import doc, example_yaml

from meshbridge.loading import load_objects
from meshbridge.store import open_store
from meshbridge.usecases import render as render_service
from meshbridge.wire.resources import strip_server_fields


def _es(name: str, host: str, port: int = 3306) -> dict:
    return doc("ExternalService", name, {"hosts": [host], "ports": [{"number": port, "name": "tcp"}],
                                         "endpoints": [{"address": "172.16.0.9"}]}, "default")


def test_each_step_matches_a_full_render(api: Api, tmp_path: Path) -> None:
    local = open_store(str(tmp_path / "local.db"))
    steps = [
        ("apply", example_yaml("egress")),
        ("put", _es("aaa", "aaa.example")),
        ("put", _es("bbb", "bbb.example")),
        ("delete", "aaa"),
        ("put", _es("ccc", "ccc.example")),
        ("put", _es("bbb", "bbb.example", 3307)),
        ("delete", "bbb"),
        ("put", _es("aaa", "aaa.example")),
    ]
    for verb, arg in steps:
        if verb == "apply":
            assert api.apply(arg).status_code == 200
        elif verb == "put":
            url = f"/api/v1/namespaces/default/externalservices/{arg['metadata']['name']}"
            assert api.put(url, arg).status_code in (200, 201)
        else:
            assert api.delete(f"/api/v1/namespaces/default/externalservices/{arg}").status_code == 200
        stored = []
        for plural in ("meshes", "clusters", "apps", "inboundintents", "externalservices"):
            stored += api.get(f"/api/v1/{plural}").json()["items"]
        intents = load_objects(("x", i, strip_server_fields(d)[0]) for i, d in enumerate(stored, 1))
        files = render_service.build(intents, local).files
        for cluster in sorted({p.split("/", 1)[0] for p in files}):
            want = b"---\n".join(d for p, (d, _) in files.items() if p.startswith(f"{cluster}/"))
            got = api.get(f"/api/v1/clusters/{cluster}/manifests", role="editor",
                          headers={"Accept": "application/yaml"}).content
            assert got == want, (verb, arg if verb == "delete" else arg["metadata"]["name"], cluster)
            assert list(yaml.safe_load_all(got))
    local.close()


def test_incremental_vip_plan_equals_a_full_plan_over_random_changes(store) -> None:
    """The catalog allocates VIPs only for clusters whose needs changed; after every one of a
    series of random writes its table must be exactly what a full ``compile.blueprint`` gives."""
    import copy
    import random

    from bench.meshgen import generate

    from meshbridge import compile as mbcompile
    from meshbridge.server.catalog import Catalog, Delete, Put

    rng = random.Random(7)
    docs = generate(clusters=6, servers=24, clients=2, lb_every=0, namespaces=3, egress=4)
    catalog = Catalog(store)
    catalog.write([Put(d, "<body>", i) for i, d in enumerate(docs, 1)], "t")
    current = {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d
               for d in docs}
    clusters = [d["metadata"]["name"] for d in docs if d["kind"] == "Cluster"]
    reference = mbcompile.blueprint(load_objects(("x", 1, d) for d in current.values()), []).vips
    with catalog.writing():
        catalog.sync()
        assert catalog.blueprint().vips == reference

    for step in range(40):
        key = rng.choice(sorted(k for k in current if k[0] in ("App", "ExternalService")))
        doc_ = copy.deepcopy(current[key])
        if key[0] == "App":
            doc_["spec"]["clusters"] = [rng.choice(clusters)]
        elif rng.random() < 0.3:
            catalog.write([Delete(key)], "t")
            del current[key]
            doc_ = None
        else:
            doc_["spec"]["clusters"] = rng.sample(clusters, rng.randint(1, 3))
        if doc_ is not None:
            catalog.write([Put(doc_, "<body>", 1)], "t")
            current[key] = doc_
        intents = load_objects(("x", i, d) for i, d in enumerate(current.values(), 1))
        reference = mbcompile.blueprint(intents, reference).vips
        with catalog.writing():
            catalog.sync()
            assert catalog.blueprint().vips == reference, f"step {step}: {key}"
        assert sorted(store.vip_records()) == sorted(reference)
