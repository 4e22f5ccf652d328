"""Compile: a validated snapshot of the intents -> every cluster's Kubernetes objects.

No I/O, no clock, no randomness, no environment: everything arrives as arguments. One module per
output concern (cross-cluster access, load balancing, authorization, ingress, egress, Istio
install, secrets), each reading the snapshot's indexes.

The names below load on first use: a store needs ``compile.viprecord`` alone, and importing the
package must not import the models for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshbridge.lazy import attributes

if TYPE_CHECKING:
    from meshbridge.compile.inputs import ClusterCA, Context, IngressCredential, Material
    from meshbridge.compile.render import Plan, check, objects, plan
    from meshbridge.compile.viprecord import VipRecord

_HOMES = {
    "ClusterCA": "meshbridge.compile.inputs",
    "Context": "meshbridge.compile.inputs",
    "IngressCredential": "meshbridge.compile.inputs",
    "Material": "meshbridge.compile.inputs",
    "Plan": "meshbridge.compile.render",
    "check": "meshbridge.compile.render",
    "objects": "meshbridge.compile.render",
    "plan": "meshbridge.compile.render",
    "VipRecord": "meshbridge.compile.viprecord",
}

__all__ = [
    "ClusterCA",
    "Context",
    "IngressCredential",
    "Material",
    "Plan",
    "VipRecord",
    "check",
    "objects",
    "plan",
]


__getattr__ = attributes(__name__, _HOMES)
