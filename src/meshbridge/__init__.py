"""meshbridge: one Istio mesh across many Kubernetes clusters.

Users write intents (Mesh, Cluster, App, InboundIntent, ExternalService); meshbridge renders
every cluster's Istio objects, keeps VIPs and certificates in a state store, and (in later
layers) applies them and serves them over an API.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
