"""Which host names are this machine: one rule for every part of meshbridge.

Two decisions rest on it: the CLI sends an API token over plain HTTP only to this machine
(``client``), and requests to an API server on this machine never go through a proxy from the
environment (``kube``, as kubectl does). Both take the stricter reading that kubectl's own
HTTP stack (Go's ``net/http``) takes: ``localhost`` itself, or a literal loopback address
(127.0.0.0/8, ``::1``). Names are never resolved to find out (no packet leaves), and
``*.localhost`` names are not trusted: whether they reach this machine depends on the resolver.
"""

from __future__ import annotations

import ipaddress

__all__ = ["is_loopback"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this machine
    by its own spelling."""
    name = host.strip("[]").lower().rstrip(".")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
