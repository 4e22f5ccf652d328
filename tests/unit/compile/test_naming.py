"""Generated names stay valid Kubernetes names (DNS-1123 subdomains, <= 253 characters) and
unique, even when every user-chosen name is as long as the contract allows."""

from __future__ import annotations

import re

import yaml

from meshbridge import compile as mbcompile
from meshbridge.compile import naming
from meshbridge.loading import Source, load
from meshbridge.output.emitter import files
from meshbridge.output.writer import write_tree

SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
API = "meshbridge.dev/v1alpha1"


def test_long_names_are_cut_with_a_stable_hash() -> None:
    host = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])  # 253 characters
    name = naming.credential_name(host)
    assert len(name) <= 253 and SUBDOMAIN.match(name)
    assert name == naming.credential_name(host), "not stable"
    other = naming.credential_name(host[:-1] + "e")
    assert other != name, "two hosts got the same name"


def test_every_generated_name_is_valid_for_maximal_inputs(tmp_path) -> None:
    ns, svc, client = "n" * 63, "s" * 63, "c" * 63
    c1, c2 = "x" * 63, "y" * 63
    host = ".".join(["h" * 63, "i" * 63, "j" * 63, "k" * 61])
    docs = [
        {"apiVersion": API, "kind": "Cluster", "metadata": {"name": c1}, "spec": {"gateway": {"address": "10.0.0.1"}}},
        {"apiVersion": API, "kind": "Cluster", "metadata": {"name": c2}, "spec": {"gateway": {"address": "10.0.0.2"}}},
        {"apiVersion": API, "kind": "App", "metadata": {"name": svc, "namespace": ns}, "spec": {"clusters": [c1, c2]}},
        {"apiVersion": API, "kind": "App", "metadata": {"name": client, "namespace": ns}, "spec": {"clusters": [c1]}},
        {"apiVersion": API, "kind": "App", "metadata": {"name": "far", "namespace": ns}, "spec": {"clusters": [c2]}},
        {"apiVersion": API, "kind": "InboundIntent", "metadata": {"name": svc, "namespace": ns},
         "spec": {"app": svc, "port": 80, "protocol": "HTTP",
                  "clients": [{"app": client, "accessPoints": [{"action": "DENY", "paths": ["/admin"]}]},
                              {"app": "far"}],
                  "loadBalancing": {"weights": {c1: 50, c2: 50}},
                  "external": {"host": host}}},
    ]
    blueprint = mbcompile.blueprint(load([Source("long.yaml", yaml.safe_dump_all(docs))]), [])
    objs = mbcompile.objects(blueprint)
    names = [(c, o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]) for c, items in objs.items() for o in items]
    assert len(names) == len(set(names))
    for _, _, ns_, name in names:
        assert len(name) <= 253 and SUBDOMAIN.match(name), name
        assert len(ns_) <= 63
    rendered = files(objs)
    assert len(rendered) == len(names), "two objects would share a file"
    write_tree(tmp_path / "out", rendered)  # every file name fits the file system
    assert sum(1 for _ in (tmp_path / "out").rglob("*.yaml")) == len(names)
