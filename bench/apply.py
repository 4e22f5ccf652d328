"""Apply a generated mesh to real API servers and compare with ``kubectl apply --server-side``.

Starts 2 x N clusters with scripts/k8s-testenv (N for meshbridge, N for kubectl, so both write
into empty clusters), renders a generated mesh of about ``--objects`` objects per cluster, and
prints, in one run:

- meshbridge first apply (empty clusters; it also creates the namespaces),
- meshbridge no-op re-apply (nothing changed: reads only; it takes the render the first apply
  kept in the state store),
- the same no-op re-apply with the intents file touched (a comment appended: the kept render no
  longer matches, so it parses and renders again; still no write), for comparison,
- ``kubectl apply --server-side -R -f <cluster dir>`` of the same rendered manifests, one kubectl
  per cluster, all clusters at once, with the namespaces added to its input (a file kubectl
  applies first): both tools start from empty clusters and create the same objects,

and the ratios. kubectl is built from the pinned k8s.io/kubernetes module
(``scripts/k8s-testenv build --kubectl``). IstioOperator files are left out of both: the test API
servers do not serve that kind (meshbridge reports it as skipped).

    .venv/bin/python bench/apply.py [--clusters 5 --objects 400]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.meshgen import generate  # noqa: E402

TESTENV = ROOT / "scripts" / "k8s-testenv"


def sh(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=True, text=True, capture_output=True, **kw)  # type: ignore[call-overload]


def meshbridge(*args: str, env: dict[str, str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one ``meshbridge`` command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([str(ROOT / ".venv" / "bin" / "meshbridge"), *args], env=env,
                          text=True, capture_output=True, check=False)
    elapsed = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"meshbridge {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=5)
    parser.add_argument("--objects", type=int, default=400, help="about this many per cluster")
    args = parser.parse_args()
    kubectl = ROOT / ".cache" / "testenv" / "bin" / "kubectl"
    sh(sys.executable, str(TESTENV), "build", "--kubectl")
    servers = max(1, args.objects * args.clusters // 7)

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        env_dir = tmp / "env"
        names = [f"mb{i}" for i in range(args.clusters)] + [f"kc{i}" for i in range(args.clusters)]
        print(f"starting {len(names)} API servers ...", file=sys.stderr)
        sh(sys.executable, str(TESTENV), "up", "--dir", str(env_dir), *names)
        try:
            docs = generate(clusters=args.clusters, servers=servers, clients=2)
            for d in docs:
                if d["kind"] == "Mesh":
                    d["spec"]["rootCA"] = {"keyAlgorithm": "ECDSA-P256"}
                if d["kind"] == "Cluster":
                    i = int(d["metadata"]["name"][1:])
                    d["spec"]["kubeconfig"] = {"path": str(env_dir / f"mb{i}.kubeconfig")}
            intents = tmp / "mesh.yaml"
            intents.write_text(yaml.safe_dump_all(docs))
            env = {**os.environ, "MESHBRIDGE_STATE": str(tmp / "state.db")}
            out = tmp / "out"
            # with the Secrets (cacerts), which meshbridge apply sends too: the same objects
            meshbridge("render", "-f", str(intents), "-o", str(out), "--include-secrets", env=env)
            for path in out.rglob("istiooperator.*.yaml"):
                path.unlink()
            counts = {c.name: sum(1 for _ in c.rglob("*.yaml")) for c in sorted(out.iterdir()) if c.is_dir()}
            total = sum(counts.values())
            print(f"clusters: {args.clusters}, objects applied: {total} "
                  f"(per cluster: {min(counts.values())}-{max(counts.values())})")

            # A cluster that has run for a while has its API caches filled; fresh ones answer
            # the first list of each kind with 429 for a second or so. Warm every cluster the
            # same way (untimed) so both tools meet clusters as users would.
            kinds = "secrets,serviceentries,destinationrules,gateways,virtualservices,authorizationpolicies,namespaces"

            def warm(name: str) -> None:
                cfg = str(env_dir / f"{name}.kubeconfig")
                for _ in range(30):
                    done = subprocess.run([str(kubectl), "--kubeconfig", cfg, "get", kinds, "-A"],
                                          capture_output=True, text=True, check=False)
                    if done.returncode == 0:
                        return
                    time.sleep(0.5)
                raise SystemExit(f"cluster {name} did not warm up: {done.stderr}")

            with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
                list(pool.map(warm, names))

            first, first_cpu = meshbridge("apply", "-f", str(intents), "--parallel", str(args.clusters), env=env)
            noop, _ = meshbridge("apply", "-f", str(intents), "--parallel", str(args.clusters), env=env)
            with intents.open("a") as f:  # same documents, other bytes: the kept render is not used
                f.write("# touched\n")
            rerender, _ = meshbridge("apply", "-f", str(intents), "--parallel", str(args.clusters),
                                     env=env)

            for i in range(args.clusters):  # kubectl needs the namespaces in its input
                folder = out / f"c{i:03d}"
                names = sorted(p.name for p in folder.iterdir() if p.is_dir())
                (folder / "00-namespaces.yaml").write_text(yaml.safe_dump_all(
                    [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in names]))

            def kubectl_timed(i: int) -> None:
                cfg = str(env_dir / f"kc{i}.kubeconfig")
                sh(str(kubectl), "--kubeconfig", cfg, "apply", "--server-side",
                   "--field-manager", "bench", "-R", "-f", str(out / f"c{i:03d}"))
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            with concurrent.futures.ThreadPoolExecutor(args.clusters) as pool:
                list(pool.map(kubectl_timed, range(args.clusters)))
            kubectl_s = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            kubectl_cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        finally:
            subprocess.run([sys.executable, str(TESTENV), "down", "--dir", str(env_dir)],
                           capture_output=True, check=False)

    print(f"meshbridge first apply: {first:.2f} s (CPU {first_cpu:.2f} s)")
    print(f"meshbridge no-op re-apply: {noop:.2f} s")
    print(f"meshbridge no-op re-apply, intents touched (parsed and rendered again): {rerender:.2f} s")
    print(f"kubectl apply --server-side (same manifests): {kubectl_s:.2f} s (CPU {kubectl_cpu:.2f} s)")
    print(f"ratio first apply / kubectl: {first / kubectl_s:.2f} (target <= 1.0)")
    print(f"ratio no-op re-apply / first apply: {noop / first:.2f} (target < 0.10)")


if __name__ == "__main__":
    main()
