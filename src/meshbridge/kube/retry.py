"""When meshbridge asks an API server again, and how long it waits first: one policy, stamina's.

Every wait is stamina's (a well-kept wrapper of tenacity): exponential backoff with random
jitter, capped; an answer's ``Retry-After`` (seconds or an HTTP date) is waited instead,
capped the same way. Two places retry:

* one request (``patiently``): an answer of 429 (too many requests; a fresh API server also
  answers it for a second or more while a resource's storage initialises) is sent again:
  reads, lists, writes and deletes alike, for up to ``REQUEST_TIMEOUT`` seconds. Other answers
  are not sent again here: a write that failed is reported as such, and a cluster in trouble
  is retried whole (below), reading it anew.
* one cluster (``per_cluster``): a reconcile, or the read of its ``cacerts``, that could not
  reach the cluster (connection, TLS, timeout, a proxy that failed) or got an answer that says
  "not now" (``RETRYABLE``) starts again: ``attempts`` in all, the wait doubling from
  ``backoff`` plus up to ``backoff`` of jitter, at most ``CLUSTER_WAIT_MAX`` seconds.
"""

from __future__ import annotations

import email.utils
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

import httpx2
import stamina

from meshbridge.errors import Unreachable

__all__ = [
    "CLUSTER_WAIT_MAX",
    "REQUEST_TIMEOUT",
    "REQUEST_WAIT_MAX",
    "RETRYABLE",
    "patiently",
    "per_cluster",
    "retry_after",
]

T = TypeVar("T")

# Answers that say "not now" rather than "no": the API server is starting, overloaded or behind
# a proxy that lost it. The cluster is tried again like an unreachable one.
RETRYABLE = frozenset({429, 500, 502, 503, 504})

REQUEST_WAIT_MAX = 5.0  # longest wait before sending one request again, Retry-After included
REQUEST_TIMEOUT = 30.0  # no request is sent again once this long has passed since the first try
CLUSTER_WAIT_MAX = 30.0  # longest wait before trying a cluster again, Retry-After included



def status_of(exc: BaseException) -> int | None:
    """The HTTP status of an error answer (lightkube's ApiError included), else None."""
    if isinstance(exc, httpx2.HTTPStatusError):
        return exc.response.status_code
    return None


def retry_after(exc: BaseException) -> float | None:
    """Seconds an error answer's ``Retry-After`` asks to wait (a number of seconds or an HTTP
    date), or None when it has none (or one that cannot be read)."""
    if not isinstance(exc, httpx2.HTTPStatusError):
        return None
    value = exc.response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - _now()).total_seconds())


def _now() -> datetime:
    """The clock a Retry-After date is read against (a test sets it)."""
    return datetime.now(UTC)


def _backoff(exc: BaseException, cap: float) -> bool | float:
    """True: wait the policy's backoff; a float: wait that (Retry-After, capped)."""
    asked = retry_after(exc)
    return True if asked is None else min(asked, cap)


def _busy(exc: Exception) -> bool | float:
    """The request is worth sending again: the server answered 429."""
    if status_of(exc) != 429:
        return False
    return _backoff(exc, REQUEST_WAIT_MAX)


def _cluster_trouble(exc: Exception) -> bool | float:
    """The cluster is worth trying again: unreachable, or an answer that says "not now"."""
    if isinstance(exc, Unreachable | httpx2.TransportError | OSError):
        return True
    if status_of(exc) in RETRYABLE:
        return _backoff(exc, CLUSTER_WAIT_MAX)
    return False


async def patiently(call: Callable[[], Awaitable[T]]) -> T:
    """``call()``, again while the server answers 429: after its ``Retry-After`` (at most
    ``REQUEST_WAIT_MAX`` s), or else 0.1 s doubling up to 1 s plus up to 0.1 s of jitter; no
    new try once ``REQUEST_TIMEOUT`` s have passed, when the last answer's error is raised."""
    async for attempt in stamina.retry_context(
        on=_busy,
        attempts=None,
        timeout=REQUEST_TIMEOUT,
        wait_initial=0.1,
        wait_max=1.0,
        wait_jitter=0.1,
    ):
        with attempt:
            return await call()
    raise AssertionError("unreachable")


async def per_cluster(
    call: Callable[[int], Awaitable[T]], *, attempts: int, backoff: float
) -> T:
    """``call(attempt number)`` until it returns, fails in a way another try would not mend
    (raised at once), or has been tried ``attempts`` times (the last error raised). Between
    tries: the answer's ``Retry-After``, or ``backoff`` doubling, plus up to ``backoff`` of
    jitter; at most ``CLUSTER_WAIT_MAX`` s."""
    async for attempt in stamina.retry_context(
        on=_cluster_trouble,
        attempts=max(1, attempts),
        timeout=None,
        wait_initial=backoff,
        wait_max=CLUSTER_WAIT_MAX,
        wait_jitter=backoff,
    ):
        with attempt:
            return await call(attempt.num)
    raise AssertionError("unreachable")
