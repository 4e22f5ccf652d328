"""The OpenAPI description of request bodies, made from the document models themselves.

Bodies are read by the routes (JSON or YAML, validated by the models with located problems),
not by FastAPI, so their schemas are attached here: each kind's JSON Schema (camelCase, as users
write it) lands in ``components.schemas``, with the server-set metadata fields added.
"""

from __future__ import annotations

from typing import Any

from meshbridge.model import DOCUMENT_MODELS

_REF = "#/components/schemas/{model}"
_SERVER_FIELDS = {
    "resourceVersion": {
        "type": "string",
        "description": "Server-set; a PUT with it is conditional.",
    },
    "uid": {"type": "string", "description": "Server-set; ignored on input."},
    "creationTimestamp": {"type": "string", "description": "Server-set; ignored on input."},
}
_YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")


def body_schema(kind: str | None) -> dict[str, Any]:
    """``openapi_extra`` for a route taking one document of ``kind`` (None: any, many)."""
    if kind is None:
        one: dict[str, Any] = {"oneOf": [{"$ref": _REF.format(model=k)} for k in DOCUMENT_MODELS]}
        json_schema: dict[str, Any] = {"oneOf": [one, {"type": "array", "items": one}]}
        description = "One or more documents: multi-document YAML, a JSON object or array."
    else:
        json_schema = {"$ref": _REF.format(model=kind)}
        description = f"One {kind} document, JSON or YAML."
    content: dict[str, Any] = {"application/json": {"schema": json_schema}}
    for media in _YAML_TYPES[:1]:
        content[media] = {"schema": {"type": "string"}}
    return {"requestBody": {"required": True, "description": description, "content": content}}


def components() -> dict[str, Any]:
    """Every document model's schema and the schemas it refers to, by name."""
    out: dict[str, Any] = {}
    for name, model in DOCUMENT_MODELS.items():
        schema = model.model_json_schema(by_alias=True, ref_template=_REF)
        for def_name, definition in schema.pop("$defs", {}).items():
            out[def_name] = definition
        out[name] = schema
    meta = out.get("Metadata")
    if isinstance(meta, dict):
        meta.setdefault("properties", {}).update(_SERVER_FIELDS)
    return out
