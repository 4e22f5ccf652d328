"""Keys at rest: the SQLite state file never holds a private key in clear, and only the right
KEK opens it — a wrong or missing key is a SealingError, never a new CA."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from meshbridge.errors import SealingError
from meshbridge.model import Mesh
from meshbridge.pki.keys import load_key_pem
from meshbridge.store import open_store
from meshbridge.usecases import pki as service

NOW = datetime(2030, 1, 2, tzinfo=UTC)
MESH = Mesh.model_validate(
    {
        "apiVersion": "meshbridge.dev/v1alpha1",
        "kind": "Mesh",
        "metadata": {"name": "default"},
        "spec": {"rootCA": {"keyAlgorithm": "ECDSA-P256"}},
    }
)


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(service.STATE_KEY_ENV, raising=False)


def _render_once(state: Path) -> list[str]:
    """Issue root, two intermediates and an ingress credential; the clear key PEMs handed out."""
    store = open_store(str(state))
    try:
        sealer = service.load_sealer(str(state), store)
        with store.transaction():
            material = service.ensure_material(
                store, sealer, MESH, ["c1", "c2"], [("a.example.com", "MUTUAL")], NOW
            )
    finally:
        store.close()
    keys = [ca.ca_key for ca in material.cacerts.values()]
    keys += [cred.key for cred in material.ingress.values()]
    return keys


def _state_bytes(state: Path) -> bytes:
    return b"".join(
        p.read_bytes()
        for p in state.parent.iterdir()
        if p.name.startswith(state.name) and not p.name.endswith(".key")
    )


def test_no_private_key_in_clear_in_the_state_file(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    keys = _render_once(state)
    data = _state_bytes(state)
    assert b"BEGIN CERTIFICATE" in data  # the scan does see the stored records
    assert b"PRIVATE KEY" not in data
    for pem in keys:
        key = load_key_pem(pem.encode())
        der = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        assert der not in data
        assert pem.encode() not in data
        # the raw private scalar / exponent must not appear either
        scalar = key.private_numbers().private_value.to_bytes(32, "big")  # type: ignore[union-attr]
        assert scalar not in data


def test_key_file_is_created_beside_the_store_with_mode_0600(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    _render_once(state)
    key_file = tmp_path / "state.db.key"
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert service.key_file_path(str(state)) == key_file


def test_same_store_and_key_reopen(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    first = _render_once(state)
    assert _render_once(state) == first


def test_wrong_key_file_is_a_sealing_error_not_a_new_ca(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    _render_once(state)
    key_file = tmp_path / "state.db.key"
    key_file.write_text("00" * 32)
    store = open_store(str(state))
    try:
        with pytest.raises(SealingError) as info:
            service.load_sealer(str(state), store)
    finally:
        store.close()
    message = str(info.value)
    assert "does not open this store" in message
    assert "MESHBRIDGE_STATE_KEY" in message and str(key_file) in message
    assert "00" * 32 not in message


def test_wrong_env_key_is_a_sealing_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state.db"
    _render_once(state)
    monkeypatch.setenv(service.STATE_KEY_ENV, "11" * 32)
    with pytest.raises(SealingError, match=r"MESHBRIDGE_STATE_KEY.*does not open this store"):
        _render_once(state)


def test_missing_key_file_with_sealed_keys_is_a_sealing_error(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    _render_once(state)
    (tmp_path / "state.db.key").unlink()
    with pytest.raises(SealingError, match=r"key file .* is missing"):
        _render_once(state)
    assert not (tmp_path / "state.db.key").exists()  # no fresh key was made


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    _render_once(state)
    os.chmod(tmp_path / "state.db.key", 0o644)
    with pytest.raises(SealingError, match="chmod 600"):
        _render_once(state)


def test_env_key_works_without_a_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(service.STATE_KEY_ENV, "ab" * 32)
    state = tmp_path / "state.db"
    first = _render_once(state)
    assert not (tmp_path / "state.db.key").exists()
    assert _render_once(state) == first
