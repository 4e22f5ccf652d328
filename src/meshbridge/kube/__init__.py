"""The only package that talks to Kubernetes: apply, prune, drift, discovery, in apply order.

Everything else hands it plain objects (dicts) and gets plain reports back; lightkube types and
errors stay inside.
"""

from meshbridge.kube.cacerts import LiveCacerts, read_cacerts
from meshbridge.kube.discovery import GatewayAddress, discover_gateway
from meshbridge.kube.fleet import (
    ClusterAccess,
    ClusterReport,
    MeshRef,
    ReconcileOptions,
    reconcile_all,
)
from meshbridge.kube.steps import Change, ChangeSet

__all__ = [
    "Change",
    "ChangeSet",
    "ClusterAccess",
    "ClusterReport",
    "GatewayAddress",
    "LiveCacerts",
    "MeshRef",
    "ReconcileOptions",
    "discover_gateway",
    "read_cacerts",
    "reconcile_all",
]
