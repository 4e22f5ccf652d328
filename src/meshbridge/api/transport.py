"""How ``meshbridge serve`` holds connections: uvicorn's HTTP/1.1 protocol (h11) with a
timeout on the request head.

uvicorn (0.55) closes a keep-alive connection that stays silent for ``timeout_keep_alive``
seconds after a response, but arms no timer before a request head has arrived: a connection
that sends nothing, or half a request line and then a byte now and then, is held for as long
as its client likes. Three hundred of them (what a script on another machine opens in a
second) hold three hundred sockets and protocol objects forever, and each new one more. The
subclass below closes a connection whose next request head is not complete ``header_timeout``
seconds after it connected or after its last response — a dozen lines, because uvicorn offers
no such setting and h11 leaves timing to its caller. Heads are also bounded in size, by h11
(16 KiB: ``h11_max_incomplete_event_size``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["HEADER_TIMEOUT", "KEEP_ALIVE", "head_timeout_protocol"]

HEADER_TIMEOUT = 10.0
"""Seconds a connection has to send a whole request head (``serve --header-timeout``)."""
KEEP_ALIVE = 5
"""Seconds an idle keep-alive connection is kept after a response (uvicorn's own default)."""


class _HeadTimeoutProtocol(H11Protocol):
    header_timeout = HEADER_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        """Close the connection unless a new request head is read within the timeout (a new
        request starts a new cycle; one in progress is never cut)."""
        if self._head_timer is not None:
            self._head_timer.cancel()
        waiting_for = self.cycle
        self._head_timer = self.loop.call_later(self.header_timeout, self._no_head, waiting_for)

    def _no_head(self, waiting_for: object) -> None:
        self._head_timer = None
        idle = self.cycle is None or self.cycle.response_complete
        if self.cycle is waiting_for and idle:
            self.timeout_keep_alive_handler()  # uvicorn's own way to close an idle connection


def head_timeout_protocol(seconds: float = HEADER_TIMEOUT) -> type[H11Protocol]:
    """The protocol class to give uvicorn (``http=``): h11, closing connections that send no
    complete request head within ``seconds``."""
    return type("HeadTimeoutProtocol", (_HeadTimeoutProtocol,), {"header_timeout": seconds})
