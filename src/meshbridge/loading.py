"""The one strict reader of intent documents: YAML or JSON text in, typed documents out.

Every edge reads documents through here — intent files and stdin on the CLI, request bodies on
the server, the files the CLI sends to a server — so a document gets the same verdict and the
same message whichever way it arrives. Reading is strict where YAML itself is lenient:

* a mapping key given twice is refused, comparing keys as YAML resolves them (``on:`` and
  ``true:`` are the same boolean key, ``1`` and ``"1"`` are not), since the parsed mapping
  would silently keep only the last;
* a mapping key must be a plain scalar (``? [x]`` is refused: no intent field is keyed by a
  list, and a Python mapping cannot hold one);
* input nested too deeply to read is refused, not a crash.

Loading never stops at the first problem: a user fixing a file wants the whole list. Each
problem names the source (file name, ``<stdin>`` or ``<body>``), the document (1-based index,
kind/name) and the field path in camelCase as written (``spec.clients[0].accessPoints[1]``).
This module reads no files: callers pass :class:`Source` values (name, text) or body bytes.
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from meshbridge.errors import BadRequest, InvalidInput, Problem
from meshbridge.model import API_VERSION, DOCUMENT_MODELS, Intents, Located
from meshbridge.source import Source

__all__ = [
    "BODY",
    "RawDocument",
    "Source",
    "load",
    "load_objects",
    "load_source",
    "parse_body",
    "parse_one",
    "read_yaml",
    "validate_object",
]

BODY = "<body>"
"""The source name of a request body's documents (``<body>#2``)."""

RawDocument = tuple[int, Any]
"""A document as parsed, before its model: (1-based index in its source, plain data)."""

_STR_TAG = "tag:yaml.org,2002:str"


class _StrictLoader(yaml.CSafeLoader):
    """The C safe loader, refusing duplicate and non-scalar mapping keys, and resolving each
    distinct plain scalar once.

    The C parser asks the resolver for every node's tag: for a plain scalar, PyYAML tries its
    regular expressions (int, float, bool, null, timestamp, ...) on the text, whose answer
    depends on the text alone when there are no path resolvers (a safe loader has none). Intents
    repeat the same few thousand texts (names, ports, protocols) across ~120,000 scalars on the
    generated 100-cluster mesh, so the answer is kept for the loader's lifetime (one source).
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        if self.yaml_path_resolvers:  # what resolve() relies on
            raise AssertionError("path resolvers are not supported")
        self._plain_tags: dict[str, str] = {}

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.ScalarNode and implicit[0]:
            tag = self._plain_tags.get(value)
            if tag is None:
                tag = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
                self._plain_tags[value] = tag
            return tag
        resolved: str = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
        return resolved


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain scalar, not a list or a mapping",
                key_node.start_mark,
            )
        # A string key is its own text (the common case, not constructed twice); any other
        # scalar is compared as YAML resolves it, as the mapping built below would hold it.
        key = key_node.value if key_node.tag == _STR_TAG else loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_yaml(text: str, source: str) -> tuple[list[RawDocument], Problem | None]:
    """Every non-empty document of a YAML stream, and the problem that stopped the reading
    (documents before it are kept, so their own problems can be reported too)."""
    docs: list[RawDocument] = []
    index = 0
    try:
        for raw in yaml.load_all(text, Loader=_StrictLoader):
            index += 1
            if raw is not None:
                docs.append((index, raw))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or type(exc).__name__
        return docs, Problem(source, index + 1, "", "", "", f"YAML error{where}: {what}")
    except RecursionError:
        return docs, Problem(source, index + 1, "", "", "", "YAML error: nested too deeply")
    return docs, None


def _read_json(text: str, source: str) -> tuple[list[RawDocument], Problem | None]:
    """One object, an array of objects, or a Kubernetes ``List``; a key given twice in an
    object is refused, as it is in YAML."""
    repeated: list[str] = []

    def mapping(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in pairs:
            if key in out:
                repeated.append(key)
            out[key] = value
        return out

    try:
        value = json.loads(text, object_pairs_hook=mapping)
    except json.JSONDecodeError as exc:
        where = f"JSON error at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        return [], Problem(source, 1, "", "", "", where)
    except RecursionError:
        return [], Problem(source, 1, "", "", "", "JSON error: nested too deeply")
    if repeated:
        return [], Problem(source, 1, "", "", "", f"JSON error: duplicate key {repeated[0]!r}")
    if isinstance(value, dict) and value.get("kind") == "List" and "items" in value:
        value = value["items"]
    items = value if isinstance(value, list) else [value]
    return [(i, doc) for i, doc in enumerate(items, start=1) if doc is not None], None


def _is_json(text: str, content_type: str | None) -> bool:
    if content_type:
        kind = content_type.split(";", 1)[0].strip().lower()
        if "json" in kind:
            return True
        if "yaml" in kind:
            return False
    return text.lstrip()[:1] in ("{", "[")


def parse_body(data: bytes, content_type: str | None, source: str = BODY) -> list[RawDocument]:
    """The documents of a request body (JSON by its content type or first character, YAML
    otherwise), read as files are; BadRequest when the body cannot be read at all."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 text") from None
    reader = _read_json if _is_json(text, content_type) else read_yaml
    docs, problem = reader(text, source)
    if problem is not None:
        raise BadRequest(str(problem))
    return docs


def parse_one(data: bytes, content_type: str | None, source: str = BODY) -> Any:
    """The single document of a request body; BadRequest for none or several."""
    docs = parse_body(data, content_type, source)
    if len(docs) != 1:
        raise BadRequest(f"the body must hold exactly one document, not {len(docs)}")
    return docs[0][1]


def _format_loc(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            continue
        else:
            out += f".{part}" if out else str(part)
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
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
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
    return message


def _check_envelope(raw: Any) -> tuple[str, str, list[tuple[str, str]]]:
    """Kind, name and envelope problems of a raw document, before model validation."""
    if not isinstance(raw, dict):
        return "", "", [("", f"a document must be a mapping, not {type(raw).__name__}")]
    problems: list[tuple[str, str]] = []
    kind = raw.get("kind")
    meta = raw.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    name_s = name if isinstance(name, str) else ""
    if raw.get("apiVersion") != API_VERSION:
        got = raw.get("apiVersion")
        problems.append(
            (
                "apiVersion",
                f"must be {API_VERSION!r}" + (f", not {got!r}" if got is not None else ""),
            )
        )
    if not isinstance(kind, str) or kind not in DOCUMENT_MODELS:
        close = difflib.get_close_matches(str(kind), list(DOCUMENT_MODELS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (one of {', '.join(DOCUMENT_MODELS)})"
        problems.append(("kind", f"unknown kind {kind!r}{hint}"))
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
