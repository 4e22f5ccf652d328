"""Private keys stay out of the tree `render -o DIR` writes for Git (issue 12).

The `cacerts` Secrets (each cluster's intermediate CA key) and ingress credentials (`tls.key`) are
left out of DIR and the summary says so; `--secrets-dir DIR2` writes them to a tree of their own
(0700/0600); `--include-secrets` puts them in DIR (0600); options that clash are refused before
anything is written; and a render that is interrupted or fails leaves neither a staging folder
nor a key beside the output, and the old output as it was.
"""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from bench.meshgen import generate
from helpers import EXAMPLES, write_docs

LEFT_OUT = (
    "left out 3 Secrets holding private keys (cacerts in 2 clusters, 1 ingress credential): "
    "not for a Git tree; use --secrets-dir DIR2 or --include-secrets"
)
KEY_FILES = [
    "cluster1/istio-system/secret.cacerts.yaml",
    "cluster2/istio-system/secret.cacerts.yaml",
    "cluster2/istio-system/secret.httpbin.example.com-credential.yaml",
]


def _intents(tmp_path: Path) -> Path:
    """The seed's sleep -> httpbin across two clusters, httpbin also reachable from outside."""
    docs = [d for path in sorted((EXAMPLES / "sleep-httpbin").glob("*.yaml"))
            for d in yaml.safe_load_all(path.read_text()) if d]
    for doc in docs:
        if doc["kind"] == "Mesh":
            doc["spec"]["rootCA"]["keyAlgorithm"] = "ECDSA-P256"  # fast keys
        if doc["kind"] == "InboundIntent" and doc["metadata"]["name"] == "httpbin":
            doc["spec"]["protocol"] = "HTTP"
            doc["spec"]["external"] = {"host": "httpbin.example.com"}
    return write_docs(tmp_path / "in" / "mesh.yaml", docs)


def _private_keys(root: Path) -> list[str]:
    """Every file below ``root`` that holds a private key, in clear or in a Secret's data."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        raw = path.read_bytes()
        if b"PRIVATE KEY" in raw or any(
            b"PRIVATE KEY" in base64.b64decode(value)
            for doc in _documents(raw)
            for value in (doc.get("data") or {}).values()
        ):
            found.append(str(path.relative_to(root)))
    return found


def _documents(raw: bytes) -> list[dict[str, Any]]:
    try:
        return [d for d in yaml.safe_load_all(raw) if isinstance(d, dict)]
    except (yaml.YAMLError, UnicodeDecodeError):
        return []


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _beside(parent: Path) -> list[str]:
    """What a render left in ``parent`` besides its inputs and state: staging or old trees."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_default_render_writes_no_private_key_and_says_so(cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = cli("render", "-f", str(_intents(tmp_path)), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    assert _private_keys(out) == []
    assert not list(out.rglob("secret.*"))
    assert (out / "cluster2" / "bar" / "gateway.httpbin-ingress.yaml").is_file()
    assert LEFT_OUT in result.stderr
    assert "apply sends them to clusters directly" in result.stderr
    assert _beside(tmp_path) == []


def test_secrets_dir_holds_the_keys_apart_in_a_private_tree(cli, tmp_path: Path) -> None:
    src, out, keys = _intents(tmp_path), tmp_path / "out", tmp_path / "keys"
    result = cli("render", "-f", str(src), "-o", str(out), "--secrets-dir", str(keys))
    assert result.exit_code == 0, result.stderr
    assert _private_keys(out) == []
    assert _files(keys) == [".meshbridge-render", *KEY_FILES]
    assert sorted(_private_keys(keys)) == KEY_FILES
    for path in [keys, *keys.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        assert mode == (0o700 if path.is_dir() else 0o600), path
    assert f"wrote 3 Secrets holding private keys (cacerts in 2 clusters, 1 ingress credential) to {keys}" in result.stdout
    assert "left out" not in result.stderr
    # the same bytes as --include-secrets writes, from the same store
    both = tmp_path / "both"
    assert cli("render", "-f", str(src), "-o", str(both), "--include-secrets").exit_code == 0
    for rel in KEY_FILES:
        assert (keys / rel).read_bytes() == (both / rel).read_bytes()
    # rewritten like DIR: a cluster removed leaves nothing stale in either tree
    docs = [d for d in yaml.safe_load_all(src.read_text())
            if not (d["kind"] == "Cluster" and d["metadata"]["name"] == "cluster1")
            and not (d["kind"] == "App" and d["metadata"]["name"] == "sleep")]
    for doc in docs:
        if doc["kind"] == "InboundIntent":
            doc["spec"]["clients"] = []
    write_docs(src, docs)
    result = cli("render", "-f", str(src), "-o", str(out), "--secrets-dir", str(keys))
    assert result.exit_code == 0, result.stderr
    assert _files(keys) == [".meshbridge-render", *KEY_FILES[1:]]
    assert not (out / "cluster1").exists()
    assert _beside(tmp_path) == []


def test_include_secrets_puts_them_in_the_output_readable_by_the_owner_only(
    cli, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = cli("render", "-f", str(_intents(tmp_path)), "-o", str(out), "--include-secrets")
    assert result.exit_code == 0, result.stderr
    assert sorted(_private_keys(out)) == KEY_FILES
    for path in out.rglob("*.yaml"):
        mode = path.stat().st_mode & 0o777
        assert mode == (0o600 if str(path.relative_to(out)) in KEY_FILES else 0o644), path
    assert "left out" not in result.stderr
    assert "do not commit them" in result.stderr


@pytest.mark.parametrize(
    ("keys", "out", "include", "says"),
    [
        ("keys", "out", True, "--secrets-dir and --include-secrets exclude each other"),
        ("out", "out", False, "is the output directory"),
        ("out/keys", "out", False, "is inside the output directory"),
        ("out/../out/k", "out", False, "is inside the output directory"),
        ("keys", "keys/out", False, "is inside the secrets directory"),
    ],
)
def test_secrets_options_that_clash_exit_2_and_write_nothing(
    cli, tmp_path: Path, keys: str, out: str, include: bool, says: str
) -> None:
    src = _intents(tmp_path)
    old = tmp_path / "old"
    assert cli("render", "-f", str(src), "-o", str(old)).exit_code == 0
    before = _digest(old)
    state = tmp_path / "fresh" / "state.db"
    args = ["render", "-f", str(src), "-o", str(tmp_path / out), "--state", str(state),
            "--secrets-dir", str(tmp_path / keys)]
    result = cli(*args, *(["--include-secrets"] if include else []))
    assert result.exit_code == 2, result.stderr
    assert says in result.stderr and "nothing was written" in result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "keys").exists()
    assert not state.parent.exists(), "the state store was touched"
    # the same against an existing output: it is left as it was
    result = cli("render", "-f", str(src), "-o", str(old), "--secrets-dir", str(old / "k"))
    assert result.exit_code == 2
    assert _digest(old) == before


def test_a_secrets_dir_meshbridge_did_not_write_is_not_wiped(cli, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "notes.txt").write_text("precious")
    out = tmp_path / "out"
    result = cli("render", "-f", str(_intents(tmp_path)), "-o", str(out), "--secrets-dir", str(keys))
    assert result.exit_code == 1
    assert f"{keys} is not empty and was not written by meshbridge render" in result.stderr
    assert _files(keys) == ["notes.txt"]
    assert not out.exists()


# ------------------------------------------------------------------ interrupted or failed writes


def _fail_while_writing(monkeypatch: pytest.MonkeyPatch, error: BaseException, option: str
                        ) -> list[str]:
    """Make the render's writer fail as it creates its second key file (the first is written),
    or with the keys left out, its fifth file: a file written anew, or one of the old output
    linked into the new tree (same bytes)."""
    real_open, real_link = os.open, os.link
    opened: list[str] = []
    prefix, nth = ("secret.", 2) if option else ("", 5)

    def created(path: Any) -> None:
        name = Path(path).name
        if name.startswith(prefix) and name != ".meshbridge-render":
            opened.append(str(path))
            if len(opened) == nth:
                raise error

    def failing_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if flags & os.O_EXCL:
            created(path)
        return real_open(path, flags, *args, **kwargs)

    def failing_link(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        created(dst)
        real_link(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "open", failing_open)
    monkeypatch.setattr(os, "link", failing_link)
    return opened


@pytest.mark.parametrize("error", [KeyboardInterrupt(), RuntimeError("a bug")],
                         ids=["ctrl-c", "exception"])
@pytest.mark.parametrize("option", ["", "--include-secrets", "--secrets-dir"])
def test_an_interrupted_render_leaves_no_staging_folder_and_no_key(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, option: str, error: BaseException
) -> None:
    src, out, keys = _intents(tmp_path), tmp_path / "out", tmp_path / "keys"
    assert cli("render", "-f", str(src), "-o", str(out)).exit_code == 0
    # A file no render writes: the next render replaces the tree even with the keys left out
    # again (an output that already is the render is left as it is: nothing to interrupt).
    (out / "cluster1" / "notes.txt").write_text("not meshbridge's\n")
    before = _digest(out)
    opened = _fail_while_writing(monkeypatch, error, option)
    args = ["render", "-f", str(src), "-o", str(out), *([option] if option else [])]
    if option == "--secrets-dir":
        args.append(str(keys))
    if isinstance(error, KeyboardInterrupt):
        assert cli(*args).exit_code == 130  # 128 + SIGINT, as a shell reports Ctrl-C
    else:
        with pytest.raises(RuntimeError):
            cli(*args)
    assert len(opened) == (2 if option else 5), "the writer never got that far"
    monkeypatch.undo()
    assert _beside(tmp_path) == []
    assert _private_keys(tmp_path / "in") == [] and not keys.exists()
    assert _digest(out) == before, "the old output was changed"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out", "state"]


ENTRY = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from meshbridge.cli import main; sys.argv[0] = 'meshbridge'; main()"
)


@pytest.mark.parametrize("option", ["", "--include-secrets", "--secrets-dir"])
def test_ctrl_c_while_a_large_render_writes(tmp_path: Path, option: str) -> None:
    """The real thing: a process rendering a mesh of some 6,000 files gets SIGINT as soon as the
    output's staging folder appears (when --secrets-dir is given, the key tree is staged by
    then)."""
    docs = generate(clusters=12, servers=600, clients=2)
    src = write_docs(tmp_path / "in" / "mesh.yaml", docs)
    small = write_docs(tmp_path / "small" / "mesh.yaml", docs[:3])  # the Mesh, two clusters
    out, keys, work = tmp_path / "out", tmp_path / "keys", tmp_path / "work"
    work.mkdir()

    def render(intents: Path, *extra: str) -> list[str]:
        return [sys.executable, "-c", ENTRY, "render", "-f", str(intents), "-o", str(out),
                "--state", str(tmp_path / "state" / "state.db"), *extra]

    first = subprocess.run(render(small), cwd=work, capture_output=True, text=True,
                           timeout=300, check=False)
    assert first.returncode == 0, first.stderr
    before = _digest(out)
    extra = {"": [], "--include-secrets": [option], "--secrets-dir": [option, str(keys)]}[option]
    proc = subprocess.Popen(render(src, *extra), cwd=work, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    staged: list[str] = []
    while not any(n.startswith(".out.") for n in staged) and proc.poll() is None:
        assert time.monotonic() < deadline, "the render never started writing"
        staged = _beside(tmp_path)
    proc.send_signal(signal.SIGINT)
    assert proc.poll() is None or proc.returncode == 130, "the render ended before the signal"
    if option == "--secrets-dir":  # the key tree is written first: its staging holds keys now
        assert any(n.startswith(".keys.") for n in staged), staged
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr  # interrupted (128 + SIGINT), not finished
    assert _beside(tmp_path) == []
    assert not keys.exists()
    assert _digest(out) == before, "the old output was changed"
    for root in (out, work, tmp_path / "in", tmp_path / "small"):
        assert _private_keys(root) == []
