"""Failover windows in the mesh lab, judged by what Envoy counts (see tests/lab/
test_lab_failover.py's docstring): a window of requests sent one after another, the ejections
the client's proxy made meanwhile (its admin interface), and the failures those ejections may
cost given the service's outlier settings and the pacing measured in the window."""

from __future__ import annotations

import itertools
import math
import re
import statistics
from dataclasses import dataclass
from typing import Any

from labrun import LabRun

PACE = 0.1  # seconds between request starts
WINDOW = 40  # requests: about 4 s at the pace


@dataclass(frozen=True)
class Outlier:
    """An intent's outlier detection: consecutive errors that eject, the detector's interval
    and the base ejection time (seconds)."""

    threshold: int
    interval: float
    ejection: float


def answered(a: dict[str, Any]) -> bool:
    return a.get("status") == 200


def ejections(lab: LabRun, source: str, upstream: str) -> int:
    """How many times ``source``'s proxy has ejected an endpoint of ``upstream`` (an Envoy
    cluster name such as ``outbound|8080||api.shop.mesh.internal``, failover's name for the service)."""
    stats = lab.admin(source, "/stats?filter=outlier_detection.ejections_enforced_total")
    found = re.search(rf"^cluster\.{re.escape(upstream)};?\.outlier_detection\."
                      rf"ejections_enforced_total: (\d+)$", stats, re.M)
    return int(found.group(1)) if found else 0


@dataclass
class Window:
    """Requests sent one after another, and the ejections the client's proxy made meanwhile."""

    answers: list[dict[str, Any]]
    ejected: int
    outlier: Outlier

    @property
    def failed(self) -> int:
        return sum(1 for a in self.answers if not answered(a))

    @property
    def pace(self) -> float:
        """Seconds between request starts, as measured (the median gap)."""
        starts = [a["t"] for a in self.answers]
        return statistics.median(b - a for a, b in itertools.pairwise(starts))

    def allowed_failures(self) -> int:
        """The failures the ejections made may cost (module docstring)."""
        per_ejection = max(self.outlier.threshold, math.ceil(self.outlier.interval / self.pace))
        slowest = max(a["ms"] for a in self.answers) / 1000
        in_flight = math.ceil(slowest / self.pace) + 1
        return self.ejected * (per_ejection + in_flight)

    def after_first_failure(self) -> list[dict[str, Any]]:
        first = next((i for i, a in enumerate(self.answers) if not answered(a)), 0)
        return self.answers[first:]


def window(lab: LabRun, source: str, url: str, upstream: str, outlier: Outlier,
           count: int = WINDOW) -> Window:
    before = ejections(lab, source, upstream)
    answers = lab.request(source, url, count=count, interval=PACE, timing=True, timeout=2)
    return Window(answers, ejections(lab, source, upstream) - before, outlier)


def return_window(lab: LabRun, source: str, upstream: str, w: Window) -> int:
    """Requests to await an ejected endpoint's return at the pace measured in ``w``: the
    ejection time (times the ejections so far) plus three intervals, and two seconds' more to
    see it stay."""
    o = w.outlier
    seconds = o.ejection * max(1, ejections(lab, source, upstream)) + 3 * o.interval + 2
    return math.ceil(seconds / w.pace)


def assert_switched(w: Window, to: str) -> None:
    """The endpoint was ejected, the failures it cost are within the bound, and from the first
    failure on every answer came from ``to``; the window ends in a failure only when an
    ejection ended and the dead endpoint was tried again (a second ejection)."""
    assert w.ejected >= 1, w.answers
    assert w.outlier.threshold <= w.failed <= w.allowed_failures(), (
        w.failed, w.allowed_failures(), w.answers)
    after = w.after_first_failure()
    assert any(answered(a) for a in after), w.answers
    assert all(a["cluster"] == to for a in after if answered(a)), w.answers
    assert answered(w.answers[-1]) or w.ejected >= 2, w.answers


