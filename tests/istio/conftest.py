"""Fixtures for Istio's own judges: real istioctl, built from the pinned istio.io/istio module.

``istio_tools`` (session) runs ``scripts/k8s-testenv build --istio``, which builds istioctl,
pilot-discovery and pilot-agent (about 8 minutes on 2 cold cores) or reuses them (well under a
second), and reads the ``NAME=/abs/path`` lines it prints. The build's progress goes to stderr,
shown through pytest's capture. A failed build fails the tests: it never skips them.
"""

from __future__ import annotations

import pytest
from helpers import build_test_tools
from judges import IstioTools


@pytest.fixture(scope="session")
def istio_tools(pytestconfig: pytest.Config) -> IstioTools:
    """istioctl, pilot-discovery and pilot-agent from ``k8s-testenv build --istio``: never skip."""
    paths = build_test_tools(pytestconfig)
    return IstioTools(
        istioctl=paths["istioctl"],
        pilot_discovery=paths["pilot-discovery"],
        pilot_agent=paths["pilot-agent"],
    )
