"""YAML text in, typed documents out, with every problem collected and located.

Loading never stops at the first problem: a user fixing a file wants the whole list. Each problem
names the source (file name or ``<stdin>``), the document (index, kind/name) and the field path in
camelCase as written (``spec.clients[0].accessPoints[1].paths[0]``). This module reads no files:
callers pass ``(source name, text)`` pairs.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from meshbridge.errors import InvalidInput, Problem
from meshbridge.model import API_VERSION, KINDS, Intents, Located
from meshbridge.source import Source

__all__ = ["Source", "load", "load_objects", "parse_documents", "validate_object"]


class _StrictLoader(yaml.CSafeLoader):
    """The C safe loader, refusing duplicate mapping keys (YAML itself would keep the last), and
    resolving each distinct plain scalar once.

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
        # scalar keys compare by (tag, text), so keys are not constructed twice
        if isinstance(key_node, yaml.ScalarNode):
            key, text = (key_node.tag, key_node.value), key_node.value
        else:
            key = text = loader.construct_object(key_node, deep=True)
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {text!r}", mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


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
    if not isinstance(kind, str) or kind not in KINDS:
        close = difflib.get_close_matches(str(kind), list(KINDS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (one of {', '.join(KINDS)})"
        problems.append(("kind", f"unknown kind {kind!r}{hint}"))
        return "", name_s, problems
    return kind, name_s, problems


def parse_documents(
    source: Source,
) -> tuple[list[Located[Any]], list[Problem]]:
    """Parse one source into located documents, collecting every problem."""
    docs: list[Located[Any]] = []
    problems: list[Problem] = []
    index = 0
    try:
        for raw in yaml.load_all(source.text, Loader=_StrictLoader):
            index += 1
            if raw is None:
                continue
            located, found = _validate(raw, source.name, index)
            problems.extend(found)
            if located is not None:
                docs.append(located)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or str(exc)
        problems.append(Problem(source.name, index + 1, "", "", "", f"YAML error{where}: {what}"))
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
    model = KINDS[kind]
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
        found_docs, found_problems = parse_documents(source)
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
