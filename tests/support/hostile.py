"""Hostile input, as an attacker would write it (issue 26): the catalogue every bad-input test
and ``bench/hostile.py`` use, hypothesis strategies of arbitrary YAML, JSON and bytes, and a
CLI process run under a memory limit.

Each :class:`Hostile` is small to send (most under 500 bytes; the largest a few megabytes,
under the server's body limit) and was, before issue 26, a hang, an out-of-memory, a
traceback or a 500 somewhere. Each must now be refused quickly with a located problem: the
CLI exits 2, the server answers 400 or 422, and ``why`` is in the message.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from hypothesis import strategies as st
from plaindata import TRICKY, plain

API = "meshbridge.dev/v1alpha1"
ESCAPES = "\x1b]0;pwned\x07\x1b[31m"  # a terminal title, then red
MEMORY = 300 * 1024 * 1024  # what one CLI run on a hostile input may use (RLIMIT_AS)


def bomb_anchors(levels: int = 7) -> list[str]:
    """``bN: &bN [...]`` lines: ``*b{levels-1}`` then stands for 9**levels strings."""
    lines = ["b0: &b0 [lol,lol,lol,lol,lol,lol,lol,lol,lol]"]
    lines += [f"b{i}: &b{i} [{','.join([f'*b{i - 1}'] * 9)}]" for i in range(1, levels)]
    return lines


def alias_bomb(where: str, levels: int = 7) -> str:
    """An App document whose field ``where`` (``kind``, ``apiVersion``, ``metadata.name``,
    ``spec.clusters``, ``spec.zzz``) is an alias standing for 9**levels (4.8 million) strings,
    in under 500 bytes; its anchors are unknown top-level fields before it."""
    bomb = f"*b{levels - 1}"
    fields = {"apiVersion": API, "kind": "App", "metadata.name": "bomb",
              "spec.clusters": "[c1]", "spec.zzz": None}
    fields[where] = bomb
    extra = f", zzz: {fields['spec.zzz']}" if fields["spec.zzz"] else ""
    return "\n".join([
        *bomb_anchors(levels),
        f"apiVersion: {fields['apiVersion']}",
        f"kind: {fields['kind']}",
        f"metadata: {{name: {fields['metadata.name']}, namespace: foo}}",
        f"spec: {{clusters: {fields['spec.clusters']}{extra}}}",
    ]) + "\n"


@dataclass(frozen=True)
class Hostile:
    """One hostile input: its text, the content type to send it with, the statuses the server
    may answer (400: unreadable, 422: read but invalid) and what the message must say."""

    name: str
    text: bytes
    why: str
    statuses: tuple[int, ...] = (400,)
    ctype: str = "application/yaml"


def _kubeconfig_with(extra: str) -> str:
    return (
        "apiVersion: v1\nkind: Config\n"
        "clusters: [{name: c, cluster: {server: 'https://10.0.0.1:6443'}}]\n"
        "contexts: [{name: x, context: {cluster: c}}]\n" + extra
    )


def _hostile() -> list[Hostile]:
    deep = 100_000
    return [
        Hostile("alias bomb in kind", alias_bomb("kind").encode(), "alias bomb"),
        Hostile("alias bomb in apiVersion", alias_bomb("apiVersion").encode(), "alias bomb"),
        Hostile("alias bomb in metadata.name", alias_bomb("metadata.name").encode(), "alias bomb"),
        Hostile("alias bomb in a spec field", alias_bomb("spec.clusters").encode(), "alias bomb"),
        Hostile("alias bomb in an unknown field", alias_bomb("spec.zzz").encode(), "alias bomb"),
        Hostile("a long string, aliased", (
            f"a: &s {'x' * 60_000}\nb: [*s, *s, *s]\n").encode(), "alias bomb"),
        Hostile("a recursive alias", b"kind: &k [*k]\n", "recursive structure"),
        Hostile("a list as a key", b"apiVersion: x\n? [x]\n: 1\n", "must be a plain scalar"),
        Hostile("a mapping as a key", b"? {x: 1}\n: 1\n", "must be a plain scalar"),
        Hostile("an integer of 5,000 digits", b"kind: " + b"7" * 5000 + b"\n",
                "an integer of 5,000 digits"),
        Hostile("an integer key of 5,000 digits", b"? " + b"7" * 5000 + b"\n: x\n",
                "an integer of 5,000 digits"),
        Hostile("a JSON integer of 5,000 digits", b'{"kind": ' + b"7" * 5000 + b"}",
                "an integer of 5,000 digits", ctype="application/json"),
        Hostile("JSON nested 100,000 deep", b"[" * deep + b"]" * deep, "nested too deeply",
                ctype="application/json"),
        Hostile("YAML nested 100,000 deep", b"[" * deep + b"]" * deep, "nest"),
        Hostile("YAML nested 200 deep, in blocks",
                "".join("  " * i + "a:\n" for i in range(200)).encode(), "nested too deeply"),
        Hostile("200,000 documents", b"---\n" * 200_000, "more than 100,000 documents"),
        Hostile("a million values", b"[" + b"0," * 1_000_000 + b"0]", "more than 100,000 values"),
        Hostile("a value of 2 MiB", b"kind: " + b"x" * (2 << 20) + b"\n", "a value of"),
        Hostile("a JSON text of a million values", b"[" + b"{}," * 1_000_000 + b"{}]",
                "more than 524,288 values", ctype="application/json"),
        Hostile("terminal escapes in a name", yaml.safe_dump(
            {"apiVersion": API, "kind": "App", "metadata": {"name": ESCAPES, "namespace": "foo"},
             "spec": {"clusters": ["c1"]}}).encode(), "\\x1b]0;pwned\\x07", (422,)),
        Hostile("not UTF-8", b"kind: caf\xe9\n", "UTF-8"),
    ]


HOSTILE = {h.name: h for h in _hostile()}

HOSTILE_KUBECONFIGS = {
    "alias bomb under extensions": (
        _kubeconfig_with("preferences:\n" + "".join(f"  {line}\n" for line in bomb_anchors())
                         + "extensions: *b6\n"),
        "alias bomb",
    ),
    "current-context: [x]": (_kubeconfig_with("current-context: [x]\n"),
                             "names no context"),
    "a context naming a list": (_kubeconfig_with("").replace("{cluster: c}", "{cluster: [c]}"),
                                "names no cluster"),
    "a list as a key": (_kubeconfig_with("? [x]\n: 1\n"), "YAML error at line 5, column 3"),
    "an integer of 5,000 digits": (_kubeconfig_with("preferences: {x: " + "7" * 5000 + "}\n"),
                                   "an integer of 5,000 digits"),
    "nested 150 deep": (_kubeconfig_with("preferences: " + "[" * 150 + "]" * 150 + "\n"),
                        "nested too deeply"),
}


# --------------------------------------------------------------------- arbitrary structures

_ENVELOPE_VALUES = st.one_of(
    plain, st.sampled_from([API, "App", "Cluster", "Mesh", "InboundIntent", ESCAPES]),
)


@st.composite
def documents(draw: st.DrawFn) -> object:
    """A document-like structure: the envelope's fields often present, with any values."""
    doc = draw(st.dictionaries(st.sampled_from(TRICKY), plain, max_size=3))
    for key in ("apiVersion", "kind", "metadata", "spec"):
        if draw(st.booleans()):
            doc[key] = draw(_ENVELOPE_VALUES)
    if draw(st.booleans()):
        doc["metadata"] = {"name": draw(_ENVELOPE_VALUES), "namespace": draw(_ENVELOPE_VALUES)}
    return draw(st.one_of(st.just(doc), plain))


def _shared(data: object) -> object:
    """The same structure twice in one document: PyYAML writes the second as an alias."""
    return {"first": data, "again": data, "more": [data, data]}


yaml_texts = st.one_of(
    st.lists(documents(), min_size=1, max_size=3).map(
        lambda docs: yaml.safe_dump_all(docs, allow_unicode=True)),
    documents().map(lambda d: yaml.dump(_shared(d), Dumper=yaml.SafeDumper)),
    st.text(max_size=200),
    st.sampled_from(TRICKY),
)
json_texts = st.one_of(
    st.lists(documents(), max_size=3).map(json.dumps),
    documents().map(json.dumps),
    st.integers().map(str),
    st.text(max_size=100).map(lambda t: "{" + t),
)
raw_bytes = st.binary(max_size=300)


# ----------------------------------------------------------------- a CLI under a memory limit


@dataclass(frozen=True)
class Ran:
    code: int
    stderr: str
    seconds: float
    max_rss_mib: float  # the process's peak resident memory


def run_limited(args: list[str], cwd: Path, memory: int = MEMORY, timeout: float = 60) -> Ran:
    """``meshbridge ARGS`` as a process whose address space is limited to ``memory`` bytes
    (``RLIMIT_AS``: past it, allocations fail, and a MemoryError is a traceback); killed and
    subprocess.TimeoutExpired after ``timeout`` seconds, which is a hang, not a measure of
    speed."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    killed: list[bool] = []
    with tempfile.TemporaryFile() as err:
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-c", "from meshbridge.cli import main; main()", *args],
            cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            preexec_fn=limit,
        )
        timer = threading.Timer(timeout, lambda: (killed.append(True), process.kill()))
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)  # its own peak memory, not a sibling's
        finally:
            timer.cancel()
        seconds = time.monotonic() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    if killed:
        raise subprocess.TimeoutExpired(args, timeout, stderr=stderr)
    return Ran(process.returncode, stderr, seconds, usage.ru_maxrss / 1024)
