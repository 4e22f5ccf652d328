"""Keep one cluster's placement facts current: a list, then a watch, per kind.

For each kind a :class:`~meshbridge.kube.placement.Look` needs, :class:`ClusterWatch` lists
the objects (the list's ``resourceVersion`` is where the watch starts) and watches them from
there, so no change between the two is missed:

* **410 Gone** (the version is older than the API server keeps: after a long break, or an API
  server restarted on a compacted store): the kind is listed again, and its facts replaced
  whole (a watch restarted from "now" would not say what was deleted meanwhile);
* **any other error** (connection refused or reset, TLS, a 5xx, a 403): the kind is no longer
  known, and the cluster's reading is an error until every kind is listed again, after a wait
  that doubles from ``backoff`` to ``BACKOFF_MAX`` seconds with jitter (``kube.retry``'s policy);
  its last known placements stand meanwhile, since an error is never "no instances";
* **silence**: every watch is replaced by a new list and watch after ``RESYNC`` seconds (as
  client-go's informers resync), so a connection that died without a word is found within that.

After each change, and once a burst of changes has settled (``settle`` seconds), the facts are
turned into a :class:`~meshbridge.kube.placement.Reading` (:func:`placement.found`), and it is
handed to ``on_reading`` when it differs from the last one handed over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient, ConfigError
from lightkube.types import on_error_raise

from meshbridge.errors import KubeconfigError
from meshbridge.kube.fleet import ClusterAccess, client_for
from meshbridge.kube.placement import (
    SOURCES,
    Facts,
    Look,
    ObjectKey,
    Reading,
    describe,
    fact_of,
    found,
    list_source,
)

__all__ = ["BACKOFF_MAX", "RESYNC", "ClusterWatch", "WatchState"]

log = logging.getLogger("meshbridge.watch")

RESYNC = 120.0  # seconds a watch is kept before a new list and watch replace it
BACKOFF_MAX = 30.0  # longest wait before listing a kind again after an error


@dataclass(frozen=True)
class WatchState:
    """How a cluster's watch is doing: ``watching`` (every kind listed and watched),
    ``starting`` or ``failing`` (with the error), since when (``time.time()``), and how many
    times a kind was listed again after a 410."""

    state: str
    error: str
    since: float
    relists: int


class ClusterWatch:
    """One cluster's facts, kept by a list and a watch per kind; ``run()`` until cancelled."""

    def __init__(
        self,
        target: ClusterAccess,
        look: Look,
        on_reading: Callable[[Reading], None],
        *,
        timeout: float = 10.0,
        backoff: float = 0.5,
        settle: float = 0.1,
    ) -> None:
        self.target = target
        self.look = look
        self.on_reading = on_reading
        self.timeout = timeout
        self.backoff = backoff
        self.settle = settle
        self.facts: Facts = {}
        self._synced: set[str] = set()
        self._errors: dict[str, str] = {}
        self._last: Reading | None = None
        self._changed = asyncio.Event()
        self._state = WatchState("starting", "", time.time(), 0)

    @property
    def state(self) -> WatchState:
        return self._state

    def relook(self, look: Look) -> bool:
        """Look for other Apps with the same kinds and label key (a document changed): the
        facts are read again, no request is made. False when the look needs other kinds or
        another label key: then a new watch is needed."""
        if (look.sources, look.label_key) != (self.look.sources, self.look.label_key):
            return False
        self.look = look
        self._changed.set()
        return True

    async def run(self) -> None:
        try:
            client = client_for(self.target, self.timeout)
        except KubeconfigError as exc:
            self._set_state("failing", str(exc))
            self._hand_over(Reading(self.target.name, None, str(exc)))
            return
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._emit())
                for name in self.look.sources:
                    group.create_task(self._kind(client, name))
        finally:
            with contextlib.suppress(Exception):
                await client.close()

    # ------------------------------------------------------------------------ one kind

    async def _kind(self, client: AsyncClient, name: str) -> None:
        source = SOURCES[name]
        failures = 0
        while True:
            verb = "list"
            try:
                facts, version = await list_source(client, source, self.look.label_key)
                self.facts[name] = facts
                self._synced.add(name)
                self._errors.pop(name, None)
                self._changed.set()
                failures = 0
                verb = "watch"
                async with asyncio.timeout(RESYNC):
                    await self._watch(client, name, version)
            except TimeoutError:
                continue  # resync: a new list and watch
            except ApiError as exc:
                if exc.status.code == 410:
                    self._state = WatchState(self._state.state, self._state.error,
                                             self._state.since, self._state.relists + 1)
                    log.info("cluster %s: %s: 410 Gone, listing again", self.target.name, name)
                    continue
                failures += 1
                await self._failed(name, describe(exc, verb, source, self.target.name), failures)
            except (httpx2.HTTPError, OSError, ConfigError) as exc:
                failures += 1
                await self._failed(name, describe(exc, verb, source, self.target.name), failures)

    async def _watch(self, client: AsyncClient, name: str, version: str) -> None:
        source = SOURCES[name]
        facts = self.facts[name]
        stream = client.watch(
            source.resource, namespace="*", labels=source.selector(self.look.label_key),
            resource_version=version or None, server_timeout=int(RESYNC) + 30,
            on_error=on_error_raise,
        )
        async for event, obj in stream:
            if event == "BOOKMARK":
                continue
            kv = fact_of(source, obj, self.look.label_key)
            key: ObjectKey = (obj.metadata.namespace or "", obj.metadata.name or "")
            if event == "DELETED" or kv is None:
                if facts.pop(key, None) is None:
                    continue
            else:
                if facts.get(key) == kv[1]:
                    continue
                facts[key] = kv[1]
            self._changed.set()

    async def _failed(self, name: str, error: str, failures: int) -> None:
        """The kind is not known any more: the cluster's reading is this error until it is
        listed again, after the policy's wait."""
        self._synced.discard(name)
        self._errors[name] = error
        self._changed.set()
        wait = min(BACKOFF_MAX, self.backoff * 2 ** (failures - 1))
        await asyncio.sleep(wait + random.uniform(0, self.backoff))  # noqa: S311 (jitter)

    # ---------------------------------------------------------------------- the readings

    async def _emit(self) -> None:
        while True:
            await self._changed.wait()
            await asyncio.sleep(self.settle)  # a burst of events is one reading
            self._changed.clear()
            self._hand_over(self._reading())

    def _reading(self) -> Reading:
        needed = self.look.sources
        if all(n in self._synced for n in needed):
            self._set_state("watching", "")
            return Reading(self.target.name, found(self.look, self.facts))
        error = next((self._errors[n] for n in needed if n in self._errors), "")
        if not error:
            return Reading(self.target.name, None, "")  # still listing
        self._set_state("failing", error)
        return Reading(self.target.name, None, error)

    def _set_state(self, state: str, error: str) -> None:
        if (state, error) != (self._state.state, self._state.error):
            self._state = WatchState(state, error, time.time(), self._state.relists)

    def _hand_over(self, reading: Reading) -> None:
        if reading.found is None and not reading.error:
            return
        if reading != self._last:
            self._last = reading
            self.on_reading(reading)


def watch_state_view(state: WatchState) -> dict[str, Any]:
    """A WatchState as the server records it (plain data)."""
    return {"state": state.state, "error": state.error, "since": state.since,
            "relists": state.relists}
