"""Instances of discovered Apps, deployed and undeployed by hand, as a team does in a cluster.

An App with ``discover: {}`` runs where meshbridge finds it running, so the lab does not place
it from the intents: it runs the instances it is told to (``up --deploy``, ``deploy``), each a
pod with its sidecar, and the Service and EndpointSlice that make it found (``pods``,
``services``). ``undeploy`` removes the pod, and the Service with its last instance. Whatever
applies the intents (``meshbridge apply``, or a ``meshbridge serve`` watching the lab's
clusters: ``serve``) then finds the App where it now runs.
"""

from __future__ import annotations

from ..common import LabError
from .plan import Plan, instance_key


def checked(plan: Plan, deployed: list[str]) -> list[str]:
    """``deployed`` (APP.NAMESPACE@CLUSTER each), sorted; LabError (status 2) naming an entry
    that is not an App with ``discover: {}`` of the intents in one of their clusters."""
    for spec in deployed:
        try:
            namespace, app, cluster = instance_key(spec)
        except ValueError as e:
            raise LabError(str(e), status=2) from None
        if (namespace, app) not in plan.discovered:
            raise LabError(f"{spec}: no App {namespace}/{app} with discover: {{}} in the intents "
                           "(an App the intents place runs where they say)", status=2)
        if cluster not in plan.clusters:
            raise LabError(f"{spec}: no cluster {cluster!r} in this lab "
                           f"(have {', '.join(plan.clusters)})", status=2)
    return sorted(set(deployed))


def changed(deployed: list[str], spec: str, present: bool) -> list[str] | None:
    """The deployed instances once ``spec`` is (``present``) or is not deployed; None when
    that changes nothing."""
    now = set(deployed)
    if (spec in now) == present:
        return None
    return sorted(now | {spec}) if present else sorted(now - {spec})
