"""Failover, proven with real traffic: a client keeps working when one cluster's instance of a
service dies, within a bounded number of failed requests, and traffic comes back when it recovers.

An instance "dies" with ``mesh-lab stop``: its stub stops, its sidecar and endpoint stay (as when
an app hangs or crashes behind a live proxy), so the client's proxy sees 503s and its outlier
detection must eject that endpoint. Requests are sent one after another, paced (``--interval``),
and timed by the lab client (``t``: seconds since the first began; ``ms``: each one's time).

What the tests prove does not depend on how fast the machine is. They count what Envoy counts:
the client proxy's ejections of the upstream (``outlier_detection.ejections_enforced_total``,
read from its admin interface before and after a window of requests), and bound the failed
requests per ejection by the configured outlier settings and the pacing measured in that window:

* an ejection takes ``THRESHOLD`` consecutive failures (2 in ``meshes/failover.yaml``); a dead
  endpoint whose ejection ends is tried again and ejected at the detector's next review, so an
  ejection may cost every request of one ``INTERVAL`` instead (at the measured pace);
* plus the requests that started while Envoy's main thread ejected the endpoint and told its
  worker threads, a delay no longer than the slowest request of the window (both are thread
  scheduling delays): its time over the measured pace, plus one.

Windows are counts of requests derived the same way: a return is awaited for the configured
ejection time (times the ejections so far: Envoy lengthens each) plus three intervals, at the
measured pace. A loaded machine slows the requests, so a window covers more time, never less.

Outlier settings of ``meshes/failover.yaml``: 2 consecutive 5xx eject for 5 s, checked every 1 s.
The tests share one lab of it (``failover_lab``): each stops and starts only the instances of its
own service (api, split, ordered), and outlier detection is kept per upstream service, so none
sees another's failures.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator

import pytest
from labrun import MESHES, LabRun, lab_in_a_new_folder
from outliers import PACE, Outlier, answered, assert_switched, return_window, window
from stats import split_check

pytestmark = pytest.mark.lab

OUTLIER = Outlier(threshold=2, interval=1.0, ejection=5.0)  # as meshes/failover.yaml says
N = 400


@pytest.fixture(scope="module")
def failover_lab(lab_tools: None) -> Iterator[LabRun]:
    with lab_in_a_new_folder() as run:
        run.up(MESHES / "failover.yaml")
        yield run


def test_locality_failover_and_return(failover_lab: LabRun) -> None:
    url = "http://api.shop.svc.cluster.local:8080/"
    upstream = "outbound|8080||api.shop.mesh.internal"
    home = failover_lab.request("web.shop@a", url, count=20)
    assert collections.Counter(a.get("cluster") for a in home) == {"a": 20}, home

    failover_lab.stop("api.shop@a")
    during = window(failover_lab, "web.shop@a", url, upstream, OUTLIER)
    # the region neighbour (b) takes over, not the other region (c)
    assert_switched(during, to="b")

    failover_lab.start("api.shop@a")
    count = return_window(failover_lab, "web.shop@a", upstream, during)
    back = failover_lab.request("web.shop@a", url, count=count, interval=PACE, timing=True,
                                timeout=2)
    assert all(answered(a) for a in back), back
    assert any(a["cluster"] == "a" for a in back), back
    assert all(a["cluster"] == "a" for a in back[-10:]), back[-10:]


def test_weighted_split_fails_over_and_returns(failover_lab: LabRun) -> None:
    url = "http://split.shop.svc.cluster.local:9090/"
    upstream = "outbound|9090||split.shop.mesh.internal"
    lo, hi = split_check(N, 0.3, wrong=0.5)

    def share_of_a() -> int:
        answers = failover_lab.request("web.shop@c", url, count=N)
        assert all(answered(a) for a in answers), answers
        split = collections.Counter(a["cluster"] for a in answers)
        assert set(split) == {"a", "b"}, split
        return split["a"]

    assert lo <= share_of_a() <= hi

    failover_lab.stop("split.shop@b")
    during = window(failover_lab, "web.shop@c", url, upstream, OUTLIER)
    assert_switched(during, to="a")

    failover_lab.start("split.shop@b")
    count = return_window(failover_lab, "web.shop@c", upstream, during)
    back = failover_lab.request("web.shop@c", url, count=count, interval=PACE, timing=True,
                                timeout=2)
    assert all(answered(a) for a in back), back
    assert any(a["cluster"] == "b" for a in back), back
    # once b is back, the declared split holds again
    assert lo <= share_of_a() <= hi


def test_explicit_priority_is_followed(failover_lab: LabRun) -> None:
    url = "http://ordered.shop.svc.cluster.local:7070/"
    upstream = "outbound|7070||ordered.shop.mesh.internal"
    first = failover_lab.request("web.shop@a", url, count=20)
    assert collections.Counter(a.get("cluster") for a in first) == {"c": 20}, first

    failover_lab.stop("ordered.shop@c")
    during = window(failover_lab, "web.shop@a", url, upstream, OUTLIER)
    assert_switched(during, to="b")  # c first, then b, then a: as written, not by locality

    failover_lab.stop("ordered.shop@b")
    during = window(failover_lab, "web.shop@a", url, upstream, OUTLIER)
    # b is ejected; c's ejection may end in this window and c, still dead, is tried again
    # and ejected again: each is an ejection the bound counts
    assert_switched(during, to="a")
    assert all(a["cluster"] == "a" for a in during.answers if answered(a)), during.answers
