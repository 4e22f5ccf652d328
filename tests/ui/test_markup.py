"""Names and labels from intents are data: text that looks like markup is shown as text, and
nothing in it runs — on the served page and in the file ``meshbridge graph`` writes.

Names and label values cannot hold markup (the loader refuses them: DNS labels), so the markup
rides in what can: an intent's annotations, an access point's paths, and the error a cluster's
last apply recorded."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml
from browser import Browser
from intents import doc
from uiserver import serving

IMG = '<img src=x onerror="window.__pwned=1">'
SCRIPT = '"><script>window.__pwned=2</script>'
CLOSE = "</script><script>window.__pwned=3</script>"


def hostile_mesh() -> list[dict]:
    intent = doc("InboundIntent", "api", {
        "app": "api", "port": 8080, "protocol": "HTTP",
        "clients": [{"app": "web", "accessPoints": [{"paths": ["/" + SCRIPT]}]}]}, "shop")
    intent["metadata"]["annotations"] = {"note": IMG, "closing": CLOSE}
    return [
        doc("Cluster", "c1", {"gateway": {"address": "192.0.2.1"}}),
        doc("Cluster", "c2", {"gateway": {"address": "192.0.2.2"}}),
        doc("App", "web", {"clusters": ["c1"]}, "shop"),
        doc("App", "api", {"clusters": ["c2"]}, "shop"),
        intent,
    ]


def _markup_shown_as_text(chromium: Browser) -> None:
    chromium.wait(lambda: chromium.js("return !!document.querySelector('#picture svg.mesh')"),
                  "the picture")
    chromium.js("document.querySelector('g.inst[data-id=\"app:shop/api@c2\"]')"
                ".dispatchEvent(new MouseEvent('click', {bubbles: true}))")
    details = chromium.wait(lambda: chromium.text("#details"), "the details")
    assert IMG in details and SCRIPT in details and CLOSE in details
    assert chromium.js("return window.__pwned") is None
    assert chromium.js("return document.querySelectorAll('img').length") == 0
    assert chromium.js("return Array.from(document.scripts).filter(function (s) {"
                       " return s.textContent.indexOf('__pwned=2') >= 0"
                       " && s.type !== 'application/json'; }).length") == 0
    chromium.collect()
    assert not [u for u in chromium.requests if u.rstrip("/").endswith("/x")]


def test_markup_in_intents_and_status_is_text_on_the_page(
        tmp_path: Path, chromium: Browser, sign_in: Callable[[str, str], None]) -> None:
    status = {"cluster": "c2", "state": "Failed", "error": IMG, "attempts": 1,
              "time": "2026-12-01T10:00:00+00:00", "objects": []}
    with serving(tmp_path, yaml.safe_dump_all(hostile_mesh()), [status]) as served:
        sign_in(served.url, served.tokens["viewer"])
        _markup_shown_as_text(chromium)
        assert chromium.errors() == []


def test_markup_in_intents_is_text_in_the_file(
        tmp_path: Path, chromium: Browser, cli: Callable[..., object]) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "mesh.yaml").write_text(yaml.safe_dump_all(hostile_mesh()))
    out = tmp_path / "mesh.html"
    result = cli("graph", "-f", str(tmp_path / "in"), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert CLOSE not in out.read_text()  # escaped inside its JSON element
    chromium.open(out.as_uri())
    _markup_shown_as_text(chromium)
    assert chromium.errors() == []


def test_markup_in_names_is_refused_before_anything_is_drawn(
        tmp_path: Path, cli: Callable[..., object]) -> None:
    bad = hostile_mesh()
    bad[2]["metadata"]["name"] = IMG
    bad[0]["metadata"]["labels"] = {"topology.kubernetes.io/region": SCRIPT}
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "mesh.yaml").write_text(yaml.safe_dump_all(bad))
    result = cli("graph", "-f", str(tmp_path / "in"), "-o", str(tmp_path / "mesh.html"))
    assert result.exit_code == 2
    assert "metadata.name" in result.stderr and "metadata.labels" in result.stderr
    assert not (tmp_path / "mesh.html").exists()


