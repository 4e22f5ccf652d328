"""What a cluster's objects say of where Apps run (kube.placement.found), and the watch that
keeps them current (kube.watching) against an API server played in the process: a list then a
watch from its resourceVersion, a 410 answered by a new list, an error that makes the cluster
unknown (never "no instances") until it can be listed again. Real API servers:
tests/integration/test_discovery.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
from lightkube import AsyncClient, KubeConfig
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Pod, Service
from lightkube.resources.discovery_v1 import EndpointSlice

from meshbridge.kube import fleet
from meshbridge.kube.placement import SOURCES, Look, Reading, fact_of, found
from meshbridge.kube.watching import ClusterWatch

APP = ("bar", "httpbin")
CLIENT = ("foo", "sleep")


def _slice(name: str, service: str, *ready: bool | None) -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": "bar", "resourceVersion": "1",
                         "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"], **({} if r is None else
                                                          {"conditions": {"ready": r}})}
                          for r in ready]}


def _service(name: str, namespace: str = "bar") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": "1"}}


def facts_of(**objects: list[dict[str, Any]]) -> dict[str, dict[Any, Any]]:
    kinds = {"services": Service, "endpointslices": EndpointSlice, "deployments": Deployment,
             "pods": Pod}
    out: dict[str, dict[Any, Any]] = {}
    for name, items in objects.items():
        out[name] = {}
        for item in items:
            kv = fact_of(SOURCES[name], kinds[name].from_dict(item), "app")
            if kv is not None:
                out[name][kv[0]] = kv[1]
    return out


LOOK = Look(services={APP: ("httpbin",)}, clients=(CLIENT,))


def test_a_serving_app_needs_its_service_and_a_ready_endpoint() -> None:
    ready = facts_of(services=[_service("httpbin")],
                     endpointslices=[_slice("a", "httpbin", True, False), _slice("b", "httpbin", None)])
    assert found(LOOK, ready) == {APP: 2}  # unset counts as ready, false does not
    not_ready = facts_of(services=[_service("httpbin")],
                         endpointslices=[_slice("a", "httpbin", False)])
    assert found(LOOK, not_ready) == {}
    no_service = facts_of(services=[_service("other")],
                          endpointslices=[_slice("a", "httpbin", True)])
    assert found(LOOK, no_service) == {}
    elsewhere = facts_of(services=[_service("httpbin", "qux")],
                         endpointslices=[_slice("a", "httpbin", True)])
    assert found(LOOK, elsewhere) == {}


def test_every_service_of_an_app_must_have_a_ready_endpoint() -> None:
    look = Look(services={APP: ("httpbin", "admin")})
    one = facts_of(services=[_service("httpbin"), _service("admin")],
                   endpointslices=[_slice("a", "httpbin", True)])
    assert found(look, one) == {}
    both = facts_of(services=[_service("httpbin"), _service("admin")],
                    endpointslices=[_slice("a", "httpbin", True), _slice("b", "admin", True)])
    assert found(look, both) == {APP: 1}


def test_a_client_from_a_labelled_workload_or_running_pod() -> None:
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "sleep-v1", "namespace": "foo"},
                  "spec": {"selector": {"matchLabels": {"x": "y"}},
                           "template": {"metadata": {"labels": {"app": "sleep"}}}}}
    assert found(LOOK, facts_of(deployments=[deployment])) == {CLIENT: 0}

    def pod(phase: str, app: str = "sleep") -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": f"p-{phase}", "namespace": "foo", "labels": {"app": app}},
                "status": {"phase": phase}}
    assert found(LOOK, facts_of(pods=[pod("Running"), pod("Pending")])) == {CLIENT: 1}
    assert found(LOOK, facts_of(pods=[pod("Succeeded")])) == {}
    assert found(LOOK, facts_of(pods=[pod("Running", "other")])) == {}


# ---------------------------------------------------------------------------------- the watch


class FakeApi:
    """Services and EndpointSlices of one cluster, with lists and watches as an API server
    answers them; ``down`` makes every request fail to connect."""

    def __init__(self) -> None:
        self.objects = {"services": [_service("httpbin")],
                        "endpointslices": [_slice("a", "httpbin", True)]}
        self.version = 10
        self.queues: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self.lists: dict[str, int] = {"services": 0, "endpointslices": 0}
        self.down = False

    def push(self, kind: str, event: str, obj: dict[str, Any]) -> None:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        self.queues[kind].put_nowait({"type": event, "object": obj})

    def gone(self, kind: str) -> None:
        self.queues[kind].put_nowait({"type": "ERROR", "object": {
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired",
            "message": "too old resource version", "code": 410}})

    async def handler(self, request: httpx2.Request) -> httpx2.Response:
        if self.down:
            raise httpx2.ConnectError("connection refused", request=request)
        kind = request.url.path.rsplit("/", 1)[1]
        if request.url.params.get("watch") != "true":
            self.lists[kind] += 1
            return httpx2.Response(200, json={
                "apiVersion": "v1", "kind": "List", "items": self.objects[kind],
                "metadata": {"resourceVersion": str(self.version)}})
        queue = self.queues.setdefault(kind, asyncio.Queue())

        async def lines() -> AsyncIterator[bytes]:
            while True:
                event = await queue.get()
                yield json.dumps(event).encode() + b"\n"
                if event["type"] == "ERROR":
                    return
        return httpx2.Response(200, content=lines())


def test_the_watch_follows_changes_relists_on_410_and_is_unknown_while_down(monkeypatch) -> None:
    api = FakeApi()
    config = KubeConfig.from_dict({
        "clusters": [{"name": "c", "cluster": {"server": "https://api.example.invalid"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c"})
    monkeypatch.setattr(fleet, "client_for", lambda target, timeout=10.0: AsyncClient(
        config=config, transport=httpx2.MockTransport(api.handler)))
    monkeypatch.setattr("meshbridge.kube.watching.client_for", fleet.client_for)

    async def scenario() -> list[Reading]:
        got: asyncio.Queue[Reading] = asyncio.Queue()
        watch = ClusterWatch(fleet.ClusterAccess("c1", None), Look(services={APP: ("httpbin",)}),
                             got.put_nowait, backoff=0.01, settle=0.01)
        task = asyncio.create_task(watch.run())
        seen = [await asyncio.wait_for(got.get(), 10)]
        while "endpointslices" not in api.queues or "services" not in api.queues:
            await asyncio.sleep(0.01)
        api.push("endpointslices", "MODIFIED", _slice("a", "httpbin", False))
        seen.append(await asyncio.wait_for(got.get(), 10))
        api.objects["endpointslices"] = [_slice("a", "httpbin", True, True)]
        api.gone("endpointslices")  # the new list says what the watch could not
        seen.append(await asyncio.wait_for(got.get(), 10))
        assert watch.state.relists == 1 and api.lists["endpointslices"] == 2
        api.down = True
        api.gone("services")  # the services' list fails: the cluster is unknown
        seen.append(await asyncio.wait_for(got.get(), 10))
        assert watch.state.state == "failing"
        api.down = False
        seen.append(await asyncio.wait_for(got.get(), 10))
        assert watch.state.state == "watching"
        task.cancel()
        return seen

    seen = asyncio.run(scenario())
    assert [r.found for r in seen] == [{APP: 1}, {}, {APP: 2}, None, {APP: 2}]
    assert seen[3].error.startswith("cannot reach the cluster's API server: connection refused")
