"""Objects -> manifest files: names and bytes, byte-stable for the same objects.

Layout below the output directory: ``<cluster>/<namespace>/<kind>.<name>.yaml``, one object per
file (what Argo CD, Flux and kustomize read, and what gives readable git diffs).

Each file also says which private key it holds, if any (:func:`private_key_holder`): the
``cacerts`` Secret holds a cluster's intermediate CA key, an ingress credential its host's
``tls.key``. Such files do not belong in a Git tree; the writer decides where they go.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import yaml

from meshbridge.compile import naming
from meshbridge.compile.envelope import Obj

SECRET_KINDS = frozenset({"Secret"})

CACERTS = "cacerts"
INGRESS_CREDENTIAL = "ingress credential"
OTHER_HOLDER = "other Secret"

ManifestFile = tuple[bytes, str | None]
"""A file's content, and what the private key it holds is for (None: it holds none)."""


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


def private_key_holder(obj: Obj) -> str | None:
    """What a Secret is, for one that may hold a private key: ``cacerts`` (the cluster's
    intermediate CA key), ``ingress credential`` (a host's ``tls.key``), or ``other Secret``
    (meshbridge renders none, and a Secret is kept out of Git whatever it holds); None for an
    object that is not a Secret."""
    if obj["kind"] not in SECRET_KINDS:
        return None
    data = obj.get("data") or {}
    if obj["metadata"]["name"] == naming.CACERTS_NAME and "ca-key.pem" in data:
        return CACERTS
    if "tls.key" in data:
        return INGRESS_CREDENTIAL
    return OTHER_HOLDER


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
) -> dict[str, ManifestFile]:
    """Relative path -> (content, private key holder) for every object of every cluster."""
    out: dict[str, ManifestFile] = {}
    for cluster, objs in sorted(objects_by_cluster.items()):
        for obj in objs:
            holder = private_key_holder(obj)
            data = dump(obj) if memo is None or holder is not None else memo.dump(obj)
            out[f"{cluster}/{file_name(obj)}"] = (data, holder)
    if memo is not None:
        memo.finish()
    return out
