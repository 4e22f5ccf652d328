"""VIP allocation: unique per cluster, stable when other hosts come and go, released addresses
reused only once the pool has no never-used address left."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshbridge.compile.vips import allocate, lookup
from meshbridge.errors import AddressTaken
from meshbridge.viprecord import Taken, VipRecord

POOL = ipaddress.ip_network("240.0.0.0/24")
HOSTS = st.sets(st.sampled_from([f"h{i}" for i in range(40)]), max_size=30)


def _alloc(needs: dict[str, set[str]], previous: list[VipRecord],
           pool: ipaddress.IPv4Network = POOL) -> list[VipRecord]:
    return allocate(pool, needs, {}, previous)


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.fixed_dictionaries({"c1": HOSTS, "c2": HOSTS}), min_size=1, max_size=6))
def test_unique_and_stable_across_additions_and_removals(steps: list[dict[str, set[str]]]) -> None:
    records: list[VipRecord] = []
    for needs in steps:
        before = lookup(records)
        records = _alloc(needs, records)
        now = lookup(records)
        for cluster, hosts in needs.items():
            assigned = [now[(cluster, h)] for h in hosts]
            assert len(set(assigned)) == len(assigned), "two hosts share a VIP in one cluster"
            for h in hosts:
                if (cluster, h) in before:
                    assert now[(cluster, h)] == before[(cluster, h)], "a kept host's VIP moved"
                assert ipaddress.ip_address(now[(cluster, h)]) in POOL
        assert set(now) == {(c, h) for c, hs in needs.items() for h in hs}


def test_same_input_same_state_same_addresses() -> None:
    needs = {"c1": {"b", "a", "c"}}
    assert _alloc(needs, []) == _alloc(needs, [])
    assert lookup(_alloc(needs, []))[("c1", "a")] == "240.0.0.1"


def test_released_addresses_wait_until_the_pool_is_exhausted() -> None:
    pool = ipaddress.ip_network("240.0.0.0/29")  # 6 usable addresses
    records = _alloc({"c1": {"a", "b"}}, [], pool)
    a_addr = lookup(records)[("c1", "a")]
    records = _alloc({"c1": {"b"}}, records, pool)  # a released
    records = _alloc({"c1": {"b", "c", "d", "e", "f"}}, records, pool)
    taken = set(lookup(records).values())
    assert a_addr not in taken, "a released address was reused while fresh ones remained"
    records = _alloc({"c1": {"b", "c", "d", "e", "f", "g"}}, records, pool)
    assert lookup(records)[("c1", "g")] == a_addr, "the exhausted pool did not reuse the release"


def test_a_returning_host_gets_its_own_address_back() -> None:
    records = _alloc({"c1": {"a", "b"}}, [])
    a_addr = lookup(records)[("c1", "a")]
    records = _alloc({"c1": {"b"}}, records)
    records = _alloc({"c1": {"a", "b"}}, records)
    assert lookup(records)[("c1", "a")] == a_addr


def test_user_reserved_addresses_are_never_allocated() -> None:
    records = allocate(POOL, {"c1": {"a", "b"}}, {"c1": {"240.0.0.1"}}, [])
    assert "240.0.0.1" not in lookup(records).values()


def test_a_reserved_address_held_by_a_needed_host_is_refused_not_moved() -> None:
    records = allocate(POOL, {"c1": {"a", "b"}, "c2": {"a"}}, {}, [])
    a_addr = lookup(records)[("c1", "a")]
    with pytest.raises(AddressTaken) as caught:
        allocate(POOL, {"c1": {"a", "b"}, "c2": {"a"}}, {"c1": {a_addr}, "c2": {"240.0.0.9"}},
                 records)
    assert caught.value.taken == [Taken("c1", a_addr, "a")]


def test_a_reserved_address_of_a_host_no_longer_needed_is_free_to_take() -> None:
    records = allocate(POOL, {"c1": {"a", "b"}}, {}, [])
    a_addr = lookup(records)[("c1", "a")]
    after = allocate(POOL, {"c1": {"b"}}, {"c1": {a_addr}}, records)
    assert a_addr not in lookup(after).values()
    # the same address written in another cluster takes nothing from c1
    other = allocate(POOL, {"c1": {"a", "b"}, "c2": {"x"}}, {"c2": {a_addr}}, records)
    assert lookup(other)[("c1", "a")] == a_addr
