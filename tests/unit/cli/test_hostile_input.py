"""The CLI on hostile input (issue 26): every file of the catalogue (tests/support/hostile.py)
is refused with exit 2, its problem located and no traceback, by a process whose address space
is limited to 300 MB (RLIMIT_AS) and which must end within 60 s (a hang, not a timing: the
times are printed by bench/hostile.py). Any YAML text on stdin gives exit 0 or 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from hostile import HOSTILE, HOSTILE_KUBECONFIGS, run_limited, yaml_texts
from hypothesis import HealthCheck, given, settings

from meshbridge.limits import FILES


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_file_is_refused_quickly_in_little_memory(tmp_path: Path, case: str) -> None:
    hostile = HOSTILE[case]
    src = tmp_path / "mesh.yaml"
    src.write_bytes(hostile.text)
    ran = run_limited(["render", "-f", str(src), "-o", str(tmp_path / "out"), "--state",
                       str(tmp_path / "state.db")], cwd=tmp_path)
    assert ran.code == 2, ran.stderr
    assert "Traceback" not in ran.stderr and "MemoryError" not in ran.stderr
    assert ran.stderr.startswith(f"{src}#")
    if hostile.ctype != "application/json":  # a file is read as YAML, with YAML's words
        assert hostile.why in ran.stderr
    assert "\x1b" not in ran.stderr
    assert len(ran.stderr) < 2000, "the message echoes the input"
    assert not (tmp_path / "out").exists()


def test_an_endless_file_is_read_no_further_than_the_limit(tmp_path: Path) -> None:
    ran = run_limited(["validate", "-f", "/dev/zero"], cwd=tmp_path)
    assert ran.code == 2, ran.stderr
    assert f"/dev/zero#0 document: larger than {FILES.bytes:,} bytes" in ran.stderr


@pytest.mark.parametrize("case", ["alias bomb under extensions", "a list as a key",
                                  "an integer of 5,000 digits", "nested 150 deep"])
def test_a_hostile_kubeconfig_is_refused_before_anything_is_sent(tmp_path: Path,
                                                                 case: str) -> None:
    text, why = HOSTILE_KUBECONFIGS[case]
    config = tmp_path / "kubeconfig"
    config.write_text(text)
    ran = run_limited(["credential", "add", "east", "--kubeconfig", str(config), "--server",
                       "http://127.0.0.1:9", "--token", "mbt_000000000000_" + "x" * 43],
                      cwd=tmp_path)
    assert ran.code == 2, ran.stderr
    assert why in ran.stderr and "Traceback" not in ran.stderr


@pytest.mark.parametrize("case", sorted(c for c, h in HOSTILE.items() if h.ctype != "application/json"))
def test_hostile_stdin_is_refused_as_a_file_is(cli, case: str) -> None:
    try:
        text = HOSTILE[case].text.decode("utf-8")
    except UnicodeDecodeError:
        return  # stdin is text: what is not UTF-8 never reaches the reader as it is
    result = cli("validate", "-f", "-", input=text)
    assert result.exit_code == 2
    assert HOSTILE[case].why in result.stderr and result.stderr.startswith("<stdin>#")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=yaml_texts)
def test_any_yaml_on_stdin_is_valid_or_a_located_problem(cli, text: str) -> None:
    result = cli("validate", "-f", "-", input=text)  # an exception would fail the test
    assert result.exit_code in (0, 2), result.stderr
    if result.exit_code == 2:
        assert result.stderr.startswith("<stdin>#") and "\x1b" not in result.stderr
