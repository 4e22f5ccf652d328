"""What each cluster's istiod signs under, judged from what apply saw, and what a root rotation
waits for: pure decisions over records in a real store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import pytest

from meshbridge.pki.bundle import CacertsFacts
from meshbridge.store import SqlStore, open_store
from meshbridge.usecases.istiod_roots import (
    VOLUME_REFRESH,
    SeenIstiod,
    findings,
    judge,
    read_istiod,
    record_istiod,
    restarts,
    rollout_waits,
)
from meshbridge.usecases.seen_cacerts import record_seen

NOW = datetime(2030, 1, 2, 12, 0, tzinfo=UTC)
OLD, NEW, OWN = "a" * 64, "b" * 64, "c" * 64  # two mesh roots; an istiod's self-signed root
TTL = timedelta(minutes=1)


def at(delta: timedelta = timedelta(0)) -> str:
    return (NOW + delta).isoformat(timespec="seconds")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlStore]:
    s = open_store(str(tmp_path / "state.db"))
    yield s
    s.close()


def seen(*roots: str, since: str = at()) -> SeenIstiod:
    return SeenIstiod(roots, since, since)


# --------------------------------------------------------------------------------- judging


def test_an_istiod_on_the_roots_of_its_cacerts_is_in_step() -> None:
    held = CacertsFacts((OLD, NEW))
    assert judge("c1", seen(NEW, OLD), held, at(), [OLD, NEW], NOW).state == "in-step"


def test_an_istiod_on_a_root_the_mesh_does_not_know_signs_outside_it() -> None:
    finding = judge("c2", seen(OWN), CacertsFacts((OLD,)), at(), [OLD], NOW)
    assert (finding.state, finding.published, finding.wanted) == ("outside", (OWN,), (OLD,))
    text = "\n".join(finding.describe())
    assert f"c2: istiod signs with a root outside the mesh: it publishes sha256:{OWN}" in text
    assert f"the mesh's is sha256:{OLD}" in text
    # a cluster apply wrote no cacerts to yet is judged against the mesh's roots
    assert judge("c3", seen(OWN), None, "", [OLD], NOW).state == "outside"


def test_an_istiod_short_of_a_new_root_is_loading_then_behind() -> None:
    held = CacertsFacts((OLD, NEW))
    written = NOW - VOLUME_REFRESH + timedelta(seconds=1)
    loading = judge("c1", seen(OLD), held, written.isoformat(), [OLD, NEW], NOW)
    assert loading.state == "loading" and "once the kubelet refreshes its volume" in \
        loading.describe()[0]
    behind = judge("c1", seen(OLD), held, (written - timedelta(seconds=2)).isoformat(),
                   [OLD, NEW], NOW)
    assert behind.state == "behind" and "ISTIO_MULTIROOT_MESH=true" in behind.describe()[0]


def test_an_istiod_that_publishes_nothing_is_unseen_and_says_nothing() -> None:
    finding = judge("c1", seen(), CacertsFacts((OLD,)), at(), [OLD], NOW)
    assert finding.state == "unseen" and finding.describe() == []
    assert judge("c1", None, None, "", [OLD], NOW).state == "unseen"


# ------------------------------------------------------------------------------- records


def test_a_record_keeps_since_while_the_roots_stay(store: SqlStore) -> None:
    record_istiod(store, "c1", (OLD,), at())
    record_istiod(store, "c1", (OLD,), at(timedelta(minutes=5)))
    assert read_istiod(store)["c1"] == SeenIstiod((OLD,), at(), at(timedelta(minutes=5)))
    record_istiod(store, "c1", (NEW, OLD), at(timedelta(minutes=6)))
    record_istiod(store, "c1", (OLD, NEW), at(timedelta(minutes=7)))  # the same set
    assert read_istiod(store)["c1"].since == at(timedelta(minutes=6))


def test_findings_read_what_apply_recorded(store: SqlStore) -> None:
    record_seen(store, "c1", CacertsFacts((OLD,)), "applied", at())
    record_seen(store, "c2", CacertsFacts((OLD,)), "applied", at())
    record_istiod(store, "c1", (OLD,), at())
    record_istiod(store, "c2", (OWN,), at(), ["restart istiod"])
    got = {f.cluster: (f.state, f.restarts) for f in findings(store, ["c1", "c2"], [OLD], NOW)}
    assert got == {"c1": ("in-step", ()), "c2": ("outside", ("restart istiod",))}


def test_the_restarts_go_istiod_gateway_then_namespace_by_namespace() -> None:
    plan = restarts("/k/c2.yaml", "ctx", ["baz", "bar", "bar", "istio-system"], OLD)
    k = "kubectl --kubeconfig /k/c2.yaml --context ctx"
    assert [p.splitlines()[0] for p in plan] == [
        f"{k} -n istio-system rollout restart deployment/istiod",
        f"{k} -n istio-system rollout restart deployment/istio-ingressgateway",
        f"{k} -n bar rollout restart deployment,statefulset,daemonset",
        f"{k} -n baz rollout restart deployment,statefulset,daemonset",
        "any other namespace whose pods have a sidecar, the same way",
    ]
    # istiod first, and how to see it moved: the fingerprint as openssl prints it
    assert plan[0].endswith("prints sha256 Fingerprint=" + ":".join(["AA"] * 32))
    assert restarts(None, None, [], OLD)[1] == (
        "kubectl -n istio-system rollout restart deployment/istio-ingressgateway")


# --------------------------------------------------------------------- rotation waits


def waits(store: SqlStore, now: datetime,
          count_from: Literal["istiod", "cacerts"] = "istiod") -> list[str]:
    return rollout_waits(store, (OLD, NEW), ["c1", "c2"], count_from=count_from, cert_ttl=TTL,
                         now=now)


def test_a_phase_waits_for_every_istiod_to_publish_its_roots(store: SqlStore) -> None:
    assert waits(store, NOW) == [
        "c1: istiod not seen (no istio-ca-root-cert read in istio-system)",
        "c2: istiod not seen (no istio-ca-root-cert read in istio-system)"]
    record_istiod(store, "c1", (OLD, NEW), at())
    record_istiod(store, "c2", (OLD,), at())
    (line,) = waits(store, NOW + TTL)
    assert line.startswith(f"c2: istiod publishes sha256:{OLD} (seen {at()}), not yet")


def test_a_phase_waits_a_certificate_lifetime_from_when_istiod_was_seen_on_it(
    store: SqlStore,
) -> None:
    record_istiod(store, "c1", (OLD, NEW), at())
    record_istiod(store, "c2", (NEW, OLD), at(timedelta(seconds=30)))
    assert waits(store, NOW + TTL) == [
        f"c2: workloads may hold certificates from before {at(timedelta(seconds=30))} "
        f"(workload certificates live 1m): wait until {at(TTL + timedelta(seconds=30))}"]
    assert waits(store, NOW + TTL + timedelta(seconds=30)) == []


def test_phase_two_counts_from_the_cacerts_apply_wrote(store: SqlStore) -> None:
    # the roots do not change in phase 2: istiod's new intermediate is not seen, only when
    # apply wrote it, and the kubelet may take VOLUME_REFRESH to hand it over
    for cluster in ("c1", "c2"):
        record_istiod(store, cluster, (OLD, NEW), at(-timedelta(hours=1)))
        record_seen(store, cluster, CacertsFacts((OLD, NEW)), "applied", at())
    ready = NOW + VOLUME_REFRESH + TTL
    assert len(waits(store, ready - timedelta(seconds=1), "cacerts")) == 2
    assert waits(store, ready - timedelta(seconds=1), "istiod") == []
    assert waits(store, ready, "cacerts") == []
