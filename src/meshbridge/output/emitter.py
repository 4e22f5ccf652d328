"""Objects -> manifest files: names and bytes, byte-stable for the same objects.

Layout below the output directory: ``<cluster>/<namespace>/<kind>.<name>.yaml``, one object per
file (what Argo CD, Flux and kustomize read, and what gives readable git diffs).

Each file also says which private key it holds, if any (:func:`private_key_holder`): the
``cacerts`` Secret holds a cluster's intermediate CA key, an ingress credential its host's
``tls.key``. Such files do not belong in a Git tree; the writer decides where they go.

Serialisation is PyYAML's C emitter (libyaml), one :class:`Emitter` for a whole render rather than
a dumper per object. The bytes are exactly what ``yaml.dump(obj, Dumper=CSafeDumper,
sort_keys=False, default_flow_style=False, width=4096, allow_unicode=True)`` gives; what is
cheaper is the way there. Measured on the generated 100-cluster mesh (22,871 objects), see
bench/README.md: PyYAML builds a node for every value, walks the tree twice (anchors, then
events) and asks its resolver, a Python call and a few regular expressions, twice for each of
~730,000 scalars of which ~10,000 differ. Here plain data (dicts, lists, str, int, bool, None)
is walked once and fed to the C emitter as events; a scalar's event (its tag, and whether it may
be written plain or quoted, answered by PyYAML's own resolver as its serializer does) is made
once per distinct scalar and emitted again wherever the scalar recurs.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Mapping
from operator import itemgetter
from typing import Any

import yaml
from yaml.events import (
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamStartEvent,
)
from yaml.nodes import Node, ScalarNode

from meshbridge.compile import naming
from meshbridge.compile.envelope import Obj, SortKey, sort_key

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

_KEPT = frozenset({str, int, bool, type(None)})  # scalars whose event is made once per value

_OPTIONS: dict[str, Any] = {
    "default_flow_style": False,
    "sort_keys": False,
    "width": 4096,
    "allow_unicode": True,
    "encoding": "utf-8",
}

# Around every mapping, sequence and document, the events PyYAML's serializer emits with our
# options (block style, no anchors, implicit tags, every document started by "---").
_MAPPING_START = MappingStartEvent(None, None, True, flow_style=False)
_MAPPING_END = MappingEndEvent()
_SEQUENCE_START = SequenceStartEvent(None, None, True, flow_style=False)
_SEQUENCE_END = SequenceEndEvent()
_DOCUMENT_START = DocumentStartEvent(explicit=True)
_DOCUMENT_END = DocumentEndEvent(explicit=False)


class Emitter:
    """Objects -> YAML bytes, one document at a time, through one C emitter.

    Not thread-safe: use one per thread (a render makes one). ``dump(obj)`` gives the same
    bytes as ``yaml.dump`` with our options; only plain data is taken: dicts, lists and
    scalars (a tuple, a set or a dict subclass is a TypeError).
    """

    def __init__(self) -> None:
        self._scalars: dict[tuple[type, Any], ScalarEvent] = {}
        self._open()

    def _open(self) -> None:
        self._stream = io.BytesIO()
        self._dumper = yaml.CSafeDumper(self._stream, **_OPTIONS)
        if self._dumper.yaml_path_resolvers:  # the scalar events depend on the value alone
            raise AssertionError("path resolvers are not supported")
        self._emit = self._dumper.emit
        self._emit(StreamStartEvent(encoding="utf-8"))

    def dump(self, obj: Any) -> bytes:
        if not isinstance(obj, dict | list | tuple | set):
            # A scalar document would follow "--- " on its line, so libyaml would fold a long
            # one at other places than in a document of its own: PyYAML makes it directly.
            data: bytes = yaml.dump(obj, Dumper=yaml.CSafeDumper, **_OPTIONS)
            return data
        emit = self._emit
        try:
            emit(_DOCUMENT_START)
            self._walk(obj)
            emit(_DOCUMENT_END)
        except BaseException as exc:
            self._open()  # the failed document's events are dropped with the old emitter
            if isinstance(exc, TypeError) and (unplain := _not_plain(obj)) is not None:
                raise TypeError(
                    f"cannot serialise a {unplain.__name__}: plain dicts and lists only"
                ) from exc
            raise
        # libyaml writes each document out when it ends, starting with "---\n" (or "--- " before
        # a flow collection such as "{}"): what follows is the document alone.
        data = self._stream.getvalue()
        self._stream.seek(0)
        self._stream.truncate()
        if not data.startswith((b"---\n", b"--- ")):
            raise AssertionError(f"unexpected document start: {data[:20]!r}")
        return data[4:]

    def _walk(self, value: Any) -> None:
        # A mapping's or sequence's scalars are emitted in its own loop rather than through a
        # call of _walk each: one Python call fewer per scalar (~730,000 in the 100-cluster
        # mesh's render, ~0.1 s).
        emit, scalars, walk = self._emit, self._scalars, self._walk
        kind = type(value)
        if kind is dict:
            emit(_MAPPING_START)
            for key, item in value.items():
                emit(scalars.get((type(key), key)) or self._scalar(key))
                kind = type(item)
                if kind is dict or kind is list:
                    walk(item)
                else:
                    emit(scalars.get((kind, item)) or self._scalar(item))
            emit(_MAPPING_END)
        elif kind is list:
            emit(_SEQUENCE_START)
            for item in value:
                kind = type(item)
                if kind is dict or kind is list:
                    walk(item)
                else:
                    emit(scalars.get((kind, item)) or self._scalar(item))
            emit(_SEQUENCE_END)
        else:
            emit(scalars.get((kind, value)) or self._scalar(value))

    def _scalar(self, value: Any) -> ScalarEvent:
        """The event PyYAML's serializer emits for the node its SafeRepresenter makes of
        ``value``, kept for the next time the same value (and type) is emitted."""
        kind = type(value)
        if isinstance(value, dict | list | tuple | set):
            raise TypeError(f"cannot serialise a {kind.__name__}: plain dicts and lists only")
        node: Node
        if kind is str:
            node = ScalarNode(_STR, value)
        elif kind is bool:
            node = ScalarNode(_BOOL, "true" if value else "false")
        elif kind is int:
            node = ScalarNode(_INT, str(value))
        elif value is None:
            node = ScalarNode(_NULL, "null")
        else:  # other scalars (float, a str subclass, ...); a representer remembers objects
            node = yaml.representer.SafeRepresenter().represent_data(value)
        if not isinstance(node, ScalarNode):
            raise TypeError(f"cannot serialise a {kind.__name__}: plain dicts and lists only")
        resolve: Callable[[type[Node], str, tuple[bool, bool]], str] = self._dumper.resolve
        implicit = (
            resolve(ScalarNode, node.value, (True, False)) == node.tag,
            resolve(ScalarNode, node.value, (False, True)) == node.tag,
        )
        event = ScalarEvent(None, node.tag, implicit, node.value, style=node.style)
        if kind in _KEPT:  # not a float: -0.0 == 0.0, and they are written apart
            self._scalars[(kind, value)] = event
        return event


def _not_plain(value: Any) -> type | None:
    """The type of the first value in ``value`` that :class:`Emitter` does not take, if any."""
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            found = _not_plain(key) or _not_plain(item)
            if found is not None:
                return found
        return None
    if kind is list:
        return next((found for item in value if (found := _not_plain(item)) is not None), None)
    if isinstance(value, dict | list | tuple | set):
        return kind
    return None


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


def serialised(
    generated: Iterable[tuple[str, Obj]],
    clusters: Iterable[str],
    advance: Callable[[int], None] | None = None,
    memo: DumpMemo | None = None,
) -> tuple[dict[str, ManifestFile], dict[str, int]]:
    """Relative path -> (content, private key holder) for every object, from (cluster, object)
    pairs in any order, each serialised as it comes and not kept, in the render's file order
    (by cluster, then apply order); and how many objects each of ``clusters`` has.

    The one way objects become files: a local render, the server's manifests and
    ``render --server`` all come here, so they write the same bytes. ``memo`` keeps the bytes of
    unchanged objects between calls (Secrets are never memoised: key material is not kept
    longer than the render that needs it); ``advance(n)`` hears of objects done, a few hundred
    at a time."""
    emitter = Emitter()
    made: dict[str, list[tuple[SortKey, str, ManifestFile]]] = {c: [] for c in clusters}
    done = 0
    for cluster, obj in generated:
        holder = private_key_holder(obj)
        memoised = memo if holder is None else None
        data = emitter.dump(obj) if memoised is None else memoised.dump(obj, emitter)
        made[cluster].append((sort_key(obj), f"{cluster}/{file_name(obj)}", (data, holder)))
        done += 1
        if advance is not None and done % _ADVANCE_EVERY == 0:
            advance(_ADVANCE_EVERY)
    if advance is not None:
        advance(done % _ADVANCE_EVERY)
    if memo is not None:
        memo.finish()
    out: dict[str, ManifestFile] = {}
    for cluster in sorted(made):
        for _, path, file in sorted(made[cluster], key=itemgetter(0)):  # as envelope.ordered
            out[path] = file
    return out, {cluster: len(entries) for cluster, entries in made.items()}


_ADVANCE_EVERY = 256


def files(
    objects_by_cluster: Mapping[str, Iterable[Obj]], memo: DumpMemo | None = None
) -> dict[str, ManifestFile]:
    """:func:`serialised` for objects already grouped by cluster."""
    pairs = ((cluster, obj) for cluster, objs in objects_by_cluster.items() for obj in objs)
    return serialised(pairs, objects_by_cluster, memo=memo)[0]
