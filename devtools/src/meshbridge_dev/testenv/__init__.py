"""k8s-testenv: real Kubernetes API servers, with Istio's CRDs and istiod, for meshbridge's tests.

Why this exists
---------------
meshbridge renders Istio config and applies it to many live clusters. A hand-written imitation
of the Kubernetes API would only test our idea of Kubernetes, not Kubernetes: server-side apply,
field managers, CRD schema validation (Istio's OpenAPI schemas and CEL rules), discovery and
RBAC are all implemented by the real kube-apiserver. So, like controller projects do with
envtest, the tests run against real API servers:

* kube-apiserver is built with ``go build`` from the upstream ``k8s.io/kubernetes`` module at the
  release pinned in ``devtools/pins/kubernetes/go.mod`` (with its ``go.sum`` committed), into a
  git-ignored cache, and rebuilt only when that pin changes;
* etcd is built the same way from the upstream ``go.etcd.io/etcd/server/v3`` module pinned in
  ``devtools/pins/etcd/go.mod`` (Debian 12's etcd-server package, 3.4.23, is older than the
  pinned Kubernetes release supports);
* Istio's CRDs are read at run time from the upstream ``istio.io/api`` Go module at the version
  pinned in ``build.py`` (checked against its pinned module checksum) and installed into every
  API server by ``up``;
* istioctl, istiod (pilot-discovery) and pilot-agent are built from ``istio.io/istio`` pinned in
  ``devtools/pins/istio/go.mod``.

No third-party source or binary is committed; everything is fetched through the Go module proxy
by the ordinary ``go`` client.

The parts: ``build`` (pins and builds), ``certs`` (openssl), ``procs`` (processes and ports),
``cluster`` (etcd, kube-apiserver, CRDs, state file, kubeconfig), ``istiod`` (istiod and its
webhook), ``cli`` (the commands).

This package uses only the Python 3.11 standard library (it has to run before the project's
virtualenv exists: ``scripts/k8s-testenv`` runs it with the system's python3) plus ``go`` and
``openssl``; ``devtools/tests/test_testenv_stdlib.py`` holds it to that.
"""

from .build import build_all
from .cli import main
from .cluster import recorded_api
from .common import Record, TestenvError
from .procs import is_ours, log_tail, proc_start_time, spawn, stop_process

__all__ = [
    "Record",
    "TestenvError",
    "build_all",
    "is_ours",
    "log_tail",
    "main",
    "proc_start_time",
    "recorded_api",
    "spawn",
    "stop_process",
]
