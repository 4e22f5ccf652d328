"""Objects -> manifest files: names and bytes, byte-stable for the same objects.

Layout below the output directory: ``<cluster>/<namespace>/<kind>.<name>.yaml``, one object per
file (what Argo CD, Flux and kustomize read, and what gives readable git diffs).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import yaml

from meshbridge.compile import naming
from meshbridge.compile.envelope import Obj

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


MAX_FILE_NAME = 255  # bytes in one path component, on every common file system


def file_name(obj: Obj) -> str:
    """``<namespace>/<kind>.<name>.yaml``; a name too long for a file name is cut and hashed."""
    meta = obj["metadata"]
    kind = obj["kind"].lower()
    name = naming.shorten(meta["name"], MAX_FILE_NAME - len(kind) - len("..yaml"))
    return f"{meta.get('namespace') or '_cluster'}/{kind}.{name}.yaml"


class DumpMemo:
    """YAML bytes of the last render's objects, by the objects' JSON text.

    YAML emission is most of a render's cost, and an unchanged object has the same JSON text
    (generators build dicts in a fixed key order), so a warm render emits only what changed.
    The memo holds exactly the objects of the last render: it never grows past one mesh.
    Secrets are never memoised: key material is not kept longer than the render that needs it.
    """

    def __init__(self) -> None:
        self._last: dict[str, bytes] = {}
        self._current: dict[str, bytes] = {}

    def dump(self, obj: Obj) -> bytes:
        key = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
        data = self._last.get(key) or self._current.get(key)
        if data is None:
            data = dump(obj)
        self._current[key] = data
        return data

    def finish(self) -> None:
        """End a render: what it did not use is dropped."""
        self._last, self._current = self._current, {}

    def __len__(self) -> int:
        return len(self._last)


def files(
    objects_by_cluster: dict[str, list[Obj]], memo: DumpMemo | None = None
) -> dict[str, tuple[bytes, bool]]:
    """Relative path -> (content, holds a secret) for every object of every cluster."""
    out: dict[str, tuple[bytes, bool]] = {}
    for cluster, objs in sorted(objects_by_cluster.items()):
        for obj in objs:
            secret = obj["kind"] in SECRET_KINDS
            data = dump(obj) if memo is None or secret else memo.dump(obj)
            out[f"{cluster}/{file_name(obj)}"] = (data, secret)
    if memo is not None:
        memo.finish()
    return out
