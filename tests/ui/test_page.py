"""The page of ``meshbridge serve`` at /ui/, in a real headless Chromium: sign-in, what it
shows of a mesh, and that it fetches nothing from anywhere but the server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from browser import Browser
from intents import example_yaml
from pngpixels import ink
from uiserver import Served, serving

SignIn = Callable[[str, str], None]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("shop")
    status = {  # east-2's last apply failed on one object: the page colours it
        "cluster": "east-2", "state": "Failed", "error": "1 object failed", "attempts": 1,
        "time": "2026-12-01T10:00:00+00:00",
        "objects": [{"object": "VirtualService/shop/cart.shop", "state": "Failed",
                     "reason": "admission webhook refused it", "time": "2026-12-01T10:00:00+00:00"}],
    }
    with serving(folder, example_yaml("three-clusters"), [status]) as served:
        yield served


def _ready(chromium: Browser) -> None:
    chromium.wait(lambda: chromium.js("return !!document.querySelector('#picture svg.mesh')"),
                  "the picture")


def test_a_viewer_sees_every_cluster_instance_and_call(
        shop: Served, chromium: Browser, sign_in: SignIn, tmp_path: Path) -> None:
    graph = shop.graph()
    sign_in(shop.url, shop.tokens["viewer"])
    _ready(chromium)

    assert sorted(chromium.ids("g.cluster")) == sorted(c["id"] for c in graph["clusters"])
    assert sorted(chromium.ids("g.inst")) == sorted(i["id"] for i in graph["instances"])
    assert sorted(chromium.ids("path.edge")) == sorted(e["id"] for e in graph["edges"])
    assert len(graph["edges"]) == 9  # 5 calls, 1 ingress, 1 egress... as the example says
    labels = chromium.js("return Array.from(document.querySelectorAll('.edge-label'))"
                         ".map(function (e) { return e.textContent; });")
    assert "9090/GRPC · 70%" in labels and "8080/HTTP · #2" in labels
    assert "shop.example.com" in chromium.text("#picture") and "api.cards.example.net" in chromium.text("#picture")
    legend = chromium.text("#legend")
    assert all(word in legend for word in ("applied", "failing", "drift", "unreachable"))
    # east-2's failed apply shows: the cluster is drawn in the failing state
    assert chromium.js("return document.querySelector('[data-id=\"cluster:east-2\"]')"
                       ".classList.contains('st-failing')")

    shot = chromium.driver.get_screenshot_as_png()
    (tmp_path / "page.png").write_bytes(shot)
    assert ink(shot) > 0.03, "the screenshot is (nearly) blank"

    assert chromium.errors() == []
    origin = urlsplit(shop.url)
    paths = {urlsplit(u).path for u in chromium.requests}
    assert {"/ui/", "/ui/graph.js", "/ui/graph.css", "/api/v1/graph"} <= paths
    for url in chromium.requests:
        parts = urlsplit(url)
        assert parts.scheme == "data" or (parts.scheme, parts.netloc) == (origin.scheme, origin.netloc), url
        assert shop.tokens["viewer"] not in url
    assert shop.tokens["viewer"] not in chromium.driver.current_url


def test_clicking_a_call_shows_its_intent_objects_and_apply_result(
        shop: Served, chromium: Browser, sign_in: SignIn) -> None:
    sign_in(shop.url, shop.tokens["viewer"])
    _ready(chromium)
    edge = "call:shop/cart:app:shop/frontend@east-1->app:shop/cart@east-2"
    chromium.js("document.querySelector('path.edge[data-id=\"' + arguments[0] + '\"]')"
                ".dispatchEvent(new MouseEvent('click', {bubbles: true}))", edge)
    details = chromium.wait(lambda: chromium.text("#details"), "the details")
    assert "InboundIntent shop/cart" in details
    assert "VirtualService" in details and "shop/cart.shop" in details  # an object made for it
    assert "admission webhook" not in details or "failing" in details
    assert "1 object failed" in details  # east-2's last apply result
    assert "-----BEGIN" not in chromium.js("return document.body.textContent")


def test_filters_search_and_table(shop: Served, chromium: Browser, sign_in: SignIn) -> None:
    sign_in(shop.url, shop.tokens["viewer"])
    _ready(chromium)
    chromium.js("var s = document.getElementById('filter-namespace'); s.value = 'pay';"
                "s.dispatchEvent(new Event('change'));")
    hidden = chromium.ids("g.inst.filtered-out")
    assert "app:shop/catalog@east-2" in hidden and "app:pay/payments@west-1" not in hidden
    chromium.js("var s = document.getElementById('filter-namespace'); s.value = '';"
                "s.dispatchEvent(new Event('change'));")
    chromium.js("var s = document.getElementById('search'); s.value = 'cart';"
                "s.dispatchEvent(new Event('input'));")
    assert sorted(chromium.ids("g.node.match")) == ["app:shop/cart@east-2", "app:shop/cart@west-1"]
    chromium.js("document.getElementById('view-table').click()")
    rows = chromium.ids("#edges-table tr[data-id]")
    assert rows and all("cart" in r for r in rows)


@pytest.mark.parametrize("token", [None, "mbt_000000000000_wrongwrongwrongwrongwrongwrongwrongwrongwro"])
def test_without_a_valid_token_only_the_sign_in_form(
        shop: Served, chromium: Browser, sign_in: SignIn, token: str | None) -> None:
    if token is None:
        chromium.open(f"{shop.url}/ui/")
        chromium.wait(lambda: chromium.visible("signin"), "the sign-in form")
    else:
        sign_in(shop.url, token)
        chromium.wait(lambda: chromium.text("#signin-error"), "the refusal")
        assert "refused" in chromium.text("#signin-error")
        assert chromium.js("return sessionStorage.getItem('meshbridge.token')") is None
    assert chromium.visible("signin") and not chromium.visible("app")
    page = chromium.js("return document.documentElement.outerHTML")
    for secretless in ("east-1", "frontend", "shop.example.com"):
        assert secretless not in page
    assert chromium.ids("g.cluster") == []


def test_the_token_stays_in_the_tab(shop: Served, chromium: Browser, sign_in: SignIn) -> None:
    sign_in(shop.url, shop.tokens["viewer"])
    _ready(chromium)
    assert chromium.js("return sessionStorage.getItem('meshbridge.token')") == shop.tokens["viewer"]
    assert chromium.js("return localStorage.length") == 0 and chromium.js("return document.cookie") == ""
    chromium.driver.refresh()  # the same tab signs in again by itself
    _ready(chromium)
    chromium.js("document.getElementById('signout').click()")
    assert chromium.visible("signin")
    assert chromium.js("return sessionStorage.getItem('meshbridge.token')") is None
