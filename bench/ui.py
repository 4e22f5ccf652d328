"""Benchmark of the mesh's picture: how long the page of ``meshbridge serve`` takes to load and
become interactive on a large mesh, in a real headless Chromium (Debian's, as tests/ui drive it).

Stores the generated mesh (``bench/meshgen.generate``; by default 100 clusters in 5 regions,
2,000 servers) in a fresh ``meshbridge serve`` on SQLite, then measures:

* ``GET /api/v1/graph``: the first answer after the write (the topology computed), and again
  (cached): time and size;
* the page: from navigation start to the picture drawn (``window.meshbridgeDrawnAt``), signed
  in (the token in the tab's storage), the first time (the server's graph already cached by the
  read above, the browser's cache empty) and ``--rounds`` reloads;
* unfolding a region and a cluster: the click to the new picture;
* ``meshbridge graph -o mesh.html``: the command's time, the file's size, and the file opened
  from disk to the picture drawn.

It prints figures; nothing here is a test.

    .venv/bin/python bench/ui.py [--clusters 100] [--servers 2000] [--regions 5] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from apitest import start_server  # noqa: E402
from browser import Browser, chromium  # noqa: E402

from bench.meshgen import generate  # noqa: E402
from meshbridge.server.tokens import create_token  # noqa: E402
from meshbridge.store import open_store  # noqa: E402

DRAWN = "return window.meshbridgeDrawnAt || null"


def _loaded(b: Browser) -> float:
    """Milliseconds from navigation start to the picture drawn."""
    drawn = b.wait(lambda: b.js(DRAWN), "the picture", timeout=60)
    return float(drawn)


def _click_ms(b: Browser, selector: str) -> float:
    return float(b.js(
        "var before = window.meshbridgeDrawnAt; var t0 = performance.now();"
        "document.querySelector(arguments[0]).dispatchEvent(new MouseEvent('click', {bubbles: true}));"
        "return window.meshbridgeDrawnAt !== before ? performance.now() - t0 : -1;", selector))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clusters", type=int, default=100)
    parser.add_argument("--servers", type=int, default=2000)
    parser.add_argument("--regions", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    docs = generate(clusters=args.clusters, servers=args.servers, regions=args.regions)
    text = yaml.safe_dump_all(docs)
    print(f"mesh: {args.clusters} clusters in {args.regions} regions, {args.servers} servers, "
          f"{len(docs)} documents")
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp_name:
        tmp = Path(tmp_name)
        db = f"sqlite:///{tmp / 'ui.db'}"
        store = open_store(db)
        viewer, editor = (create_token(store, f"{r}-bench", r) for r in ("viewer", "editor"))
        store.close()
        server = start_server(db, tmp / "server.log")
        try:
            started = time.perf_counter()
            answer = httpx.post(f"{server.url}/api/v1/apply", content=text.encode(), timeout=600,
                                headers={"Authorization": f"Bearer {editor}",
                                         "Content-Type": "application/yaml"})
            answer.raise_for_status()
            print(f"store the mesh (POST /api/v1/apply): {time.perf_counter() - started:.2f} s")
            headers = {"Authorization": f"Bearer {viewer}"}
            for label in ("first (computed)", "again (cached)"):
                started = time.perf_counter()
                graph = httpx.get(f"{server.url}/api/v1/graph", headers=headers, timeout=120)
                graph.raise_for_status()
                print(f"GET /api/v1/graph {label}: {time.perf_counter() - started:.3f} s, "
                      f"{len(graph.content) / 1e6:.1f} MB")
            with chromium(tmp / "profile") as b:
                b.open(f"{server.url}/ui/")
                b.js("sessionStorage.setItem('meshbridge.token', arguments[0])", viewer)
                b.driver.refresh()
                loads = [_loaded(b)]
                for _ in range(args.rounds):
                    b.driver.refresh()
                    loads.append(_loaded(b))
                print(f"page load to interactive: first {loads[0]:.0f} ms; reloads median "
                      f"{statistics.median(loads[1:]):.0f} ms, max {max(loads[1:]):.0f} ms "
                      f"({args.rounds} reloads)")
                region = _click_ms(b, 'g.region[data-id="region:r0"]')
                cluster = _click_ms(b, 'g.cluster[data-id="cluster:c000"] .cluster-head')
                lines = b.js("return document.querySelectorAll('path.edge').length")
                print(f"unfold a region: {region:.0f} ms; then a cluster: {cluster:.0f} ms "
                      f"({lines} lines drawn)")
                assert not b.errors(), b.errors()
        finally:
            server.stop()
        mesh = tmp / "in"
        mesh.mkdir()
        (mesh / "mesh.yaml").write_text(text)
        started = time.perf_counter()
        subprocess.run([str(ROOT / ".venv" / "bin" / "meshbridge"), "graph", "-f", str(mesh),
                        "-o", str(tmp / "mesh.html")], check=True, capture_output=True)
        took = time.perf_counter() - started
        size = (tmp / "mesh.html").stat().st_size
        with chromium(tmp / "profile2") as b:
            b.offline()
            b.open((tmp / "mesh.html").as_uri())
            opened = _loaded(b)
        print(f"meshbridge graph -o mesh.html: {took:.2f} s, {size / 1e6:.1f} MB; opened from "
              f"disk (offline) to interactive: {opened:.0f} ms")


if __name__ == "__main__":
    main()
