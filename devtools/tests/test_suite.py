"""scripts/test's own decisions: which system packages count as missing, and the table of
phase times a slow or failed run is read from."""

from __future__ import annotations

import pytest

from meshbridge_dev import suite
from meshbridge_dev.testenv.common import REPO


def test_a_package_is_missing_when_any_of_its_probes_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(suite, "PACKAGES", {
        "here": ["sh"], "half": ["sh", "no-such-command-anywhere"],
        "glob-or-command": ["/no/such/dir/*/x|sh"], "module": ["module:json"],
        "no-module": ["module:no_such_module_anywhere"],
    })
    assert suite.missing_packages() == ["half", "no-module"]


def test_missing_packages_without_root_fail_and_name_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(suite, "missing_packages", lambda: ["iptables", "postgresql"])
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(suite.PhaseFailed, match="apt-get install -y --no-install-recommends "
                       "iptables postgresql"):
        suite.system_packages()


def test_the_table_shows_every_phase_also_after_a_failure() -> None:
    timings = suite.Timings(["first", "second", "third"])
    timings.phase("first", lambda: None)

    def fails() -> None:
        raise suite.PhaseFailed("pytest exited 1\nmore detail", 1)

    with pytest.raises(suite.PhaseFailed):
        timings.phase("second", fails)
    lines = timings.table().splitlines()
    assert [line.split()[0] for line in lines] == ["phase", "first", "second", "third", "total"]
    assert lines[1].endswith("ok")
    assert lines[2].endswith("FAILED: pytest exited 1")
    assert lines[3].endswith("not run")


def test_every_test_folder_runs_in_exactly_one_group() -> None:
    """scripts/test with no arguments runs its groups only: a test folder in none would never
    run, one in two would run twice."""
    folders = [f"tests/{p.name}" for p in (REPO / "tests").iterdir()
               if p.is_dir() and p.name not in ("support", "__pycache__")
               and any(p.rglob("test_*.py"))] + ["devtools/tests"]
    grouped = [f for paths in suite.GROUPS.values() for f in paths]
    assert sorted(grouped) == sorted(set(grouped)), "a folder in two groups"
    modules = [f for f in grouped if f.endswith(".py")]
    assert sorted(folders) == sorted(set(grouped) - set(modules))
    for module in modules:  # carved out of its folder's group, and run by exactly one other
        assert (REPO / module).is_file(), module
        owners = [g for g in suite.GROUPS if module in suite.GROUPS[g]]
        skipping = [g for g in suite.GROUPS if f"--ignore={module}" in suite.pytest_command(
            [], g)]
        folder = [g for g in suite.GROUPS if any(module.startswith(f"{p}/")
                                                  for p in suite.GROUPS[g])]
        assert len(owners) == 1 and skipping == folder and len(folder) == 1, (
            module, owners, skipping, folder)
    assert not list((REPO / "tests").glob("test_*.py")), "a test module outside a folder"


def test_the_table_shows_each_group_under_the_phase_and_adds_only_the_phases() -> None:
    timings = suite.Timings(["ruff", "pytest"])
    timings.rows = {"ruff": (1.0, "ok"), "pytest": (10.0, "ok"),
                    "pytest: servers": (9.0, "ok"), "pytest: in-process": (7.5, "ok")}
    lines = timings.table().splitlines()
    assert [line.split()[0] for line in lines] == ["phase", "ruff", "pytest", "pytest:",
                                                   "pytest:", "total"]
    assert lines[-1].split() == ["total", "11.0"]
