"""Root rotation as a state machine: which roots are trusted, which one signs, in each phase."""

from __future__ import annotations

import pytest

from meshbridge.errors import PKIError, StateError
from meshbridge.pki.trust import Trust


def test_phases_in_order() -> None:
    steady = Trust(active="old")
    assert (steady.signing, steady.trusted, steady.phase) == ("old", ("old",), 0)
    one = steady.begin("new")
    assert (one.signing, one.trusted, one.phase) == ("old", ("old", "new"), 1)
    two = one.advance()
    assert (two.signing, two.trusted, two.phase) == ("new", ("old", "new"), 2)
    done = two.finish()
    assert (done.signing, done.trusted, done.phase) == ("new", ("new",), 0)


def test_out_of_order_steps_are_refused_with_the_next_step() -> None:
    steady = Trust(active="old")
    with pytest.raises(PKIError, match="rotate-root begin"):
        steady.advance()
    with pytest.raises(PKIError, match="no rotation"):
        steady.finish()
    one = steady.begin("new")
    with pytest.raises(PKIError, match="already in progress"):
        one.begin("newer")
    with pytest.raises(PKIError, match="advance"):
        one.finish()
    with pytest.raises(PKIError, match="already moved"):
        one.advance().abort()
    with pytest.raises(PKIError, match="is the current root"):
        steady.begin("old")


def test_abort_in_phase_one_returns_to_the_old_root() -> None:
    assert Trust(active="old").begin("new").abort() == Trust(active="old")


def test_json_round_trip_and_damage() -> None:
    trust = Trust(active="a").begin("b").advance()
    assert Trust.from_json(trust.to_json()) == trust
    with pytest.raises(StateError, match="damaged"):
        Trust.from_json(b"{")
    with pytest.raises(StateError, match="inconsistent"):
        Trust.from_json(b'{"active": "a", "next": null, "phase": 2}')
