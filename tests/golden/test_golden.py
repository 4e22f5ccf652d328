"""Golden tests: each seed example rendered and compared, semantically, with expected manifests.

Expected files live in ``tests/golden/<case>/expected/<cluster>/...`` and were written from the
seed's hand-made resources (names and VIPs are meshbridge's own). The Secrets that hold a private
key (``cacerts``, ingress credentials) are never in that tree: they are rendered with
``--secrets-dir`` and compared with ``tests/golden/<case>/expected-secrets/<cluster>/...``. They
hold fresh key material on every run, so their values are compared as "a PEM of the right type"
rather than byte for byte.

Regenerate after an intended change with ``MESHBRIDGE_UPDATE_GOLDEN=1 pytest tests/golden`` and
review the diff.
"""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import EXAMPLES, read_tree

HERE = Path(__file__).parent
CASES = sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir())
UPDATE = os.environ.get("MESHBRIDGE_UPDATE_GOLDEN") == "1"


def _mask(doc: dict[str, Any]) -> dict[str, Any]:
    """Secret values -> '<PEM CERTIFICATE>' / '<PEM PRIVATE KEY>' (what they hold, not the bytes)."""
    if doc.get("kind") != "Secret":
        return doc
    masked = dict(doc)
    data = {}
    for key, value in doc.get("data", {}).items():
        text = base64.b64decode(value).decode() if not str(value).startswith("<") else value
        if text.startswith("<"):
            data[key] = text
        elif "PRIVATE KEY" in text:
            data[key] = "<PEM PRIVATE KEY>"
        else:
            data[key] = f"<PEM CERTIFICATE x{text.count('BEGIN CERTIFICATE')}>"
    masked["data"] = data
    return masked


def _normal(tree: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    return {path: [_mask(d) for d in docs] for path, docs in tree.items()}


def _compare(got: dict[str, list[dict[str, Any]]], expected_dir: Path) -> None:
    if UPDATE:
        shutil.rmtree(expected_dir, ignore_errors=True)
        for rel, docs in got.items():
            path = expected_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    expected = read_tree(expected_dir) if expected_dir.is_dir() else {}
    assert sorted(got) == sorted(expected), f"the set of files differs from {expected_dir.name}"
    for rel in expected:
        assert got[rel] == expected[rel], f"{rel} differs from the golden file"


@pytest.mark.parametrize("case", CASES)
def test_render_matches_golden(case: str, cli, tmp_path: Path) -> None:
    out, keys = tmp_path / "out", tmp_path / "keys"
    result = cli("render", "-f", str(EXAMPLES / case), "-o", str(out), "--secrets-dir", str(keys))
    assert result.exit_code == 0, result.stderr
    _compare(_normal(read_tree(out)), HERE / case / "expected")
    _compare(_normal(read_tree(keys)), HERE / case / "expected-secrets")
    plain = tmp_path / "plain"  # without --secrets-dir: the same tree, the keys left out
    assert cli("render", "-f", str(EXAMPLES / case), "-o", str(plain)).exit_code == 0
    assert read_tree(plain) == read_tree(out)


def test_every_example_has_a_golden_case() -> None:
    golden = sorted(p.name for p in HERE.iterdir() if (p / "expected").is_dir())
    assert golden == CASES
