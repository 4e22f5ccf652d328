"""``meshbridge serve`` in the lab: the server reconciling (and watching) the lab's clusters.

The lab's API servers listen on the loopback of its ctl network namespace, where nothing on the
host reaches them, so the server runs there too, started by the lab and recorded with its
processes (``down`` stops it). It serves the lab's own state store (``DIR/state.db``, SQLite):
the PKI, VIPs and mesh identity ``up``'s apply used, so it takes over the lab's objects as
theirs. ``serve``:

1. mints an admin token on that store (kept in ``DIR/serve/token``, 0600);
2. starts ``meshbridge serve`` on a free port of the ctl namespace's loopback
   (``--reconcile-interval``, ``--lease-seconds`` passed on), its log ``DIR/serve.log``;
3. registers each cluster's kubeconfig as a credential named after it (``meshbridge credential
   add``: the server reads no file);
4. stores the lab's intents (``DIR/serve/intents.yaml``: ``DIR/intents.yaml`` with each Cluster
   naming its credential, and the gateway address the lab gave it or apply discovered, which a
   server does not discover) with ``meshbridge apply --server``;
5. waits until the server has reconciled every cluster and every proxy has ACKed.

``mesh-lab meshbridge --dir DIR -- ARGS`` runs the meshbridge CLI in the ctl namespace with
``MESHBRIDGE_SERVER`` and ``MESHBRIDGE_TOKEN`` set for this server (``status``, ``discover``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from ..common import READY_TIMEOUT, LabError, log, python_env, wait_until
from ..state import LabState

SERVE_DIR = "serve"


def executable() -> str:
    """The meshbridge CLI installed beside this interpreter."""
    return str(Path(sys.executable).with_name("meshbridge"))


def server_env(lab: LabState) -> dict[str, str]:
    """The environment of a meshbridge command talking to the lab's server."""
    info = lab.state.get("serve")
    if not info:
        raise LabError(f"no meshbridge serve runs in this lab (`mesh-lab serve --dir {lab.dir}`)")
    token = lab.path(SERVE_DIR, "token").read_text().strip()
    return {**python_env(), "MESHBRIDGE_SERVER": info["url"], "MESHBRIDGE_TOKEN": token}


def _run(args: list[str], env: dict[str, str], what: str) -> str:
    proc = subprocess.run([executable(), *args], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        raise LabError(f"meshbridge {what} failed (exit {proc.returncode}):\n"
                       f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def server_intents(lab: LabState) -> list[dict[str, Any]]:
    """The lab's intents as the server stores them: credentials, explicit gateways."""
    docs = [d for d in yaml.safe_load_all(lab.path("intents.yaml").read_text()) if d]
    for doc in docs:
        if doc.get("kind") != "Cluster":
            continue
        name = doc["metadata"]["name"]
        spec = doc.setdefault("spec", {})
        spec["kubeconfig"] = {"credential": name, "context": name}
        gateway = spec.setdefault("gateway", {})
        if gateway.get("address") is None:  # the NodePort of 15443 at the node address
            info = lab.cluster(name)
            gateway["address"] = info["node"]
            gateway.setdefault("port", int(info["node_ports"]["15443"]["node_port"]))
    return docs


def start(lab: LabState, extra: list[str]) -> None:
    """Steps 1-4 of the module docstring (the caller is in the ctl namespace)."""
    if lab.state.get("serve"):
        raise LabError(f"meshbridge serve already runs in this lab ({lab.state['serve']['url']})")
    folder = lab.path(SERVE_DIR)
    folder.mkdir(mode=0o700, exist_ok=True)
    db = f"sqlite:///{lab.path('state.db')}"
    env = python_env()
    token = _run(["token", "create", "--db", db, "--name", f"mesh-lab-{os.getpid()}",
                  "--role", "admin"], env, "token create").strip().splitlines()[-1]
    token_file = folder / "token"
    token_file.touch(mode=0o600)
    token_file.write_text(token + "\n")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [executable(), "serve", "--db", db, "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning", *extra]
    lab.state["serve"] = {"url": url, "proc": lab.spawn(cmd, lab.path("serve.log"), env=env)}
    lab.save()

    def ready() -> str | None:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as answer:  # noqa: S310
                return None if answer.status == 200 else f"/readyz answered {answer.status}"
        except (OSError, urllib.error.URLError) as e:
            return f"/readyz: {e}"
    wait_until("meshbridge serve to answer", ready, READY_TIMEOUT)
    served = server_env(lab)
    for cluster in lab.state["clusters"]:
        _run(["credential", "add", cluster, "--kubeconfig", str(lab.kubeconfig(cluster)),
              "--context", cluster], served, "credential add")
    intents = folder / "intents.yaml"
    intents.write_text(yaml.safe_dump_all(server_intents(lab), sort_keys=False))
    _run(["apply", "-f", str(intents)], served, "apply --server")
    log(f"meshbridge serve at {url} (log {lab.path('serve.log')}) stores the lab's intents")


def wait_reconciled(lab: LabState) -> None:
    """Step 5's first half: every cluster's last reconcile by the server is Applied."""
    info = lab.state["serve"]
    token = lab.path(SERVE_DIR, "token").read_text().strip()

    def applied() -> str | None:
        request = urllib.request.Request(f"{info['url']}/api/v1/status",  # noqa: S310
                                         headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
                items = json.loads(answer.read())["items"]
        except (OSError, urllib.error.URLError, ValueError) as e:
            return f"status: {e}"
        states = {i["cluster"]: i["state"] for i in items}
        missing = [c for c in lab.state["clusters"] if states.get(c) != "Applied"]
        return f"not reconciled yet: {states}" if missing else None
    wait_until("the server to reconcile every cluster", applied, READY_TIMEOUT, interval=0.5)
