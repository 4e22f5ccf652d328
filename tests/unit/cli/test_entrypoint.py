"""The console entry point as installed: a real process, its exit code and its output.

The process ends the interpreter's own way: the output reaches a pipe whole, exit codes are the
command's, what the command wrote (files, the state store) is complete, and exit hooks that
others registered (coverage, a profiler, a plugin) run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.helpers import EXAMPLES

ENTRY = "import sys; from meshbridge.cli import main; sys.argv[0] = 'meshbridge'; main()"


def run(
    *args: str, cwd: Path, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", ENTRY, *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_whole_output_reaches_a_pipe(tmp_path: Path) -> None:
    done = run("--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("╯")  # the whole help box, bottom line included
    assert "render" in done.stdout and "apply" in done.stdout


def test_exit_codes_are_the_commands(tmp_path: Path) -> None:
    good = run("validate", "-f", str(EXAMPLES / "sleep-httpbin"), cwd=tmp_path)
    assert good.returncode == 0, good.stderr
    bad = run("validate", "-f", "-", cwd=tmp_path, stdin="kind: Nope\n")
    assert bad.returncode == 2
    assert "nothing was written" in bad.stderr or "problem" in bad.stderr
    usage = run("render", "--no-such-option", cwd=tmp_path)
    assert usage.returncode == 2
    assert "No such option" in usage.stderr


def test_a_rendered_tree_is_complete_when_the_process_ends(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = run(
        "render",
        "-f",
        str(EXAMPLES / "sleep-httpbin"),
        "-o",
        str(out),
        "--state",
        str(tmp_path / "state.db"),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.yaml"))
    assert files and all((out / f).stat().st_size > 0 for f in files)
    again = run(
        "render",
        "-f",
        str(EXAMPLES / "sleep-httpbin"),
        "-o",
        str(tmp_path / "again"),
        "--state",
        str(tmp_path / "state.db"),
        cwd=tmp_path,
    )
    assert again.returncode == 0, again.stderr
    for f in files:  # the store was committed and closed: same VIPs, same certificates
        assert (out / f).read_bytes() == (tmp_path / "again" / f).read_bytes()


def test_exit_hooks_of_a_plugin_run(tmp_path: Path) -> None:
    """A plugin loaded at start-up (here through ``sitecustomize``, as coverage and profilers
    hook in) registers an ``atexit`` handler: it runs when the command ends, success or not."""
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "sitecustomize.py").write_text(
        "import atexit, sys\n"
        "atexit.register(lambda: print('plugin: exit hook ran', file=sys.stderr))\n"
    )
    path = os.pathsep.join(p for p in (str(plugin), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    ok = run("validate", "-f", str(EXAMPLES / "sleep-httpbin"), cwd=tmp_path, env=env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr.rstrip().endswith("plugin: exit hook ran")
    bad = run("validate", "-f", "-", cwd=tmp_path, stdin="kind: Nope\n", env=env)
    assert bad.returncode == 2
    assert bad.stderr.rstrip().endswith("plugin: exit hook ran")



HEAVY = ("sqlalchemy", "pydantic", "cryptography", "yaml", "httpx", "httpx2", "lightkube",
         "uvicorn", "fastapi", "meshbridge.compile", "meshbridge.model", "meshbridge.store",
         "meshbridge.kube", "meshbridge.pki", "meshbridge.client")


def test_help_starts_without_the_services(tmp_path: Path) -> None:
    """`meshbridge --help` loads no database driver, model, compiler, X.509, YAML or HTTP
    library: each command imports those where it runs, so start-up stays short."""
    probe = (
        "import sys\n"
        "from meshbridge.cli import main\n"
        "sys.argv[:] = ['meshbridge', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"heavy = {HEAVY!r}\n"
        "loaded = sorted(m for m in sys.modules if m in heavy or m.startswith(\n"
        "    tuple(h + '.' for h in heavy)))\n"
        "print('LOADED:' + ' '.join(loaded), file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "Usage: meshbridge" in done.stdout
    assert done.stderr.strip().splitlines()[-1] == "LOADED:"
