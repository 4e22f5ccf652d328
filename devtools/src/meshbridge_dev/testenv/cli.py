"""``scripts/k8s-testenv``: build, start, stop and show the test clusters (``up``, ``down``,
``status``, ``build``). Each command is a function of its parsed arguments; progress goes to
stderr, results (kubeconfig paths, binary paths) to stdout."""

from __future__ import annotations

import argparse
import contextlib
import functools
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .build import ISTIO_API_MODULE, ISTIO_API_VERSION, build_all, build_istio, ensure_built
from .certs import gen_pki
from .cluster import (
    STATE_FILE,
    Cluster,
    apiserver_ready,
    etcd_healthy,
    install_crds,
    load_state,
    save_state,
    start_apiserver,
    start_etcd,
)
from .common import LOCK_FILE, PROG, Record, TestenvError, cache_dir, file_lock, log
from .istiod import start_istiods
from .procs import (
    ProcessDied,
    free_ports,
    is_ours,
    port_open,
    stop_process,
    wait_for,
    wait_reaped,
)
from .yamldocs import split_yaml_docs

PORT_ATTEMPTS = 3
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")
# Stopped in this order: istiod watches the API server, which depends on etcd.
KINDS = (("istiod", "istiod"), ("apiserver", "kube-apiserver"), ("etcd", "etcd"))


def in_parallel(work: Callable[[Any], None], items: list[Any]) -> None:
    """work(item) for every item on threads of their own; the first error is raised."""
    errors: list[BaseException] = []

    def one(item: Any) -> None:
        try:
            work(item)
        except BaseException as e:  # reported below
            errors.append(e)
    threads = [threading.Thread(target=one, args=(item,)) for item in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


# ---------------------------------------------------------------------------------------- up


def check_names(names: list[str]) -> None:
    for n in names:
        if not NAME_RE.match(n):
            raise TestenvError(f"invalid cluster name {n!r}: use lowercase letters, digits "
                               f"and '-' (a DNS label, at most 40 characters)")
    if len(set(names)) != len(names):
        raise TestenvError("cluster names must be distinct")


class Up:
    """One `up`: the clusters it starts, recorded in DIR's state file as they start."""

    def __init__(self, d: Path, names: list[str], deadline: float) -> None:
        self.dir = d
        self.state = load_state(d)
        for n in names:
            if n in self.state["clusters"]:
                raise TestenvError(f"cluster {n!r} is already recorded in {d}; "
                                   f"run `{PROG} down --dir {d}` first")
        self.clusters = [Cluster(d, n) for n in names]
        self.deadline = deadline

    def record(self, c: Cluster) -> None:
        self.state["clusters"][c.name] = c.record()
        save_state(self.dir, self.state)

    def make_pki(self) -> None:
        for c in self.clusters:
            if c.root.exists():
                shutil.rmtree(c.root)
            c.root.mkdir(parents=True)
            log(f"{c.name}: generating CA, serving and client certificates")
            gen_pki(c.pki, c.name)

    # Ports are picked free on 127.0.0.1 and released just before the server binds them; if
    # another process wins that race the server exits with "address already in use" and is
    # restarted on new ports.
    def start_etcds(self, etcd: Path) -> None:
        for c in self.clusters:
            for attempt in range(1, PORT_ATTEMPTS + 1):
                c.etcd_port, c.peer_port = free_ports(2)
                start_etcd(c, etcd)
                self.record(c)
                log(f"{c.name}: etcd pid {c.etcd['pid']} on 127.0.0.1:{c.etcd_port}")
                try:
                    wait_for(f"{c.name}: etcd health", functools.partial(etcd_healthy, c),
                             self.deadline, [(f"{c.name}: etcd", c.etcd)])
                    break
                except ProcessDied as e:
                    if not e.port_taken() or attempt == PORT_ATTEMPTS:
                        raise
                    log(f"{c.name}: etcd lost its port to another process; retrying")

    def launch_apiserver(self, c: Cluster, binary: Path) -> None:
        (c.api_port,) = free_ports(1)
        start_apiserver(c, binary)
        self.record(c)
        log(f"{c.name}: kube-apiserver pid {c.apiserver['pid']} on "
            f"https://127.0.0.1:{c.api_port}")

    def start_apiservers(self, binary: Path) -> None:
        for c in self.clusters:  # all start together: their start-ups overlap
            self.launch_apiserver(c, binary)
        for c in self.clusters:
            for attempt in range(1, PORT_ATTEMPTS + 1):
                try:
                    wait_for(f"{c.name}: kube-apiserver /readyz",
                             functools.partial(apiserver_ready, c), self.deadline,
                             [(f"{c.name}: kube-apiserver", c.apiserver),
                              (f"{c.name}: etcd", c.etcd)])
                    break
                except ProcessDied as e:
                    if e.entry is not c.apiserver or not e.port_taken() \
                            or attempt == PORT_ATTEMPTS:
                        raise
                    log(f"{c.name}: kube-apiserver lost its port to another process; "
                        f"retrying")
                    self.launch_apiserver(c, binary)
            log(f"{c.name}: /readyz ok")

    def stop_all(self) -> None:
        """Stop what this `up` started and forget it."""
        log("stopping the processes this `up` started")
        for c in self.clusters:
            stop_process(c.istiod, f"{c.name}: istiod")
            stop_process(c.apiserver, f"{c.name}: kube-apiserver")
            stop_process(c.etcd, f"{c.name}: etcd")
            self.state["clusters"].pop(c.name, None)
        save_state(self.dir, self.state)


def start_clusters(up: Up, args: argparse.Namespace, built: tuple[Path, Path, Path],
                   istio: dict[str, Path] | None) -> None:
    binary, crd_file, etcd = built
    docs = split_yaml_docs(crd_file.read_text())
    up.make_pki()
    up.start_etcds(etcd)
    up.start_apiservers(binary)
    in_parallel(lambda c: install_crds(c, docs, up.deadline), up.clusters)
    for c in up.clusters:
        c.write_kubeconfig()
    if istio:
        start_istiods(up.clusters, istio["pilot-discovery"], args, up.deadline)
        for c in up.clusters:
            up.state["clusters"][c.name] = c.record()
        save_state(up.dir, up.state)
    for c in up.clusters:
        print(c.kubeconfig, flush=True)


def cmd_up(args: argparse.Namespace) -> None:
    d = Path(args.dir).resolve()
    names: list[str] = args.names
    check_names(names)
    built = ensure_built()
    istio = None
    if args.istiod:
        with file_lock(cache_dir() / LOCK_FILE):
            istio = build_istio()
    d.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + args.timeout
    with file_lock(d / LOCK_FILE):
        up = Up(d, names, deadline)
        try:
            start_clusters(up, args, built, istio)
        except BaseException as e:
            log(f"up failed: {e}" if isinstance(e, TestenvError) else f"up interrupted: {e!r}")
            up.stop_all()
            if isinstance(e, TestenvError):
                raise TestenvError(f"up failed; logs are kept under {d}") from None
            raise
    log(f"ready: {', '.join(names)} (kubeconfigs in {d})")


def cmd_istiod(args: argparse.Namespace) -> None:
    """Start istiod in clusters `up` started without it (a real cluster's order: its API
    server first, then what is applied to it, then Istio)."""
    d = Path(args.dir).resolve()
    check_names(args.names)
    with file_lock(cache_dir() / LOCK_FILE):
        istio = build_istio()
    deadline = time.monotonic() + args.timeout
    with file_lock(d / LOCK_FILE):
        state = load_state(d)
        missing = [n for n in args.names if n not in state["clusters"]]
        if missing:
            raise TestenvError(f"no cluster {', '.join(missing)} recorded in {d} (`up` first)")
        clusters = [Cluster.recorded(d, n, state["clusters"][n]) for n in args.names]
        running = [c.name for c in clusters if c.istiod and is_ours(c.istiod)]
        if running:
            raise TestenvError(f"istiod already runs in {', '.join(running)}")
        try:
            start_istiods(clusters, istio["pilot-discovery"], args, deadline)
        finally:
            for c in clusters:
                state["clusters"][c.name] = c.record()
            save_state(d, state)


# --------------------------------------------------------------------- apiserver stop/start


def cmd_apiserver(args: argparse.Namespace) -> None:
    """Stop or start one cluster's kube-apiserver, its etcd left running: the cluster keeps
    its objects, port, certificates and kubeconfig (a client sees an API server restart, or
    a cluster down for a while)."""
    d = Path(args.dir).resolve()
    with file_lock(d / LOCK_FILE):
        state = load_state(d)
        if args.name not in state["clusters"]:
            raise TestenvError(f"no cluster {args.name!r} recorded in {d} (`up` first)")
        c = Cluster.recorded(d, args.name, state["clusters"][args.name])
        if args.action == "stop":
            if not stop_process(c.apiserver, f"{c.name}: kube-apiserver"):
                raise TestenvError(f"{c.name}: kube-apiserver survived SIGKILL")
            wait_reaped(c.apiserver)
            log(f"{c.name}: kube-apiserver stopped (etcd keeps running)")
            return
        if c.apiserver and is_ours(c.apiserver):
            raise TestenvError(f"{c.name}: kube-apiserver already runs")
        binary, _, _ = ensure_built()
        start_apiserver(c, binary)  # the recorded port: the kubeconfig stays valid
        state["clusters"][c.name] = c.record()
        save_state(d, state)
        wait_for(f"{c.name}: kube-apiserver /readyz", functools.partial(apiserver_ready, c),
                 time.monotonic() + args.timeout, [(f"{c.name}: kube-apiserver", c.apiserver)])
        log(f"{c.name}: kube-apiserver pid {c.apiserver['pid']} on "
            f"https://127.0.0.1:{c.api_port}, /readyz ok")


# ------------------------------------------------------------------------------ down / status


def stop_kind(clusters: dict[str, Any], kind: str, label: str) -> list[str]:
    """Stop one kind of process in every cluster, concurrently; what survived SIGKILL."""
    failed: list[str] = []

    def one(item: tuple[str, Record]) -> None:
        name, entry = item
        if entry.get("pid") and is_ours(entry):
            log(f"stopping {name}: {label} (pid {entry['pid']})")
        if not stop_process(entry, f"{name}: {label}"):
            failed.append(f"{name}: {label} (pid {entry.get('pid')}) survived SIGKILL")
    in_parallel(one, [(name, rec.get(kind) or {}) for name, rec in clusters.items()])
    return failed


def ports_left(clusters: dict[str, Any]) -> list[str]:
    """Ports of the stopped clusters that still accept connections after 10 s."""
    failed = []
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
    return failed


def forget(d: Path, clusters: dict[str, Any], purge: bool) -> None:
    for name, rec in list(clusters.items()):
        with contextlib.suppress(FileNotFoundError):
            Path(rec.get("kubeconfig") or d / f"{name}.kubeconfig").unlink()
        root = Path(rec.get("root") or d / name)
        # A stopped cluster cannot be restarted (`up` starts afresh), so its
        # etcd data goes; certificates and logs stay unless --purge.
        shutil.rmtree(root / "etcd", ignore_errors=True)
        if purge:
            shutil.rmtree(root, ignore_errors=True)
        del clusters[name]
        log(f"{name}: stopped")


def cmd_down(args: argparse.Namespace) -> None:
    d = Path(args.dir).resolve()
    if not d.is_dir():
        raise TestenvError(f"{d}: no such directory")
    with file_lock(d / LOCK_FILE):
        state = load_state(d)
        clusters = state["clusters"]
        if not clusters:
            log(f"nothing recorded in {d}; nothing to stop")
        failed: list[str] = []
        for kind, label in KINDS:
            failed += stop_kind(clusters, kind, label)
        for rec in clusters.values():
            for kind, _ in KINDS:
                wait_reaped(rec.get(kind) or {})
        failed += ports_left(clusters)  # no listening port may be left behind
        if failed:
            raise TestenvError("down incomplete:\n  " + "\n  ".join(failed))
        forget(d, clusters, args.purge)
        save_state(d, state)
    if args.purge:
        with contextlib.suppress(FileNotFoundError):
            (d / STATE_FILE).unlink()
        with contextlib.suppress(FileNotFoundError):
            (d / LOCK_FILE).unlink()


def cmd_status(args: argparse.Namespace) -> None:
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


def cmd_build(args: argparse.Namespace) -> None:
    built = build_all(istio=args.istio, kubectl=args.kubectl, toxiproxy=args.toxiproxy,
                      force=args.force)
    for name, path in built.items():
        print(f"{name}={path}")


# ------------------------------------------------------------------------------ command line


def add_build(sub: Any) -> None:
    b = sub.add_parser("build", help="build or reuse kube-apiserver and etcd, fetch the Istio CRDs "
                                     "(idempotent; quick when cached)")
    b.add_argument("--force", action="store_true", help="rebuild kube-apiserver even if cached")
    b.add_argument("--kubectl", action="store_true",
                   help="also build kubectl from the same pin (used by bench/apply.py)")
    b.add_argument("--toxiproxy", action="store_true",
                   help="also build Toxiproxy (a latency proxy; used by bench/apply.py)")
    b.add_argument("--istio", action="store_true",
                   help="also build istioctl, pilot-discovery (istiod) and pilot-agent from the "
                        "istio.io/istio module pinned in devtools/pins/istio/go.mod")
    b.set_defaults(func=cmd_build)


def add_up(sub: Any) -> None:
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
    add_istiod_options(u, "--istiod-")
    u.add_argument("names", nargs="+", metavar="NAME", help="cluster names (DNS labels)")
    u.set_defaults(func=cmd_up)


def add_istiod_options(p: Any, prefix: str) -> None:
    p.add_argument(f"{prefix}mesh", dest="istiod_mesh", action="append", metavar="NAME=FILE",
                   help="istiod's mesh configuration for NAME (default: Istio's defaults)")
    p.add_argument(f"{prefix}address", dest="istiod_address", action="append",
                   metavar="NAME=IP",
                   help="NAME's istiod serves xDS and its CA on IP with Istio's standard ports "
                        "(15010, 15012, 15014); default: free ports on 127.0.0.1")
    p.add_argument(f"{prefix}home", dest="istiod_home", action="append", metavar="NAME=DIR",
                   help="istiod's working folder, laid out as its pod's file system: its CA is "
                        "DIR/etc/cacerts (the `cacerts` volume), kept there by the caller")
    p.add_argument(f"{prefix}install", dest="istiod_install", action="append",
                   metavar="NAME=FILE",
                   help="the istiod Deployment of NAME's install, as JSON {env, args}: istiod "
                        "runs with that environment and those arguments, stand-ins aside")


def add_istiod(sub: Any) -> None:
    i = sub.add_parser("istiod", help="start istiod (and its validating webhook) in clusters "
                                      "`up` started without it")
    i.add_argument("--dir", required=True, help="the state directory `up` used")
    i.add_argument("--timeout", type=float, default=300,
                   help="seconds to wait for istiod and its webhook (default 300)")
    i.add_argument("--cacerts", dest="istiod_cacerts", action="append", metavar="NAME=DIR",
                   help="istiod's CA for NAME, read through ROOT_CA_DIR (default: --home's "
                        "etc/cacerts, else a CA generated for the test cluster)")
    add_istiod_options(i, "--")
    i.add_argument("names", nargs="+", metavar="NAME", help="cluster names (DNS labels)")
    i.set_defaults(func=cmd_istiod)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog=PROG,
        description="Real Kubernetes API servers (kube-apiserver + etcd, with Istio's CRDs) "
                    "on 127.0.0.1 for meshbridge's tests.",
        epilog=f"Cache: $MESHBRIDGE_TESTENV_CACHE or <repo>/.cache/testenv (now {cache_dir()}). "
               f"Pins: k8s.io/kubernetes in devtools/pins/kubernetes/go.mod, etcd in "
               f"devtools/pins/etcd/go.mod, "
               f"{ISTIO_API_MODULE} {ISTIO_API_VERSION}. Progress goes to stderr.")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_build(sub)
    add_up(sub)
    add_istiod(sub)
    dn = sub.add_parser("down", help="stop every process `up` started in DIR (by recorded PID)")
    dn.add_argument("--dir", required=True)
    dn.add_argument("--purge", action="store_true",
                    help="also delete the clusters' certificates and logs (etcd data always goes)")
    dn.set_defaults(func=cmd_down)
    api = sub.add_parser("apiserver", help="stop or start one cluster's kube-apiserver (its "
                                           "etcd, objects, port and kubeconfig stay)")
    api.add_argument("action", choices=("stop", "start"))
    api.add_argument("--dir", required=True)
    api.add_argument("--timeout", type=float, default=120)
    api.add_argument("name", metavar="NAME")
    api.set_defaults(func=cmd_apiserver)
    st = sub.add_parser("status", help="show the clusters recorded in DIR")
    st.add_argument("--dir", required=True)
    st.set_defaults(func=cmd_status)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
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
