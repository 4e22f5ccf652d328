"""What ``mesh-lab`` does to a running lab besides ``up``, ``apply`` and ``down``: run
``meshbridge serve`` in it (``serve``), keep steady traffic flowing and count it (``steady``),
restart istiod or a namespace's sidecars as a rollout would (``restarts``), and read the
certificate a sidecar presents from Envoy (``certs``)."""
