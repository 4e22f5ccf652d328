"""The mesh lab: run a set of intents for real on one machine, and send requests through it.

``up`` gives every Cluster of the intents a real control plane (etcd, kube-apiserver, istiod
whose CA is the cluster's rendered ``cacerts`` and whose validating webhook the API server
calls) and a real ingress gateway (pilot-agent + Envoy, ``sni-dnat``), and every App placement a
pod: a stub workload behind a real sidecar (pilot-agent + Envoy, traffic captured by Istio's own
iptables rules). Then it runs ``meshbridge apply`` on the intents, rewritten to lab addresses,
and waits until every proxy has ACKed its configuration.

Stand-ins, each only where one host needs one (see docs/testing.md):

* NodePorts: iptables REDIRECT from the node address (the gateway's namespace) to the gateway's
  target ports, for the ports its Service declares (kube-proxy's job);
* cluster DNS: ``programs.dns`` (kube-dns's job), answering Services with their pods' addresses
  since no kube-proxy turns ClusterIPs into pods for the gateway;
* the kubelet and controllers: the lab writes Pod status and EndpointSlices;
* the sidecar injector: the lab starts pilot-agent with the environment the injector gives it;
* services outside the mesh: stub hosts at lab addresses (the intents are rewritten to them).

This module is the lab's life cycle; its parts are ``control`` (control planes), ``gateways``,
``pods`` (and ``services``), ``traffic`` (addresses, DNS, requests) and ``teardown``, each a
set of functions of the lab's ``state``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from meshbridge_dev.testenv import TestenvError, recorded_api

from . import control, istio, kube, net, pki, pods, teardown, traffic
from .common import (
    SIDECAR_UID,
    LabError,
    each,
    enter_netns,
    helper,
    log,
    meshbridge,
    untraversable,
)
from .gateways import start_gateway
from .ops import serve
from .scenario import instances
from .scenario.plan import Plan, build
from .state import LabState

USER_FIELD_MANAGER = "mesh-lab-user"  # objects a user applies by hand (`mesh-lab objects`)


def validated_plan(files: list[str], deployed: list[str] | tuple[str, ...] = ()) -> Plan:
    meshbridge("validate", *[a for f in files for a in ("-f", f)])
    plan = build(files)
    return build(files, instances.checked(plan, list(deployed))) if deployed else plan


def inputs(files: list[str]) -> list[str]:
    return [str(Path(f).resolve()) if f != "-" else f for f in files]


class Lab(LabState):
    """One lab in one folder: ``up``, ``apply``, ``down``, and its app instances."""

    def up(self, files: list[str], service_protocols: dict[str, str] | None = None,
           istiod_env: dict[str, str] | None = None,
           deployed: list[str] | None = None,
           existing_istio: list[str] | None = None) -> None:
        if self.state_path.is_file():
            raise LabError(f"a lab is already recorded in {self.dir}: use `mesh-lab apply` to "
                           f"change its intents, or `mesh-lab down` first")
        self.dir.mkdir(parents=True, exist_ok=True)
        blocked = untraversable(self.dir)
        if blocked:
            raise LabError(f"the proxies run as uid {SIDECAR_UID} and must reach {self.dir}"
                           f", but {blocked} lets no other user through (chmod o+x it, or pick "
                           f"another --dir)")
        plan = validated_plan(files, deployed or [])
        unknown = sorted(set(existing_istio or []) - set(plan.clusters))
        if unknown:
            raise LabError(f"--existing-istio {', '.join(unknown)}: no such Cluster in the "
                           f"intents ({', '.join(plan.clusters)})", status=2)
        t0 = time.monotonic()
        tools = istio.tools()
        self.state = {
            "id": secrets.token_hex(3), "clusters": {}, "pods": {}, "next_port": 1,
            "inputs": inputs(files), "netns": {}, "tools": {k: str(v) for k, v in tools.items()},
            "service_protocols": service_protocols or {},
            "istiod_env": istiod_env or {},
            "deployed": sorted(set(deployed or [])),
            "existing_istio": sorted(set(existing_istio or [])),
        }
        self.save()
        try:
            self._up(plan, tools)
        except BaseException as e:
            self._failed_up(e)
            raise
        log(f"up in {time.monotonic() - t0:.1f}s: {len(plan.clusters)} clusters, "
            f"{len(plan.instances)} app instances, {len(plan.externals)} outside services")

    def _failed_up(self, e: BaseException) -> None:
        why = e if isinstance(e, LabError) else repr(e)
        if os.environ.get("MESHLAB_KEEP_FAILED") == "1":
            log(f"up failed ({why}); MESHLAB_KEEP_FAILED=1: everything stays up for a look "
                f"(`mesh-lab down --dir {self.dir}` when done)")
            return
        log(f"up failed ({why}); stopping what it started (logs stay in {self.dir})")
        with contextlib.suppress(Exception):
            self.down(quiet=True)

    def _network(self, plan: Plan) -> None:
        """The lab's namespaces and the addresses of each cluster's node, istiod and DNS."""
        fabric = self.fabric
        fabric.create()
        self.record_netns(fabric.fabric)
        self.record_netns(fabric.ctl)
        for i, name in enumerate(plan.clusters, start=1):
            self.state["clusters"][name] = {
                "index": i, "node": net.node_address(i), "istiod": net.istiod_address(i),
                "dns": net.dns_address(i), "gateway_port": plan.clusters[name].gateway_port,
                "labels": plan.clusters[name].labels,
                "kubelet": {"address": net.kubelet_address(i)},
            }
            for address in (net.istiod_address(i), net.dns_address(i), net.kubelet_address(i)):
                fabric.add_address("ctl", address)
        self.save()

    def _up(self, plan: Plan, tools: dict[str, Path]) -> None:
        self._network(plan)
        enter_netns(self.fabric.ctl)  # from here on, this process's sockets live in the lab
        pki.lab_ca(self.path("lab-ca"))
        traffic.assign_externals(self, plan)
        traffic.write_intents(self, plan)
        clusters = list(plan.clusters)
        # A real cluster's order (see control): API server, what apply writes, then Istio. The
        # API servers start while meshbridge renders and istioctl makes each install.
        with ThreadPoolExecutor(max_workers=1) as background:
            servers = background.submit(control.start_api_servers, self, plan)
            control.render(self)
            installs = control.installs(self, plan, tools)
            servers.result()
        each(lambda c: control.install_objects(self, c, installs[c]), clusters)
        # A cluster that already runs Istio gets nothing from meshbridge before Istio runs.
        meshed = [c for c in clusters if c not in self.state["existing_istio"]]
        if meshed:
            control.apply(self, meshed if len(meshed) < len(clusters) else None)
        for cluster in clusters:
            control.start_volumes(self, cluster)
            control.start_kubelet(self, cluster)
        control.start_istiods(self, plan)
        each(lambda c: control.publish_istiod(self, c, installs[c]), clusters)
        control.judge_applied(self)
        control.start_dns(self)
        # The pods first: the gateways resolve Service names (the endpoints of server-side
        # ServiceEntries) when their configuration arrives, and the DNS stand-in knows a
        # Service by its pods (no kube-proxy, no ClusterIP).
        pods.sync_pods(self, plan, tools)
        each(lambda c: start_gateway(self, c, installs[c], tools), clusters)
        if plan.discovered:  # apply again, as a team would: it now finds the instances
            control.apply(self)
        control.wait_synced(self)

    def apply(self, files: list[str], service_protocols: dict[str, str] | None = None) -> None:
        """Changed intents (same clusters): pods started or removed, ACKs awaited."""
        self.load()
        if service_protocols is not None:
            self.state["service_protocols"] = service_protocols
        plan = validated_plan(files, self.state.get("deployed", []))
        if sorted(plan.clusters) != sorted(self.state["clusters"]):
            raise LabError("the intents name other clusters than the running lab "
                           f"({', '.join(self.state['clusters'])}); run `mesh-lab down` and "
                           f"`mesh-lab up` for a different set of clusters")
        enter_netns(self.fabric.ctl)
        tools = {k: Path(v) for k, v in self.state["tools"].items()}
        self.state["inputs"] = inputs(files)
        traffic.assign_externals(self, plan)
        traffic.write_intents(self, plan)
        pods.sync_pods(self, plan, tools)
        control.apply_and_wait(self)

    def deploy(self, spec: str, present: bool = True) -> None:
        """Start (``present``) or remove one instance of a discovered App: its pod, sidecar,
        Service and EndpointSlice (the Service with its last instance)."""
        self.load()
        plan = validated_plan(self.state["inputs"])
        instances.checked(plan, [spec])
        deployed = instances.changed(self.state.get("deployed", []), spec, present)
        if deployed is None:
            log(f"{spec}: already {'deployed' if present else 'not deployed'}")
            return
        enter_netns(self.fabric.ctl)
        self.state["deployed"] = deployed
        self.save()
        tools = {k: Path(v) for k, v in self.state["tools"].items()}
        pods.sync_pods(self, build(self.state["inputs"], deployed), tools, ready_first=True)
        log(f"{spec}: {'deployed' if present else 'undeployed'}")

    def serve(self, extra: list[str]) -> None:
        """``meshbridge serve`` reconciling the lab's clusters (``lab.serve``)."""
        self.load()
        enter_netns(self.fabric.ctl)
        serve.start(self, extra)
        serve.wait_reconciled(self)
        control.wait_synced(self)

    def instance(self, spec: str) -> tuple[str, dict[str, Any]]:
        self.load()
        rec = self.state["pods"].get(spec)
        if rec is None or rec["kind"] != "app":
            known = ", ".join(k for k, r in sorted(self.state["pods"].items())
                              if r["kind"] == "app")
            raise LabError(f"no app instance {spec!r} in this lab (APP.NAMESPACE@CLUSTER; "
                           f"known: {known})")
        return spec, rec

    def stop(self, spec: str) -> None:
        pods.stop_stub(self, *self.instance(spec))

    def start(self, spec: str) -> None:
        pods.restart_stub(self, *self.instance(spec))

    def stop_proxy(self, spec: str) -> None:
        self.load()
        rec = self.state["pods"].get(spec)
        if rec is None or "proxy" not in rec.get("procs", {}):
            raise LabError(f"no proxy {spec!r} in this lab (known: {self._proxies()})")
        pods.stop_proxy(self, spec, rec)

    def stop_istiod(self, cluster: str) -> None:
        self.load()
        self._known_cluster(cluster)
        control.stop_istiod(self, cluster)

    def objects(self, cluster: str, action: str, files: list[str]) -> list[str]:
        """Apply (server-side, field manager ``mesh-lab-user``: a user's own objects, not
        meshbridge's) or delete the objects of YAML files in a lab cluster."""
        self.load()
        self._known_cluster(cluster)
        docs = [d for f in files for d in yaml.safe_load_all(Path(f).read_text()) if d]
        enter_netns(self.fabric.ctl)
        k = kube.Kube(self.kubeconfig(cluster))
        try:
            if action == "apply":
                return k.apply_any(docs, USER_FIELD_MANAGER)
            return k.delete_any(docs)
        finally:
            k.close()

    def token(self, cluster: str, account: str) -> str:
        """A token of ``NAMESPACE/NAME`` in a lab cluster (audience: the API server's)."""
        self.load()
        self._known_cluster(cluster)
        namespace, sep, name = account.partition("/")
        if not sep or not namespace or not name:
            raise LabError(f"{account!r}: expected NAMESPACE/SERVICEACCOUNT", status=2)
        enter_netns(self.fabric.ctl)
        k = kube.Kube(self.kubeconfig(cluster))
        try:
            return k.token(name, namespace, audience=None)
        finally:
            k.close()

    def _known_cluster(self, cluster: str) -> None:
        if cluster not in self.state["clusters"]:
            raise LabError(f"no cluster {cluster!r} in this lab "
                           f"(have {', '.join(self.state['clusters'])})")

    def _proxies(self) -> str:
        return ", ".join(k for k, r in sorted(self.state["pods"].items())
                         if "proxy" in r.get("procs", {}))

    def meshbridge_command(self, args: list[str], *,
                           server: bool = False) -> tuple[list[str], dict[str, str]]:
        """meshbridge with ``args`` in the lab's control-plane namespace, where its API servers
        and kubelets are reached, and its environment: on the lab's state store unless
        ``--state`` is given, or with ``server`` against the lab's ``meshbridge serve``."""
        self.load()
        if server:
            return net.in_netns(self.fabric.ctl, [serve.executable(), *args]), \
                serve.server_env(self)
        state = [] if "--state" in args or not args or args[0] in ("-h", "--help") \
            else self.mb_state()
        return (net.in_netns(self.fabric.ctl, [serve.executable(), *args, *state]),
                dict(os.environ))

    def client_command(self, args: list[str], key: str | None) -> list[str]:
        return traffic.client_command(self, args, key)

    def admin_command(self, spec: str, path: str) -> list[str]:
        """The admin interface of a proxy: an app instance's sidecar or a gateway."""
        self.load()
        rec = self.state["pods"].get(spec)
        if rec is None or "proxy" not in rec.get("procs", {}):
            raise LabError(f"no proxy {spec!r} in this lab (known: {self._proxies()})")
        return net.in_netns(self.fabric.ns(rec["netns"]), helper("admin", path))

    def node_port(self, cluster: str, port: int) -> tuple[str, int]:
        return traffic.node_port(self, cluster, port)

    def api_get(self, cluster: str, path: str) -> tuple[int, dict[str, Any]]:
        """GET ``path`` of ``cluster``'s API server as its admin (inside the lab's namespace)."""
        self.load()
        self._known_cluster(cluster)
        enter_netns(self.fabric.ctl)
        try:
            return recorded_api(self.path("testenv"), cluster).get_json(path)
        except TestenvError as e:
            raise LabError(str(e)) from None

    def down(self, quiet: bool = False) -> None:
        teardown.down(self, quiet)
