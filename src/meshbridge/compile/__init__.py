"""Compile: a validated snapshot of the intents -> every cluster's Kubernetes objects.

No I/O, no clock, no randomness, no environment: everything arrives as arguments. One module per
output concern (cross-cluster access, load balancing, failover, authorization, ingress, egress,
Istio install, certificate Secrets), each reading the snapshot's indexes; ``pipeline`` runs them.
"""

from __future__ import annotations

from meshbridge.compile.inputs import ClusterCA, Context, IngressCredential, Material, Placement
from meshbridge.compile.pipeline import Blueprint, blueprint, check, each_object, objects

__all__ = [
    "Blueprint",
    "ClusterCA",
    "Context",
    "IngressCredential",
    "Material",
    "Placement",
    "blueprint",
    "check",
    "each_object",
    "objects",
]
