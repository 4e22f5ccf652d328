"""The lab's stand-in for the kubelet's secret and config-map volumes.

On a real node the kubelet fills a pod's ``secret:`` and ``configMap:`` volumes from the API
server and keeps them current: every key becomes a file, and an update replaces all of them at
once. It writes the new content to a fresh hidden folder (``..2026_12_07_10_11_12.123456789``),
points the ``..data`` link at it by renaming a new link over the old one (one atomic step), and
each key's file is a link through ``..data`` (``ca-cert.pem -> ..data/ca-cert.pem``); then the
old folder goes. A reader sees the old set or the new set, never a mix.

Here, each ``--volume KIND:NAMESPACE/NAME=DIR`` is kept that way from the lab cluster's API
server: listed, then watched from the list's resourceVersion; a watch that ends is resumed from
the last version seen, an expired version (410 Gone) is listed again, and an error is retried
after a growing wait. An object that does not exist yet leaves its folder empty until it
appears (a ``secret: {optional: true}`` volume); a deleted object keeps the last content (as the
kubelet keeps a mounted volume). ``DIR/..data`` exists once the first content is in.

Run as ``python -m meshbridge_dev.lab.programs.volumes --kubeconfig FILE --volume
secret:istio-system/cacerts=DIR [--volume configmap:istio-system/istio=DIR2 ...]``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lightkube import ApiError, Client, KubeConfig
from lightkube.resources.core_v1 import ConfigMap, Secret

DATA = "..data"
WAIT_FIRST = 0.2
WAIT_MAX = 5.0


@dataclass(frozen=True)
class Volume:
    kind: str  # "secret" | "configmap"
    namespace: str
    name: str
    dir: Path

    @classmethod
    def parse(cls, text: str) -> Volume:
        source, sep, target = text.partition("=")
        kind, _, ref = source.partition(":")
        namespace, _, name = ref.partition("/")
        if not sep or kind not in ("secret", "configmap") or not namespace or not name:
            raise ValueError(f"--volume {text!r}: expected secret|configmap:NAMESPACE/NAME=DIR")
        return cls(kind, namespace, name, Path(target))

    @property
    def resource(self) -> Any:
        return Secret if self.kind == "secret" else ConfigMap


def files_of(kind: str, obj: Any) -> dict[str, bytes]:
    """Each key of the object as the file the kubelet writes (a Secret's data decoded)."""
    if kind == "secret":
        return {k: base64.b64decode(v) for k, v in (obj.data or {}).items()}
    out = {k: v.encode() for k, v in (obj.data or {}).items()}
    out.update({k: base64.b64decode(v) for k, v in (obj.binaryData or {}).items()})
    return out


def current(folder: Path) -> dict[str, bytes] | None:
    """What the volume holds now (None before its first content)."""
    data = folder / DATA
    if not data.is_dir():
        return None
    return {p.name: p.read_bytes() for p in data.iterdir() if p.is_file()}


def write_atomically(folder: Path, files: dict[str, bytes], mode: int = 0o644) -> None:
    """The kubelet's atomic update: a new timestamped folder, ``..data`` renamed over to point at
    it, a link per key through ``..data``, then the old folder removed."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("..%Y_%m_%d_%H_%M_%S.%f")
    fresh = folder / stamp
    fresh.mkdir(mode=0o755)
    for key, content in files.items():
        path = fresh / key
        path.write_bytes(content)
        path.chmod(mode)
    old = os.readlink(folder / DATA) if (folder / DATA).is_symlink() else None
    tmp = folder / "..data_tmp"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(stamp)
    os.rename(tmp, folder / DATA)  # the one step a reader can see
    for key in files:
        link = folder / key
        if not link.is_symlink():
            link.symlink_to(f"{DATA}/{key}")
    for entry in folder.iterdir():
        if entry.is_symlink() and entry.name not in files and not entry.name.startswith(".."):
            entry.unlink()  # a key the object no longer has
    if old and old != stamp:
        shutil.rmtree(folder / old, ignore_errors=True)


class Keeper:
    """Keeps one volume current from the API server until stopped."""

    def __init__(self, client: Client, volume: Volume, stop: threading.Event) -> None:
        self.client = client
        self.volume = volume
        self.stop = stop

    def deliver(self, obj: Any) -> None:
        files = files_of(self.volume.kind, obj)
        if files != current(self.volume.dir):
            write_atomically(self.volume.dir, files)
            print(f"volumes: {self.volume.kind} {self.volume.namespace}/{self.volume.name}: "
                  f"{len(files)} files delivered", file=sys.stderr, flush=True)

    def listed(self) -> str:
        """Deliver the object as it is now; the resourceVersion to watch from."""
        listing = self.client.list(self.volume.resource, namespace=self.volume.namespace,
                                   fields={"metadata.name": self.volume.name})
        for obj in listing:
            self.deliver(obj)
        return str(listing.resourceVersion)

    def run(self) -> None:
        wait = WAIT_FIRST
        version: str | None = None
        while not self.stop.is_set():
            try:
                if version is None:
                    version = self.listed()
                for event, obj in self.client.watch(
                    self.volume.resource, namespace=self.volume.namespace,
                    fields={"metadata.name": self.volume.name}, resource_version=version,
                ):
                    if self.stop.is_set():
                        return
                    version = obj.metadata.resourceVersion
                    if event in ("ADDED", "MODIFIED"):
                        self.deliver(obj)
                wait = WAIT_FIRST
            except ApiError as e:
                if e.status.code == 410:  # the version expired: list again
                    version = None
                    continue
                self.pause(wait, f"API error {e.status.code}: {e.status.message}")
                wait = min(wait * 2, WAIT_MAX)
            except Exception as e:  # the API server restarted, a connection dropped
                self.pause(wait, f"{type(e).__name__}: {e}")
                wait = min(wait * 2, WAIT_MAX)

    def pause(self, seconds: float, why: str) -> None:
        print(f"volumes: {self.volume.name}: {why}; again in {seconds:.1f}s", file=sys.stderr,
              flush=True)
        self.stop.wait(seconds)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="volumes", description=__doc__.split("\n\n")[0])
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--volume", action="append", required=True, type=Volume.parse,
                    metavar="KIND:NAMESPACE/NAME=DIR")
    args = ap.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    config = KubeConfig.from_file(args.kubeconfig)
    threads = []
    for volume in args.volume:
        client = Client(config=config, timeout=None)
        keeper = Keeper(client, volume, stop)
        thread = threading.Thread(target=keeper.run, daemon=True, name=volume.name)
        thread.start()
        threads.append(thread)
    while not stop.is_set():
        time.sleep(0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
