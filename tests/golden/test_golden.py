"""Golden tests: each example rendered and compared with expected manifests, bytes and meaning.

Expected files live in ``tests/golden/<case>/expected/<cluster>/...`` (what ``render -o`` writes;
names and VIPs are meshbridge's own, the objects as the seed writes them by hand). The Secrets
that hold a private key (``cacerts``, ingress credentials) are never in that tree: they are
rendered with ``--secrets-dir`` and compared with ``tests/golden/<case>/expected-secrets/...``.
They hold fresh key material on every run, so their values are masked first (each becomes what
it holds: ``<PEM CERTIFICATE x2>``, ``<PEM PRIVATE KEY>``) and the masked Secret is written by
meshbridge's own emitter.

Each file is compared twice: parsed (a change in meaning shows as a readable difference of
objects) and as bytes (a change in layout, quoting or order shows too).

Regenerate after an intended change with ``MESHBRIDGE_UPDATE_GOLDEN=1 scripts/test tests/golden``
and review the diff: the expected files are what meshbridge's render wrote (masked, for
Secrets), never a re-serialisation by another YAML library.
"""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import EXAMPLES

from meshbridge.output.emitter import dump

HERE = Path(__file__).parent
CASES = sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir())
UPDATE = os.environ.get("MESHBRIDGE_UPDATE_GOLDEN") == "1"


def _masked(value: str) -> str:
    text = base64.b64decode(value).decode()
    if "PRIVATE KEY" in text:
        return "<PEM PRIVATE KEY>"
    return f"<PEM CERTIFICATE x{text.count('BEGIN CERTIFICATE')}>"


def _mask(data: bytes) -> bytes:
    """A rendered Secret with each value replaced by what it holds, written as render writes."""
    doc = yaml.safe_load(data)
    doc["data"] = {key: _masked(value) for key, value in doc.get("data", {}).items()}
    return dump(doc)


def _rendered(root: Path, *, secrets: bool) -> dict[str, bytes]:
    files = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.yaml"))}
    return {rel: _mask(data) for rel, data in files.items()} if secrets else files


def _compare(got: dict[str, bytes], expected_dir: Path) -> None:
    if UPDATE:
        shutil.rmtree(expected_dir, ignore_errors=True)
        for rel, data in got.items():
            path = expected_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    expected = (
        {str(p.relative_to(expected_dir)): p.read_bytes() for p in sorted(expected_dir.rglob("*.yaml"))}
        if expected_dir.is_dir()
        else {}
    )
    assert sorted(got) == sorted(expected), f"the set of files differs from {expected_dir.name}"
    for rel, data in expected.items():
        assert yaml.safe_load(got[rel]) == yaml.safe_load(data), f"{rel} means something else"
        assert got[rel] == data, f"{rel} holds the same objects in other bytes"


@pytest.mark.parametrize("case", CASES)
def test_render_matches_golden(case: str, cli: Any, tmp_path: Path) -> None:
    out, keys = tmp_path / "out", tmp_path / "keys"
    result = cli("render", "-f", str(EXAMPLES / case), "-o", str(out), "--secrets-dir", str(keys))
    assert result.exit_code == 0, result.stderr
    _compare(_rendered(out, secrets=False), HERE / case / "expected")
    _compare(_rendered(keys, secrets=True), HERE / case / "expected-secrets")
    plain = tmp_path / "plain"  # without --secrets-dir: the same tree, the keys left out
    assert cli("render", "-f", str(EXAMPLES / case), "-o", str(plain)).exit_code == 0
    assert _rendered(plain, secrets=False) == _rendered(out, secrets=False)


def test_every_example_has_a_golden_case() -> None:
    golden = sorted(p.name for p in HERE.iterdir() if (p / "expected").is_dir())
    assert golden == CASES
