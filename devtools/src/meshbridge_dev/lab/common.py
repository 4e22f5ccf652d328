"""What every part of the mesh lab shares: its errors and log line, waiting, and running
meshbridge and the lab's own helper programs."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SIDECAR_UID = 1337  # the proxies' user (istio-proxy's runAsUser)
CLONE_NEWNET = 0x40000000
READY_TIMEOUT = 120.0
SYNC_TIMEOUT = 120.0
SYNC_QUIET = 1.5  # seconds istiod's sync state must hold still before we call it settled
GATEWAY_NAME = "istio-ingressgateway"
GATEWAY_SERVICE_ACCOUNT = "istio-ingressgateway-service-account"
NODE_NAME = "lab-node"
ISTIOD_POD_PREFIX = "istiod-"  # k8s-testenv names istiod's POD_NAME istiod-<cluster>
OUTSIDE_HOST = "outside.mesh-lab"
OUTSIDE_KEY = "outside@external"
ROOT_CERT_DIR = "var/run/secrets/istio"  # istio-proxy's mount of istio-ca-root-cert
# k8s-testenv, run by the lab's own interpreter (it is a package installed beside the lab).
TESTENV = [sys.executable, "-m", "meshbridge_dev.testenv"]


class LabError(Exception):
    """Reported as one message; the exit status is 1 (2 for invalid intents)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def log(msg: str) -> None:
    print(f"mesh-lab: {msg}", file=sys.stderr, flush=True)


def enter_netns(name: str) -> None:
    """Move this process (it must have no other thread yet) into network namespace ``name``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise LabError(f"setns({name}): {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


def meshbridge(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The meshbridge CLI installed beside this interpreter; LabError when it fails (exit 2,
    invalid intents, is passed on)."""
    exe = Path(sys.executable).with_name("meshbridge")
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"meshbridge {args[0]} failed (exit {proc.returncode}):\n"
                       f"{proc.stderr.strip() or proc.stdout.strip()}",
                       status=2 if proc.returncode == 2 else 1)
    return proc


def wait_until(desc: str, check: Callable[[], str | None], timeout: float,
               interval: float = 0.25) -> None:
    """Poll ``check`` (None when done, else why not) until done or timeout."""
    deadline = time.monotonic() + timeout
    why = "never checked"
    while time.monotonic() < deadline:
        result = check()
        if result is None:
            return
        why = result
        time.sleep(interval)
    raise LabError(f"timed out after {timeout:.0f}s waiting for {desc}: {why}")


def python_env() -> dict[str, str]:
    """The environment of the lab's helper programs (stub, DNS, client): no kubeconfig and no
    meshbridge settings of the caller's."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("KUBECONFIG", "MESHBRIDGE"))}


def helper(module: str, *args: str) -> list[str]:
    """The command line of one of the lab's own programs (``stub``, ``dns``, ``client``)."""
    return [sys.executable, "-m", f"meshbridge_dev.lab.programs.{module}", *args]


def each(work: Callable[[str], None], clusters: list[str]) -> None:
    """``work`` for every cluster, the clusters after the first four at a time.

    The first runs alone. Once, under load, the lab process died of a SIGSEGV inside msgspec's
    compiled core (lightkube decodes the API server's answers with msgspec) while four threads
    decoded their first answers at once; it did not happen again. The suspected cause is the
    decoder msgspec builds for a type on its first use: after one cluster done alone, every type
    the others use has one.
    """
    if not clusters:
        return
    work(clusters[0])
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(work, clusters[1:]))


def untraversable(path: Path) -> Path | None:
    """The first folder on the way to ``path`` that a user other than its owner cannot enter."""
    for folder in [*reversed(path.parents), path]:
        st = folder.stat()
        if st.st_uid != SIDECAR_UID and not st.st_mode & 0o001:
            return folder
    return None
