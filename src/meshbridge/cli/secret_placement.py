"""Where ``render`` puts the Secrets that hold a private key: its two options, their checks and
the summary line, the same for a local render and ``render --server``.

``render -o DIR`` writes a tree meant for Git, and Git keeps no file modes, so the ``cacerts``
Secrets (each cluster's intermediate CA key) and the ingress credentials (``tls.key``) are left
out of it unless ``--secrets-dir DIR2`` (a tree of their own, 0700/0600) or ``--include-secrets``
(into DIR, 0600) says otherwise. ``apply`` sends them to clusters directly either way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from meshbridge.cli.common import err_console, out_console
from meshbridge.plural import count

if TYPE_CHECKING:
    from meshbridge.output.writer import KeyPlacement, Written

__all__ = ["IncludeSecretsOption", "SecretsDirOption", "describe", "placement", "report"]

SecretsDirOption = Annotated[
    Path | None,
    typer.Option(
        "--secrets-dir",
        metavar="DIR2",
        help="Write the Secrets that hold a private key (cacerts, ingress credentials) to this "
        "separate directory (same layout; directories 0700, files 0600; replaced whole like "
        "-o), outside the output directory. Without it or --include-secrets they are left out.",
        show_default=False,
    ),
]
IncludeSecretsOption = Annotated[
    bool,
    typer.Option(
        "--include-secrets",
        help="Write the Secrets that hold a private key into the output directory (mode 0600). "
        "Git keeps no file modes: a clone of a tree that holds them lets anyone read the keys.",
    ),
]


def placement(output: Path, secrets_dir: Path | None, include: bool) -> KeyPlacement:
    """The placement asked for; exit 2 before anything is read or written when the options
    clash (both given, or directories that nest)."""
    from meshbridge.output.writer import KeyPlacement, placement_problem

    chosen = KeyPlacement(secrets_dir, include)
    problem = placement_problem(output, chosen)
    if problem is not None:
        err_console.print(f"error: {problem}; nothing was written", style="red", markup=False)
        raise typer.Exit(2)
    return chosen


def describe(holders: Iterable[str]) -> str:
    """``3 Secrets holding private keys (cacerts in 2 clusters, 1 ingress credential)``."""
    from meshbridge.output.emitter import CACERTS, INGRESS_CREDENTIAL, OTHER_HOLDER

    counts = Counter(holders)
    parts = []
    if counts[CACERTS]:
        parts.append(f"cacerts in {count(counts[CACERTS], 'cluster')}")
    if counts[INGRESS_CREDENTIAL]:
        parts.append(
            count(counts[INGRESS_CREDENTIAL], "ingress credential")
        )
    if counts[OTHER_HOLDER]:
        parts.append(count(counts[OTHER_HOLDER], "other Secret"))
    total = sum(counts.values())
    what = count(total, "Secret holding a private key", "Secrets holding private keys")
    return f"{what} ({', '.join(parts)})"


def report(written: Written) -> None:
    """One line on where the Secrets holding private keys went (nothing when there are none)."""
    if not written.keys:
        return
    what = describe(written.keys.values())
    if written.keys_to is None:
        line = (
            f"left out {what}: not for a Git tree; use --secrets-dir DIR2 or --include-secrets "
            "to write them (apply sends them to clusters directly)"
        )
    elif written.keys_to == written.output:
        line = (
            f"{what} written among them (mode 0600): Git keeps no file modes, so do not commit "
            "them"
        )
    else:  # a result: stdout, as the files written are
        done = (
            f"{written.keys_to} already holds {what}"
            if written.keys_to in written.unchanged
            else f"wrote {what} to {written.keys_to}"
        )
        out_console.print(f"{done} (files 0600): keep it out of Git", markup=False)
        return
    err_console.print(line, markup=False)  # advice, not a result: stderr
