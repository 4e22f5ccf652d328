"""The error tree of meshbridge.errors is the whole tree: every exception class meshbridge
defines is a MeshbridgeError, defined in meshbridge.errors and drawn in its docstring, so an edge
that maps MeshbridgeError maps everything meshbridge raises on purpose."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import meshbridge
from meshbridge import errors


def _every_module() -> list[str]:
    found = []
    for info in pkgutil.walk_packages(meshbridge.__path__, "meshbridge."):
        if ".migrations" in info.name:
            continue  # Alembic scripts, run by Alembic
        found.append(info.name)
    return found


def test_every_exception_meshbridge_defines_is_in_the_tree() -> None:
    defined: dict[str, type[BaseException]] = {}
    for name in _every_module():
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__.startswith("meshbridge"):
                defined[f"{cls.__module__}.{cls.__qualname__}"] = cls
    assert len(_every_module()) > 90  # the walk saw the package
    outside = sorted(where for where, cls in defined.items() if cls.__module__ != errors.__name__)
    assert outside == [], "exceptions defined outside meshbridge.errors"
    for where, cls in defined.items():
        assert issubclass(cls, errors.MeshbridgeError), where
        assert f" {cls.__name__} " in (errors.__doc__ or ""), f"{where} is not drawn in the tree"
    assert set(errors.__all__) >= {cls.__name__ for cls in defined.values()}
