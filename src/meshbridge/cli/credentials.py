"""``meshbridge credential add|list|delete``: cluster credentials on a meshbridge server (admin).

A server reads no kubeconfig file: an admin registers each cluster's credentials and the
Cluster documents name them (``spec.kubeconfig.credential``). ``add`` reads the admin's own
kubeconfig here, on the admin's machine, and sends it whole: files it names
(``certificate-authority``, ``client-certificate``, ``client-key``, ``tokenFile``; relative to
the kubeconfig) are read and inlined, and ``--context`` keeps one context with its cluster and
user. The server refuses what it cannot use without files or programs (``exec``,
``auth-provider``). Nothing secret is printed, and the server never answers it back.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated, Any

import typer

from meshbridge.cli.common import err_console, errors_mapped, out_console
from meshbridge.cli.helplayout import Command, Group
from meshbridge.cli.remote import Remote, ServerCAOption, ServerOption, TokenOption
from meshbridge.errors import InvalidInput, Problem, UnreadableFile
from meshbridge.excerpt import escaped, quoted

__all__ = ["app", "flatten_kubeconfig"]

app = typer.Typer(
    cls=Group,
    name="credential",
    help="Cluster credentials on a meshbridge server (admin): what Clusters' "
    "spec.kubeconfig.credential names.",
    no_args_is_help=True,
)

_INLINE = {  # a field naming a file -> the field holding its content, and how
    "certificate-authority": ("certificate-authority-data", "base64"),
    "client-certificate": ("client-certificate-data", "base64"),
    "client-key": ("client-key-data", "base64"),
    "tokenFile": ("token", "text"),
}


def _remote(server: str | None, token: str | None, server_ca: Path | None) -> Remote:
    if not server:
        err_console.print(
            "error: credentials live on a meshbridge server: pass --server URL (or set "
            "MESHBRIDGE_SERVER)",
            style="red",
            markup=False,
        )
        raise typer.Exit(2)
    return Remote(server, token, server_ca)


def _read_file(path: Path, what: str) -> bytes:
    """The file's bytes, read no further than a file's limit (``/dev/zero`` ends too)."""
    from meshbridge.limits import FILES

    try:
        with path.open("rb") as file:
            data = file.read(FILES.bytes + 1)
    except OSError as exc:
        raise UnreadableFile(f"cannot read {what} {escaped(str(path))}: {exc.strerror}") from None
    except ValueError:  # a NUL in the name
        raise UnreadableFile(f"cannot read {what} {escaped(str(path))}: not a file name") from None
    if len(data) > FILES.bytes:
        raise UnreadableFile(f"{what} {escaped(str(path))} is larger than {FILES.bytes:,} bytes")
    return data


def flatten_kubeconfig(
    config: dict[str, Any], base: Path, context: str | None = None
) -> dict[str, Any]:
    """``config`` with every file it names read (relative to ``base``) and inlined; with
    ``context``, only that context, its cluster and user, and it as the current context."""
    out = dict(config)
    for section, inner in (("clusters", "cluster"), ("users", "user")):
        if not isinstance(out.get(section), list):
            continue  # absent, or not a list: the server says so
        items = []
        for item in out[section]:
            if not isinstance(item, dict) or not isinstance(item.get(inner), dict):
                items.append(item)
                continue
            fields = dict(item[inner])
            for key, (target, how) in _INLINE.items():
                if key in fields and isinstance(fields[key], str):
                    path = base / Path(fields.pop(key)).expanduser()
                    data = _read_file(path, f"{section[:-1]} {quoted(item.get('name'))}'s {key}")
                    fields[target] = (
                        base64.b64encode(data).decode("ascii")
                        if how == "base64"
                        else data.decode("utf-8", "replace").strip()
                    )
            items.append({**item, inner: fields})
        out[section] = items
    if context is not None:
        contexts = [c for c in _items(out, "contexts") if c.get("name") == context]
        if not contexts:
            raise UnreadableFile(f"the kubeconfig has no context {quoted(context)}")
        chosen = contexts[0].get("context")
        chosen = chosen if isinstance(chosen, dict) else {}
        out["contexts"] = contexts
        out["clusters"] = [c for c in _items(out, "clusters") if c.get("name") == chosen.get("cluster")]
        out["users"] = [u for u in _items(out, "users") if u.get("name") == chosen.get("user")]
        out["current-context"] = context
    return out


def _items(config: dict[str, Any], section: str) -> list[dict[str, Any]]:
    """The entries of a section that are mappings (the server names what else is wrong)."""
    found = config.get(section)
    return [item for item in found if isinstance(item, dict)] if isinstance(found, list) else []


def _load(path: Path) -> dict[str, Any]:
    """The admin's kubeconfig, read by the one reader (meshbridge.loading) with a file's
    limits; InvalidInput (exit 2) naming the line, never its content."""
    from meshbridge.limits import FILES
    from meshbridge.loading import parse_config

    data = parse_config(_read_file(path.expanduser(), "the kubeconfig"), str(path), FILES)
    if not isinstance(data, dict):
        raise InvalidInput([Problem(str(path), 1, "", "", "", "a kubeconfig is a mapping")])
    return data


def _named_by_file(exc: InvalidInput, path: Path) -> InvalidInput:
    """The server's problems, located in the admin's file rather than in the request."""
    return InvalidInput(
        Problem(str(path), 1, p.kind, p.name, p.path, p.message) for p in exc.problems
    )


@app.command("add", cls=Command)
def add(
    name: Annotated[str, typer.Argument(help="The credential's name (a DNS label).")],
    kubeconfig: Annotated[
        Path,
        typer.Option("--kubeconfig", metavar="FILE", help="The kubeconfig to register.",
                     show_default=False),
    ],
    context: Annotated[
        str | None,
        typer.Option("--context", metavar="CTX",
                     help="Register only this context (with its cluster and user)."),
    ] = None,
    server: ServerOption = None,
    token: TokenOption = None,
    server_ca: ServerCAOption = None,
) -> None:
    """Register (or replace) a cluster credential on the server, from a kubeconfig.

    Files the kubeconfig names are read here and sent inline; the server seals the whole under
    its state key. Clusters then name it: spec.kubeconfig: {credential: NAME, context: CTX}.
    """
    remote = _remote(server, token, server_ca)
    with errors_mapped():
        config = flatten_kubeconfig(_load(kubeconfig), kubeconfig.expanduser().parent, context)
        try:
            with remote.client() as client:
                info, created = client.put_credential(name, config)
        except InvalidInput as exc:
            raise _named_by_file(exc, kubeconfig) from None
    contexts = ", ".join(c.get("name", "") for c in info.contexts)
    out_console.print(
        f"credential {name} {'registered' if created else 'replaced'} (contexts: {contexts})",
        markup=False,
    )


@app.command("list", cls=Command)
def list_(
    server: ServerOption = None,
    token: TokenOption = None,
    server_ca: ServerCAOption = None,
) -> None:
    """List the server's credentials: contexts, API servers, how they authenticate.

    Never a key, certificate or token: the server does not answer them back.
    """
    remote = _remote(server, token, server_ca)
    with errors_mapped(), remote.client() as client:
        items = client.credentials()
    if not items:
        err_console.print("no credentials registered", markup=False)
        return
    rows = [("NAME", "CONTEXT", "SERVER", "AUTH", "UPDATED", "BY")]
    for item in items:
        for ctx in item.contexts or [{}]:
            current = "*" if ctx.get("name") == item.current_context else ""
            rows.append((item.name, current + str(ctx.get("name", "")),
                         str(ctx.get("server", "")), str(ctx.get("auth", "")),
                         item.updated, item.updated_by))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        line = "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
        out_console.print(line, markup=False, highlight=False)


@app.command("delete", cls=Command)
def delete(
    name: Annotated[str, typer.Argument(help="The credential's name.")],
    server: ServerOption = None,
    token: TokenOption = None,
    server_ca: ServerCAOption = None,
) -> None:
    """Delete a credential (refused, exit 1, while a Cluster names it)."""
    remote = _remote(server, token, server_ca)
    with errors_mapped(), remote.client() as client:
        client.delete_credential(name)
    out_console.print(f"credential {name} deleted", markup=False)
