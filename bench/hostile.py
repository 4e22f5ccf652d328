"""Hostile input against the CLI and `meshbridge serve` (issue 26): how long each input of the
catalogue (tests/support/hostile.py) takes to be refused, in how much memory, and how long
/healthz takes to answer while it is being refused.

The tests assert that each input is refused, by a CLI process limited to 300 MB of address
space, and that /healthz answers meanwhile; they assert no time. This prints the times:

- CLI: ``meshbridge validate -f FILE`` as a process (start-up included, ~0.6 s of it): wall
  time and peak resident memory, for each input (best of ``--rounds``).
- Server: a fresh `meshbridge serve` (SQLite, no PKI) on 127.0.0.1; for each input, a thread
  POSTs it to /api/v1/apply ``--rounds`` times while this process polls /healthz without
  pause: the time to the refusal (median) and the slowest /healthz answer seen meanwhile.
  Baseline for the latter: /healthz polled the same way with nothing else going on.

    .venv/bin/python bench/hostile.py [--rounds 3] [--only NAME]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))

from apitest import start_server  # noqa: E402
from hostile import HOSTILE, Hostile, run_limited  # noqa: E402

from meshbridge.server.tokens import create_token  # noqa: E402
from meshbridge.store import open_store  # noqa: E402


def cli_figures(hostile: Hostile, rounds: int, work: Path) -> tuple[float, float, int]:
    """Best wall time (s), peak RSS (MiB) of that run, and the exit code."""
    src = work / "mesh.yaml"
    src.write_bytes(hostile.text)
    runs = [run_limited(["validate", "-f", str(src)], cwd=work) for _ in range(rounds)]
    best = min(runs, key=lambda ran: ran.seconds)
    return best.seconds, best.max_rss_mib, best.code


def healthz_while(url: str, busy: threading.Thread | None, client: httpx.Client,
                  polls: int = 50) -> list[float]:
    """/healthz latencies (s), polled back to back while ``busy`` runs (or ``polls`` times)."""
    seen: list[float] = []
    while (busy is not None and busy.is_alive()) or (busy is None and len(seen) < polls):
        started = time.perf_counter()
        assert client.get(f"{url}/healthz").status_code == 200
        seen.append(time.perf_counter() - started)
    return seen


def server_figures(url: str, token: str, hostile: Hostile, rounds: int
                   ) -> tuple[float, float, set[int]]:
    """Median time to the refusal (s), slowest /healthz meanwhile (s), the statuses."""
    times: list[float] = []
    statuses: set[int] = set()

    def attack() -> None:
        with httpx.Client(timeout=120) as client:
            for _ in range(rounds):
                started = time.perf_counter()
                answer = client.post(f"{url}/api/v1/apply", content=hostile.text, headers={
                    "Authorization": f"Bearer {token}", "Content-Type": hostile.ctype})
                times.append(time.perf_counter() - started)
                statuses.add(answer.status_code)

    attacker = threading.Thread(target=attack)
    with httpx.Client(timeout=60) as client:
        attacker.start()
        health = healthz_while(url, attacker, client)
    attacker.join()
    return statistics.median(times), max(health), statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", action="append", choices=sorted(HOSTILE), default=None)
    args = parser.parse_args()
    chosen = [HOSTILE[name] for name in (args.only or sorted(HOSTILE))]
    width = max(len(h.name) for h in chosen)

    print(f"CLI: meshbridge validate -f FILE, best of {args.rounds} (RLIMIT_AS 300 MB)")
    print(f"{'input':<{width}}  {'bytes':>9}  {'exit':>4}  {'wall s':>6}  {'RSS MiB':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for hostile in chosen:
            seconds, rss, code = cli_figures(hostile, args.rounds, Path(tmp))
            print(f"{hostile.name:<{width}}  {len(hostile.text):>9,}  {code:>4}  "
                  f"{seconds:>6.2f}  {rss:>7.0f}")

        db = f"sqlite:///{Path(tmp) / 'server.db'}"
        store = open_store(db)
        token = create_token(store, "bench", "editor")
        store.close()
        server = start_server(db, Path(tmp) / "server.log", None, "--no-pki")
        try:
            with httpx.Client(timeout=60) as client:
                idle = healthz_while(server.url, None, client)
            print(f"\nServer: POST /api/v1/apply, {args.rounds} times each, /healthz polled "
                  f"meanwhile; idle /healthz: median {statistics.median(idle) * 1000:.1f} ms, "
                  f"slowest {max(idle) * 1000:.1f} ms")
            print(f"{'input':<{width}}  {'status':>7}  {'refused in s':>12}  "
                  f"{'slowest /healthz ms':>19}")
            for hostile in chosen:
                refused, slowest, statuses = server_figures(server.url, token, hostile,
                                                            args.rounds)
                shown = ",".join(map(str, sorted(statuses)))
                print(f"{hostile.name:<{width}}  {shown:>7}  {refused:>12.3f}  "
                      f"{slowest * 1000:>19.1f}")
            rss = Path(f"/proc/{server.process.pid}/status").read_text()
            peak = next(line.split()[1] for line in rss.splitlines() if line.startswith("VmHWM"))
            print(f"server peak RSS after all of them: {int(peak) / 1024:.0f} MiB")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
