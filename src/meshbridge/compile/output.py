"""Objects -> manifest files: names and bytes, byte-stable for the same objects.

Layout below the output directory: ``<cluster>/<namespace>/<kind>.<name>.yaml``, one object per
file (what Argo CD, Flux and kustomize read, and what gives readable git diffs).
"""

from __future__ import annotations

from collections.abc import Iterable

import yaml

from meshbridge.compile.objects import Obj

SECRET_KINDS = frozenset({"Secret"})


def dump(obj: Obj) -> bytes:
    text: str = yaml.dump(
        obj,
        Dumper=yaml.CSafeDumper,
        sort_keys=False,
        default_flow_style=False,
        width=4096,
        allow_unicode=True,
    )
    return text.encode()


def dump_all(objs: Iterable[Obj]) -> bytes:
    return b"---\n".join(dump(o) for o in objs)


def file_name(obj: Obj) -> str:
    meta = obj["metadata"]
    return f"{meta.get('namespace') or '_cluster'}/{obj['kind'].lower()}.{meta['name']}.yaml"


def files(objects_by_cluster: dict[str, list[Obj]]) -> dict[str, tuple[bytes, bool]]:
    """Relative path -> (content, holds a secret) for every object of every cluster."""
    out: dict[str, tuple[bytes, bool]] = {}
    for cluster, objs in sorted(objects_by_cluster.items()):
        for obj in objs:
            out[f"{cluster}/{file_name(obj)}"] = (dump(obj), obj["kind"] in SECRET_KINDS)
    return out
