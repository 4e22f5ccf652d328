"""A lab's record of itself: ``DIR/lab.json``, and where everything of the lab lives in DIR.

Every process the lab starts is recorded with its PID and kernel start time, every network
namespace with its inode, every pod with its address and ports, so that a later command (another
process: ``request``, ``apply``, ``down``) finds them, and ``down`` can prove nothing is left.
The parts of the lab (control planes, gateways, pods, traffic, teardown) each take a LabState.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import yaml

from meshbridge_dev.testenv import Record, spawn

from . import net
from .common import LabError, python_env

STATE = "lab.json"


class LabState:
    """The lab in one folder: its state, saved after every change."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory.resolve()
        self.state: dict[str, Any] = {}
        self.state_path = self.dir / STATE
        # Pods of different clusters start on threads; they share the state and its file.
        self.lock = threading.RLock()

    def load(self) -> None:
        if not self.state_path.is_file():
            raise LabError(f"no lab in {self.dir} (run `mesh-lab up --dir {self.dir} -f ...`)")
        self.state = json.loads(self.state_path.read_text())

    def save(self) -> None:
        with self.lock:
            tmp = self.state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.state, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, self.state_path)

    @property
    def fabric(self) -> net.Fabric:
        return net.Fabric(self.state["id"])

    def path(self, *parts: str) -> Path:
        return self.dir.joinpath(*parts)

    def kubeconfig(self, cluster: str) -> Path:
        return self.path("testenv", f"{cluster}.kubeconfig")

    def istiod_debug(self, cluster: str) -> str:
        """host:port of istiod's debug endpoints (loopback of the ctl namespace)."""
        record = json.loads(self.path("testenv", "k8s-testenv.json").read_text())
        return f"127.0.0.1:{record['clusters'][cluster]['istiod_ports']['http']}"

    def cluster(self, name: str) -> dict[str, Any]:
        info: dict[str, Any] = self.state["clusters"][name]
        return info

    def mesh(self, cluster: str) -> dict[str, Any]:
        """The mesh configuration the cluster's istiod runs with."""
        data: dict[str, Any] = yaml.safe_load(self.path("mesh", f"{cluster}.yaml").read_text())
        return data

    def mb_state(self) -> list[str]:
        """meshbridge's options for the lab's own state store."""
        return ["--state", str(self.path("state.db"))]

    def pod_dir(self, key: str) -> Path:
        return self.path("pods", key.replace("@", "_"))

    def pod_file(self, key: str, suffix: str) -> Path:
        """A file of the pod's beside its folder (``.stub.log``, ``.resolv.conf``, ``-tls``)."""
        return self.path("pods", key.replace("@", "_") + suffix)

    def record_netns(self, name: str) -> None:
        self.state["netns"][name] = os.stat(f"/run/netns/{name}").st_ino
        self.save()

    def next_port(self) -> int:
        n = int(self.state["next_port"])
        self.state["next_port"] = n + 1
        return n

    def spawn(self, cmd: list[str], logfile: Path, env: dict[str, str] | None = None) -> Record:
        return spawn(cmd, logfile, env=env or python_env())
