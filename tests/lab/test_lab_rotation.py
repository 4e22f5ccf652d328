"""Certificate rotations under steady traffic, three clusters, nothing dropped.

One lab of ``meshes/rotation.yaml`` (workload certificates live one minute: its Mesh's
``istio.workloadCertTTL``). From the start, every caller sends, without pause, to the echo
server of every cluster over HTTP and raw TCP, each on new connections and on one held
connection (``tests/support/rotation.py``). The tests then run, as ``docs/pki.md`` tells a user,
first an intermediate rotation, then a root rotation, and prove with what each workload's
sidecar presents (Envoy's own secrets, ``mesh-lab certs``) that the certificates changed: a
rotation that left every workload as it was would pass a check of meshbridge's output alone.

What they prove, on any machine: no request failed, every caller got answers during every step,
every held connection stayed the one it opened, and the rotation guard waited (each ``advance``
and ``finish`` is refused at first, for what it names: istiod not yet on the phase, or workloads
that may still hold older certificates).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from labrun import lab_in_a_new_folder
from rotation import MESH, Drill, cluster_of

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def drill(lab_tools: None) -> Iterator[Drill]:
    with lab_in_a_new_folder() as run:
        run.up(MESH)
        drill = Drill(run)
        drill.start_traffic()
        yield drill
        drill.save(run.dir.parent / "rotation-steps.json")
        print("\n" + drill.table())


def test_an_intermediate_rotation_under_traffic_drops_nothing(drill: Drill) -> None:
    before = drill.fingerprints("intermediate")
    certs = drill.all_certs()
    assert all(c["chain"][1] == before[cluster_of(w)] for w, c in certs.items()), certs

    drill.step("pki rotate --cluster c2; apply",
               lambda: (drill.meshbridge("pki", "rotate", "--cluster", "c2"), drill.apply()))
    after = drill.fingerprints("intermediate")
    assert after["c2"] != before["c2"] and {c: after[c] for c in ("c1", "c3")} == {
        c: before[c] for c in ("c1", "c3")}
    # istiod loads the new intermediate (it watches its cacerts volume), and c2's workloads
    # carry it once they renew; the other clusters' keep theirs, the root is the same
    drill.step("c2's workloads renew under the new intermediate", lambda: drill.until_certs(
        "carries its cluster's intermediate", lambda w, c: c["chain"][1] == after[cluster_of(w)]))
    roots = set(drill.fingerprints("root").values())
    assert {c["root"] for c in drill.all_certs().values()} == roots
    assert drill.failed(drill.traffic()) == (0, [])


def test_a_root_rotation_under_traffic_drops_nothing(drill: Drill) -> None:
    (old,) = drill.fingerprints("root").values()
    intents = ("-f", str(drill.lab.dir / "intents.yaml"))

    drill.step("rotate-root begin; apply", lambda: (
        drill.meshbridge("pki", "rotate-root", "begin", *intents), drill.apply()))
    (new,) = set(drill.fingerprints("root").values()) - {old}
    refused = len(drill.refusals)
    drill.step("until advance is accepted",
               lambda: drill.accepted("pki", "rotate-root", "advance"))
    assert len(drill.refusals) > refused, "advance was accepted before istiod could be seen on it"
    # every sidecar accepts peers under both roots before any intermediate moves
    certs = drill.all_certs()
    assert all(set(c["trusts"]) == {old, new} and c["root"] == old for c in certs.values()), certs

    drill.step("apply (phase 2)", drill.apply)
    moved = drill.fingerprints("intermediate")
    drill.step("workloads renew under the new intermediates", lambda: drill.until_certs(
        "chains to the new root through its cluster's new intermediate",
        lambda w, c: c["chain"][1] == moved[cluster_of(w)] and c["root"] == new))
    refused = len(drill.refusals)
    drill.step("until finish is accepted", lambda: drill.accepted("pki", "rotate-root", "finish"))
    assert len(drill.refusals) > refused, "finish was accepted before workloads could renew"

    drill.step("apply (phase 3)", drill.apply)
    drill.step("workloads drop the old root", lambda: drill.until_certs(
        "chains to and trusts the new root only",
        lambda w, c: c["root"] == new and c["trusts"] == [new] and old not in c["chain"]))
    assert set(drill.fingerprints("root").values()) == {new}

    final = drill.traffic("stop")
    assert drill.failed(final) == (0, [])
    # every held connection is the one it opened before the first rotation
    held = {f"{pod} {name}": c["connections"] for pod, r in final.items()
            for name, c in r["callers"].items() if name.startswith("held ")}
    assert held and set(held.values()) == {1}, held
    # and every answer came from the server the caller meant
    for pod, r in final.items():
        for name, c in r["callers"].items():
            server = name.split("//")[1].split(".")[0].removesuffix("-tcp")
            assert list(c["answered_by"]) == [f"{server.removeprefix('echo-')}/{server}"], (
                pod, name, c)
