"""meshbridge's development tools: the code that tests meshbridge against real servers.

* ``meshbridge_dev.testenv``: real Kubernetes API servers (etcd, kube-apiserver, Istio's CRDs,
  istiod) built from pinned upstream Go modules; standard library only, since it runs before
  the project's virtualenv exists (``scripts/k8s-testenv``).
* ``meshbridge_dev.lab``: the mesh lab, which runs intents for real with istiod and Envoy
  proxies in network namespaces and sends requests through them (``scripts/mesh-lab``).

They are code like meshbridge's own: linted, type-checked strictly and tested
(``devtools/tests``), and installed editable next to meshbridge by ``scripts/venv``.
"""
