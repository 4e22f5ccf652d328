"""The mesh lab as the lab tests drive it: ``scripts/mesh-lab`` run exactly as a developer runs
it (:func:`mesh_lab`), one lab in its own folder (:class:`LabRun`), and a folder whose lab is
taken down at the end, anything left behind failing the test (:func:`lab_in_a_new_folder`).
The fixtures are in ``tests/lab/conftest.py``."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
MESH_LAB = REPO / "scripts" / "mesh-lab"
EXAMPLES = REPO / "examples"
MESHES = REPO / "tests" / "lab" / "meshes"
UP_TIMEOUT = 600


def mesh_lab(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MESH_LAB), *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
    )


@dataclass
class LabRun:
    """One lab, in its own folder."""

    dir: Path
    state: dict[str, Any] = field(default_factory=dict)

    def up(self, *files: Path, service_protocols: tuple[str, ...] = (),
           deploy: tuple[str, ...] = (), existing_istio: tuple[str, ...] = ()) -> None:
        args = ["up", "--dir", str(self.dir)]
        for f in files:
            args += ["-f", str(f)]
        for sp in service_protocols:
            args += ["--service-protocol", sp]
        for instance in deploy:
            args += ["--deploy", instance]
        for cluster in existing_istio:
            args += ["--existing-istio", cluster]
        proc = mesh_lab(*args, timeout=UP_TIMEOUT)
        assert proc.returncode == 0, f"mesh-lab up failed:\n{proc.stderr[-6000:]}"
        self.state = json.loads((self.dir / "lab.json").read_text())

    def apply(self, *files: Path) -> None:
        args = ["apply", "--dir", str(self.dir)]
        for f in files:
            args += ["-f", str(f)]
        proc = mesh_lab(*args, timeout=UP_TIMEOUT)
        assert proc.returncode == 0, f"mesh-lab apply failed:\n{proc.stderr[-6000:]}"
        self.state = json.loads((self.dir / "lab.json").read_text())

    def _answers(self, proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
        assert lines, f"no answer printed:\n{proc.stderr[-3000:]}"
        return lines

    def request(self, source: str, url: str, *, count: int = 1, method: str = "GET",
                timeout: float = 5, interval: float = 0, timing: bool = False
                ) -> list[dict[str, Any]]:
        """Requests as ``source`` (APP.NAMESPACE@CLUSTER, or ``outside``) sends them."""
        extra = ["--interval", str(interval)] if interval else []
        if timing:
            extra.append("--timing")
        proc = mesh_lab("request", "--dir", str(self.dir), "--from", source, "--count",
                        str(count), "--method", method, "--timeout", str(timeout), *extra, url,
                        timeout=60 + count * (timeout + interval))
        answers = self._answers(proc)
        assert len(answers) == count, proc.stderr
        return answers

    def external(self, cluster: str, url: str, *, cert: Path | None = None,
                 key: Path | None = None, cacert: Path | None = None) -> dict[str, Any]:
        """A request from outside the mesh to ``cluster``'s ingress gateway, verifying the
        server against ``cacert`` (default: the mesh's ingress server CA)."""
        args = ["external", "--dir", str(self.dir), "--cluster", cluster, "--timeout", "5"]
        if cert is not None and key is not None:
            args += ["--cert", str(cert), "--key", str(key)]
        if cacert is not None:
            args += ["--cacert", str(cacert)]
        return self._answers(mesh_lab(*args, url))[0]

    def mesh_lab(self, command: str, *args: str) -> subprocess.CompletedProcess[str]:
        """``scripts/mesh-lab COMMAND --dir DIR ARGS...`` for this lab."""
        return mesh_lab(command, "--dir", str(self.dir), *args)

    def admin(self, instance: str, path: str) -> str:
        """GET ``path`` of a proxy's Envoy admin interface (an app instance's sidecar, or
        ``istio-ingressgateway.istio-system@CLUSTER``)."""
        proc = mesh_lab("admin", "--dir", str(self.dir), instance, path)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def meshbridge_in_lab(self, *args: str, then_request: tuple[str, str] | None = None,
                          timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``meshbridge ARGS`` where the lab's clusters are reached, on the lab's store; with
        ``then_request`` (APP.NS@CLUSTER, URL), one request sent from there as soon as it
        exits 0 (its JSON line last on stdout)."""
        extra = ["--then-request", *then_request] if then_request else []
        return mesh_lab("meshbridge", "--dir", str(self.dir), *extra, "--", *args,
                        timeout=timeout)

    def stop(self, instance: str) -> None:
        proc = mesh_lab("stop", "--dir", str(self.dir), instance)
        assert proc.returncode == 0, proc.stderr

    def start(self, instance: str) -> None:
        proc = mesh_lab("start", "--dir", str(self.dir), instance)
        assert proc.returncode == 0, proc.stderr

    def meshbridge(self, *args: str) -> subprocess.CompletedProcess[str]:
        exe = Path(sys.executable).with_name("meshbridge")
        return subprocess.run([str(exe), *args, "--state", str(self.dir / "state.db")],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              check=False)

    def down(self) -> None:
        proc = mesh_lab("down", "--dir", str(self.dir), timeout=180)
        assert proc.returncode == 0, f"mesh-lab down failed:\n{proc.stderr}"

    def processes(self) -> dict[int, str]:
        """Every process inside one of the lab's network namespaces: pid -> command line."""
        inodes = set(self.state.get("netns", {}).values())
        out = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if (entry / "ns" / "net").stat().st_ino in inodes:
                    out[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ")\
                        .decode(errors="replace")
            except OSError:
                continue
        return out

    @staticmethod
    def still_running(processes: dict[int, str]) -> dict[int, str]:
        """Those of ``processes`` that still run (not exited, not a zombie)."""
        out = {}
        for pid, cmd in processes.items():
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            if stat[stat.rfind(")") + 2:].split()[0] not in ("Z", "X"):
                out[pid] = cmd
        return out

    def leftovers(self) -> list[str]:
        """What a lab that was taken down left behind (empty when nothing)."""
        left = []
        lab_id = self.state.get("id")
        if lab_id:
            netns = Path("/run/netns")
            if netns.is_dir():
                left += [f"network namespace {p.name}" for p in netns.iterdir()
                         if p.name.startswith(f"ml{lab_id}-")]
        for key, rec in self.state.get("pods", {}).items():
            for name, proc in rec.get("procs", {}).items():
                if _alive(proc):
                    left.append(f"{key} {name} (pid {proc['pid']})")
        if _alive(self.state.get("dns") or {}):
            left.append("dns stand-in")
        for name, info in self.state.get("clusters", {}).items():
            for label, proc in (("volumes", info.get("volumes")),
                                ("kubelet", (info.get("kubelet") or {}).get("proc"))):
                if _alive(proc or {}):
                    left.append(f"{name} {label} stand-in")
        record = self.dir / "testenv" / "k8s-testenv.json"
        if record.is_file():
            for name, rec in json.loads(record.read_text()).get("clusters", {}).items():
                for kind in ("etcd", "apiserver", "istiod"):
                    if _alive(rec.get(kind) or {}):
                        left.append(f"{name} {kind}")
        return left


def _alive(proc: dict[str, Any]) -> bool:
    pid = proc.get("pid")
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[0] not in ("Z", "X") and fields[19] == proc.get("start_time")


@contextlib.contextmanager
def lab_in_a_new_folder() -> Iterator[LabRun]:
    """A LabRun in a new folder; at the end its lab is taken down, and anything it left behind
    fails the test."""
    # Not under pytest's tmp_path: its folders are 0700, and the proxies run as uid 1337.
    folder = Path(tempfile.mkdtemp(prefix="mesh-lab-"))
    folder.chmod(0o755)
    run = LabRun(folder / "lab")
    try:
        yield run
    finally:
        if (run.dir / "lab.json").exists():
            run.down()
        left = run.leftovers()
        assert not left, f"the lab left things behind: {left}"
        shutil.rmtree(folder, ignore_errors=True)
