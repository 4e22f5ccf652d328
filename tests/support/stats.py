"""Statistics for checks of random traffic: how many of N requests a correct split may send to
one side, and how surely a wrong split is caught.

A split of N independent requests, each going to a side with probability p, sends X ~ Bin(N, p)
there. :func:`acceptance` is the interval a correct split stays in except with a stated
probability (the false-failure rate: how often the test fails when nothing is wrong), cut
equally from both tails; :func:`power` is how often a split with another probability falls
outside it (how often the test catches that wrong split). Exact binomial sums, no normal
approximation.
"""

from __future__ import annotations

import math
from functools import cache


@cache
def _pmf(n: int, p: float) -> tuple[float, ...]:
    if p in (0.0, 1.0):
        return tuple(1.0 if k == round(p * n) else 0.0 for k in range(n + 1))
    logs = [math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
            + k * math.log(p) + (n - k) * math.log1p(-p) for k in range(n + 1)]
    return tuple(math.exp(x) for x in logs)


def acceptance(n: int, p: float, false_failure: float = 1e-4) -> tuple[int, int]:
    """The counts [lo, hi] a correct split of ``n`` with share ``p`` stays within, but with
    probability at most ``false_failure`` (half of it on each side)."""
    pmf = _pmf(n, p)
    lo, below = 0, 0.0
    while below + pmf[lo] <= false_failure / 2:
        below += pmf[lo]
        lo += 1
    hi, above = n, 0.0
    while above + pmf[hi] <= false_failure / 2:
        above += pmf[hi]
        hi -= 1
    return lo, hi


def power(n: int, p: float, interval: tuple[int, int]) -> float:
    """How often a split with share ``p`` falls outside ``interval``: the chance the check
    catches it (for the share the interval was made for: its false-failure rate)."""
    lo, hi = interval
    return 1.0 - sum(_pmf(n, p)[lo:hi + 1])



def split_check(n: int, share: float, wrong: float, false_failure: float = 1e-4
                ) -> tuple[int, int]:
    """The counts of ``n`` requests a side with ``share`` may get (:func:`acceptance`); fails
    (the test is too weak) unless a split giving that side ``wrong`` instead falls outside them
    with probability at least ``1 - false_failure``."""
    accepted = acceptance(n, share, false_failure)
    caught = power(n, wrong, accepted)
    assert caught >= 1 - false_failure, (
        f"{n} requests cannot tell a {share:.0%} share from {wrong:.0%} (power {caught:.6f})")
    return accepted
