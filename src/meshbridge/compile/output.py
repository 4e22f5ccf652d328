"""Objects -> manifest files: names and bytes, byte-stable for the same objects.

Layout below the output directory: ``<cluster>/<namespace>/<kind>.<name>.yaml``, one object per
file (what Argo CD, Flux and kustomize read, and what gives readable git diffs).

Each file also says which private key it holds, if any (:func:`private_key_holder`): the
``cacerts`` Secret holds a cluster's intermediate CA key, an ingress credential its host's
``tls.key``. Such files do not belong in a Git tree; the writer decides where they go.

Serialisation is PyYAML's C emitter (libyaml), one :class:`Emitter` for a whole render rather than
a dumper per object. The bytes are exactly what ``yaml.dump(obj, Dumper=CSafeDumper,
sort_keys=False, default_flow_style=False, width=4096, allow_unicode=True)`` gives; what is
cheaper is the way there. Measured on the generated 100-cluster mesh (22,771 objects), see
bench/README.md: PyYAML's generic representer and its scalar resolver, a Python call and a few
regular expressions for each of ~730,000 scalars of which ~10,000 differ, were two thirds of the
time. Here plain data (dicts, lists, str, int, bool, None) becomes nodes in one small function,
and each distinct scalar is resolved once per emitter.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from meshbridge.compile import naming
from meshbridge.compile.envelope import Obj

SECRET_KINDS = frozenset({"Secret"})

CACERTS = "cacerts"
INGRESS_CREDENTIAL = "ingress credential"
OTHER_HOLDER = "other Secret"

ManifestFile = tuple[bytes, str | None]
"""A file's content, and what the private key it holds is for (None: it holds none)."""

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"


class _Dumper(yaml.CSafeDumper):
    """PyYAML's C dumper, with the options of our output, resolving each distinct scalar once.

    The C emitter asks the resolver, for every scalar, which tag its text would have if written
    plain; the answer depends on the text alone, so it is kept for the emitter's lifetime.
    """

    def __init__(self, stream: io.BytesIO) -> None:
        super().__init__(
            stream,
            default_flow_style=False,
            sort_keys=False,
            width=4096,
            allow_unicode=True,
            encoding="utf-8",
            explicit_start=True,  # every document starts with "---", cut off in Emitter.dump
        )
        self._plain_tags: dict[str, str] = {}
        if self.yaml_path_resolvers:  # what resolve() relies on
            raise AssertionError("path resolvers are not supported")

    def resolve(self, kind: type[Node], value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode:
            if not implicit[0]:
                # Asked for quoted text: no implicit resolver applies, and a SafeDumper has no
                # path resolvers, so PyYAML's answer is always the default scalar tag.
                return _STR
            tag = self._plain_tags.get(value)
            if tag is None:
                tag = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
                self._plain_tags[value] = tag
            return tag
        resolved: str = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
        return resolved


class Emitter:
    """Objects -> YAML bytes, one document at a time, through one C emitter.

    Not thread-safe: use one per thread (a render makes one). ``dump(obj)`` gives the same
    bytes as :func:`dump`.
    """

    def __init__(self) -> None:
        self._stream = io.BytesIO()
        self._dumper = _Dumper(self._stream)
        self._dumper.open()

    def dump(self, obj: Obj) -> bytes:
        self._dumper.serialize(_node(obj))
        # libyaml writes each document out when it ends, starting with "---\n" (or "--- " before
        # a flow collection such as "{}"): what follows is the document alone.
        data = self._stream.getvalue()
        self._stream.seek(0)
        self._stream.truncate()
        if not data.startswith((b"---\n", b"--- ")):
            raise AssertionError(f"unexpected document start: {data[:20]!r}")
        return data[4:]


_SCALARS = yaml.representer.SafeRepresenter()


def _node(value: Any) -> Node:
    """The node PyYAML's SafeRepresenter makes of ``value`` (with ``default_flow_style=False``),
    made directly for plain data."""
    kind = type(value)
    if kind is str:
        return ScalarNode(_STR, value)
    if kind is dict:
        return MappingNode(_MAP, [(_node(k), _node(v)) for k, v in value.items()], flow_style=False)
    if kind is list:
        return SequenceNode(_SEQ, [_node(v) for v in value], flow_style=False)
    if kind is bool:
        return ScalarNode(_BOOL, "true" if value else "false")
    if kind is int:
        return ScalarNode(_INT, str(value))
    if value is None:
        return ScalarNode(_NULL, "null")
    if isinstance(value, dict | list | tuple | set):
        raise TypeError(f"cannot serialise a {kind.__name__}: plain dicts and lists only")
    node: Node = _SCALARS.represent_data(value)  # other scalars (float, a str subclass, ...)
    return node


def dump(obj: Obj) -> bytes:
    """One object's YAML (for many, use one :class:`Emitter`)."""
    return Emitter().dump(obj)


def dump_all(objs: Iterable[Obj]) -> bytes:
    emitter = Emitter()
    return b"---\n".join(emitter.dump(o) for o in objs)


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

    def dump(self, obj: Obj, emitter: Emitter | None = None) -> bytes:
        key = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
        data = self._last.get(key) or self._current.get(key)
        if data is None:
            data = (emitter or Emitter()).dump(obj)
        self._current[key] = data
        return data

    def finish(self) -> None:
        """End a render: what it did not use is dropped."""
        self._last, self._current = self._current, {}

    def __len__(self) -> int:
        return len(self._last)


def files(
    objects_by_cluster: dict[str, list[Obj]],
    memo: DumpMemo | None = None,
    done: Callable[[str], None] | None = None,
) -> dict[str, ManifestFile]:
    """Relative path -> (content, private key holder) for every object of every cluster, all
    through one :class:`Emitter`; ``done(cluster)`` is called as each cluster is serialised."""
    out: dict[str, ManifestFile] = {}
    emitter = Emitter()
    for cluster, objs in sorted(objects_by_cluster.items()):
        for obj in objs:
            holder = private_key_holder(obj)
            memoised = memo if holder is None else None  # key material is never memoised
            data = emitter.dump(obj) if memoised is None else memoised.dump(obj, emitter)
            out[f"{cluster}/{file_name(obj)}"] = (data, holder)
        if done is not None:
            done(cluster)
    if memo is not None:
        memo.finish()
    return out
