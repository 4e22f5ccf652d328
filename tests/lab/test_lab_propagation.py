"""From "applied" to "every proxy ACKed", in the lab: meshbridge reads istiod as on a real
cluster, through the API server's pods/portforward (the lab's kubelet stand-in carries it to
istiod's port 15014), never through the lab's own network shortcuts.

One lab of examples/sleep-httpbin (sleep in cluster1 calls httpbin in cluster2), with istiod
waiting ``PILOT_DEBOUNCE_AFTER=3s`` between reading a change and pushing it: that opens a
window of 3 s in which istiod holds a change and no proxy has it. What each test proves does not
depend on the machine's speed: no duration is asserted, and waits are long only to catch a hang.

The tests run in this order and the later ones break the lab on purpose: a NACK (removed
again), a stopped proxy, a stopped istiod.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from labrun import EXAMPLES, MESHES, LabRun, lab_in_a_new_folder

from meshbridge.store import open_store
from meshbridge.usecases.apply import STATUS_KIND

pytestmark = pytest.mark.lab

URL = "http://httpbin.bar.cluster2:8000/headers"
SLEEP = "sleep.foo@cluster1"
DEBOUNCE = "3s"
HANG = 180.0  # seconds: only to stop a test that hangs
ROLE = Path(__file__).resolve().parents[2] / "docs" / "rbac" / "propagation.yaml"


@pytest.fixture(scope="module")
def lab(lab_tools: None) -> Iterator[LabRun]:
    with lab_in_a_new_folder() as run:
        up = run.mesh_lab  # (the lab's own up, with istiod's debounce widened)
        proc = up("up", "-f", str(EXAMPLES / "sleep-httpbin"), "--service-protocol",
                  "bar/httpbin:8000=HTTP", "--istiod-env", f"PILOT_DEBOUNCE_AFTER={DEBOUNCE}")
        assert proc.returncode == 0, proc.stderr[-6000:]
        run.state = json.loads((run.dir / "lab.json").read_text())
        yield run


@pytest.fixture(scope="module")
def intents(lab: LabRun) -> dict[str, Path]:
    """The lab's intents (its addresses) with and without httpbin's InboundIntent."""
    docs = [d for d in yaml.safe_load_all((lab.dir / "intents.yaml").read_text()) if d]
    out = {}
    for name, kept in (("with", docs), ("without", [d for d in docs
                                                     if d["kind"] != "InboundIntent"])):
        out[name] = lab.dir / f"intents-{name}.yaml"
        out[name].write_text(yaml.safe_dump_all(kept, sort_keys=False))
    return out


def views(lab: LabRun, *args: str) -> tuple[int, Any]:
    proc = lab.meshbridge_in_lab("status", *args, "-o", "json")
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def by_cluster(found: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {v["cluster"]: v for v in found}


def eventually(what: str, check: Callable[[], Any]) -> Any:
    """``check()`` until it returns something true (hang detection only)."""
    deadline = time.monotonic() + HANG
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {HANG:.0f}s"
        time.sleep(1)


def last_answer(proc: Any) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return answer


def test_apply_wait_returns_once_every_proxy_has_the_change(
    lab: LabRun, intents: dict[str, Path]
) -> None:
    """Each apply --wait (removing, then adding back, sleep's route to httpbin) is followed at
    once by a request from sleep. istiod pushes a change 3 s after reading it here: an apply
    that returned when istiod held the change, or before, would send every one of these
    requests into that window and see the state before the change."""
    for _ in range(3):
        gone = lab.meshbridge_in_lab("apply", "--wait", "--timeout", "2m", "-f",
                                     str(intents["without"]), then_request=(SLEEP, URL))
        assert gone.returncode == 0, gone.stderr
        assert "delivered: every proxy of 2 clusters has ACKed the change" in gone.stderr
        refused = last_answer(gone)
        assert "status" not in refused or refused["status"] != 200, refused
        back = lab.meshbridge_in_lab("apply", "--wait", "--timeout", "2m", "-f",
                                     str(intents["with"]), then_request=(SLEEP, URL))
        assert back.returncode == 0, back.stderr
        answer = last_answer(back)
        assert (answer.get("status"), answer.get("cluster")) == (200, "cluster2"), answer
    code, found = views(lab, "--propagation")
    assert code == 0
    for view in found:
        assert view["state"] == "delivered", view
        assert view["seconds"] is not None  # apply --wait watched it
        assert view["proxies"] == view["acked"] == 2


def test_an_intent_is_followed_into_every_cluster_it_touches(lab: LabRun) -> None:
    code, found = views(lab, "InboundIntent/bar/httpbin")
    assert code == 0
    clusters = {c["cluster"]: c for c in found["clusters"]}
    assert set(clusters) == {"cluster1", "cluster2"}
    assert [o["object"].split("/")[0] for o in clusters["cluster1"]["objects"]] == [
        "ServiceEntry", "DestinationRule"]
    for cluster in clusters.values():
        assert cluster["state"] == "delivered"
        assert all(o["observed"] and o["resourceVersion"] for o in cluster["objects"])


def test_istiod_is_read_with_exactly_the_documented_role(lab: LabRun, tmp_path: Path) -> None:
    """A service account bound to docs/rbac/propagation.yaml reads istiod; with only ``get``, or
    only ``create``, on pods/portforward it is refused, and said so."""
    roles = {"reader": yaml.safe_load(ROLE.read_text())}
    for verb in ("get", "create"):
        weaker = yaml.safe_load(ROLE.read_text())
        weaker["metadata"]["name"] = f"only-{verb}"
        weaker["rules"][1]["verbs"] = [verb]
        roles[f"only-{verb}"] = weaker
    for account, bound in roles.items():
        objects = [
            {"apiVersion": "v1", "kind": "ServiceAccount",
             "metadata": {"name": account, "namespace": "istio-system"}},
            bound,
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": account, "namespace": "istio-system"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                         "name": bound["metadata"]["name"]},
             "subjects": [{"kind": "ServiceAccount", "name": account,
                           "namespace": "istio-system"}]},
        ]
        path = tmp_path / f"{account}.yaml"
        path.write_text(yaml.safe_dump_all(objects))
        done = lab.mesh_lab("objects", "cluster2", "apply", "-f", str(path))
        assert done.returncode == 0, done.stderr

    def with_account(account: str) -> dict[str, Any]:
        token = lab.mesh_lab("token", "cluster2", f"istio-system/{account}")
        assert token.returncode == 0, token.stderr
        admin = yaml.safe_load((lab.dir / "testenv" / "cluster2.kubeconfig").read_text())
        admin["users"] = [{"name": account, "user": {"token": token.stdout.strip()}}]
        admin["contexts"][0]["context"]["user"] = account
        config = tmp_path / f"{account}.kubeconfig"
        config.write_text(yaml.safe_dump(admin))
        # a copy of the lab's store whose record reaches cluster2 as that account
        store_path = tmp_path / f"{account}.db"
        with sqlite3.connect(lab.dir / "state.db") as source, \
                sqlite3.connect(store_path) as copy:
            source.backup(copy)
        store = open_store(str(store_path))
        try:
            record = json.loads(store.get_blob(STATUS_KIND, "cluster2") or b"{}")
            record["kubeconfig"] = {"path": str(config), "context": None}
            store.put_blob(STATUS_KIND, "cluster2", json.dumps(record).encode())
        finally:
            store.close()
        proc = lab.meshbridge_in_lab("status", "--propagation", "-o", "json", "--state",
                                     str(store_path))
        return by_cluster(json.loads(proc.stdout))["cluster2"]

    assert with_account("reader")["state"] == "delivered"
    for weak in ("only-get", "only-create"):
        refused = with_account(weak)
        assert refused["state"] == "istiod-unreachable", (weak, refused)
        assert "403 Forbidden" in refused["reason"] and "pods/portforward" in refused["reason"]


def test_a_users_broken_envoyfilter_shows_as_a_nack_with_envoys_message(lab: LabRun) -> None:
    broken = str(MESHES / "broken-envoyfilter.yaml")
    done = lab.mesh_lab("objects", "cluster1", "apply", "-f", broken)
    assert done.returncode == 0, done.stderr

    def nacked() -> dict[str, Any] | None:
        code, found = views(lab, "--propagation")
        one = by_cluster(found)["cluster1"]
        return one if one["state"] == "nack" and code == 1 else None

    one = eventually("cluster1 to show the NACK", nacked)
    [nack] = one["nacks"]
    assert (nack["proxy"], nack["type"]) == ("sleep-lab.foo", "Cluster")
    assert "value must be less than or equal to 65535" in nack["error"]
    assert (one["proxies"], one["acked"]) == (2, 1)  # the gateway is still counted, in sync
    done = lab.mesh_lab("objects", "cluster1", "delete", "-f", broken)
    assert done.returncode == 0, done.stderr
    eventually("cluster1 delivered again",
               lambda: by_cluster(views(lab, "--propagation")[1])["cluster1"]["state"]
               == "delivered")


def test_a_stopped_proxy_shows_disconnected_and_its_cluster_not_delivered(lab: LabRun) -> None:
    done = lab.mesh_lab("stop-proxy", "httpbin.bar@cluster2")
    assert done.returncode == 0, done.stderr

    def gone() -> dict[str, Any] | None:
        _, found = views(lab, "--propagation")
        two = by_cluster(found)["cluster2"]
        return two if two["disconnected"] else None

    two = eventually("istiod to drop httpbin's proxy", gone)
    assert two["state"] == "observed"
    assert two["disconnected"] == ["httpbin-lab.bar"]
    assert "disconnected since the change: httpbin-lab.bar" in two["reason"]


def test_a_stopped_istiod_is_unreachable_and_apply_wait_times_out_saying_so(
    lab: LabRun, intents: dict[str, Path]
) -> None:
    done = lab.mesh_lab("stop-istiod", "cluster1")
    assert done.returncode == 0, done.stderr
    code, found = views(lab, "--propagation")
    one = by_cluster(found)["cluster1"]
    assert code == 1 and one["state"] == "istiod-unreachable"
    assert "istiod-cluster1" in one["reason"]
    waited = lab.meshbridge_in_lab("apply", "--wait", "--timeout", "15s", "-f",
                                   str(intents["without"]))
    assert waited.returncode == 1, waited.stdout + waited.stderr
    assert "error: cluster1 not delivered after 15s (istiod-unreachable): istiod cannot be " \
           "read: istiod istiod-cluster1:" in waited.stderr
