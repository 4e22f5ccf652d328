"""The lab's stand-in for cluster DNS (kube-dns) and for the DNS of the world outside the mesh.

In a cluster, names the mesh does not know are answered by kube-dns (Services) or by the
resolvers behind it (everything else). Istio's agent in each sidecar answers mesh names itself
(DNS capture) and forwards the rest here; the ingress gateway, which has no DNS capture, asks
here directly (for instance to resolve the ``<service>.<namespace>.svc.cluster.local`` endpoint
of a server-side ServiceEntry).

One process serves every cluster of a lab, one address per cluster (each cluster's "kube-dns"):
a query is answered from the zone of the address it arrived on, then from the shared zone of
outside hosts (the ExternalService stand-ins). With no kube-proxy in the lab, a Service name is
answered with its ready pods' addresses, as for a headless Service. Unknown names get NXDOMAIN
at once. The records come from a JSON file the lab rewrites; it is re-read when it changes.

Run as ``python -m meshbridge_dev.lab.programs.dns --zones FILE --listen IP [--listen IP ...]``
(UDP and TCP 53).
The DNS protocol itself is dnslib's, a well-kept library; nothing here parses packets.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from dnslib import QTYPE, RCODE, RR, A
from dnslib.server import BaseResolver, DNSServer

TTL = 5


class Zones:
    """``{"shared": {name: [ip]}, "<listen address>": {name: [ip]}}``, re-read on change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mtime = -1.0
        self._data: dict[str, dict[str, list[str]]] = {}
        self._lock = threading.Lock()

    def lookup(self, listen: str, name: str) -> list[str] | None:
        with self._lock:
            try:
                mtime = self.path.stat().st_mtime
            except FileNotFoundError:
                mtime = -1.0
            if mtime != self._mtime:
                self._data = json.loads(self.path.read_text()) if mtime >= 0 else {}
                self._mtime = mtime
            key = name.rstrip(".").lower()
            for zone in (self._data.get(listen, {}), self._data.get("shared", {})):
                if key in zone:
                    return zone[key]
        return None


class Resolver(BaseResolver):  # type: ignore[misc]
    def __init__(self, zones: Zones, listen: str) -> None:
        self.zones = zones
        self.listen = listen

    def resolve(self, request: Any, handler: Any) -> Any:
        reply = request.reply()
        qname = request.q.qname
        addresses = self.zones.lookup(self.listen, str(qname))
        if addresses is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype in (QTYPE.A, QTYPE.ANY):
            for address in addresses:
                reply.add_answer(RR(qname, QTYPE.A, rdata=A(address), ttl=TTL))
        return reply  # AAAA and others: no records (NOERROR, empty): IPv4 only


class QuietLogger:
    """dnslib logs every packet by default; keep errors only."""

    def log_recv(self, *_: Any) -> None: ...
    def log_send(self, *_: Any) -> None: ...
    def log_request(self, *_: Any) -> None: ...
    def log_reply(self, *_: Any) -> None: ...
    def log_truncated(self, *_: Any) -> None: ...
    def log_data(self, *_: Any) -> None: ...

    def log_error(self, handler: Any, e: Any) -> None:
        print(f"dns: error from {handler.client_address}: {e}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m meshbridge_dev.lab.programs.dns",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--zones", required=True, type=Path)
    ap.add_argument("--listen", action="append", required=True)
    args = ap.parse_args(argv)
    zones = Zones(args.zones)
    servers = []
    for address in args.listen:
        for tcp in (False, True):
            server = DNSServer(Resolver(zones, address), address=address, port=53, tcp=tcp,
                               logger=QuietLogger())
            server.start_thread()
            servers.append(server)
    print(f"dns: serving on {', '.join(args.listen)}", file=sys.stderr, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    for server in servers:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
