"""The three places kube/ relies on lightkube internals fail here, loudly, after an upgrade.

pyproject.toml pins lightkube to the minor these were written against. An upgrade that changes
either internal must fail this file (not an apply against a real cluster):

* ``reconcile._delete_if`` sends a DELETE with ``DeleteOptions.preconditions`` in its body, which
  lightkube's public ``delete`` cannot, through ``AsyncClient._client`` (``GenericAsyncClient``:
  ``prepare_request``, ``build_adapter_request``, ``send``, ``raise_for_status``);
* ``reconcile.live_resource`` makes resource classes whose answers lightkube decodes (msgspec)
  straight into ``Live`` records, through the class attribute ``_api_info``;
* ``portforward.http_client`` opens the port-forward's WebSocket on the httpx2 client lightkube
  made from the kubeconfig (``AsyncClient._client._client``), so that the kubeconfig's TLS and
  credentials carry it.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from typing import Any

import httpx2
from lightkube import AsyncClient, KubeConfig

from meshbridge.kube.kinds import CLUSTER_KINDS
from meshbridge.kube.portforward import http_client
from meshbridge.kube.reconcile import _delete_if, live_resource
from meshbridge.kube.steps import Live

SERVER = "https://api.example.invalid:6443"


def _config() -> KubeConfig:
    return KubeConfig.from_dict({
        "clusters": [{"name": "c", "cluster": {"server": SERVER}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    })


def _client(handler: Any) -> AsyncClient:
    """lightkube's client over a transport that answers in the process: nothing leaves it."""
    return AsyncClient(config=_config(), field_manager="meshbridge",
                       transport=httpx2.MockTransport(handler))


def test_the_generic_client_offers_what_a_delete_with_preconditions_needs() -> None:
    generic = AsyncClient(config=_config())._client
    for name in ("prepare_request", "build_adapter_request", "send", "raise_for_status"):
        assert callable(getattr(generic, name, None)), (
            f"lightkube's GenericAsyncClient has no {name}: kube/reconcile.py _delete_if needs "
            "another way to send DeleteOptions.preconditions"
        )
    assert "res" in inspect.signature(generic.prepare_request).parameters


def test_a_delete_carries_its_preconditions_in_the_body() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json={"kind": "Status", "apiVersion": "v1", "status": "Success"})

    async def run() -> None:
        client = _client(handler)
        try:
            res = CLUSTER_KINDS["ServiceEntry"].resource("v1beta1")  # as reconcile deletes
            await _delete_if(client, res, "old", "foo", {"uid": "u-1", "resourceVersion": "42"})
        finally:
            await client.close()

    asyncio.run(run())
    [request] = seen
    assert request.method == "DELETE"
    assert request.url.path == "/apis/networking.istio.io/v1beta1/namespaces/foo/serviceentries/old"
    body = json.loads(request.content)
    assert body == {"apiVersion": "v1", "kind": "DeleteOptions",
                    "preconditions": {"uid": "u-1", "resourceVersion": "42"}}


def test_a_list_is_decoded_into_live_records() -> None:
    item = {
        "apiVersion": "networking.istio.io/v1beta1", "kind": "ServiceEntry",
        "metadata": {"name": "a", "namespace": "foo", "uid": "u-1", "resourceVersion": "7",
                     "labels": {"x": "y"}},
        "spec": {"hosts": ["a.foo.global"]},
    }

    def handler(request: httpx2.Request) -> httpx2.Response:
        assert request.url.path == "/apis/networking.istio.io/v1beta1/serviceentries"
        return httpx2.Response(200, json={"apiVersion": "v1", "kind": "List",
                                          "metadata": {"resourceVersion": "9"}, "items": [item]})

    async def run() -> list[Any]:
        client = _client(handler)
        try:
            res = live_resource("ServiceEntry", "v1beta1")
            return [obj async for obj in client.list(res, namespace="*")]
        finally:
            await client.close()

    [live] = asyncio.run(run())
    assert isinstance(live, Live), (
        "lightkube no longer decodes into the class live_resource makes (_api_info): "
        "see kube/reconcile.py live_resource"
    )
    assert live.metadata.name == "a" and live.metadata.resourceVersion == "7"


def test_the_port_forward_rides_lightkubes_own_http_client_with_its_credentials() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json={})

    async def run() -> None:
        client = _client(handler)
        try:
            http = http_client(client)
            await http.get("/api/v1/namespaces/istio-system/pods")
        finally:
            await client.close()

    asyncio.run(run())
    [request] = seen
    assert str(request.url).startswith(SERVER), (
        "the httpx2 client at AsyncClient._client._client is not the kubeconfig's: "
        "see kube/portforward.py http_client"
    )
    assert request.headers["Authorization"] == "Bearer t"
