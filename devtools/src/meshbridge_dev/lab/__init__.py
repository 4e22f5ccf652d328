"""The mesh lab: meshbridge's rendered config checked against real Istio data planes.

Golden files prove that meshbridge writes the manifests it means to write; they cannot prove that
Istio does what those manifests mean. The mesh lab closes that gap without Kubernetes nodes: it
runs real istiod and real Envoy sidecars inside Linux network namespaces, one namespace per pod,
puts a stub workload (``programs.stub``) behind each sidecar and sends real requests from other
pods with ``programs.client``, so routing, load balancing, mTLS identities and egress are
observed on the wire rather than inferred from YAML.
"""
