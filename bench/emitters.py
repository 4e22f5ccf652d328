"""YAML emitters on meshbridge's own output: PyYAML's C dumper, meshbridge's Emitter, rapidyaml.

Renders the generated mesh in-process (no files), then serialises the same output objects, each
emitter in turn, for ``--rounds`` rounds (the emitters alternate, so machine noise hits them
alike), and prints the best time of each and its ratio to a bare
``yaml.dump_all(objs, Dumper=CSafeDumper)`` with meshbridge's options:

- ``dump_all``: the bare PyYAML C dump, the baseline of issue 14;
- ``Emitter``: meshbridge's (``output/emitter.py``), one document per object, same bytes;
- ``ryml``: rapidyaml's Python wheel (``pip install rapidyaml``, if installed): a tree built
  node by node from Python, then emitted by C++. Plain strings that YAML would read as something
  else (``"true"``, ``"1"``, ``""``) are single-quoted, decided by PyYAML's resolver once per
  distinct string. Its output is checked to load back to the same objects (it is not the same
  bytes: rapidyaml indents sequences under a key).

    .venv/bin/python bench/emitters.py [--clusters 100 --servers 2000 --rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.meshgen import generate
from meshbridge.loading import Source
from meshbridge.output import emitter as output
from meshbridge.store import open_store
from meshbridge.usecases import render as render_service

OPTIONS: dict[str, Any] = {
    "sort_keys": False, "default_flow_style": False, "width": 4096, "allow_unicode": True,
}


def bare(objs: list[Any]) -> bytes:
    return yaml.dump_all(objs, Dumper=yaml.CSafeDumper, encoding="utf-8", **OPTIONS)


def ours(objs: list[Any]) -> bytes:
    emitter = output.Emitter()
    return b"---\n".join(emitter.dump(o) for o in objs)


def ryml_emitter() -> Callable[[list[Any]], bytes] | None:
    try:
        import ryml  # type: ignore[import-not-found]
    except ImportError:
        return None
    resolver = yaml.resolver.Resolver()
    str_tag = "tag:yaml.org,2002:str"
    plain: dict[str, bool] = {}

    def needs_quotes(s: str) -> bool:
        q = plain.get(s)
        if q is None:
            q = not s or resolver.resolve(yaml.ScalarNode, s, (True, False)) != str_tag
            q = q or s != s.strip() or ": " in s or " #" in s or s[0] in "!&*-?{}[],#|>@`\"'%"
            plain[s] = q
        return q

    def put(t: Any, node: int, key: bytes | None, value: Any) -> None:
        if isinstance(value, dict):
            t.to_map(node, key) if key is not None else t.to_map(node)
            for k, v in value.items():
                put(t, t.append_child(node), t.to_arena(k.encode()), v)
        elif isinstance(value, list):
            t.to_seq(node, key) if key is not None else t.to_seq(node)
            for v in value:
                put(t, t.append_child(node), None, v)
        else:
            if isinstance(value, bool):
                text, quote = ("true" if value else "false"), False
            elif value is None:
                text, quote = "null", False
            elif isinstance(value, int):
                text, quote = str(value), False
            else:
                text, quote = value, needs_quotes(value)
            val = t.to_arena(text.encode())
            if key is not None:
                t.to_keyval(node, key, val, ryml.VAL_SQUO if quote else 0)
            else:
                t.to_val(node, val, ryml.VAL_SQUO if quote else 0)

    def emit(objs: list[Any]) -> bytes:
        parts = []
        for obj in objs:
            t = ryml.Tree()
            put(t, t.root_id(), None, obj)
            parts.append(ryml.emit_yaml(t).encode())
        return b"---\n".join(parts)

    return emit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--servers", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    docs = generate(clusters=args.clusters, servers=args.servers)
    sources = [Source("mesh.yaml", yaml.dump_all(docs, Dumper=yaml.CSafeDumper))]
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(str(Path(tmp) / "state.db"))
        rendered = render_service.build(render_service.validate(sources), store, serialise=False)
        store.close()
    objs = [o for _, cluster in sorted(rendered.objects.items()) for o in cluster]
    emitters: dict[str, Callable[[list[Any]], bytes]] = {"dump_all": bare, "Emitter": ours}
    ryml = ryml_emitter()
    if ryml is None:
        print("rapidyaml: not installed (pip install rapidyaml), not measured")
    else:
        emitters["ryml"] = ryml
    best = dict.fromkeys(emitters, float("inf"))
    outputs: dict[str, bytes] = {}
    for _ in range(args.rounds):
        for name, emit in emitters.items():
            t0 = time.perf_counter()
            outputs[name] = emit(objs)
            best[name] = min(best[name], time.perf_counter() - t0)
    expected = b"---\n".join(
        yaml.dump(o, Dumper=yaml.CSafeDumper, **OPTIONS).encode() for o in objs
    )
    print(f"Emitter bytes identical to yaml.dump per object: {outputs['Emitter'] == expected}")
    print(f"objects: {len(objs)} ({args.clusters} clusters), best of {args.rounds} rounds")
    for name, seconds in best.items():
        print(f"{name}: {seconds:.2f} s, {seconds / best['dump_all']:.2f}x dump_all")
    if "ryml" in outputs:
        back = list(yaml.load_all(outputs["ryml"], Loader=yaml.CSafeLoader))
        print(f"ryml output loads back to the same objects: {back == objs}")


if __name__ == "__main__":
    main()
