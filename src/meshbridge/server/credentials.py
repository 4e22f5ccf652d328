"""Cluster credentials on the server: registered by admins, sealed in the store, named by
Clusters.

A server must not read files its callers choose. So a Cluster stored on the server does not
name a kubeconfig file (``spec.kubeconfig.path`` is refused on write, and ignored if an older
server stored one: :func:`path_problems`, :func:`cluster_targets`); it names a credential
(``spec.kubeconfig.credential``) that an admin registered through the API. A credential is a
kubeconfig that carries everything itself — server URL, CA and client certificate as ``*-data``,
or a token — checked on registration (:func:`check_kubeconfig`): a field that names a file on
the server (``certificate-authority``, ``client-key``, ``tokenFile``) or runs a program there
(``exec``, ``auth-provider``) is refused, with the field's path and never its value.

Stored as one blob per credential (kind ``cluster.credential``): a public header (contexts,
cluster server URLs, who registered it and when) that the list answers from, and the kubeconfig
sealed under the state key with the row's identity as associated data
(:mod:`meshbridge.pki.sealing`), like the PKI's private keys. No answer, log line or error ever
holds a credential's secrets; registrations and deletions are audited (kind ``Credential``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from meshbridge.errors import Conflict, InvalidInput, NotFound, Problem, SealingError
from meshbridge.excerpt import escaped, quoted
from meshbridge.kube import ClusterAccess
from meshbridge.limits import Limits
from meshbridge.loading import BODIES, parse_config
from meshbridge.pki.sealing import Sealer, row_aad
from meshbridge.server.tokens import utc_now
from meshbridge.store import AuditEntry, ResourceStore
from meshbridge.wire.messages import CredentialView

if TYPE_CHECKING:
    from meshbridge.model import Intents

__all__ = [
    "KIND",
    "PATH_REFUSED",
    "CredentialInfo",
    "Credentials",
    "check_kubeconfig",
    "cluster_targets",
    "credential_users",
    "parse_kubeconfig",
    "path_problems",
    "refuse_kubeconfig_paths",
]

KIND = "cluster.credential"  # the store blobs' kind
AUDIT_KIND = "Credential"
SOURCE = "kubeconfig"  # how problems of a registered kubeconfig are located
_FORMAT = 1

PATH_REFUSED = (
    "a meshbridge server reads no kubeconfig file: an admin registers the cluster's "
    "credentials (meshbridge credential add NAME --kubeconfig FILE) and the Cluster names them "
    "with spec.kubeconfig.credential"
)

# What a registered kubeconfig may hold: everything inline, nothing that points at the server's
# files or runs a program there. Values are never echoed.
_TOP = frozenset({"apiVersion", "kind", "clusters", "contexts", "users", "current-context",
                  "preferences", "extensions"})
_CLUSTER = frozenset({"server", "certificate-authority-data", "insecure-skip-tls-verify",
                      "extensions"})
_USER = frozenset({"client-certificate-data", "client-key-data", "token", "username", "password",
                   "extensions"})
_CONTEXT = frozenset({"cluster", "user", "namespace", "extensions"})
_BASE64 = frozenset({"certificate-authority-data", "client-certificate-data", "client-key-data"})
_FILE_FIELDS = {
    "certificate-authority": "certificate-authority-data",
    "client-certificate": "client-certificate-data",
    "client-key": "client-key-data",
    "tokenFile": "token",
}
_PROGRAM_FIELDS = frozenset({"exec", "auth-provider"})
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # a DNS label, as Cluster refs


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise InvalidInput([Problem(SOURCE, 1, AUDIT_KIND, escaped(name), "metadata.name",
                                    "a credential's name is a DNS-1123 label (lower-case "
                                    "letters, digits and '-', at most 63 characters)")])


# ------------------------------------------------------------------------- checking a kubeconfig


class _Checker:
    """Every problem of one kubeconfig, located by field path."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.problems: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(SOURCE, 1, AUDIT_KIND, self.name, path, message))

    def fields(self, where: str, data: Any, allowed: frozenset[str]) -> dict[str, Any]:
        if not isinstance(data, dict):
            self.add(where, "must be a mapping")
            return {}
        for key in data:
            shown = escaped(str(key))
            path = f"{where}.{shown}" if where else shown
            if key in _FILE_FIELDS:
                self.add(path, f"names a file, and the server reads none: give its content as "
                         f"{_FILE_FIELDS[key]} (meshbridge credential add inlines the files it "
                         "reads)")
            elif key in _PROGRAM_FIELDS:
                self.add(path, "runs a program or plugin, which the server does not: give a "
                         "token or a client certificate (client-certificate-data, "
                         "client-key-data)")
            elif key not in allowed:
                self.add(path, f"is not supported in a registered credential (allowed: "
                         f"{', '.join(sorted(allowed))})")
        return data

    def named(self, where: str, items: Any, inner: str, allowed: frozenset[str]
              ) -> dict[str, tuple[str, dict[str, Any]]]:
        """``[{name, <inner>: {...}}]`` -> {name: (its path, the inner mapping)}."""
        out: dict[str, tuple[str, dict[str, Any]]] = {}
        if not isinstance(items, list):
            self.add(where, "must be a list")
            return out
        for i, item in enumerate(items):
            at = f"{where}[{i}]"
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                self.add(at, f"must be a mapping with a name and {inner}")
                continue
            extra = set(item) - {"name", inner}
            if extra:
                shown = sorted(escaped(str(key)) for key in extra)
                more = f" and {len(shown) - 5} more" if len(shown) > 5 else ""
                self.add(at, f"unknown fields {', '.join(shown[:5])}{more}")
            if item["name"] in out:
                self.add(f"{at}.name", "the name appears twice")
            out[item["name"]] = (f"{at}.{inner}",
                                 self.fields(f"{at}.{inner}", item.get(inner, {}), allowed))
        return out


def check_kubeconfig(name: str, data: Any) -> dict[str, Any]:
    """``data`` (a kubeconfig, parsed) when it can be registered as credential ``name``;
    InvalidInput listing every problem otherwise, each located by field path, never quoting a
    value. Every context must name a cluster (and user) it holds."""
    check = _Checker(name)
    top = check.fields("", data, _TOP)
    clusters = check.named("clusters", top.get("clusters"), "cluster", _CLUSTER)
    users = check.named("users", top.get("users", []), "user", _USER)
    contexts = check.named("contexts", top.get("contexts"), "context", _CONTEXT)
    for at, cluster in clusters.values():
        server = cluster.get("server")
        if not isinstance(server, str) or not server.startswith("https://"):
            check.add(f"{at}.server", "must be an https:// URL")
    for at, fields in [*clusters.values(), *users.values()]:
        for key in sorted(_BASE64 & set(fields)):
            if not _is_base64(fields[key]):
                check.add(f"{at}.{key}", "is not base64")
    for at, fields in users.values():
        if ("client-certificate-data" in fields) != ("client-key-data" in fields):
            check.add(at, "client-certificate-data and client-key-data go together")
    for at, ctx in contexts.values():
        if not _names(ctx.get("cluster"), clusters):
            check.add(f"{at}.cluster", "names no cluster of this kubeconfig")
        if ctx.get("user") is not None and not _names(ctx.get("user"), users):
            check.add(f"{at}.user", "names no user of this kubeconfig")
    current = top.get("current-context")
    if current is not None and not _names(current, contexts):
        check.add("current-context", "names no context of this kubeconfig")
    if not contexts and not check.problems:
        check.add("contexts", "the kubeconfig holds no context")
    if check.problems:
        raise InvalidInput(check.problems)
    return dict(top)


def _names(value: Any, named: Mapping[str, Any]) -> bool:
    """``value`` is the name of one of ``named`` (a name is a string: ``[x]`` names none)."""
    return isinstance(value, str) and value in named


def _is_base64(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def parse_kubeconfig(name: str, text: bytes, limits: Limits = BODIES) -> Any:
    """A kubeconfig's YAML (or JSON) text as data, read by the one reader with a request
    body's limits; InvalidInput naming the line, never its content (the line may hold a
    token)."""
    return parse_config(text, SOURCE, limits, AUDIT_KIND, name)


# ------------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class CredentialInfo:
    """What may be shown of a credential: never a key, certificate, token or password."""

    name: str
    created: str
    updated: str
    updated_by: str
    current_context: str | None
    contexts: tuple[Mapping[str, str], ...]  # name, cluster, server, user, auth, namespace

    def view(self) -> CredentialView:
        """The credential as the API shows it."""
        return CredentialView(
            name=self.name,
            created=self.created,
            updated=self.updated,
            updated_by=self.updated_by,
            current_context=self.current_context,
            contexts=[dict(c) for c in self.contexts],
        )


def _auth(user: Mapping[str, Any] | None) -> str:
    if not user:
        return "none"
    if "client-certificate-data" in user:
        return "client-certificate"
    if "token" in user:
        return "token"
    if "username" in user:
        return "basic"
    return "none"


def _describe(config: Mapping[str, Any]) -> tuple[Mapping[str, str], ...]:
    clusters = {c["name"]: c.get("cluster") or {} for c in config.get("clusters", [])}
    users = {u["name"]: u.get("user") or {} for u in config.get("users", [])}
    out = []
    for item in sorted(config.get("contexts", []), key=lambda c: str(c["name"])):
        ctx = item.get("context") or {}
        entry = {
            "name": str(item["name"]),
            "cluster": str(ctx.get("cluster", "")),
            "server": str(clusters.get(ctx.get("cluster"), {}).get("server", "")),
            "user": str(ctx.get("user") or ""),
            "auth": _auth(users.get(ctx.get("user"))),
        }
        if ctx.get("namespace"):
            entry["namespace"] = str(ctx["namespace"])
        out.append(entry)
    return tuple(out)


class Credentials:
    """The credentials of a store, sealed under the key ``sealer`` gives (asked for on first
    use: a server without a state key can run until a credential is registered or used)."""

    def __init__(self, store: ResourceStore, sealer: Callable[[], Sealer]) -> None:
        self.store = store
        self._sealer_of = sealer
        self._sealer: Sealer | None = None

    def _seal(self) -> Sealer:
        if self._sealer is None:
            self._sealer = self._sealer_of()
        return self._sealer

    def put(
        self, name: str, text: bytes, actor: str, limits: Limits = BODIES
    ) -> tuple[CredentialInfo, bool]:
        """Register (or replace) credential ``name`` from a kubeconfig's text, read within
        ``limits``; (its public view, whether it is new). InvalidInput for a kubeconfig that
        cannot be registered."""
        _check_name(name)
        config = check_kubeconfig(name, parse_kubeconfig(name, text, limits))
        sealed = self._seal().seal(json.dumps(config).encode(), row_aad(KIND, name))
        now = utc_now()
        with self.store.transaction():
            before = self._header(name)
            created = before["created"] if before else now
            header = {
                "format": _FORMAT,
                "created": created,
                "updated": now,
                "updatedBy": actor,
                "currentContext": config.get("current-context"),
                "contexts": [dict(c) for c in _describe(config)],
            }
            blob = {"header": header, "sealed": base64.b64encode(sealed).decode("ascii")}
            self.store.put_blob(KIND, name, json.dumps(blob).encode())
            verb = "update" if before else "create"
            self.store.add_audit([AuditEntry(0, now, actor, verb, AUDIT_KIND, "", name, None, None)])
        return _info(name, header), before is None

    def list(self) -> list[CredentialInfo]:
        with self.store.reading():
            blobs = self.store.list_blobs(KIND)
        return [_info(name, _read(data)["header"]) for name, data in sorted(blobs.items())]

    def info(self, name: str) -> CredentialInfo:
        with self.store.reading():
            header = self._header(name)
        if header is None:
            raise NotFound(f"no credential named {quoted(name)}")
        return _info(name, header)

    def delete(self, name: str, actor: str, in_use_by: Sequence[str] = ()) -> None:
        """Delete credential ``name``; Conflict while Clusters (``in_use_by``) still name it."""
        if in_use_by:
            raise Conflict(
                f"credential {quoted(name)} is named by {'the Cluster' if len(in_use_by) == 1 else 'the Clusters'} "
                f"{', '.join(sorted(in_use_by))}: "
                "point them at another credential (or delete them) first"
            )
        now = utc_now()
        with self.store.transaction():
            if self.store.get_blob(KIND, name) is None:
                raise NotFound(f"no credential named {quoted(name)}")
            self.store.delete_blob(KIND, name)
            self.store.add_audit([AuditEntry(0, now, actor, "delete", AUDIT_KIND, "", name, None,
                                              None)])

    def kubeconfig(self, name: str) -> dict[str, Any] | None:
        """The kubeconfig registered as ``name`` (None: no such credential); SealingError when
        the state key does not open it."""
        data = self.store.get_blob(KIND, name)
        if data is None:
            return None
        sealed = base64.b64decode(_read(data)["sealed"])
        config: dict[str, Any] = json.loads(self._seal().open(sealed, row_aad(KIND, name)))
        return config

    def _header(self, name: str) -> dict[str, Any] | None:
        data = self.store.get_blob(KIND, name)
        return None if data is None else dict(_read(data)["header"])


def _read(data: bytes) -> dict[str, Any]:
    blob: dict[str, Any] = json.loads(data)
    return blob


def _info(name: str, header: Mapping[str, Any]) -> CredentialInfo:
    return CredentialInfo(
        name=name,
        created=str(header.get("created", "")),
        updated=str(header.get("updated", "")),
        updated_by=str(header.get("updatedBy", "")),
        current_context=header.get("currentContext"),
        contexts=tuple(header.get("contexts", [])),
    )


# ------------------------------------------------------------------- Clusters on the server


def path_problems(docs: Iterable[tuple[str, int, Any]]) -> list[Problem]:
    """Every Cluster among ``(source, index, raw document)`` that names a kubeconfig file:
    the server refuses them, saying nothing about the file."""
    problems = []
    for source, index, raw in docs:
        if not isinstance(raw, dict) or raw.get("kind") != "Cluster":
            continue
        spec = raw.get("spec")
        ref = spec.get("kubeconfig") if isinstance(spec, dict) else None
        if isinstance(ref, dict) and "path" in ref:
            meta = raw.get("metadata")
            name = meta.get("name") if isinstance(meta, dict) else None
            problems.append(Problem(source, index, "Cluster", str(name or ""),
                                    "spec.kubeconfig.path", PATH_REFUSED))
    return problems


def refuse_kubeconfig_paths(docs: Iterable[tuple[str, int, Any]]) -> None:
    """InvalidInput when a Cluster among the documents names a kubeconfig file (for the
    server's writes: :func:`path_problems`)."""
    problems = path_problems(docs)
    if problems:
        raise InvalidInput(problems)


def credential_users(store: ResourceStore, name: str) -> list[str]:
    """The stored Clusters whose ``spec.kubeconfig.credential`` is ``name``."""
    with store.reading():
        rows = store.list_resources("Cluster")
    users = []
    for row in rows:
        try:
            ref = json.loads(row.body).get("spec", {}).get("kubeconfig") or {}
        except (ValueError, AttributeError):
            continue
        if isinstance(ref, dict) and ref.get("credential") == name:
            users.append(row.name)
    return sorted(users)


def cluster_targets(intents: Intents, credentials: Credentials | None) -> list[ClusterAccess]:
    """What the server's reconciler reaches: every Cluster with ``spec.kubeconfig``, by the
    credential it names. A Cluster whose credential cannot be used — none registered by that
    name, no state key, or a ``path`` stored by an older server, which is never read — is a
    target that fails with the reason, so its status says why."""
    found = []
    for doc in sorted(intents.clusters, key=lambda d: d.obj.name):
        ref = doc.obj.spec.kubeconfig
        if ref is None:
            continue
        name = doc.obj.name
        if ref.credential is None:
            found.append(ClusterAccess(name, None, ref.context, unusable=PATH_REFUSED))
            continue
        if credentials is None:
            found.append(ClusterAccess(name, None, ref.context, unusable=(
                "this server keeps no credentials (it was started without a state key)")))
            continue
        try:
            config = credentials.kubeconfig(ref.credential)
        except SealingError:
            config, unusable = None, (
                f"credential {ref.credential!r} cannot be opened with the server's state key")
        else:
            unusable = (f"no credential named {ref.credential!r} is registered (meshbridge "
                        "credential list)")
        if config is None:
            found.append(ClusterAccess(name, None, ref.context, unusable=unusable))
        else:
            found.append(ClusterAccess(name, None, ref.context, config=config))
    return found
