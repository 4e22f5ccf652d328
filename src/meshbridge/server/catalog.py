"""The server process's view of the stored documents: parsed, validated, planned, kept warm.

Parsing and validating thousands of documents, and planning VIPs for them, takes longer than a
request should. A :class:`Catalog` keeps the validated documents, the VIP table and the last
:class:`~meshbridge.compile.Blueprint` in memory and updates them on each write it makes itself. It
notices writes by other processes through the store's change counters (:class:`Revisions`):
whenever the ``resources`` counter moved, the documents are read again; whenever the ``state``
counter moved, the VIP table is; whenever the ``placements`` counter moved, the recorded
placement of the discovered Apps (a render input, like the VIPs) is.

Every write validates the *whole resulting set* (``compile.blueprint``: schema, cross-document rules,
VIP pool) before anything is stored, and stores the documents, their audit entries and the new
VIP allocations in one transaction that holds the store's write lock. So the stored set is
always valid, a stale ``resourceVersion`` is always seen (409), and no write is lost.

The catalog's state is replaced only after a transaction commits; a failed write leaves it as
it was. One ``RLock`` serialises a process's writers and renders; readers of single objects go
to the store directly. Catching up with other writers reads only the documents written since
(``resources_since``) and the keys of the stored set (for deletions), not every document.

**Invalid stored documents.** The store should only ever hold a valid set, but a document can
become invalid without being written: a newer meshbridge with a stricter model, an edit behind
the API's back. Such a document is *flagged*, not fatal: it is kept out of the set (so out of
every render), reported (:meth:`Catalog.flagged`, ``GET /api/v1/problems``), and can be
replaced or deleted like any other. Documents that are valid alone but fail with the others
(an InboundIntent whose App is the invalid one) are flagged too, one round of the cross-document
check at a time, until the rest is a valid set. A write may leave documents flagged that were
flagged before it, never flag one more: deleting what others need is still refused (409).
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from meshbridge import compile as mbcompile
from meshbridge.errors import Conflict, InvalidInput, NotFound, Problem
from meshbridge.excerpt import escaped, quoted
from meshbridge.loading import validate_object
from meshbridge.model import Intents, Located
from meshbridge.server.allocation import Needs, replan
from meshbridge.server.stored import to_object
from meshbridge.server.tokens import utc_now
from meshbridge.store import AuditEntry, ResourceRow, ResourceStore, Revisions
from meshbridge.usecases.placement import placement_of
from meshbridge.viprecord import VipRecord
from meshbridge.wire.resources import RESOURCES, ObjectKey, source_of

__all__ = ["Catalog", "Delete", "DocumentWrite", "Flagged", "Put", "WriteResult", "utc_now"]

log = logging.getLogger("meshbridge.catalog")

_KIND_ORDER = {kind: i for i, kind in enumerate(RESOURCES)}


@dataclass(frozen=True)
class Put:
    """Create or replace the document ``raw`` (server fields already stripped).

    ``key`` is the object the URL names (None for ``apply``, where the document names itself);
    ``expect`` a resourceVersion the stored object must have; ``source``/``index`` locate the
    document in problems.
    """

    raw: Any
    source: str
    index: int
    expect: str | None = None
    key: ObjectKey | None = None


@dataclass(frozen=True)
class Delete:
    key: ObjectKey
    expect: str | None = None


@dataclass(frozen=True)
class DocumentWrite:
    """What one document's write did: created, configured, unchanged or deleted."""

    key: ObjectKey
    action: str
    object: dict[str, Any]


@dataclass(frozen=True)
class WriteResult:
    outcomes: list[DocumentWrite]
    revision: int


@dataclass(frozen=True)
class Flagged:
    """A stored document kept out of the set: ``invalid`` (it does not pass its model) or
    ``excluded`` (valid alone, not with the others: it needs a flagged one, or is needed by
    none of the ways the set can be valid)."""

    key: ObjectKey
    row: ResourceRow
    reason: str  # "invalid" | "excluded"
    problems: tuple[Problem, ...]


@dataclass(frozen=True)
class _Entry:
    row: ResourceRow
    raw: dict[str, Any]
    located: Located[Any]


@dataclass(frozen=True)
class _Broken:
    """A stored document that does not pass its model: its row and why."""

    row: ResourceRow
    problems: tuple[Problem, ...]


class Catalog:
    """Validated documents, VIPs and blueprint of one store, cached for one server process."""

    def __init__(self, store: ResourceStore, clock: Callable[[], str] = utc_now) -> None:
        self.store = store
        self.clock = clock
        self.lock = threading.RLock()
        self._revisions: Revisions | None = None
        self._entries: dict[ObjectKey, _Entry] = {}  # documents that pass their model
        self._broken: dict[ObjectKey, _Broken] = {}  # stored documents that do not
        self._excluded: dict[ObjectKey, tuple[Problem, ...]] = {}  # entries kept out of the set
        self._vips: list[VipRecord] = []
        self._blueprint: mbcompile.Blueprint | None = None
        self._needs: Needs | None = None  # what self._vips was allocated for
        self._order: list[ObjectKey] = []  # keys of the last _intents(), sorted
        self._order_keys: set[ObjectKey] = set()
        self._placement: mbcompile.Placement = {}  # where the discovered Apps run (recorded)

    # ----------------------------------------------------------------------- cache control

    @property
    def revisions(self) -> Revisions | None:
        """The counters the cache was last synchronised at (None before the first sync)."""
        return self._revisions

    @contextmanager
    def writing(self, *, keep: bool = True) -> Iterator[None]:
        """A write transaction holding the process lock and the store's write lock; with
        ``keep=False`` a rehearsal, rolled back at its end.

        The cache is restored if the transaction does not commit.
        """
        with self.lock:
            saved = self._state()
            try:
                with self.store.transaction(keep=keep):
                    self.store.lock_writes()
                    yield
            except BaseException:
                self._restore(saved)
                raise
            if not keep:
                self._restore(saved)

    def _state(self) -> tuple[Any, ...]:
        return (self._revisions, self._entries, self._broken, self._excluded, self._vips,
                self._blueprint, self._needs, self._placement)

    def _restore(self, saved: tuple[Any, ...]) -> None:
        (self._revisions, self._entries, self._broken, self._excluded, self._vips, self._blueprint,
         self._needs, self._placement) = saved

    def sync(self) -> Revisions:
        """Catch up with the store (inside a transaction): read what other writers changed."""
        revs = self.store.revisions()
        if self._revisions is None:
            self._entries, self._broken = self._load(self.store.list_resources(), {}, {})
            self._blueprint = None
        elif revs.resources != self._revisions.resources:
            keys = self.store.resource_keys()
            entries = {k: e for k, e in self._entries.items() if k in keys}
            broken = {k: b for k, b in self._broken.items() if k in keys}
            since = self.store.resources_since(self._revisions.resources)
            self._entries, self._broken = self._load(since, entries, broken)
            self._blueprint = None
        if self._revisions is None or revs.state != self._revisions.state:
            vips = self.store.vip_records()
            if vips != self._vips:
                self._vips = vips
                self._blueprint = None
                self._needs = None
        if self._revisions is None or revs.placements != self._revisions.placements:
            placement = placement_of(self.store.placement_rows())
            if placement != self._placement:
                self._placement = placement
                self._blueprint = None
        self._revisions = revs
        return revs

    def blueprint(self) -> mbcompile.Blueprint:
        """The blueprint of the stored set (inside ``writing()``, after ``sync()``); new VIPs saved.

        Stored documents that keep the set from being valid are flagged and left out; InvalidInput
        only when no document can be blamed (a set with no Mesh left, say).
        """
        if self._blueprint is None:
            blueprint, needs, excluded = self._settle(self._entries, None)
            if blueprint.vips != self._vips:
                self.store.update_vip_records(self._vips, blueprint.vips)
                self._vips = blueprint.vips
                self._revisions = self.store.revisions()
            self._excluded = excluded
            self._needs = needs
            self._blueprint = blueprint
            if self._broken or excluded:
                log.warning(
                    "%d stored document(s) flagged and left out of every render: %s",
                    len(self._broken) + len(excluded),
                    ", ".join(source_of(k) for k in sorted({*self._broken, *excluded})),
                )
        return self._blueprint

    def flagged(self) -> tuple[list[Flagged], tuple[Problem, ...]]:
        """The stored documents left out of the set, and why; and the problems of the set no
        document could be blamed for (then nothing can be rendered until they are fixed)."""
        unblamed: tuple[Problem, ...] = ()
        with self.writing():
            self.sync()
            try:
                self.blueprint()
            except InvalidInput as exc:
                unblamed = exc.problems
            out = [Flagged(k, b.row, "invalid", b.problems) for k, b in self._broken.items()]
            out += [
                Flagged(k, self._entries[k].row, "excluded", p) for k, p in self._excluded.items()
            ]
        out.sort(key=lambda f: (_KIND_ORDER[f.key[0]], f.key[1], f.key[2]))
        return out, unblamed

    @property
    def has_flagged(self) -> bool:
        """Whether the last known stored set has documents left out (valid after ``blueprint()``)."""
        return bool(self._broken or self._excluded)

    def _load(
        self,
        rows: list[ResourceRow],
        entries: dict[ObjectKey, _Entry],
        broken: dict[ObjectKey, _Broken],
    ) -> tuple[dict[ObjectKey, _Entry], dict[ObjectKey, _Broken]]:
        """``rows`` parsed into ``entries`` (valid) or ``broken`` (not), replacing what was
        there under the same key."""
        for row in rows:
            key = (row.kind, row.namespace, row.name)
            entries.pop(key, None)
            broken.pop(key, None)
            try:
                raw = json.loads(row.body)
            except ValueError:
                problem = Problem(source_of(key), 1, row.kind, row.name, "", "not JSON")
                broken[key] = _Broken(row, (problem,))
                continue
            located, found = validate_object(raw, source_of(key), 1)
            if located is None or found:
                broken[key] = _Broken(row, tuple(found))
            else:
                entries[key] = _Entry(row, raw, located)
        return entries, broken

    def _settle(
        self, entries: dict[ObjectKey, _Entry], tolerate: set[ObjectKey] | None
    ) -> tuple[mbcompile.Blueprint, Needs, dict[ObjectKey, tuple[Problem, ...]]]:
        """The blueprint of ``entries`` less the documents the cross-document check blames, one
        round at a time, and those left out with their problems.

        Only stored documents can be left out (problems located at their API path), and with
        ``tolerate`` only those among it: any other problem is raised (InvalidInput).
        """
        paths = {source_of(key): key for key in entries}
        excluded: dict[ObjectKey, list[Problem]] = {}
        while True:
            try:
                blueprint, needs = self._blueprint_for(self._intents(entries, excluded.keys()))
            except InvalidInput as exc:
                blamed: dict[ObjectKey, list[Problem]] = {}
                others: list[Problem] = []
                for problem in exc.problems:
                    key = paths.get(problem.source) if problem.document == 1 else None
                    if key is not None and (tolerate is None or key in tolerate):
                        blamed.setdefault(key, []).append(problem)
                    else:
                        others.append(problem)
                if not blamed:
                    raise InvalidInput(others) from None
                for key, found in blamed.items():
                    excluded.setdefault(key, []).extend(found)
                continue
            return blueprint, needs, {k: tuple(p) for k, p in excluded.items()}

    def _blueprint_for(self, intents: Intents) -> tuple[mbcompile.Blueprint, Needs]:
        """``compile.blueprint(intents, stored VIPs)``, allocating only for the clusters whose VIP
        needs changed since the stored table was made (see ``server.allocation``)."""
        return replan(mbcompile.check(intents, found=self._placement), self._vips, self._needs)

    def _intents(
        self, entries: dict[ObjectKey, _Entry], excluded: Collection[ObjectKey] = ()
    ) -> Intents:
        """The documents in one fixed order (kind, namespace, name), however they arrived.

        The sorted keys are kept: most writes replace documents, and only a write that adds or
        removes one needs a new sort.
        """
        keys = entries.keys() - set(excluded) if excluded else entries.keys()
        if self._order_keys != keys:
            self._order = sorted(keys, key=lambda k: (_KIND_ORDER[k[0]], k[1], k[2]))
            self._order_keys = set(self._order)
        return Intents.of([entries[key].located for key in self._order])

    # ------------------------------------------------------------------------------ writes

    def write(
        self,
        changes: Sequence[Put | Delete],
        actor: str,
        *,
        prune: bool = False,
        dry_run: bool = False,
    ) -> WriteResult:
        """Apply every change or none; with ``prune``, also delete every document not named.

        Raises InvalidInput (a document or the resulting set is invalid), Conflict (a stale
        resourceVersion; a delete that leaves the set invalid), NotFound (deleting nothing).
        ``dry_run``: every check made and the outcomes answered as they would be (the revision
        the write would get), but the transaction is rolled back: nothing is stored, audited or
        allocated, no counter moves, so no reconciler notices anything.
        """
        with self.writing(keep=not dry_run):
            revs = self.sync()
            entries = dict(self._entries)
            now = self.clock()
            batch = _Batch(entries, dict(self._broken), now)
            batch.stage(changes)
            if prune:
                batch.prune()
            if not batch.changes:
                return WriteResult(batch.outcomes, revs.resources)
            revision = revs.resources + 1 if dry_run else self.store.bump_resources()
            rows = batch.finish(revision)
            try:
                blueprint, needs, excluded = self._settle_write(entries, batch.touched)
            except InvalidInput as exc:
                if batch.rows:
                    raise
                raise Conflict(
                    "cannot delete: the documents left would not be valid (fix or delete the "
                    "documents that still refer to it first)",
                    exc.problems,
                ) from None
            if dry_run:  # a rehearsal: writing() rolls back the transaction and the cache
                return WriteResult(batch.outcomes, revision)
            self.store.put_resources(rows)
            self.store.delete_resources([key for key, _ in batch.deleted])
            self.store.add_audit(batch.audit(actor, revision))
            if blueprint.vips != self._vips:
                self.store.update_vip_records(self._vips, blueprint.vips)
            batch.locate_stored()
            self._entries = entries
            self._broken = batch.broken
            self._excluded = excluded
            self._vips = blueprint.vips
            self._needs = needs
            self._blueprint = blueprint
            self._revisions = self.store.revisions()
            return WriteResult(batch.outcomes, revision)

    def _settle_write(
        self, entries: dict[ObjectKey, _Entry], touched: set[ObjectKey]
    ) -> tuple[mbcompile.Blueprint, Needs, dict[ObjectKey, tuple[Problem, ...]]]:
        """The blueprint of a write's resulting set: documents flagged before it (and not written by
        it) may stay out, no other may. The stored set's own flags are found first when not
        known yet (after catching up with another writer), only if the write needs them."""
        known = self._blueprint is not None
        try:
            return self._settle(entries, set(self._excluded) - touched if known else set())
        except InvalidInput:
            if known or not (self._broken or self._entries):
                raise
        self.blueprint()  # the stored set's flags, then once more
        return self._settle(entries, set(self._excluded) - touched)


class _Batch:
    """The documents of one write, checked against the stored set and staged in ``entries``."""

    def __init__(
        self, entries: dict[ObjectKey, _Entry], broken: dict[ObjectKey, _Broken], now: str
    ) -> None:
        self.entries = entries
        self.broken = broken  # flagged invalid: replaced or deleted like the others
        self.now = now
        self.outcomes: list[DocumentWrite] = []
        self.rows: list[ResourceRow] = []
        self.deleted: list[tuple[ObjectKey, ResourceRow]] = []
        self._pending: list[tuple[ObjectKey, Any, Located[Any], ResourceRow | None]] = []
        self._named: dict[ObjectKey, int] = {}

    def stage(self, changes: Sequence[Put | Delete]) -> None:
        problems: list[Problem] = []
        for change in changes:
            if isinstance(change, Delete):
                self._delete(change)
            else:
                problems.extend(self._put(change))
        if problems:
            raise InvalidInput(problems)

    def _delete(self, change: Delete) -> None:
        current = self.entries.pop(change.key, None)
        broken = self.broken.pop(change.key, None)
        row = current.row if current else broken.row if broken else None
        if row is None:
            kind, namespace, name = change.key
            where = f" in namespace {escaped(namespace)}" if namespace else ""
            raise NotFound(f"{kind} {quoted(name)} not found{where}")
        _precondition(change.key, change.expect, row)
        self.deleted.append((change.key, row))
        self.outcomes.append(DocumentWrite(change.key, "deleted", _object(row, current)))

    def _put(self, change: Put) -> list[Problem]:
        raw = _with_url_namespace(change.raw, change.key)
        located, problems = validate_object(raw, change.source, change.index)
        if located is None:
            return problems
        obj = located.obj
        key: ObjectKey = (obj.kind, obj.namespace, obj.name)
        if change.key is not None and key != change.key:
            return [_mismatch(change, key, located)]
        if key in self._named:
            return [
                _problem(
                    change,
                    located,
                    "",
                    f"the same document is given twice (also #{self._named[key]})",
                )
            ]
        self._named[key] = change.index
        current = self.entries.get(key)
        broken = self.broken.pop(key, None)
        stored = current.row if current else broken.row if broken else None
        _precondition(key, change.expect, stored)
        if current is not None and current.raw == raw:
            self.outcomes.append(
                DocumentWrite(key, "unchanged", to_object(current.row, current.raw))
            )
            return []
        self._pending.append((key, raw, located, stored))
        self.entries[key] = _Entry(stored or _placeholder(key), raw, located)
        return []

    @property
    def changes(self) -> bool:
        return bool(self._pending or self.deleted)

    @property
    def touched(self) -> set[ObjectKey]:
        """The keys this write stores or deletes."""
        return {key for key, *_ in self._pending} | {key for key, _ in self.deleted}

    def prune(self) -> None:
        for key in sorted((set(self.entries) | set(self.broken)) - set(self._named)):
            self._delete(Delete(key))

    def finish(self, revision: int) -> list[ResourceRow]:
        """Give the staged documents their rows at ``revision``; the outcomes in input order."""
        for key, raw, located, current in self._pending:
            row = ResourceRow(
                kind=key[0],
                namespace=key[1],
                name=key[2],
                uid=current.uid if current else str(uuid.uuid4()),
                resource_version=revision,
                created=current.created if current else self.now,
                body=json.dumps(raw, separators=(",", ":"), ensure_ascii=False),
            )
            self.rows.append(row)
            self.entries[key] = _Entry(row, raw, located)
            action = "configured" if current else "created"
            self.outcomes.append(DocumentWrite(key, action, to_object(row, raw)))
        return self.rows

    def locate_stored(self) -> None:
        """Once validated, written documents are reported under their API paths, like every
        stored document (problems found in this write named the request's documents)."""
        for key, _, _, _ in self._pending:
            entry = self.entries[key]
            self.entries[key] = _Entry(
                entry.row, entry.raw, Located(entry.located.obj, source_of(key), 1)
            )

    def audit(self, actor: str, revision: int) -> list[AuditEntry]:
        out = []
        for key, _, _, current in self._pending:
            before = current.resource_version if current else None
            verb = "update" if current else "create"
            out.append(AuditEntry(0, self.now, actor, verb, *key, before, revision))
        for key, row in self.deleted:
            out.append(AuditEntry(0, self.now, actor, "delete", *key, row.resource_version, None))
        return out


def _object(row: ResourceRow, entry: _Entry | None) -> dict[str, Any]:
    """The API's view of a stored document, also of one that is not even JSON any more."""
    if entry is not None:
        return to_object(row, entry.raw)
    try:
        body = json.loads(row.body)
    except ValueError:
        body = None
    return to_object(row, body if isinstance(body, dict) else {})


def _precondition(key: ObjectKey, expect: str | None, current: ResourceRow | None) -> None:
    if expect is None:
        return
    kind, namespace, name = key
    ident = f"{kind} {namespace + '/' if namespace else ''}{name}"
    if current is None:
        raise Conflict(f"{ident}: resourceVersion {escaped(expect)} is stale: the object no longer exists")
    if str(current.resource_version) != expect:
        raise Conflict(
            f"{ident}: resourceVersion {escaped(expect)} is stale (stored: "
            f"{current.resource_version}); read it again and retry"
        )


def _with_url_namespace(raw: Any, key: ObjectKey | None) -> Any:
    """A namespaced document PUT without ``metadata.namespace`` takes the URL's namespace."""
    if key is None or not key[1] or not isinstance(raw, dict):
        return raw
    meta = raw.get("metadata")
    if isinstance(meta, dict) and "namespace" not in meta:
        return {**raw, "metadata": {**meta, "namespace": key[1]}}
    return raw


def _problem(change: Put, located: Located[Any], path: str, message: str) -> Problem:
    return Problem(change.source, change.index, located.kind, located.name, path, message)


def _mismatch(change: Put, key: ObjectKey, located: Located[Any]) -> Problem:
    assert change.key is not None
    want_kind, want_ns, want_name = change.key
    kind, namespace, name = key
    if kind != want_kind:
        return _problem(change, located, "kind",
                        f"must be {want_kind!r} at this URL, not {quoted(kind)}")
    if namespace != want_ns:
        return _problem(
            change,
            located,
            "metadata.namespace",
            f"must be {quoted(want_ns)} (the URL's), not {quoted(namespace)}",
        )
    return _problem(
        change, located, "metadata.name",
        f"must be {quoted(want_name)} (the URL's), not {quoted(name)}",
    )


def _placeholder(key: ObjectKey) -> ResourceRow:
    return ResourceRow(key[0], key[1], key[2], "", 0, "", "")
