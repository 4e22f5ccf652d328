"""Restarts as ``kubectl rollout restart`` makes them: istiod, and a namespace's workloads.

A cluster that already ran Istio before meshbridge's ``cacerts`` reached it keeps its own CA
until istiod restarts (istiod picks its CA when it starts), and its workloads keep certificates
from that CA until they restart (``docs/pki.md``, "Joining clusters that already run Istio").
meshbridge says which restarts are needed and in which order; these are the lab's stand-ins for
them, as a cluster's Deployment controller and kubelet would carry them out:

* ``restart_istiod``: istiod stops and starts again with the same install, home and address
  (k8s-testenv ``istiod``), so it reads its CA anew from ``etc/cacerts``, and its validating
  webhook is registered again with the CA that signs its serving certificate now (istiod
  patches that itself in a cluster; the lab registers it, see testenv/istiod.py).
* ``restart_namespace``: every pod of the namespace gets a new sidecar: pilot-agent and Envoy
  stop and start again with the same environment, a new service-account token and a fresh
  working folder, so it asks istiod for a new certificate and reads the root istiod publishes.

Unlike a rolling restart, the pod keeps its address and its app, and is without a sidecar for
the second or two its proxy takes to start: a rollout's new pod would be ready before the old
one went. Neither matters to what a restart is for here, the CA a workload's certificate
comes from.
"""

from __future__ import annotations

import json
from pathlib import Path

from meshbridge_dev.testenv import stop_process

from .. import control, kube
from ..common import GATEWAY_NAME, GATEWAY_SERVICE_ACCOUNT, LabError, log
from ..pods import Pod, start_proxy, wait_ready
from ..state import LabState


def restart_istiod(lab: LabState, cluster: str) -> None:
    record = json.loads(lab.path("testenv", "k8s-testenv.json").read_text())
    istiod = (record["clusters"].get(cluster) or {}).get("istiod")
    if istiod is None:
        raise LabError(f"no istiod recorded for {cluster}")
    if not stop_process(istiod, f"{cluster} istiod", grace=15):
        raise LabError(f"{cluster}'s istiod survived SIGKILL")
    control.run_testenv(control.istiod_command(lab, [cluster]), "istiod")
    log(f"{cluster}: istiod restarted")


def namespace_pods(lab: LabState, cluster: str, namespace: str) -> list[tuple[str, Pod]]:
    pods = [(key, rec) for key, rec in sorted(lab.state["pods"].items())
            if rec["cluster"] == cluster and rec["namespace"] == namespace and "proxy" in rec]
    if not pods:
        have = sorted({r["namespace"] for r in lab.state["pods"].values()
                       if r["cluster"] == cluster and "proxy" in r})
        raise LabError(f"no pod with a sidecar in {namespace}@{cluster} "
                       f"(namespaces with some: {', '.join(have) or 'none'})")
    return pods


def restart_namespace(lab: LabState, cluster: str, namespace: str) -> None:
    pods = namespace_pods(lab, cluster, namespace)
    tools = {k: Path(v) for k, v in lab.state["tools"].items()}
    k = kube.Kube(lab.kubeconfig(cluster))
    try:
        for key, rec in pods:
            proc = rec["procs"].pop("proxy", None)
            if proc is not None and not stop_process(proc, f"{key} proxy", grace=10):
                raise LabError(f"{key}'s proxy survived SIGKILL")
            keep_log(lab, key)
            account = GATEWAY_SERVICE_ACCOUNT if rec["name"] == GATEWAY_NAME \
                else rec["service_account"]
            token = k.token(account, namespace)
            proxy = rec["proxy"]
            start_proxy(lab, key, rec, tools, proxy["env"], proxy["labels"], token,
                        proxy["args"])
    finally:
        k.close()
    wait_ready(lab)
    log(f"{namespace}@{cluster}: {len(pods)} sidecars restarted")


def keep_log(lab: LabState, key: str) -> None:
    """The stopped proxy's log, kept beside its pod's folder (a new one starts afresh)."""
    old = lab.pod_dir(key) / "proxy.log"
    if old.is_file():
        n = 1
        while lab.pod_file(key, f".proxy-{n}.log").exists():
            n += 1
        old.rename(lab.pod_file(key, f".proxy-{n}.log"))
