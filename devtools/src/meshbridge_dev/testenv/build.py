"""The pins, and the builds they drive: kube-apiserver, etcd, Istio's tools, Istio's CRDs.

Every binary is built with ``go build`` from an upstream Go module pinned by a ``go.mod`` and
``go.sum`` under ``devtools/pins/`` (nothing third-party is vendored or committed), into a
git-ignored cache, and rebuilt only when its pin changes: the stamp beside each binary is a hash
of that go.mod, go.sum and the link flags. Istio's CRDs are read from the ``istio.io/api``
module at the version pinned below, checked against its pinned checksum.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .certs import need_openssl
from .common import LOCK_FILE, PINS, TestenvError, cache_dir, file_lock, log, run
from .yamldocs import split_yaml_docs

ISTIO_API_MODULE = "istio.io/api"
ISTIO_API_VERSION = "v1.31.4"
# The Go checksum database hash of istio.io/api@ISTIO_API_VERSION (the "Sum"
# that `go mod download -json` prints): pins the exact CRD content we install.
ISTIO_API_SUM = "h1:AcnncYrlDj1PJkym7h88Gggkef4MAra8QpGaXRMsr+E="
ISTIO_CRD_FILE = "kubernetes/customresourcedefinitions.gen.yaml"

# etcd is built from this module at the version pinned in devtools/pins/etcd/go.mod. MIN_ETCD is
# the oldest etcd the pinned Kubernetes release supports as external etcd (kubeadm v1.37
# MinExternalEtcdVersion); it guards MESHBRIDGE_TESTENV_ETCD overrides.
ETCD_MODULE = "go.etcd.io/etcd/server/v3"
MIN_ETCD = (3, 5, 24)

KUBERNETES_MOD_DIR = PINS / "kubernetes"
ETCD_MOD_DIR = PINS / "etcd"
ISTIO_MOD_DIR = PINS / "istio"
TOXIPROXY_MOD_DIR = PINS / "toxiproxy"
TOXIPROXY_MODULE = "github.com/Shopify/toxiproxy/v2"

ISTIO_MODULE = "istio.io/istio"
ISTIO_TOOLS = {  # binary name -> package in ISTIO_MODULE (a `tool` of devtools/pins/istio)
    "istioctl": "istio.io/istio/istioctl/cmd/istioctl",
    "pilot-discovery": "istio.io/istio/pilot/cmd/pilot-discovery",
    "pilot-agent": "istio.io/istio/pilot/cmd/pilot-agent",
}
# Envoy's bootstrap template, as the istio/proxyv2 image ships it.
BOOTSTRAP_TEMPLATE = Path("tools/packaging/common/envoy_bootstrap.json")


def module_pin(moddir: Path, module: str) -> str:
    gomod = (moddir / "go.mod").read_text()
    m = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", gomod, re.M)
    if not m:
        raise TestenvError(f"{moddir / 'go.mod'}: no {module} requirement")
    return m.group(1)


def kubernetes_pin() -> str:
    return module_pin(KUBERNETES_MOD_DIR, "k8s.io/kubernetes")


def etcd_pin() -> str:
    return module_pin(ETCD_MOD_DIR, ETCD_MODULE)


def istio_pin() -> str:
    return module_pin(ISTIO_MOD_DIR, ISTIO_MODULE)


def go_env() -> dict[str, str]:
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


def pin_stamp(moddir: Path, ldflags: list[str] | None = None) -> str:
    """The hash a cached binary is stamped with: its module's go.mod and go.sum (and link
    flags), so it is rebuilt exactly when the pin (or anything it resolves to) changes."""
    h = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        h.update((moddir / name).read_bytes())
    if ldflags is not None:
        h.update(" ".join(ldflags).encode())
    return h.hexdigest()


def stamped(stamp_file: Path, stamp: str, binaries: list[Path], files: list[Path]) -> bool:
    """The binaries (executable) and files are there, under the expected stamp."""
    return (all(b.is_file() and os.access(b, os.X_OK) for b in binaries)
            and all(f.is_file() for f in files)
            and stamp_file.is_file() and stamp_file.read_text().strip() == stamp)


def go_build(tool: str, moddir: Path, pkg: str, pin: str, ldflags: list[str],
             force: bool, hint: str) -> Path:
    """`go build` pkg (a `tool` of the module in moddir) into the cache, once per pin."""
    binary = cache_dir() / "bin" / tool
    stamp_file = binary.with_name(f"{tool}.stamp")
    stamp = pin_stamp(moddir, ldflags)
    if not force and stamped(stamp_file, stamp, [binary], []):
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
                          stdout=sys.stderr, check=False)
    if proc.returncode != 0:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise TestenvError(f"go build of {tool} {pin} failed (exit {proc.returncode}); "
                           f"see go's output above")
    os.replace(tmp, binary)
    stamp_file.write_text(stamp + "\n")
    log(f"built {binary} in {time.monotonic() - t0:.0f}s")
    return binary


def kubernetes_ldflags(pin: str) -> list[str]:
    """What /version reports, as a release build of the pinned Kubernetes sets it."""
    m = re.match(r"v(\d+)\.(\d+)\.", pin)
    if not m:
        raise TestenvError(f"unexpected k8s.io/kubernetes version {pin!r}")
    pkg = "k8s.io/component-base/version"
    return [f"-X {pkg}.gitVersion={pin}", f"-X {pkg}.gitMajor={m.group(1)}",
            f"-X {pkg}.gitMinor={m.group(2)}", f"-X {pkg}.gitTreeState=clean"]


def build_apiserver(force: bool = False) -> Path:
    pin = kubernetes_pin()
    return go_build("kube-apiserver", KUBERNETES_MOD_DIR, "k8s.io/kubernetes/cmd/kube-apiserver",
                    pin, kubernetes_ldflags(pin), force, "cold: ~5-9 min on 2 cores")


def build_kubectl(force: bool = False) -> Path:
    """kubectl from the same pinned module (for benchmarks comparing against it)."""
    pin = kubernetes_pin()
    return go_build("kubectl", KUBERNETES_MOD_DIR, "k8s.io/kubernetes/cmd/kubectl", pin,
                    kubernetes_ldflags(pin), force,
                    "cold: a few minutes more, sharing kube-apiserver's packages")


def build_toxiproxy(force: bool = False) -> Path:
    """Toxiproxy's server, from the module pinned in devtools/pins/toxiproxy/go.mod (for
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


def istio_module_dir(go: str, env: dict[str, str]) -> Path:
    """Where the pinned istio.io/istio module is in Go's module cache (downloaded if not)."""
    def where() -> str:
        return run([go, "list", "-m", "-f", "{{.Dir}}", ISTIO_MODULE], cwd=ISTIO_MOD_DIR,
                   env=env, what=f"go list -m {ISTIO_MODULE}").strip()
    moddir = where()
    if not moddir:  # not downloaded yet
        run([go, "mod", "download", ISTIO_MODULE], cwd=ISTIO_MOD_DIR, env=env,
            what=f"go mod download {ISTIO_MODULE}")
        moddir = where()
    return Path(moddir)


def build_istio(force: bool = False) -> dict[str, Path]:
    """istioctl, pilot-discovery (istiod) and pilot-agent from the pinned istio.io/istio module.

    The three are built by one `go build` (they share most packages) and cached together under
    one stamp (hash of go.mod and go.sum): rebuilt exactly when the pin changes.
    """
    pin = istio_pin()
    bindir = cache_dir() / "bin"
    binaries = {name: bindir / name for name in ISTIO_TOOLS}
    stamp_file = bindir / "istio.stamp"
    stamp = pin_stamp(ISTIO_MOD_DIR)
    template = cache_dir() / "istio" / BOOTSTRAP_TEMPLATE.name
    cached = stamped(stamp_file, stamp, list(binaries.values()), [template])
    binaries["envoy-bootstrap-template"] = template
    if not force and cached:
        log(f"istio {pin}: cached at {bindir} ({', '.join(ISTIO_TOOLS)})")
        return binaries
    go = need_go()
    env = go_env()
    moddir = istio_module_dir(go, env)
    # The module's own VERSION file names the release line (what `make` would stamp).
    line = (moddir / "VERSION").read_text().strip()
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
                          stdout=sys.stderr, check=False)
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
    shutil.copyfile(moddir / BOOTSTRAP_TEMPLATE, template)
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


def ensure_built(force: bool = False) -> tuple[Path, Path, Path]:
    """kube-apiserver, the Istio CRDs and etcd: built or reused."""
    need_openssl()
    with file_lock(cache_dir() / LOCK_FILE):
        etcd = build_etcd(force)
        etcd_version(etcd)
        binary = build_apiserver(force)
        crds = fetch_istio_crds()
    return binary, crds, etcd


def build_all(*, istio: bool = False, kubectl: bool = False, toxiproxy: bool = False,
              force: bool = False) -> dict[str, Path]:
    """Everything asked for, built or reused: {name: path}, in the order `build` prints them."""
    binary, crds, etcd = ensure_built(force=force)
    out: dict[str, Path] = {}
    if kubectl:
        out["kubectl"] = build_kubectl(force=force)
    if toxiproxy:
        with file_lock(cache_dir() / LOCK_FILE):
            out["toxiproxy"] = build_toxiproxy(force=force)
    if istio:
        with file_lock(cache_dir() / LOCK_FILE):
            out.update(build_istio(force=force))
    out.update({"kube-apiserver": binary, "istio-crds": crds, "etcd": etcd})
    return out
