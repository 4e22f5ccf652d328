"""The lab's network: Linux network namespaces on one bridge, nothing in the host's own namespace.

Why namespaces: a sidecar is only real if traffic is *captured* the way Istio captures it in a
pod (iptables REDIRECT to 15001/15006, DNS to the agent on 15053), with a pod IP istiod can map
to a Pod and an EndpointSlice. So every pod of the lab gets a network namespace of its own with
one interface, ``eth0``, wired by a veth pair to a bridge that lives in the lab's *fabric*
namespace. The control plane (etcd, the API servers, istiod) runs in the lab's *ctl* namespace,
on the same bridge. Every address is one the lab assigned inside namespaces it created, so a
packet never leaves the lab: the host's namespace holds no lab interface, route or rule, and
deleting the namespaces removes the whole network.

Addressing (one flat /16 per lab; separate labs have separate bridges, so they may reuse it):

==========================  ===========================================================
``10.88.0.2``               ctl: API servers on its loopback, istiod of cluster *i* on
                            ``10.88.0.(10+i)`` (Istio's standard ports)
``10.88.<i>.1``             cluster *i*'s node / ingress gateway (its NodePorts)
``10.88.<i>.<n>``, n >= 10  pods of cluster *i*
``10.88.200.<n>``           stand-ins for services outside the mesh (ExternalService)
``10.88.201.<i>``           ctl: cluster *i*'s kubelet stand-in (the Node's InternalIP, port
                            10250), which carries pods/portforward to istiod
``10.88.0.53``              the pods' nameserver: nothing listens there; the sidecar's agent
                            answers (Istio DNS capture) and ``/etc/hosts`` is the cluster DNS
==========================  ===========================================================

Names: namespaces are ``ml<lab id>-<role>``; the fabric's veth ends are ``v<n>``.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Sequence
from pathlib import Path

NETWORK = ipaddress.IPv4Network("10.88.0.0/16")
CTL_ADDRESS = "10.88.0.2"
NAMESERVER = "10.88.0.53"
EXTERNAL_SUBNET = 200
KUBELET_SUBNET = 201
KUBELET_PORT = 10250
MAX_CLUSTERS = 150


class NetError(Exception):
    """A network command failed; the message carries the command and its stderr."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS``; raise NetError with its stderr on failure."""
    proc = subprocess.run(
        ["ip", *args], capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False
    )
    if check and proc.returncode != 0:
        raise NetError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def istiod_address(index: int) -> str:
    return f"10.88.0.{10 + index}"


def kubelet_address(index: int) -> str:
    """Where cluster ``index``'s kubelet stand-in listens (the ctl namespace; the Node's
    InternalIP)."""
    return f"10.88.{KUBELET_SUBNET}.{index}"


def node_address(index: int) -> str:
    return f"10.88.{index}.1"


def pod_address(index: int, n: int) -> str:
    return f"10.88.{index}.{n}"


def external_address(n: int) -> str:
    return f"10.88.{EXTERNAL_SUBNET}.{n}"


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def list_lab_namespaces(lab_id: str) -> list[str]:
    prefix = f"ml{lab_id}-"
    run = Path("/run/netns")
    return sorted(p.name for p in run.iterdir() if p.name.startswith(prefix)) if run.is_dir() else []


class Fabric:
    """The namespaces of one lab, and the bridge that joins them."""

    def __init__(self, lab_id: str) -> None:
        self.lab_id = lab_id

    def ns(self, role: str) -> str:
        return f"ml{self.lab_id}-{role}"

    @property
    def fabric(self) -> str:
        return self.ns("fabric")

    @property
    def ctl(self) -> str:
        return self.ns("ctl")

    def create(self) -> None:
        """The fabric namespace with its bridge, and the ctl namespace on it."""
        if not netns_exists(self.fabric):
            ip("netns", "add", self.fabric)
            ip("-n", self.fabric, "link", "set", "lo", "up")
            ip("-n", self.fabric, "link", "add", "br0", "type", "bridge")
            ip("-n", self.fabric, "link", "set", "br0", "up")
        self.attach("ctl", 0, [CTL_ADDRESS], default_route=False)

    def attach(
        self, role: str, port: int, addresses: Sequence[str], *, default_route: bool = True
    ) -> str:
        """Create namespace ``role`` (if new) with ``eth0`` on the bridge holding ``addresses``.

        ``port`` numbers the veth end in the fabric (``v<port>``): unique within the lab.
        Pods get a default route through ``eth0`` so that connections to VIPs (addresses no
        host has) reach the iptables rules that hand them to the sidecar.
        """
        name = self.ns(role)
        if netns_exists(name):
            return name
        ip("netns", "add", name)
        ip("-n", name, "link", "set", "lo", "up")
        veth = f"v{port}"
        ip("-n", self.fabric, "link", "add", veth, "type", "veth", "peer", "name", "eth0",
           "netns", name)
        ip("-n", self.fabric, "link", "set", veth, "master", "br0", "up")
        for address in addresses:
            ip("-n", name, "addr", "add", f"{address}/{NETWORK.prefixlen}", "dev", "eth0")
        ip("-n", name, "link", "set", "eth0", "up")
        if default_route:
            ip("-n", name, "route", "add", "default", "dev", "eth0")
        return name

    def add_address(self, role: str, address: str) -> None:
        ip("-n", self.ns(role), "addr", "replace", f"{address}/{NETWORK.prefixlen}", "dev", "eth0")

    def detach(self, role: str) -> None:
        """Delete one namespace (its veth pair goes with it)."""
        name = self.ns(role)
        if netns_exists(name):
            ip("netns", "delete", name)

    def destroy(self) -> list[str]:
        """Delete every namespace of the lab; returns the ones that could not be deleted."""
        failed = []
        for name in list_lab_namespaces(self.lab_id):
            if ip("netns", "delete", name, check=False).returncode != 0:
                failed.append(name)
        return failed


def in_netns(
    netns: str,
    argv: Sequence[str],
    *,
    hosts: Path | None = None,
    resolv: Path | None = None,
    cwd: Path | None = None,
    uid: int | None = None,
) -> list[str]:
    """A command line that runs ``argv`` in ``netns``, as a process in a pod would run.

    ``ip netns exec`` gives the process a mount namespace of its own; in it, the pod's
    ``/etc/hosts`` and ``/etc/resolv.conf`` are bind-mounted over the host's (the cluster-DNS
    stand-in), so nothing outside the lab's folder is written. ``uid`` drops privileges the
    way a container's ``runAsUser`` does (the sidecar runs as 1337, which the capture rules
    exempt).
    """
    script = ["set -e"]
    args: list[str] = []
    for path, target in ((hosts, "/etc/hosts"), (resolv, "/etc/resolv.conf")):
        if path is not None:
            script.append(f'mount --bind "$1" {target}; shift')
            args.append(str(path))
    if cwd is not None:
        script.append('cd "$1"; shift')
        args.append(str(cwd))
    script.append('exec "$@"')
    prefix: list[str] = []
    if uid is not None:
        prefix = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    return ["ip", "netns", "exec", netns, "sh", "-c", "; ".join(script), "sh", *args, *prefix,
            *argv]


def dns_address(index: int) -> str:
    """Cluster ``index``'s DNS stand-in (its "kube-dns"), on the ctl namespace."""
    return f"10.88.0.{100 + index}"


# A host outside the mesh that no intent declares: requests to it show REGISTRY_ONLY at work.
OUTSIDE_ADDRESS = "10.88.200.254"
