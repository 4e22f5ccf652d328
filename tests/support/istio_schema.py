"""Validate generated objects against Istio's own schemas (cloudcoil-models-istio), strictly.

cloudcoil's models accept unknown fields by default; here every model class is switched to
``extra="forbid"`` and rebuilt, so a misspelt or misplaced field in our output is an error.
"""

from __future__ import annotations

import importlib
import inspect
from functools import cache
from typing import Any

import pydantic

MODULES = [
    "cloudcoil.apimachinery",
    "cloudcoil.models.istio.networking.v1beta1",
    "cloudcoil.models.istio.networking.v1",
    "cloudcoil.models.istio.security.v1beta1",
    "cloudcoil.models.istio.security.v1",
]


@cache
def _models() -> dict[tuple[str, str], type[pydantic.BaseModel]]:
    classes: list[type[pydantic.BaseModel]] = []
    for name in MODULES:
        module = importlib.import_module(name)
        for cls in vars(module).values():  # definition order: nested models come first
            if (inspect.isclass(cls) and issubclass(cls, pydantic.BaseModel)
                    and cls.__module__ == name):
                classes.append(cls)
    for cls in classes:
        cls.model_config["extra"] = "forbid"
    for _ in range(2):  # the second pass picks up nested models rebuilt after their parents
        for cls in classes:
            cls.model_rebuild(force=True)
    out: dict[tuple[str, str], type[pydantic.BaseModel]] = {}
    for cls in classes:
        fields = cls.model_fields
        if "api_version" in fields and "kind" in fields:
            api = fields["api_version"].default
            kind = fields["kind"].default
            if isinstance(api, str) and isinstance(kind, str):
                out[(api, kind)] = cls
    return out


def validate(obj: dict[str, Any]) -> None:
    """Raise pydantic.ValidationError if Istio's schema rejects ``obj``; Secrets and
    IstioOperators (not in those schema packages) are checked for shape only."""
    key = (obj["apiVersion"], obj["kind"])
    if obj["kind"] in ("Secret", "IstioOperator"):
        assert set(obj) <= {"apiVersion", "kind", "metadata", "type", "data", "spec"}
        return
    model = _models().get(key)
    if model is None:
        raise AssertionError(f"no Istio schema for {key}")
    model.model_validate(obj)
