"""``scripts/screenshots``: the README's pictures of the mesh page, made again from the examples.

For each example it writes the self-contained page with ``meshbridge graph`` (the working tree's,
from the project's venv) and has Debian's headless Chromium (``scripts/test`` installs it) take a
screenshot of it opened from disk, with the network off for the page as it needs none. Run it
again whenever the page changes; the PNGs are committed under ``docs/images/``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
MESHBRIDGE = REPO / ".venv" / "bin" / "meshbridge"
CHROMIUM = "/usr/bin/chromium"
# As the page tests run it (tests/support/browser.py): quiet, as root, nothing fetched.
FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-extensions",
    "--hide-scrollbars", "--force-device-scale-factor=1",
]


@dataclass(frozen=True)
class Shot:
    example: str
    png: str
    width: int
    height: int


SHOTS = (
    Shot("sleep-httpbin", "graph-sleep-httpbin.png", 1280, 330),
    Shot("three-clusters", "graph-three-clusters.png", 1500, 900),
)


def take(shot: Shot, out: Path, work: Path) -> Path:
    page = work / f"{shot.example}.html"
    subprocess.run([str(MESHBRIDGE), "graph", "-f", str(REPO / "examples" / shot.example),
                    "-o", str(page)], check=True, stdout=subprocess.DEVNULL)
    target = out / shot.png
    subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={work / ('profile-' + shot.example)}",
         f"--window-size={shot.width},{shot.height}", f"--screenshot={target}", page.as_uri()],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120,
    )
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/screenshots", description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images",
                        help="where the PNGs go (default: docs/images)")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"scripts/screenshots: {CHROMIUM} is missing (apt-get install chromium)",
              file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="meshbridge-shots-") as work:
        for shot in SHOTS:
            print(take(shot, args.out, Path(work)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
