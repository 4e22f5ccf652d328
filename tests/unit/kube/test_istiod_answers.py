"""istiod's debug answers, as the pinned istiod gave them (tests/fixtures/istiod, captured by
scripts/capture-istiod-answers), decoded into what meshbridge reads: every object istiod holds
with its resourceVersion, every connected proxy with what was sent, ACKed and NACKed per type,
and the order of istiod's pushes from their nonces. When the Istio pin moves, capture again: a
change of istiod's answers fails here first."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from istiodanswers import answer

from meshbridge.kube.istiod import decode_configz, decode_syncz, push_version

CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"


def test_configz_gives_every_object_istiod_holds_with_its_resource_version() -> None:
    held = decode_configz(answer("synced", "cluster2", "configz"))
    assert set(held) == {
        ("DestinationRule", "istio-system", "httpbin.bar.cluster2"),
        ("Gateway", "istio-system", "httpbin-bar-cluster2"),
        ("ServiceEntry", "istio-system", "httpbin.bar.cluster2"),
    }
    assert all(version.isdigit() for version in held.values()), held


def test_syncz_gives_every_connected_proxy_and_what_it_acked_per_type() -> None:
    proxies = {p.proxy: p for p in decode_syncz(answer("synced", "cluster1", "syncz"))}
    assert set(proxies) == {"sleep-lab.foo", "istio-ingressgateway.istio-system"}
    sleep = proxies["sleep-lab.foo"]
    assert (sleep.proxy_type, sleep.namespace) == ("sidecar", "foo")
    assert proxies["istio-ingressgateway.istio-system"].namespace == "istio-system"
    assert CLUSTER_TYPE in sleep.resources
    for state in sleep.resources.values():
        assert state.sent and state.sent == state.acked and not state.lastError


def test_a_nack_carries_envoys_message_and_the_ack_stays_behind() -> None:
    proxies = {p.proxy: p for p in decode_syncz(answer("nack", "cluster1", "syncz"))}
    rejected = proxies["sleep-lab.foo"].resources[CLUSTER_TYPE]
    assert "value must be less than or equal to 65535" in rejected.lastError
    assert rejected.sent != rejected.acked
    gateway = proxies["istio-ingressgateway.istio-system"]
    assert all(not s.lastError and s.sent == s.acked for s in gateway.resources.values())


def test_a_stopped_proxy_is_no_longer_listed() -> None:
    before = {p.proxy for p in decode_syncz(answer("synced", "cluster2", "syncz"))}
    after = {p.proxy for p in decode_syncz(answer("disconnected", "cluster2", "syncz"))}
    assert before - after == {"httpbin-lab.bar"}


def test_every_nonce_names_its_push_in_istiods_order() -> None:
    def versions(state: str) -> set[tuple[datetime, int]]:
        found = set()
        for proxy in decode_syncz(answer(state, "cluster1", "syncz")):
            for kind in proxy.resources.values():
                version = push_version(kind.sent)
                assert version is not None, kind.sent
                found.add(version)
        return found

    synced, later = versions("synced"), versions("nack")
    assert all(when.tzinfo is not None for when, _ in synced)
    # the push the broken EnvoyFilter caused came after every push the synced state holds
    assert max(later) > max(synced)


@pytest.mark.parametrize("nonce", ["", "not-a-nonce", "x" * 36, "2026-12-07T05:29:36Z/" + "u" * 36,
                                   "yesterday/2" + "0" * 36])
def test_a_nonce_not_of_istiods_form_has_no_version(nonce: str) -> None:
    assert push_version(nonce) is None


def test_the_version_is_the_time_and_the_counter() -> None:
    uuid = "2c0ffb09-311a-42c7-a3bd-2b02f1ee8147"  # begins with a digit, as a counter does
    assert push_version("2026-12-07T05:29:36Z/12" + uuid) == (
        datetime(2026, 12, 7, 5, 29, 36, tzinfo=UTC), 12)
