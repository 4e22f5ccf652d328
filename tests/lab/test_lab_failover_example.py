"""``examples/failover``, run as it is written, in the lab: what its three intents say holds for
frontend in east-1.

* catalog (``failover: {}``: Istio's locality order, the default outlier settings: 5
  consecutive 5xx eject for 30 s, checked every 5 s): served at home, in east-1; when east-1's
  instance dies, by east-2 (same region) rather than west-1.
* payments (gRPC; ``priority: [west-1, east-2]``, no instance in east-1): served by west-1.
* search (weights 30/30/40 over east-1, east-2, west-1): the declared split. Each cluster's
  count of N = 1,600 requests is checked against its binomial acceptance interval, the three
  checks sharing a false-failure rate of 1e-4; each catches a cluster given another's share
  (0.3 for 0.4 or the reverse) with probability over 0.9999, and west-1's catches a split that
  ignores the weights (a third each) with probability 0.9 (``stats``).

Failover windows are judged as in ``test_lab_failover.py`` (``outliers``).
"""

from __future__ import annotations

import collections

import pytest
from labrun import EXAMPLES, LabRun
from outliers import Outlier, answered, assert_switched, window
from stats import acceptance, power, split_check

pytestmark = pytest.mark.lab

FRONTEND = "frontend.shop@east-1"
CATALOG_OUTLIER = Outlier(threshold=5, interval=5.0, ejection=30.0)  # meshbridge's defaults
N = 1600
SHARES = {"east-1": 0.3, "east-2": 0.3, "west-1": 0.4}


def test_the_failover_example_routes_as_its_intents_say(mesh_lab_run: LabRun) -> None:
    mesh_lab_run.up(EXAMPLES / "failover")

    catalog = "http://catalog.shop.svc.cluster.local:8080/"
    home = mesh_lab_run.request(FRONTEND, catalog, count=20)
    assert collections.Counter(a.get("cluster") for a in home) == {"east-1": 20}, home

    payments = mesh_lab_run.request(FRONTEND, "http://payments.shop.svc.cluster.local:8443/",
                                    count=20)
    assert collections.Counter(a.get("cluster") for a in payments) == {"west-1": 20}, payments

    answers = mesh_lab_run.request(FRONTEND, "http://search.shop.svc.cluster.local:9000/",
                                   count=N)
    assert all(answered(a) for a in answers), [a for a in answers if not answered(a)][:5]
    split = collections.Counter(a["cluster"] for a in answers)
    assert set(split) == set(SHARES), split
    for cluster, share in SHARES.items():
        lo, hi = split_check(N, share, wrong=0.7 - share, false_failure=1e-4 / len(SHARES))
        assert lo <= split[cluster] <= hi, (cluster, split, (lo, hi))
    # the power against a split that ignores the weights, as the docstring states it
    assert power(N, 1 / 3, acceptance(N, SHARES["west-1"], 1e-4 / len(SHARES))) >= 0.9

    mesh_lab_run.stop("catalog.shop@east-1")
    upstream = "outbound|8080||catalog.shop.mesh.internal"
    during = window(mesh_lab_run, FRONTEND, catalog, upstream, CATALOG_OUTLIER)
    assert_switched(during, to="east-2")
