"""Raw documents out of request bodies and files: JSON or YAML, one or many, strictly parsed.

The API server and the CLI's client both need the documents as plain data (to send, to store
as written), not as models; problems are located like the loader's (``<body>#3``). YAML is read
with the C safe loader, refusing duplicate keys as :mod:`meshbridge.loading` does; JSON bodies
may be one object, an array of objects, or a Kubernetes ``List``.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from meshbridge.errors import BadRequest

__all__ = ["BODY", "parse_documents", "parse_one"]

BODY = "<body>"


class _StrictLoader(yaml.CSafeLoader):
    """Safe loader refusing duplicate mapping keys (YAML itself would keep the last)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _is_json(text: str, content_type: str | None) -> bool:
    if content_type:
        kind = content_type.split(";", 1)[0].strip().lower()
        if "json" in kind:
            return True
        if "yaml" in kind:
            return False
    return text.lstrip()[:1] in ("{", "[")


def parse_documents(
    data: bytes, content_type: str | None, source: str = BODY
) -> list[tuple[int, Any]]:
    """(1-based index, document) for every non-empty document; BadRequest when unreadable."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the body is not UTF-8 text") from None
    if _is_json(text, content_type):
        return _json_documents(text, source)
    return _yaml_documents(text, source)


def parse_one(data: bytes, content_type: str | None, source: str = BODY) -> Any:
    docs = parse_documents(data, content_type, source)
    if len(docs) != 1:
        raise BadRequest(f"the body must hold exactly one document, not {len(docs)}")
    return docs[0][1]


def _json_documents(text: str, source: str) -> list[tuple[int, Any]]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"{source}: JSON error at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    if isinstance(value, dict) and value.get("kind") == "List" and "items" in value:
        value = value["items"]
    items = value if isinstance(value, list) else [value]
    return [(i, doc) for i, doc in enumerate(items, start=1) if doc is not None]


def _yaml_documents(text: str, source: str) -> list[tuple[int, Any]]:
    out: list[tuple[int, Any]] = []
    index = 0
    try:
        for doc in yaml.load_all(text, Loader=_StrictLoader):
            index += 1
            if doc is not None:
                out.append((index, doc))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or type(exc).__name__
        raise BadRequest(f"{source}#{index + 1}: YAML error{where}: {what}") from None
    except RecursionError:
        raise BadRequest(f"{source}: YAML nested too deeply") from None
    return out
