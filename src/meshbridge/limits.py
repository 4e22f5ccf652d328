"""How much input the one reader (``meshbridge.loading``) takes: every limit in one place.

Input arrives as files and stdin on the CLI, as request bodies and registered kubeconfigs on
the server. Whatever it holds, reading it must stay quick and small: a YAML alias bomb of a few
hundred bytes, a JSON body nested 100,000 deep, an integer of a million digits or a megabyte of
``[0,0,0,...`` are refused while they are read, with a message, never expanded, recursed into
or converted. The limits are far above what a mesh needs (the generated 1,000-cluster mesh of
``bench/`` is one 12 MB file of 81,001 documents and 1.6 million values) and are listed in docs/server.md, "Limits".

Kept apart from ``loading`` (which imports the models) so that the CLI can bound what it reads
from files and stdin before importing them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["BODY_BYTES_PER_VALUE", "FILES", "Limits", "MiB", "for_bodies"]

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """What one source (a file, stdin, a request body) may hold."""

    bytes: int
    """Its text, in bytes (a file or stdin is read no further; a body is refused with 413)."""
    nodes: int
    """Values in it (mappings, lists, scalars; an alias counts one), all documents together:
    what bounds the memory and time of reading it."""
    document_nodes: int = 100_000
    """Values in one YAML document, which is built whole before it is checked further (about
    40 MB for 100,000); a JSON text is one value, counted against ``nodes``."""
    documents: int = 100_000
    """Documents in it (``---``), empty ones included."""
    depth: int = 100
    """Mappings and lists nested in one another (an intent needs about 8)."""
    scalar: int = MiB
    """Characters of one value or key (a kubeconfig's CA bundle fits)."""
    int_digits: int = 100
    """Digits of one integer, whatever its base (Python's own limit is 4,300)."""
    alias_size: int = 100_000
    """What the aliases (``*name``) of one document stand for, counted as if written out:
    one per value plus one per character of a string. A few hundred repeated lists or
    mappings fit; an alias bomb is refused as it is read, never expanded."""


FILES = Limits(bytes=64 * MiB, nodes=5_000_000)
"""Files and stdin on the CLI: what a person chose to read."""


BODY_BYTES_PER_VALUE = 16
"""A body may hold one value per this many bytes of its limit: 524,288 under the default 8 MiB
(the generated 100-cluster mesh, 8,101 documents in 1.2 MB, holds about 160,000)."""


def for_bodies(max_bytes: int = 8 * MiB) -> Limits:
    """A server's request bodies and registered kubeconfigs: ``max_bytes`` (``--max-body-mib``),
    and values in proportion, so that a larger limit lets a larger mesh in. Reading a body at
    the default limits costs at most about 5 s of one core and 120 MB (500,000 empty mappings,
    the costliest value to build); the server answers other requests meanwhile."""
    return replace(FILES, bytes=max_bytes, nodes=max(1, max_bytes // BODY_BYTES_PER_VALUE))
