"""A cluster that ran Istio before meshbridge (``mesh-lab up --existing-istio CLUSTER``).

Such a cluster's istiod made a CA of its own when it was installed (no ``cacerts`` then), and its
workloads hold certificates from it. Its install is not meshbridge's either: the lab runs the
install ``istioctl`` makes of the cluster's rendered IstioOperator without the two settings
meshbridge adds so that roots can change under traffic (Istio's defaults: off), since a cluster
installed before meshbridge has neither:

* istiod's ``ISTIO_MULTIROOT_MESH`` (istiod loads and pushes a changed trust bundle);
* the proxies' ``PROXY_CONFIG_XDS_AGENT`` (pilot-agent takes that push).

With them, a restarted istiod would push its new roots to every proxy, which would fetch a new
certificate at once; without them, a workload keeps its certificate until it restarts (or renews
it, a day later by default): the case meshbridge's joining procedure is for (``docs/pki.md``).
"""

from __future__ import annotations

import dataclasses

import yaml

from ..istio import Install

MESHBRIDGE_ISTIOD_ENV = ("ISTIO_MULTIROOT_MESH",)
MESHBRIDGE_PROXY_METADATA = ("PROXY_CONFIG_XDS_AGENT",)


def before_meshbridge(install: Install) -> Install:
    """``install`` without the settings meshbridge's IstioOperator adds for root changes."""
    env = {k: v for k, v in install.istiod_env.items() if k not in MESHBRIDGE_ISTIOD_ENV}
    mesh = dict(install.mesh)
    config = dict(mesh.get("defaultConfig") or {})
    metadata = {k: v for k, v in (config.get("proxyMetadata") or {}).items()
                if k not in MESHBRIDGE_PROXY_METADATA}
    config["proxyMetadata"] = metadata
    mesh["defaultConfig"] = config
    config_map = {**install.mesh_config_map,
                  "data": {**install.mesh_config_map["data"],
                           "mesh": yaml.safe_dump(mesh, sort_keys=True)}}
    return dataclasses.replace(install, mesh=mesh, mesh_config_map=config_map, istiod_env=env)
