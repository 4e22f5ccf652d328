"""Ask a proxy's Envoy what it holds, through its admin interface.

Envoy's admin interface listens on the pod's loopback (istio-proxy's port 15000), so this runs
inside the pod's network namespace (``mesh-lab admin`` starts it there) and prints the answer to
one GET: ``/stats?filter=rbac``, ``/certs``, ``/clusters``, ``/config_dump``...

Run as ``python -m meshbridge_dev.lab.programs.admin PATH``.
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request

ADMIN = "http://127.0.0.1:15000"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="admin", description=__doc__.split("\n\n")[0])
    ap.add_argument("path", help="the admin path, e.g. /stats?filter=rbac")
    args = ap.parse_args(argv)
    if not args.path.startswith("/"):
        print(f"admin: the path must start with /, not {args.path!r}", file=sys.stderr)
        return 2
    try:
        with urllib.request.urlopen(ADMIN + args.path, timeout=10) as answer:  # noqa: S310
            sys.stdout.buffer.write(answer.read())
    except (urllib.error.URLError, OSError) as e:
        print(f"admin: {ADMIN}{args.path}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
