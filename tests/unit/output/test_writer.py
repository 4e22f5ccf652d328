"""output.writer called directly: the promises of its docstrings, each as a user of ``render -o``
would see it. A render replaces its directory whole (nothing stale survives) or not at all (a
failure leaves the previous render as it was, and nothing staged beside it); an output that
already is the render is not touched; a directory meshbridge did not write is never wiped; files
holding a private key go where :class:`KeyPlacement` says, and nowhere else.

Everything happens under ``tmp_path``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from meshbridge.errors import OutputError
from meshbridge.output.emitter import CACERTS, INGRESS_CREDENTIAL, ManifestFile
from meshbridge.output.writer import (
    MARKER,
    SERIAL_BELOW,
    KeyPlacement,
    staging,
    write_render,
    write_tree,
)

KEY_FILES = {
    "c1/istio-system/secret.cacerts.yaml": (b"kind: Secret\ndata: {ca-key.pem: a2V5MQ==}\n",
                                            CACERTS),
    "c2/istio-system/secret.web.example.com-credential.yaml": (
        b"kind: Secret\ndata: {tls.key: a2V5Mg==}\n", INGRESS_CREDENTIAL),
}
MANIFESTS = {
    "c1/foo/serviceentry.httpbin.bar.c2.yaml": (b"kind: ServiceEntry\nspec: {hosts: [a]}\n", None),
    "c1/istio-system/istiooperator.meshbridge.yaml": (b"kind: IstioOperator\n", None),
    "c2/istio-system/gateway.httpbin-bar-c2.yaml": (b"kind: Gateway\n", None),
}
RENDER: dict[str, ManifestFile] = {**MANIFESTS, **KEY_FILES}


def contents(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` (the marker left out) and its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != MARKER}


def entries(root: Path) -> dict[str, tuple[int, int, int]]:
    """``root`` and every entry below it: inode, mode, modification time."""
    return {str(p.relative_to(root)): (p.lstat().st_ino, p.lstat().st_mode, p.lstat().st_mtime_ns)
            for p in [root, *sorted(root.rglob("*"))]}


def leftovers(parent: Path) -> list[str]:
    """What a write left in ``parent`` besides its targets: staging or old trees."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def umask() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))


def changed(files: dict[str, ManifestFile]) -> dict[str, ManifestFile]:
    """``files`` with every file's bytes changed."""
    return {rel: (data + b"# again\n", holder) for rel, (data, holder) in files.items()}


# ------------------------------------------------------------------------------------ writing


@pytest.mark.parametrize("exists", [False, True])
def test_a_render_lands_whole_in_a_new_or_empty_directory(tmp_path: Path, exists: bool) -> None:
    out = tmp_path / "out"
    if exists:
        out.mkdir()
    written = write_render(out, RENDER)
    assert contents(out) == {rel: data for rel, (data, _) in MANIFESTS.items()}
    assert (out / MARKER).is_file()
    assert (written.output, written.files, written.keys_to) == (out, len(MANIFESTS), None)
    assert leftovers(tmp_path) == []
    # manifests are for Git and for everyone to read; directories as the umask makes them
    assert mode(out) == 0o755
    assert {mode(p) for p in out.rglob("*") if p.is_file()} == {0o644}
    assert {mode(p) for p in out.rglob("*") if p.is_dir()} == {0o777 & ~umask()}


def test_a_render_with_many_files_is_written_whole(tmp_path: Path) -> None:
    """More files than one thread writes alone: the writers share them, and none is lost."""
    many = {f"c{i % 3}/ns{i % 7}/serviceentry.s{i}.yaml": (f"n: {i}\n".encode(), None)
            for i in range(SERIAL_BELOW * 2 + 1)}
    out = tmp_path / "out"
    assert write_render(out, many).files == len(many)
    assert contents(out) == {rel: data for rel, (data, _) in many.items()}


def test_a_new_render_replaces_the_previous_one_whole(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_render(out, {**MANIFESTS, "c3/baz/virtualservice.gone.yaml": (b"kind: X\n", None)})
    (out / "c1" / "foo" / "serviceentry.httpbin.bar.c2.yaml").write_bytes(b"edited by hand\n")
    now = {"c1/foo/serviceentry.httpbin.bar.c2.yaml": MANIFESTS[
        "c1/foo/serviceentry.httpbin.bar.c2.yaml"],
           "c2/istio-system/gateway.httpbin-bar-c2.yaml": (b"kind: Gateway\nnew: 1\n", None)}
    write_render(out, now)
    assert contents(out) == {rel: data for rel, (data, _) in now.items()}
    assert not (out / "c3").exists(), "a cluster no longer rendered left its folder behind"
    assert leftovers(tmp_path) == []


def test_a_previous_render_is_replaced_and_not_followed_through_links(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere.yaml"
    write_render(out, MANIFESTS)
    linked = out / "c1" / "istio-system" / "istiooperator.meshbridge.yaml"
    elsewhere.write_bytes(b"somebody else's file\n")
    linked.unlink()
    linked.symlink_to(elsewhere)
    write_render(out, MANIFESTS)
    assert not linked.is_symlink()
    assert contents(out) == {rel: data for rel, (data, _) in MANIFESTS.items()}
    assert elsewhere.read_bytes() == b"somebody else's file\n"


def test_an_output_that_already_is_the_render_is_left_untouched(tmp_path: Path) -> None:
    out, keys = tmp_path / "out", tmp_path / "keys"
    placement = KeyPlacement(secrets_dir=keys)
    write_render(out, RENDER, placement)
    before = entries(out), entries(keys)
    again = write_render(out, RENDER, placement)
    assert (entries(out), entries(keys)) == before
    assert again.unchanged == {out, keys}
    assert leftovers(tmp_path) == []
    # any change at all is written (and only then is the tree replaced)
    third = write_render(out, changed(MANIFESTS) | KEY_FILES, placement)
    assert third.unchanged == {keys}
    assert entries(keys) == before[1]
    assert contents(out) == {rel: data for rel, (data, _) in changed(MANIFESTS).items()}


# ------------------------------------------------------------------------- directories refused


def test_a_directory_it_did_not_write_is_never_wiped(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    with pytest.raises(OutputError, match="not written by meshbridge render"):
        write_render(out, RENDER)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert (out / "notes.txt").read_text() == "precious"
    assert leftovers(tmp_path) == []


def test_a_secrets_directory_it_did_not_write_stops_the_render_before_anything(
    tmp_path: Path,
) -> None:
    out, keys = tmp_path / "out", tmp_path / "keys"
    keys.mkdir()
    (keys / "id_rsa").write_text("mine")
    with pytest.raises(OutputError, match="not written by meshbridge render"):
        write_render(out, RENDER, KeyPlacement(secrets_dir=keys))
    assert not out.exists()
    assert [p.name for p in keys.iterdir()] == ["id_rsa"]


def test_a_file_where_the_output_should_be_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.write_text("a file")
    with pytest.raises(OutputError, match="is not a directory"):
        write_render(out, RENDER)
    assert out.read_text() == "a file"


# ----------------------------------------------------------------------- private keys placed


def test_by_default_files_holding_a_private_key_are_left_out_and_named(tmp_path: Path) -> None:
    out = tmp_path / "out"
    written = write_render(out, RENDER)
    assert not list(out.rglob("secret.*"))
    assert dict(written.keys) == {rel: holder for rel, (_, holder) in KEY_FILES.items()}
    assert written.keys_to is None


def test_a_secrets_directory_holds_the_keys_in_a_private_tree(tmp_path: Path) -> None:
    out, keys = tmp_path / "out", tmp_path / "keys"
    written = write_render(out, RENDER, KeyPlacement(secrets_dir=keys))
    assert contents(out) == {rel: data for rel, (data, _) in MANIFESTS.items()}
    assert contents(keys) == {rel: data for rel, (data, _) in KEY_FILES.items()}
    assert (keys / MARKER).is_file()
    for path in [keys, *keys.rglob("*")]:
        assert mode(path) == (0o700 if path.is_dir() else 0o600), path
    assert written.keys_to == keys and written.files == len(MANIFESTS)
    # replaced whole like the output: a key no longer rendered is gone
    one = dict(list(KEY_FILES.items())[:1])
    write_render(out, {**MANIFESTS, **one}, KeyPlacement(secrets_dir=keys))
    assert contents(keys) == {rel: data for rel, (data, _) in one.items()}


@pytest.mark.parametrize("write", ["include", "write_tree"])
def test_included_keys_land_in_the_output_readable_by_the_owner_only(
    tmp_path: Path, write: str
) -> None:
    out = tmp_path / "out"
    if write == "include":
        written = write_render(out, RENDER, KeyPlacement(include=True))
        assert written.keys_to == out and written.files == len(RENDER)
    else:
        write_tree(out, RENDER)
    assert contents(out) == {rel: data for rel, (data, _) in RENDER.items()}
    for rel, (_, holder) in RENDER.items():
        assert mode(out / rel) == (0o644 if holder is None else 0o600), rel


@pytest.mark.parametrize(("secrets", "include", "problem"), [
    ("keys", True, "exclude each other"),
    ("out", False, "is the output directory"),
    ("out/keys", False, "is inside the output directory"),
    (".", False, "is inside the secrets directory"),
])
def test_key_placements_that_would_mix_the_trees_are_refused_before_anything(
    tmp_path: Path, secrets: str, include: bool, problem: str
) -> None:
    out = tmp_path / "out"
    with pytest.raises(OutputError, match=problem):
        write_render(out, RENDER, KeyPlacement(secrets_dir=tmp_path / secrets, include=include))
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ------------------------------------------------------------------- a failure changes nothing


TOO_LONG = "c2/default/serviceentry." + "x" * 300 + ".yaml"  # over 255 bytes: cannot be created


@pytest.mark.parametrize("count", [3, SERIAL_BELOW * 2])
def test_a_file_that_cannot_be_created_leaves_the_previous_render_as_it_was(
    tmp_path: Path, count: int
) -> None:
    """Whether the files are written by one thread or by several."""
    out = tmp_path / "out"
    write_render(out, RENDER)
    before, files = entries(out), contents(out)
    bad = {f"c1/ns{i % 5}/serviceentry.s{i}.yaml": (b"kind: ServiceEntry\n", None)
           for i in range(count)}
    bad[TOO_LONG] = (b"kind: ServiceEntry\n", None)
    with pytest.raises(OutputError, match=f"cannot write {out}: File name too long"):
        write_render(out, bad)
    assert entries(out) == before and contents(out) == files
    assert leftovers(tmp_path) == []


def test_a_failed_output_leaves_the_secrets_directory_as_it_was_too(tmp_path: Path) -> None:
    """The key tree is written first: the output failing after it must not swap it in."""
    out, keys = tmp_path / "out", tmp_path / "keys"
    placement = KeyPlacement(secrets_dir=keys)
    write_render(out, RENDER, placement)
    before = entries(out), entries(keys)
    broken = changed(RENDER) | {TOO_LONG: (b"kind: ServiceEntry\n", None)}
    with pytest.raises(OutputError):
        write_render(out, broken, placement)
    assert (entries(out), entries(keys)) == before
    assert leftovers(tmp_path) == []


def test_a_swap_that_fails_half_way_puts_every_tree_back(tmp_path: Path) -> None:
    """The secrets tree is swapped in, then the output cannot be moved aside (a non-empty
    leftover sits where it would go): the secrets tree swapped in is taken out again."""
    out, keys = tmp_path / "out", tmp_path / "keys"
    placement = KeyPlacement(secrets_dir=keys)
    write_render(out, RENDER, placement)
    before = contents(out), contents(keys)
    in_the_way = tmp_path / f".out.old.{os.getpid()}"
    in_the_way.mkdir()
    (in_the_way / "something").write_text("x")
    with pytest.raises(OutputError, match=f"cannot write {out}"):
        write_render(out, changed(RENDER), placement)
    assert (contents(out), contents(keys)) == before
    assert leftovers(tmp_path) == [in_the_way.name]


def test_a_render_stopped_before_its_swap_leaves_the_previous_one_and_nothing_staged(
    tmp_path: Path,
) -> None:
    """``render`` fills inside its store transaction and swaps once it is committed: when
    anything fails in between, the staged trees go and the old ones stay."""
    out, keys = tmp_path / "out", tmp_path / "keys"
    placement = KeyPlacement(secrets_dir=keys)
    write_render(out, RENDER, placement)
    before = entries(out), entries(keys)

    def render_whose_commit_fails() -> None:
        with staging(out, placement) as stage:
            stage.fill(changed(RENDER))
            assert len(leftovers(tmp_path)) == 2  # both trees staged beside their targets
            raise RuntimeError("the store could not commit")

    with pytest.raises(RuntimeError, match="the store could not commit"):
        render_whose_commit_fails()
    assert (entries(out), entries(keys)) == before
    assert leftovers(tmp_path) == []


# ------------------------------------------------------- issue 26: links, modes under any umask


@pytest.fixture(params=[0o000, 0o077])
def any_umask(request: pytest.FixtureRequest):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def test_key_directories_and_files_are_private_whatever_the_umask(tmp_path: Path,
                                                                  any_umask: int) -> None:
    """Under umask 000 the directories made on the way to a key tree, and those holding keys
    in an output with --include-secrets, were 0777."""
    keys, out, both = tmp_path / "new" / "parents" / "keys", tmp_path / "out", tmp_path / "both"
    write_render(out, RENDER, KeyPlacement(secrets_dir=keys))
    write_render(both, RENDER, KeyPlacement(include=True))
    for made in (tmp_path / "new", tmp_path / "new" / "parents", keys):
        assert mode(made) == 0o700, made
    assert {mode(p) for p in keys.rglob("*") if p.is_dir()} == {0o700}
    assert {mode(p) for p in keys.rglob("*") if p.is_file()} == {0o600}
    holding = {(both / rel).parent for rel in KEY_FILES}
    assert {mode(d) for d in holding} == {0o700}
    assert {mode(both / rel) for rel in KEY_FILES} == {0o600}
    # and the same render again is recognised as written: nothing is replaced
    again = write_render(both, RENDER, KeyPlacement(include=True))
    assert again.unchanged == {both}


@pytest.mark.parametrize("target_exists", [True, False])
def test_an_output_that_is_a_link_is_replaced_where_it_points(tmp_path: Path,
                                                              target_exists: bool) -> None:
    """The link stays, its directory holds the render, and nothing is left beside either
    (each render used to leave a '.out.old.PID' link, and the target kept the old render)."""
    out, real = tmp_path / "work" / "out", tmp_path / "real" / "render"
    out.parent.mkdir()
    if target_exists:
        real.mkdir(parents=True)
    out.symlink_to(real)
    write_render(out, MANIFESTS)
    write_render(out, changed(MANIFESTS))
    assert out.is_symlink() and os.readlink(out) == str(real)
    assert contents(real) == {rel: data for rel, (data, _) in changed(MANIFESTS).items()}
    assert leftovers(out.parent) == [] and leftovers(real.parent) == []
    assert write_render(out, changed(MANIFESTS)).unchanged == {out}
