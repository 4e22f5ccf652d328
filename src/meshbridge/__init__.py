"""meshbridge: one Istio mesh across many Kubernetes clusters.

Users write intents (Mesh, Cluster, App, InboundIntent, ExternalService); meshbridge renders
every cluster's Istio objects, keeps VIPs and certificates in a state store, applies them to
live clusters and serves them over an API. ``docs/architecture.md`` maps the packages.
"""

import logging

__version__ = "0.1.0"

# Every retry goes through stamina (kube's requests and clusters, the store's SQLite lock, the
# cluster leases), which logs each retry it schedules (logger "stamina", WARNING). The CLI
# configures no logging, so Python would print a bare "stamina.retry_scheduled" on stderr for
# each; the commands report attempts instead. A server that configures logging still sees them.
logging.getLogger("stamina").addHandler(logging.NullHandler())

__all__ = ["__version__"]
