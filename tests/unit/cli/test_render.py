"""The render and validate commands as users run them: inputs, output tree, state, exit codes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import yaml
from helpers import EXAMPLES, read_tree, write_docs

from meshbridge.store import open_store


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_rendering_twice_gives_identical_bytes(cli, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli("render", "-f", str(EXAMPLES / "helloworld-lb"), "-o", str(a)).exit_code == 0
    assert cli("render", "-f", str(EXAMPLES / "helloworld-lb"), "-o", str(b)).exit_code == 0
    assert _digest(a) == _digest(b)


def test_output_dir_is_rewritten_nothing_stale(cli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert cli("render", "-f", str(EXAMPLES / "sleep-httpbin"), "-o", str(out)).exit_code == 0
    assert (out / "cluster2").is_dir()
    docs = [d for d in yaml.safe_load_all((EXAMPLES / "sleep-httpbin" / "mesh.yaml").read_text())
            if d["metadata"]["name"] != "cluster2"]
    src = write_docs(tmp_path / "in" / "one.yaml", docs)
    assert cli("render", "-f", str(src), "-o", str(out)).exit_code == 0
    assert not (out / "cluster2").exists()
    assert sorted(p.name for p in out.iterdir()) == [".meshbridge-render", "cluster1"]


def test_refuses_to_wipe_a_directory_it_did_not_write(cli, tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    result = cli("render", "-f", str(EXAMPLES / "sleep-httpbin"), "-o", str(out))
    assert result.exit_code == 1
    assert "not written by meshbridge" in result.stderr
    assert (out / "notes.txt").read_text() == "precious"


def test_stdin_and_directories_and_files_mix(cli, tmp_path: Path) -> None:
    text = (EXAMPLES / "sleep-httpbin" / "apps.yaml").read_text()
    out = tmp_path / "out"
    result = cli("render", "-f", str(EXAMPLES / "sleep-httpbin" / "mesh.yaml"), "-f", "-",
                 "-o", str(out), input=text)
    assert result.exit_code == 0, result.stderr
    tree = read_tree(out)
    assert "cluster1/foo/serviceentry.httpbin.bar.cluster2.yaml" in tree


def test_validate_reports_success(cli) -> None:
    result = cli("validate", "-f", str(EXAMPLES / "helloworld-lb"))
    assert result.exit_code == 0
    assert "valid: 5 documents" in result.stdout


def test_state_option_and_env(cli, tmp_path: Path, monkeypatch) -> None:
    state = tmp_path / "custom" / "s.db"
    result = cli("render", "-f", str(EXAMPLES / "egress"), "-o", str(tmp_path / "o"),
                 "--state", str(state))
    assert result.exit_code == 0, result.stderr
    assert state.exists()
    assert oct(state.stat().st_mode & 0o777) == "0o600"
    monkeypatch.delenv("MESHBRIDGE_STATE")
    assert cli("render", "-f", str(EXAMPLES / "egress"), "-o", str(tmp_path / "o2")).exit_code == 0
    assert (tmp_path / ".meshbridge" / "state.db").exists(), "default state path not used"


def test_vips_survive_between_runs_when_intents_change(cli, tmp_path: Path) -> None:
    base = list(yaml.safe_load_all((EXAMPLES / "egress" / "mesh.yaml").read_text()))
    src = write_docs(tmp_path / "in" / "e.yaml", base)
    cli("render", "-f", str(src), "-o", str(tmp_path / "o"))
    mysql = tmp_path / "o" / "cluster1" / "default" / "serviceentry.mysql.yaml"
    first = yaml.safe_load(mysql.read_text())["spec"]["addresses"]
    extra = {"apiVersion": "meshbridge.dev/v1alpha1", "kind": "ExternalService",
             "metadata": {"name": "aaa", "namespace": "default"},
             "spec": {"hosts": ["aaa.example"], "ports": [{"number": 5432, "name": "pg"}],
                      "endpoints": [{"address": "172.16.0.9"}]}}
    write_docs(src, [extra, *base])
    cli("render", "-f", str(src), "-o", str(tmp_path / "o"))
    assert yaml.safe_load(mysql.read_text())["spec"]["addresses"] == first


def test_help_reads_like_a_tool(cli) -> None:
    result = cli("--help")
    assert result.exit_code == 0
    for command in ("validate", "render"):
        assert command in result.stdout
    render_help = cli("render", "--help").stdout
    assert "--state" in render_help and "MESHBRIDGE_STATE" in render_help
    assert "-o" in render_help


def test_secret_free_manifests_are_world_readable_only_if_not_secret(cli, tmp_path: Path) -> None:
    out = tmp_path / "o"
    args = ("render", "-f", str(EXAMPLES / "sleep-httpbin"), "-o", str(out), "--include-secrets")
    assert cli(*args).exit_code == 0
    secrets = 0
    for path in out.rglob("*.yaml"):
        secret = yaml.safe_load(path.read_text())["kind"] == "Secret"
        secrets += secret
        mode = os.stat(path).st_mode & 0o777
        assert mode == (0o600 if secret else 0o644), path
    assert secrets == 2


def _stored_vips(state: Path) -> list:
    store = open_store(str(state))
    try:
        return store.vip_records()
    finally:
        store.close()


def test_an_address_already_another_hosts_vip_is_refused_and_nothing_moves(
    cli, tmp_path: Path
) -> None:
    """An ExternalService writing, as its own address, the VIP a remote name and another
    ExternalService already hold in that cluster: exit 2 naming both, nothing written or stored."""
    state = tmp_path / "state" / "state.db"
    base = list(yaml.safe_load_all((EXAMPLES / "sleep-httpbin" / "mesh.yaml").read_text()))
    base += list(yaml.safe_load_all((EXAMPLES / "sleep-httpbin" / "apps.yaml").read_text()))
    pg = {"apiVersion": "meshbridge.dev/v1alpha1", "kind": "ExternalService",
          "metadata": {"name": "pg", "namespace": "foo"},
          "spec": {"hosts": ["pg.example"], "ports": [{"number": 5432, "name": "pg"}],
                   "endpoints": [{"address": "172.16.0.9"}], "clusters": ["cluster1"]}}
    src = write_docs(tmp_path / "in" / "mesh.yaml", [*base, pg])
    out = tmp_path / "o"
    assert cli("render", "-f", str(src), "-o", str(out)).exit_code == 0
    remote = yaml.safe_load(
        (out / "cluster1" / "foo" / "serviceentry.httpbin.bar.cluster2.yaml").read_text())
    held = remote["spec"]["addresses"][0]
    pg_vip = yaml.safe_load(
        (out / "cluster1" / "foo" / "serviceentry.pg.yaml").read_text())["spec"]["addresses"][0]
    before_files, before_vips = _digest(out), _stored_vips(state)

    pinned = {"apiVersion": "meshbridge.dev/v1alpha1", "kind": "ExternalService",
              "metadata": {"name": "pinned", "namespace": "bar"},
              "spec": {"hosts": ["legacy.example"], "addresses": ["240.0.0.200", held, pg_vip],
                       "ports": [{"number": 3306, "name": "mysql"}],
                       "endpoints": [{"address": "172.16.0.8"}], "clusters": ["cluster1"]}}
    write_docs(src, [*base, pg, pinned])
    result = cli("render", "-f", str(src), "-o", str(out))
    assert result.exit_code == 2, result.stderr
    assert (f"{src}#8 ExternalService/pinned spec.addresses[1]: address {held} is already the "
            f"VIP of host httpbin.bar.cluster2 in cluster 'cluster1'") in result.stderr
    assert (f"{src}#8 ExternalService/pinned spec.addresses[2]: address {pg_vip} is already the "
            f"VIP of ExternalService foo/pg ({src}#7, hosts pg.example) in cluster 'cluster1'"
            ) in result.stderr
    assert "2 problems found" in result.stderr
    assert _digest(out) == before_files, "render rewrote the output of a refused run"
    assert _stored_vips(state) == before_vips, "a refused run changed the stored VIPs"
    # apply plans the same way: refused before any cluster is contacted
    applied = cli("apply", "-f", str(src))
    assert applied.exit_code == 2 and f"spec.addresses[1]: address {held}" in applied.stderr
    assert _stored_vips(state) == before_vips


def test_a_passthrough_host_gets_routes_by_sni_and_no_credential(cli, tmp_path: Path) -> None:
    """PASSTHROUGH: the service presents its own certificate, so the mesh issues, stores and
    writes none for its host (the SIMPLE host beside it keeps its credential)."""
    out, state = tmp_path / "o", tmp_path / "state" / "state.db"
    result = cli("render", "-f", str(EXAMPLES / "external-passthrough"), "-o", str(out),
                 "--include-secrets")
    assert result.exit_code == 0, result.stderr
    tree = read_tree(out)
    (gateway,) = tree["cluster1/shop/gateway.ledger-ingress.yaml"]
    assert gateway["spec"]["servers"] == [{
        "port": {"number": 443, "name": "tls", "protocol": "TLS"},
        "tls": {"mode": "PASSTHROUGH"}, "hosts": ["ledger.example.com"]}]
    (service,) = tree["cluster1/shop/virtualservice.ledger-ingress.yaml"]
    assert service["spec"]["tls"] == [{
        "match": [{"port": 443, "sniHosts": ["ledger.example.com"]}],
        "route": [{"destination": {"host": "ledger.shop.svc.cluster.local",
                                   "port": {"number": 8443}}}]}]
    secrets = sorted(p for p in tree if "/secret." in p)
    assert secrets == ["cluster1/istio-system/secret.cacerts.yaml",
                       "cluster1/istio-system/secret.web.example.com-credential.yaml"]
    store = open_store(str(state))
    try:
        assert store.get_blob("pki.server", "web.example.com") is not None
        assert store.get_blob("pki.server", "ledger.example.com") is None
    finally:
        store.close()
    status = cli("pki", "status")
    assert "web.example.com" in status.stdout + status.stderr
    assert "ledger.example.com" not in status.stdout + status.stderr


def test_rendering_again_restores_a_file_changed_by_hand_and_follows_no_link(
    cli, tmp_path: Path
) -> None:
    """A render of unchanged intents may keep the output's own files (same bytes, same mode);
    anything else in their place is replaced, never followed or kept."""
    out = tmp_path / "out"
    args = ("render", "-f", str(EXAMPLES / "sleep-httpbin"), "-o", str(out), "--include-secrets")
    assert cli(*args).exit_code == 0
    before = _digest(out)
    files = sorted(p for p in out.rglob("*.yaml") if p.stat().st_mode & 0o777 == 0o644)
    edited, linked, loose = files[0], files[1], files[2]
    edited.write_text(edited.read_text() + "# changed by hand\n")
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_bytes(linked.read_bytes())
    linked.unlink()
    linked.symlink_to(elsewhere)
    loose.chmod(0o666)
    assert cli(*args).exit_code == 0
    assert _digest(out) == before
    assert not linked.is_symlink()
    assert elsewhere.read_bytes() == linked.read_bytes()  # outside file untouched
    assert loose.stat().st_mode & 0o777 == 0o644
    key = next(p for p in out.rglob("*.yaml") if p.stat().st_mode & 0o777 == 0o600)
    assert all(p.stat().st_nlink == 1 for p in out.rglob("*") if p.is_file()), key


def test_rendering_again_takes_nothing_through_a_linked_directory(cli, tmp_path: Path) -> None:
    """A folder of the output replaced by a link to somewhere else: the new output is written
    anew there, holding no file of that other place."""
    out = tmp_path / "out"
    args = ("render", "-f", str(EXAMPLES / "sleep-httpbin"), "-o", str(out))
    assert cli(*args).exit_code == 0
    before = _digest(out)
    elsewhere = tmp_path / "elsewhere"
    (out / "cluster1").rename(elsewhere)
    (out / "cluster1").symlink_to(elsewhere, target_is_directory=True)
    assert cli(*args).exit_code == 0
    assert _digest(out) == before
    assert not (out / "cluster1").is_symlink()
    outside = {p.stat().st_ino for p in elsewhere.rglob("*") if p.is_file()}
    assert not outside & {p.stat().st_ino for p in out.rglob("*") if p.is_file()}
    assert elsewhere.is_dir(), "the other place was not followed into and removed"


def _entries(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry under ``root`` (and ``root`` itself): inode, mode, modification time."""
    return {
        str(p.relative_to(root)): (p.lstat().st_ino, p.lstat().st_mode, p.lstat().st_mtime_ns)
        for p in [root, *sorted(root.rglob("*"))]
    }


def test_rendering_unchanged_intents_leaves_the_output_untouched(cli, tmp_path: Path) -> None:
    """The same intents again: the output already is the render, so nothing is written, linked
    or removed (same directories, same files, same times); a pipeline rendering on every commit
    does not churn the disk, and nothing watching the tree sees an event."""
    out, keys = tmp_path / "out", tmp_path / "keys"
    args = ("render", "-f", str(EXAMPLES / "sleep-httpbin"), "-o", str(out), "--secrets-dir",
            str(keys))
    first = cli(*args)
    assert first.exit_code == 0 and f"to {out}" in first.stdout
    before = (_entries(out), _entries(keys))
    again = cli(*args)
    assert again.exit_code == 0
    assert (_entries(out), _entries(keys)) == before
    assert f"{out} already holds this render (7 files for 2 clusters): nothing written" in (
        again.stdout
    )
    assert f"{keys} already holds 2 Secrets holding private keys" in again.stdout
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # nothing staged left


@pytest.mark.parametrize(
    "change",
    ["stray file", "stray directory", "missing file", "directory mode", "file mode", "hard link"],
)
def test_any_difference_from_the_render_gets_the_output_replaced(
    cli, tmp_path: Path, change: str
) -> None:
    """Anything in the output that a fresh render would not make is undone by the next render
    of the same intents: the tree is replaced whole, as after any change of the intents."""
    out = tmp_path / "out"
    args = ("render", "-f", str(EXAMPLES / "sleep-httpbin"), "-o", str(out))
    assert cli(*args).exit_code == 0
    before, root = _digest(out), out.stat().st_ino
    folder = out / "cluster1"
    a_file = sorted(folder.rglob("*.yaml"))[0]
    if change == "stray file":
        (folder / "notes.txt").write_text("mine\n")
    elif change == "stray directory":
        (folder / "extra").mkdir()
    elif change == "missing file":
        a_file.unlink()
    elif change == "directory mode":
        folder.chmod(0o700)
    elif change == "file mode":
        a_file.chmod(0o600)
    elif change == "hard link":
        os.link(a_file, tmp_path / "elsewhere.yaml")
    assert cli(*args).exit_code == 0
    assert out.stat().st_ino != root, "the tree was not replaced"
    assert _digest(out) == before
    assert not (folder / "extra").exists()
    assert folder.stat().st_mode & 0o777 == 0o777 & ~_umask()
    assert a_file.stat().st_mode & 0o777 == 0o644 and a_file.stat().st_nlink == 1


def _umask() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        return next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))
