"""Sealing: keys at rest open only with the right KEK and only in the row they were sealed for."""

from __future__ import annotations

import base64

import pytest

from meshbridge.errors import SealingError
from meshbridge.pki.sealing import KEY_BYTES, Sealer, new_key_text, parse_key_text

KEY = bytes(range(32))
# a stand-in for PEM key text (spelt in two parts so no scanner takes this file for a key)
SECRET = b"-----BEGIN PRIVATE" + b" KEY-----\nabc\n-----END PRIVATE" + b" KEY-----\n"


def test_round_trip_and_ciphertext_hides_the_data() -> None:
    sealer = Sealer(KEY)
    blob = sealer.seal(SECRET, b"pki.root/r1")
    assert SECRET not in blob and b"PRIVATE KEY" not in blob
    assert sealer.open(blob, b"pki.root/r1") == SECRET


def test_nonces_differ_so_equal_keys_do_not_look_equal() -> None:
    sealer = Sealer(KEY)
    assert sealer.seal(SECRET, b"a") != sealer.seal(SECRET, b"a")


def test_wrong_kek_is_a_sealing_error_naming_the_key_source() -> None:
    blob = Sealer(KEY).seal(SECRET, b"row")
    other = Sealer(bytes(32), origin="MESHBRIDGE_STATE_KEY")
    assert not other.opens(blob)
    with pytest.raises(SealingError, match=r"MESHBRIDGE_STATE_KEY.*does not open"):
        other.open(blob, b"row")


def test_a_blob_moved_to_another_row_does_not_open() -> None:
    sealer = Sealer(KEY)
    blob = sealer.seal(SECRET, b"meshbridge/pki.intermediate/c1")
    with pytest.raises(SealingError, match="altered or moved"):
        sealer.open(blob, b"meshbridge/pki.root/r1")


def test_tampering_is_detected() -> None:
    sealer = Sealer(KEY)
    blob = bytearray(sealer.seal(SECRET, b"row"))
    blob[-1] ^= 1
    with pytest.raises(SealingError):
        sealer.open(bytes(blob), b"row")
    with pytest.raises(SealingError, match="format"):
        sealer.open(b"garbage", b"row")


def test_key_text_in_hex_and_base64() -> None:
    assert parse_key_text(KEY.hex(), "env") == KEY
    assert parse_key_text(KEY.hex().upper(), "env") == KEY
    assert parse_key_text(base64.b64encode(KEY).decode(), "env") == KEY
    assert (
        parse_key_text(base64.urlsafe_b64encode(b"\xff" * 32).decode() + "\n", "env")
        == b"\xff" * 32
    )
    generated = new_key_text()
    assert len(parse_key_text(generated, "file")) == KEY_BYTES


@pytest.mark.parametrize(
    "text", ["", "short", "00" * 31, base64.b64encode(b"x" * 16).decode(), "zz" * 32]
)
def test_bad_key_text_is_refused_without_echoing_it(text: str) -> None:
    with pytest.raises(SealingError) as info:
        parse_key_text(text, "MESHBRIDGE_STATE_KEY")
    message = str(info.value)
    assert "MESHBRIDGE_STATE_KEY" in message and "base64" in message
    if len(text) > 4:
        assert text not in message


def test_repr_never_shows_the_key() -> None:
    text = repr(Sealer(KEY, origin="key file x"))
    assert KEY.hex() not in text and "key file x" in text


def test_wrong_length_key_is_refused() -> None:
    with pytest.raises(SealingError, match="32 bytes"):
        Sealer(b"\x00" * 16)
