"""The one strict reader of intent documents: YAML or JSON text in, typed documents out.

Every edge reads documents through here — intent files and stdin on the CLI, request bodies on
the server, the files the CLI sends to a server, and kubeconfigs (:func:`parse_config`: those
the CLI reads, those an admin registers) — so a document gets the same verdict and the same
message whichever way it arrives. Reading is strict where YAML itself is lenient:

* a mapping key given twice is refused, comparing keys as YAML resolves them (``on:`` and
  ``true:`` are the same boolean key, ``1`` and ``"1"`` are not), since the parsed mapping
  would silently keep only the last;
* a mapping key must be a plain scalar (``? [x]`` is refused: no intent field is keyed by a
  list, and a Python mapping cannot hold one);
* what a source may hold is bounded (:mod:`meshbridge.limits`): its size, documents, values,
  nesting, the length of a value, the digits of an integer, and what aliases stand for. YAML
  is checked event by event before a document is built (:func:`_census`), so an alias bomb is
  never expanded and a megabyte of ``[0,0,...`` never becomes millions of nodes; JSON is
  counted before it is parsed and checked once parsed. Any input gives a located problem,
  never a crash.

Loading never stops at the first problem: a user fixing a file wants the whole list. Each
problem names the source (file name, ``<stdin>`` or ``<body>``), the document (1-based index,
kind/name) and the field path in camelCase as written (``spec.clients[0].accessPoints[1]``).
A value of the input appears in a message only as a bounded, escaped excerpt
(:mod:`meshbridge.excerpt`). This module reads no files: callers pass :class:`Source` values
(name, text) or body bytes.
"""

from __future__ import annotations

import difflib
import itertools
import json
import re
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from meshbridge.errors import BadRequest, InvalidInput, Problem
from meshbridge.excerpt import LIMIT, escaped, quoted
from meshbridge.limits import FILES, Limits, for_bodies
from meshbridge.model import API_VERSION, DOCUMENT_MODELS, Intents, Located
from meshbridge.source import Source

__all__ = [
    "BODIES",
    "BODY",
    "RawDocument",
    "Source",
    "load",
    "load_objects",
    "load_source",
    "parse_body",
    "parse_config",
    "parse_one",
    "read_yaml",
    "validate_object",
]

BODY = "<body>"
"""The source name of a request body's documents (``<body>#2``)."""

RawDocument = tuple[int, Any]
"""A document as parsed, before its model: (1-based index in its source, plain data)."""

BODIES = for_bodies()
"""The limits of a request body on a server started with the default ``--max-body-mib``."""

_STR_TAG = "tag:yaml.org,2002:str"
_NAME_SHOWN = 253  # characters of a document's name in its problems: a DNS name's longest
_MESSAGE_SHOWN = 1000  # characters of a model's message (its own text, and excerpts)


@dataclass(frozen=True)
class _Stop:
    """Why and where reading stopped: in document ``index`` (1-based), ``message`` as a person
    reads it, and ``quiet``, the same without any text of the input (for kubeconfigs, which
    hold tokens)."""

    index: int
    message: str
    quiet: str


class _StrictLoader(yaml.CSafeLoader):
    """The C safe loader, refusing duplicate and non-scalar mapping keys and integers of more
    than ``int_digits`` digits, and resolving each distinct plain scalar once.

    The C parser asks the resolver for every node's tag: for a plain scalar, PyYAML tries its
    regular expressions (int, float, bool, null, timestamp, ...) on the text, whose answer
    depends on the text alone when there are no path resolvers (a safe loader has none). Intents
    repeat the same few thousand texts (names, ports, protocols) across ~120,000 scalars on the
    generated 100-cluster mesh, so the answer is kept for the loader's lifetime (one source).
    """

    def __init__(self, stream: str, int_digits: int = FILES.int_digits) -> None:
        super().__init__(stream)
        if self.yaml_path_resolvers:  # what resolve() relies on
            raise AssertionError("path resolvers are not supported")
        self._plain_tags: dict[str, str] = {}
        self.int_digits = int_digits
        self.refused = False  # the last error is one of ours, quoting nothing of the input

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.ScalarNode and implicit[0]:
            tag = self._plain_tags.get(value)
            if tag is None:
                tag = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
                self._plain_tags[value] = tag
            return tag
        resolved: str = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
        return resolved

    def refuse(self, message: str, node: yaml.Node) -> yaml.constructor.ConstructorError:
        self.refused = True
        return yaml.constructor.ConstructorError(None, None, message, node.start_mark)


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise loader.refuse(
                "a mapping key must be a plain scalar, not a list or a mapping", key_node
            )
        # A string key is its own text (the common case, not constructed twice); any other
        # scalar is compared as YAML resolves it, as the mapping built below would hold it.
        key = key_node.value if key_node.tag == _STR_TAG else loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {quoted(key_node.value)}", key_node.start_mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


def _construct_int(loader: _StrictLoader, node: yaml.ScalarNode) -> Any:
    """An integer, unless its digits are more than the limit: Python would refuse to convert
    more than 4,300 (a ValueError, not a YAML error), and no field needs more than 20."""
    digits = len(node.value.replace("_", "").lstrip("+-"))
    if digits > loader.int_digits:
        raise loader.refuse(f"an integer of {digits:,} digits (at most {loader.int_digits})", node)
    return yaml.SafeLoader.construct_yaml_int(loader, node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_StrictLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def _size(text: str) -> int:
    """The text's size in UTF-8 bytes (its length when it is ASCII, which Python knows)."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _too_large(limits: Limits) -> str:
    return f"the input is larger than {limits.bytes:,} bytes"


def _too_many(in_document: int, limits: Limits) -> str:
    if in_document > limits.document_nodes:
        return f"more than {limits.document_nodes:,} values in one document"
    return f"more than {limits.nodes:,} values in the input"


def _census(text: str, limits: Limits) -> tuple[int, str]:
    """Read the YAML stream's events once, building nothing, against ``limits``: the (1-based)
    document in which the first limit is broken and why, as "at line L, column C: ...", or
    (0, "") when none is. Aliases are sized, not expanded: each anchored value's size (one per
    value, one per character of a string) is known when it ends, and an alias adds it. A syntax
    error ends the census as (0, ""): reading the documents stops at the same place, with
    PyYAML's own message."""
    parser = yaml.CBaseLoader(text)  # its parser: events only, nothing composed
    documents = nodes = added = 0
    first = 0  # the count of nodes when the document began
    sizes: list[int] = []  # per open mapping or list: its size so far
    opened: list[str | None] = []  # per open mapping or list: its anchor
    anchors: dict[str, int] = {}  # this document's anchors, closed, and their sizes

    def at(event: Any, why: str) -> tuple[int, str]:
        mark = event.start_mark
        return documents, f"at line {mark.line + 1}, column {mark.column + 1}: {why}"

    try:
        while True:
            event: Any = parser.get_event()
            kind = type(event)
            if kind is yaml.ScalarEvent:
                length = len(event.value)
                if length > limits.scalar:
                    return at(event, f"a value of {length:,} characters (at most "
                                     f"{limits.scalar:,})")
                size = 1 + length
                if event.anchor is not None:
                    anchors[event.anchor] = size
            elif kind is yaml.AliasEvent:
                if event.anchor in opened:
                    return at(event, "an alias inside the value it names (a recursive "
                                     "structure)")
                size = anchors.get(event.anchor, 1)  # an unknown one: the composer says so
                added += size - 1
                if added > limits.alias_size:
                    return at(event, f"the document's aliases stand for more than "
                                     f"{limits.alias_size:,} values and characters (an alias "
                                     "bomb?)")
            elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                nodes += 1
                if nodes > limits.nodes or nodes - first > limits.document_nodes:
                    return at(event, _too_many(nodes - first, limits))
                sizes.append(1)
                opened.append(event.anchor)
                if len(sizes) > limits.depth:
                    return at(event, f"nested too deeply (more than {limits.depth} levels)")
                continue
            elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                size = sizes.pop()
                anchor = opened.pop()
                if anchor is not None:
                    anchors[anchor] = size
                if sizes:
                    sizes[-1] += size
                continue
            elif kind is yaml.DocumentStartEvent:
                documents += 1
                if documents > limits.documents:
                    return at(event, f"more than {limits.documents:,} documents in the input")
                anchors.clear()
                added = 0
                first = nodes
                continue
            elif kind is yaml.StreamEndEvent:
                return 0, ""
            else:
                continue
            nodes += 1
            if nodes > limits.nodes or nodes - first > limits.document_nodes:
                return at(event, _too_many(nodes - first, limits))
            if sizes:
                sizes[-1] += size
    except yaml.YAMLError:
        return 0, ""
    finally:
        parser.dispose()


def _yaml_documents(text: str, limits: Limits) -> tuple[list[RawDocument], _Stop | None]:
    """Every non-empty document of a YAML stream, and where and why reading stopped (the
    documents before that are kept, so their own problems can be reported too)."""
    if _size(text) > limits.bytes:
        return [], _Stop(1, _too_large(limits), _too_large(limits))
    stop_at, why = _census(text, limits)
    docs: list[RawDocument] = []
    index = 0
    loader = _StrictLoader(text, limits.int_digits)
    try:
        while index + 1 != stop_at and loader.check_data():  # type: ignore[no-untyped-call]
            raw = loader.get_data()
            index += 1
            if raw is not None:
                docs.append((index, raw))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or type(exc).__name__
        message = f"YAML error{where}: {escaped(str(what), 200)}"
        return docs, _Stop(index + 1, message, message if loader.refused else f"YAML error{where}")
    finally:
        loader.dispose()
    if stop_at:
        message = f"YAML error {why}"
        return docs, _Stop(stop_at, message, message)
    return docs, None


def read_yaml(
    text: str, source: str, limits: Limits = FILES
) -> tuple[list[RawDocument], Problem | None]:
    """Every non-empty document of a YAML stream, and the problem that stopped the reading
    (documents before it are kept, so their own problems can be reported too)."""
    docs, stop = _yaml_documents(text, limits)
    if stop is None:
        return docs, None
    return docs, Problem(source, stop.index, "", "", "", stop.message)


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')


def _json_values(text: str) -> int:
    """At least as many as the values of a JSON text: each is the first, or follows a comma, a
    colon (keys are counted by theirs) or an opening bracket."""
    return text.count(",") + text.count(":") + text.count("[") + text.count("{") + 1


def _json_problem(value: Any, limits: Limits) -> str | None:
    """What of ``limits`` a parsed JSON value breaks (nesting, a string's length), if any."""
    pending: list[tuple[Any, int]] = []
    leaves: Iterable[Any] = (value,)
    depth = 0
    while True:
        for child in leaves:
            if isinstance(child, str):
                if len(child) > limits.scalar:
                    return f"a value of {len(child):,} characters (at most {limits.scalar:,})"
            elif isinstance(child, (dict, list)):
                if depth + 1 > limits.depth:
                    return f"nested too deeply (more than {limits.depth} levels)"
                pending.append((child, depth + 1))
        if not pending:
            return None
        item, depth = pending.pop()
        leaves = itertools.chain(item, item.values()) if isinstance(item, dict) else item


def _json_documents(text: str, limits: Limits) -> tuple[list[RawDocument], _Stop | None]:
    """One object, an array of objects, or a Kubernetes ``List``; a key given twice in an
    object is refused, as it is in YAML."""

    def stop(message: str, quiet: str | None = None) -> tuple[list[RawDocument], _Stop]:
        return [], _Stop(1, message, message if quiet is None else quiet)

    if _size(text) > limits.bytes:
        return stop(_too_large(limits))
    if _json_values(text) > limits.nodes and _json_values(_JSON_STRING.sub("", text)) > limits.nodes:
        # counted again without the strings' contents: the first count may hold their commas
        return stop(f"JSON error: more than {limits.nodes:,} values in the input")
    repeated: list[str] = []
    long_ints: list[int] = []

    def mapping(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                repeated.append(key)
            out[key] = value
        return out

    def integer(digits: str) -> int:
        if len(digits.lstrip("-")) > limits.int_digits:
            long_ints.append(len(digits.lstrip("-")))
            raise ValueError(digits[:8])
        return int(digits)

    try:
        value = json.loads(text, object_pairs_hook=mapping, parse_int=integer)
    except json.JSONDecodeError as exc:
        return stop(f"JSON error at line {exc.lineno}, column {exc.colno}: {exc.msg}")
    except RecursionError:
        return stop(f"JSON error: nested too deeply (more than {limits.depth} levels)")
    except ValueError:
        if not long_ints:
            raise
        return stop(f"JSON error: an integer of {long_ints[0]:,} digits (at most "
                    f"{limits.int_digits})")
    if repeated:
        return stop(f"JSON error: duplicate key {quoted(repeated[0])}",
                    "JSON error: a key given twice")
    problem = _json_problem(value, limits)
    if problem is not None:
        return stop(f"JSON error: {problem}")
    if isinstance(value, dict) and value.get("kind") == "List" and "items" in value:
        value = value["items"]
    items = value if isinstance(value, list) else [value]
    if len(items) > limits.documents:
        return stop(f"JSON error: more than {limits.documents:,} documents in the input")
    return [(i, doc) for i, doc in enumerate(items, start=1) if doc is not None], None


def _is_json(text: str, content_type: str | None) -> bool:
    if content_type:
        kind = content_type.split(";", 1)[0].strip().lower()
        if "json" in kind:
            return True
        if "yaml" in kind:
            return False
    return text.lstrip()[:1] in ("{", "[")


def _body_documents(
    data: bytes, content_type: str | None, limits: Limits
) -> tuple[list[RawDocument], _Stop | None]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 text") from None
    reader = _json_documents if _is_json(text, content_type) else _yaml_documents
    return reader(text, limits)


def parse_body(
    data: bytes, content_type: str | None, source: str = BODY, limits: Limits = BODIES
) -> list[RawDocument]:
    """The documents of a request body (JSON by its content type or first character, YAML
    otherwise), read as files are; BadRequest when the body cannot be read at all."""
    docs, stop = _body_documents(data, content_type, limits)
    if stop is not None:
        raise BadRequest(str(Problem(source, stop.index, "", "", "", stop.message)))
    return docs


def parse_one(
    data: bytes, content_type: str | None, source: str = BODY, limits: Limits = BODIES
) -> Any:
    """The single document of a request body; BadRequest for none or several."""
    docs = parse_body(data, content_type, source, limits)
    if len(docs) != 1:
        raise BadRequest(f"the body must hold exactly one document, not {len(docs)}")
    return docs[0][1]


def parse_config(
    data: bytes, source: str, limits: Limits, kind: str = "", name: str = ""
) -> Any:
    """The one document of a configuration file (a kubeconfig: YAML or JSON), read with the
    same strictness and limits as intents. InvalidInput otherwise, located (``source``,
    ``kind``/``name``) by line and column and saying why, but quoting nothing of the text:
    a kubeconfig holds tokens and keys."""

    def refused(message: str) -> InvalidInput:
        return InvalidInput([Problem(source, 1, kind, name, "", message)])

    try:
        docs, stop = _body_documents(data, None, limits)
    except BadRequest:
        raise refused("not UTF-8 text") from None
    if stop is not None:
        raise refused(stop.quiet)
    if len(docs) != 1:
        raise refused(f"holds {len(docs)} documents, not one")
    return docs[0][1]


def _format_loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            continue
        else:  # a key of the input, perhaps one no model knows
            part = escaped(str(part))
            out += f".{part}" if out else part
    return out


def _model_at(model: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    """Follow ``loc`` (aliases) through nested models; the model found there, if any."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or part == "[key]":
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        fields = {(f.alias or n): f for n, f in current.model_fields.items()}
        info = fields.get(str(part))
        if info is None:
            return None
        current = _innermost_model(info.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _innermost_model(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, tuple, typing.Annotated, dict):
        for arg in reversed(typing.get_args(annotation)):
            found = _innermost_model(arg)
            if isinstance(found, type) and issubclass(found, BaseModel):
                return found
        return None
    return annotation


def _message(model: type[BaseModel], err: Any) -> str:
    kind = err["type"]
    loc = err["loc"]
    if kind == "extra_forbidden":
        parent = _model_at(model, loc[:-1])
        msg = "unknown field"
        if parent is not None:
            known = [(f.alias or n) for n, f in parent.model_fields.items()]
            close = difflib.get_close_matches(str(loc[-1])[:LIMIT], known, n=1)
            if close:
                msg += f" (did you mean {close[0]!r}?)"
            else:
                msg += f" (known fields: {', '.join(sorted(known))})"
        return msg
    if kind == "missing":
        return "required field is missing"
    message = str(err["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    return escaped(message, _MESSAGE_SHOWN)


def _check_envelope(raw: Any) -> tuple[str, str, list[tuple[str, str]]]:
    """Kind, name and envelope problems of a raw document, before model validation."""
    if not isinstance(raw, dict):
        return "", "", [("", f"a document must be a mapping, not {type(raw).__name__}")]
    problems: list[tuple[str, str]] = []
    kind = raw.get("kind")
    meta = raw.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    name_s = escaped(name, _NAME_SHOWN) if isinstance(name, str) else ""
    if raw.get("apiVersion") != API_VERSION:
        got = raw.get("apiVersion")
        problems.append(
            (
                "apiVersion",
                f"must be {API_VERSION!r}" + (f", not {quoted(got)}" if got is not None else ""),
            )
        )
    if not isinstance(kind, str) or kind not in DOCUMENT_MODELS:
        close = (
            difflib.get_close_matches(kind[:LIMIT], list(DOCUMENT_MODELS), n=1)
            if isinstance(kind, str)
            else []
        )
        hint = f" (did you mean {close[0]!r}?)" if close else f" (one of {', '.join(DOCUMENT_MODELS)})"
        problems.append(("kind", f"unknown kind {quoted(kind)}{hint}"))
        return "", name_s, problems
    return kind, name_s, problems


def load_source(source: Source) -> tuple[list[Located[Any]], list[Problem]]:
    """Read and validate one source, collecting every problem."""
    raw_docs, stopped = read_yaml(source.text, source.name)
    docs: list[Located[Any]] = []
    problems: list[Problem] = []
    for index, raw in raw_docs:
        located, found = _validate(raw, source.name, index)
        problems.extend(found)
        if located is not None:
            docs.append(located)
    if stopped is not None:
        problems.append(stopped)
    return docs, problems


def validate_object(raw: Any, source: str, index: int) -> tuple[Located[Any] | None, list[Problem]]:
    """Validate one already-parsed document (a dict, e.g. from a JSON API body)."""
    return _validate(raw, source, index)


def load_objects(items: Iterable[tuple[str, int, Any]]) -> Intents:
    """Like :func:`load`, for already-parsed documents given as (source, index, document)."""
    docs: list[Located[Any]] = []
    problems: list[Problem] = []
    for source, index, raw in items:
        located, found = _validate(raw, source, index)
        problems.extend(found)
        if located is not None:
            docs.append(located)
    if problems:
        raise InvalidInput(problems)
    return Intents.of(docs)


def _validate(raw: Any, source: str, index: int) -> tuple[Located[Any] | None, list[Problem]]:
    kind, name, envelope = _check_envelope(raw)
    problems = [Problem(source, index, kind, name, path, msg) for path, msg in envelope]
    if not kind:
        return None, problems
    model = DOCUMENT_MODELS[kind]
    try:
        obj = model.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = err["loc"]
            if loc and loc[0] == "apiVersion" and envelope:
                continue  # already reported with a better message
            problems.append(
                Problem(source, index, kind, name, _format_loc(loc), _message(model, err))
            )
        return None, problems
    if problems:
        return None, problems
    return Located(obj=obj, source=source, index=index), []


def load(sources: Iterable[Source]) -> Intents:
    """Every document of every source, or :class:`InvalidInput` listing every problem.

    Input without a single document (an empty file or stdin, only comments) is a problem too:
    it is far more often a wrong path or an empty pipe than a mesh meant to be empty.
    """
    docs: list[Located[Any]] = []
    problems: list[Problem] = []
    names: list[str] = []
    for source in sources:
        names.append(source.name)
        found_docs, found_problems = load_source(source)
        docs.extend(found_docs)
        problems.extend(found_problems)
    if not docs and not problems:
        problems = [
            Problem(name, 0, "", "", "", "no intent document in the input (it is empty)")
            for name in names or ["-f"]
        ]
    if problems:
        raise InvalidInput(problems)
    return Intents.of(docs)
