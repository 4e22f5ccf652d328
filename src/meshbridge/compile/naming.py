"""Every generated name comes from here, so the scheme is written down once.

Names of generated objects are DNS-1123 subdomains built from DNS-1123 labels joined by ``.``:
since no label contains a dot, the joined name is unambiguous (``a-b`` + ``c`` never equals
``a`` + ``b-c``). A name longer than Kubernetes allows is cut and given a hash suffix of the full
name, so it stays unique and stable.

Gateways are the exception: Istio requires a Gateway's name to be a DNS-1123 *label* (no dots,
at most 63 characters), because routes refer to it as ``<namespace>/<name>``; its webhook and
``istioctl analyze`` (IST0106) reject anything else, though the CRD schema accepts it. A Gateway
name joins its parts with ``-`` instead (:func:`label`): ``httpbin-bar-cluster2``. Joined that way,
``a-b`` + ``c`` *would* equal ``a`` + ``b-c``, so when any part holds a ``-`` the name also gets a
hash of the parts (``my-svc-bar-cluster2-<hash>``); a name without it has exactly one ``-`` fewer
than it has parts, a name with it has more, so the two forms never meet. A label longer than 63
characters is cut and hashed like any name.

=====================================  =======================================================
object                                 name
=====================================  =======================================================
remote name of a service               ``<service>.<namespace>.<cluster>``
client ServiceEntry / DestinationRule  the remote name (in the client's namespace)
server Gateway                         the exported host's labels joined by ``-`` (a label, see
                                       above; in istio-system): ``<service>-<namespace>-<cluster>``
mesh-internal name (failover)          ``<service>.<namespace>.mesh.internal``
failover ServiceEntry / DR             the mesh-internal name (client's namespace; istio-system
                                       in the server clusters)
server ServiceEntry / DR               the remote name (in istio-system)
load-balancing VS / DR / ServiceEntry  ``<service>.<namespace>`` (in the client's namespace)
AuthorizationPolicy                    ``<intent>`` (ALLOW), ``<intent>-deny`` (DENY)
ingress Gateway / VirtualService       ``<intent>-ingress`` (a label; in the server's namespace)
ingress credential Secret              ``<host>-credential`` (in istio-system)
egress ServiceEntry                    ``<ExternalService name>``
IstioOperator                          ``meshbridge`` (in istio-system)
CA Secret                              ``cacerts`` (in istio-system)
=====================================  =======================================================
"""

from __future__ import annotations

import hashlib

MAX_NAME = 253
MAX_LABEL = 63


def shorten(name: str, limit: int) -> str:
    """``name`` if it fits in ``limit`` characters, else its head and a hash of all of it."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    head = name[: limit - len(digest) - 1].rstrip(".-")
    return f"{head}-{digest}"


def subdomain(*labels: str) -> str:
    """Join DNS labels into an object name, hashed to fit 253 characters."""
    return shorten(".".join(labels), MAX_NAME)


def label(*parts: str) -> str:
    """Join DNS labels into one label (a Gateway name), unambiguously; see the module docstring."""
    joined = "-".join(parts)
    if any("-" in part for part in parts):
        digest = hashlib.sha256(".".join(parts).encode()).hexdigest()[:10]
        joined = f"{joined}-{digest}"
    return shorten(joined, MAX_LABEL)


def gateway_name(host: str) -> str:
    """The AUTO_PASSTHROUGH Gateway exporting ``host`` (a remote or mesh-internal name)."""
    return label(*host.split("."))


def mesh_host(service: str, namespace: str) -> str:
    """A service's mesh-internal name: every cluster that runs it, for failover. Four labels,
    so it never equals a remote name (three); ``.internal`` is the top-level domain reserved
    for private use."""
    return f"{service}.{namespace}.mesh.internal"


def remote_host(service: str, namespace: str, cluster: str) -> str:
    return f"{service}.{namespace}.{cluster}"


def local_host(service: str, namespace: str) -> str:
    return f"{service}.{namespace}.svc.cluster.local"


def service_key(service: str, namespace: str) -> str:
    return subdomain(service, namespace)


def policy_name(intent: str, action: str) -> str:
    return intent if action == "ALLOW" else subdomain(f"{intent}-deny")


def ingress_name(intent: str) -> str:
    """The ingress Gateway and VirtualService of an intent: a label, as Gateways need."""
    return shorten(f"{intent}-ingress", MAX_LABEL)


def credential_name(host: str) -> str:
    return shorten(f"{host}-credential", MAX_NAME)


def port_name(protocol: str) -> str:
    """Istio port name for a protocol: the protocol in lower case (``tcp``, ``http``, ``grpc``)."""
    return protocol.lower()


ISTIO_OPERATOR_NAME = "meshbridge"
CACERTS_NAME = "cacerts"
ISTIO_SYSTEM = "istio-system"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "meshbridge"
OWNERS_ANNOTATION = "meshbridge.dev/owners"
