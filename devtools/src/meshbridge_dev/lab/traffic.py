"""Where traffic goes in the lab: the intents rewritten to lab addresses, the stand-ins for
services outside the mesh, the DNS zones, and the commands that send requests.

A packet never goes to an address written in the intents: a Cluster's gateway address becomes
its node address in the lab, ExternalService endpoints become stand-in hosts at lab addresses,
and every request is sent from inside a network namespace the lab created.
"""

from __future__ import annotations

import json
import os

import yaml

from . import net
from .common import OUTSIDE_HOST, LabError, helper
from .scenario.plan import Plan, rewrite
from .state import LabState


def assign_externals(lab: LabState, plan: Plan) -> None:
    """Stand-in addresses for every ExternalService endpoint (kept across apply)."""
    externals = lab.state.setdefault("externals", {})
    used = {a for e in externals.values() for a in e["addresses"]}
    n = 1
    for key, ext in plan.externals.items():
        have = externals.get(key, {}).get("addresses", [])
        while len(have) < ext.endpoints:
            while net.external_address(n) in used:
                n += 1
            have.append(net.external_address(n))
            used.add(net.external_address(n))
        externals[key] = {"addresses": have, "hosts": list(ext.hosts)}
    lab.save()


def write_intents(lab: LabState, plan: Plan) -> None:
    """``DIR/intents.yaml``: the input with every address outside the lab replaced."""
    nodes = {c: v["node"] for c, v in lab.state["clusters"].items()}
    kubeconfigs = {c: lab.kubeconfig(c) for c in lab.state["clusters"]}
    addresses = {k: v["addresses"] for k, v in lab.state["externals"].items()}
    docs = rewrite(plan.docs, nodes, kubeconfigs, addresses)
    text = ("# Written by scripts/mesh-lab: the input intents with every address outside "
            "the lab replaced by a lab address.\n")
    text += yaml.safe_dump_all(docs, sort_keys=False)
    lab.path("intents.yaml").write_text(text)


def write_zones(lab: LabState) -> None:
    """The DNS stand-in's records: per cluster its app Services (their pods' addresses), and
    the shared zone of hosts outside the mesh. The DNS process re-reads the file."""
    zones: dict[str, dict[str, list[str]]] = {"shared": {}}
    for ext in lab.state.get("externals", {}).values():
        for host in ext["hosts"]:
            zones["shared"][host] = ext["addresses"][:1]
    zones["shared"][OUTSIDE_HOST] = [net.OUTSIDE_ADDRESS]
    for cluster, info in lab.state["clusters"].items():
        zone: dict[str, list[str]] = {}
        for rec in lab.state["pods"].values():
            if rec["cluster"] != cluster or rec["kind"] != "app":
                continue
            for _, _, service_name in rec.get("ports", []):
                name = f"{service_name}.{rec['namespace']}.svc.cluster.local"
                zone.setdefault(name, [])
                if rec["address"] not in zone[name]:
                    zone[name].append(rec["address"])
        zones[info["dns"]] = {n: sorted(a) for n, a in sorted(zone.items())}
    tmp = lab.path("dns.json.tmp")
    tmp.write_text(json.dumps(zones, indent=1, sort_keys=True))
    os.replace(tmp, lab.path("dns.json"))


def client_command(lab: LabState, args: list[str], key: str | None) -> list[str]:
    """The lab client, in an app's pod (as that app) or, with no key, outside the mesh."""
    lab.load()
    cmd = helper("client", *args)
    if key is None:
        resolv = lab.path("outside.resolv.conf")
        first = next(iter(lab.state["clusters"].values()))
        resolv.write_text(f"nameserver {first['dns']}\n")  # the shared zone: outside hosts
        return net.in_netns(lab.fabric.ctl, cmd, resolv=resolv)
    rec = lab.state["pods"][key]
    root = lab.pod_dir(key)
    return net.in_netns(lab.fabric.ns(rec["netns"]), cmd, hosts=root / "hosts",
                        resolv=root / "resolv.conf")


def node_port(lab: LabState, cluster: str, port: int) -> tuple[str, int]:
    """Where a caller outside the mesh reaches ``cluster``'s gateway Service port ``port``."""
    lab.load()
    info = lab.state["clusters"].get(cluster)
    if info is None:
        raise LabError(f"no cluster {cluster!r} in this lab "
                       f"(have {', '.join(lab.state['clusters'])})")
    entry = info.get("node_ports", {}).get(str(port))
    if entry is None or not entry.get("node_port"):
        raise LabError(f"{cluster}'s ingress gateway Service has no port {port}")
    return info["node"], int(entry["node_port"])


def lab_ca_args(lab: LabState) -> list[str]:
    """Stand-ins (outside hosts, apps on TLS ports) present certificates of the lab's CA."""
    lab_ca = lab.path("lab-ca", "ca.pem")
    return ["--cacert", str(lab_ca)] if lab_ca.is_file() else []
