"""``meshbridge pki`` as a user runs it: files written, modes, messages, exit codes."""

from __future__ import annotations

import json
import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from meshbridge.cli.pki import app
from meshbridge.model import Mesh
from meshbridge.pki.certs import issue_root
from meshbridge.pki.chain import fingerprint, load_cert, load_certs
from meshbridge.pki.keys import key_pem
from meshbridge.pki.records import CertRecord
from meshbridge.store import open_store
from meshbridge.usecases import pki as service

MESH_YAML = """\
apiVersion: meshbridge.dev/v1alpha1
kind: Mesh
metadata: {name: default}
spec:
  rootCA: {commonName: "CLI Root", keyAlgorithm: ECDSA-P256}
  intermediateCA: {validityDays: %d}
"""

INTENTS_YAML = """\
---
apiVersion: meshbridge.dev/v1alpha1
kind: Cluster
metadata: {name: cluster1}
spec: {gateway: {address: 192.0.2.10}}
---
apiVersion: meshbridge.dev/v1alpha1
kind: App
metadata: {name: httpbin, namespace: bar}
spec: {clusters: [cluster1]}
---
apiVersion: meshbridge.dev/v1alpha1
kind: InboundIntent
metadata: {name: httpbin, namespace: bar}
spec:
  app: httpbin
  port: 8000
  protocol: HTTP
  external: {host: httpbin.example.com, tlsMode: MUTUAL}
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESHBRIDGE_STATE_KEY", raising=False)
    monkeypatch.delenv("MESHBRIDGE_STATE", raising=False)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "mesh.yaml").write_text(MESH_YAML % 730)
    (tmp_path / "intents.yaml").write_text(MESH_YAML % 730 + INTENTS_YAML)
    return tmp_path


def run(work: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(app, [*args, "--state", str(work / "state.db")], env=env)
    assert "PRIVATE KEY" not in result.output, "a private key was printed"
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


CACERTS = ("ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def status_json(work: Path) -> dict[str, object]:
    result = run(work, "status", "--json")
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def sealed_store_material(work: Path, host: str) -> str:
    """The ingress client CA of ``host`` as render would put it into ca.crt."""
    store = open_store(str(work / "state.db"))
    try:
        sealer = service.load_sealer(str(work / "state.db"), store)
        with store.transaction():
            m = service.ensure_material(
                store,
                sealer,
                service.mesh_for(store, None),
                [],
                [(host, "MUTUAL")],
                datetime.now(UTC),
            )
    finally:
        store.close()
    ca = m.ingress[host].ca
    assert ca is not None
    return ca


# ---------------------------------------------------------------------------------- init


def test_init_creates_a_root_once(work: Path) -> None:
    result = run(work, "init", "-f", str(work / "mesh.yaml"))
    assert result.exit_code == 0, result.output
    assert "created root" in result.stdout and "CLI Root" in result.stdout
    assert mode(work / "state.db.key") == 0o600
    again = run(work, "init", "-f", str(work / "mesh.yaml"))
    assert again.exit_code == 1
    assert "--force" in again.stderr
    forced = run(work, "init", "-f", str(work / "mesh.yaml"), "--force")
    assert forced.exit_code == 0


def test_invalid_intents_exit_2(work: Path) -> None:
    (work / "bad.yaml").write_text(
        "apiVersion: meshbridge.dev/v1alpha1\nkind: Mesh\nmetadata: {name: m}\nspec: {rootCA: {keyAlgorithm: DSA}}\n"
    )
    result = run(work, "init", "-f", str(work / "bad.yaml"))
    assert result.exit_code == 2
    assert "keyAlgorithm" in result.stderr


# -------------------------------------------------------------------------------- export


def test_export_writes_the_four_cacerts_files_0600(work: Path) -> None:
    out = work / "c1"
    intents = str(work / "intents.yaml")
    result = run(work, "export", "--cluster", "cluster1", "--dir", str(out), "-f", intents)
    assert result.exit_code == 1 and "pki init" in result.stderr  # no root yet
    assert run(work, "init", "-f", str(work / "mesh.yaml")).exit_code == 0
    typo = run(work, "export", "--cluster", "clsuter1", "--dir", str(out), "-f", intents)
    assert typo.exit_code == 2 and "cluster1" in typo.stderr
    unknown = run(work, "export", "--cluster", "cluster1", "--dir", str(out))
    assert unknown.exit_code == 1 and "no intermediate CA yet" in unknown.stderr
    assert not out.exists()
    result = run(work, "export", "--cluster", "cluster1", "--dir", str(out), "-f", intents)
    assert result.exit_code == 0, result.output
    names = ["ca-cert.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem"]
    assert sorted(p.name for p in out.iterdir()) == names
    assert all(mode(out / n) == 0o600 for n in names)
    assert "kubectl create secret generic cacerts -n istio-system" in result.stdout
    assert f"--from-file={out / 'ca-key.pem'}" in result.stdout
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(out / "root-cert.pem"), str(out / "ca-cert.pem")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    chain = load_certs((out / "cert-chain.pem").read_bytes())
    assert len(chain) == 2
    # exported again: the same files (certificates already issued never change)
    before = {n: (out / n).read_bytes() for n in names}
    assert run(work, "export", "--cluster", "cluster1", "--dir", str(out)).exit_code == 0
    assert {n: (out / n).read_bytes() for n in names} == before


# --------------------------------------------------------------------------- issue-client


def test_issue_client_writes_a_certificate_under_the_hosts_client_ca(work: Path) -> None:
    out = work / "partner"
    result = run(
        work,
        "issue-client",
        "--host",
        "httpbin.example.com",
        "--cn",
        "partner-a",
        "--out",
        str(out),
        "-f",
        str(work / "intents.yaml"),
    )
    assert result.exit_code == 0, result.output
    assert mode(out / "client.key") == 0o600
    assert "curl --cacert" in result.stdout
    client_ca = sealed_store_material(work, "httpbin.example.com")
    (work / "client-ca.pem").write_text(client_ca)
    verify = subprocess.run(
        [
            "openssl",
            "verify",
            "-purpose",
            "sslclient",
            "-CAfile",
            str(work / "client-ca.pem"),
            str(out / "client.crt"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    shown = run(work, "show", "--ingress-ca")
    assert shown.exit_code == 0
    assert shown.stdout == (out / "ca.crt").read_text()
    cn = load_cert((out / "client.crt").read_bytes()).subject.rfc4514_string()
    assert "CN=partner-a" in cn
    # no silent overwrite of a key
    again = run(
        work,
        "issue-client",
        "--host",
        "httpbin.example.com",
        "--cn",
        "partner-a",
        "--out",
        str(out),
    )
    assert again.exit_code == 1 and "--force" in again.stderr


@pytest.mark.parametrize(
    ("host", "cn", "needle"),
    [("Not_A_Host", "x", "DNS name"), ("a.example.com", "x" * 65, "1 to 64")],
)
def test_issue_client_refuses_bad_names(work: Path, host: str, cn: str, needle: str) -> None:
    result = run(work, "issue-client", "--host", host, "--cn", cn, "--out", str(work / "x"))
    assert result.exit_code == 2 and needle in result.stderr
    assert not (work / "state.db").exists()


def test_issue_client_checks_the_host_against_the_intents(work: Path) -> None:
    result = run(
        work,
        "issue-client",
        "--host",
        "other.example.com",
        "--cn",
        "x",
        "--out",
        str(work / "x"),
        "-f",
        str(work / "intents.yaml"),
    )
    assert result.exit_code == 2
    assert "httpbin.example.com" in result.stderr
    assert not (work / "x").exists()


# -------------------------------------------------------------------------------- status


def test_status_shows_phase_subjects_and_fingerprints(work: Path) -> None:
    run(work, "init", "-f", str(work / "mesh.yaml"))
    run(
        work,
        "export",
        "--cluster",
        "cluster1",
        "--dir",
        str(work / "o"),
        "-f",
        str(work / "intents.yaml"),
    )
    body = status_json(work)
    assert body["rotationPhase"] == 0
    certs = body["certificates"]
    assert isinstance(certs, list)
    roles = {(c["role"], c["name"]) for c in certs}
    assert ("intermediate", "cluster1") in roles
    assert all(len(c["sha256"]) == 64 and c["health"] == "ok" for c in certs)
    table = run(work, "status")
    assert table.exit_code == 0
    assert "intermediate" in table.stdout and "cluster1" in table.stdout


def _store_with_intermediate_days(work: Path, days: int, issued: datetime) -> None:
    m = Mesh.model_validate(
        {
            "apiVersion": "meshbridge.dev/v1alpha1",
            "kind": "Mesh",
            "metadata": {"name": "m"},
            "spec": {
                "rootCA": {"keyAlgorithm": "ECDSA-P256"},
                "intermediateCA": {"validityDays": days},
            },
        }
    )
    store = open_store(str(work / "state.db"))
    try:
        sealer = service.load_sealer(str(work / "state.db"), store)
        with store.transaction():
            service.ensure_material(store, sealer, m, ["old"], [], issued)
    finally:
        store.close()


def test_status_warns_under_30_days(work: Path) -> None:
    _store_with_intermediate_days(work, 10, datetime.now(UTC))
    result = run(work, "status")
    assert result.exit_code == 0
    assert "warning: intermediate old expires in" in result.stderr


def test_status_exits_non_zero_when_something_expired(work: Path) -> None:
    _store_with_intermediate_days(work, 1, datetime.now(UTC) - timedelta(days=3))
    result = run(work, "status")
    assert result.exit_code == 1
    assert "intermediate old has expired" in result.stderr
    assert run(work, "show").exit_code == 1


def test_status_without_a_store_creates_none(work: Path) -> None:
    result = run(work, "status")
    assert result.exit_code == 0 and "nothing has been issued" in result.stderr
    assert not (work / "state.db").exists()


def test_status_works_without_the_state_key(work: Path) -> None:
    run(work, "init", "-f", str(work / "mesh.yaml"))
    (work / "state.db.key").unlink()
    assert run(work, "status").exit_code == 0


# ------------------------------------------------------------------------------- rotation


def test_rotate_a_cluster(work: Path) -> None:
    run(work, "init", "-f", str(work / "mesh.yaml"))
    run(
        work,
        "export",
        "--cluster",
        "cluster1",
        "--dir",
        str(work / "a"),
        "-f",
        str(work / "intents.yaml"),
    )
    result = run(work, "rotate", "--cluster", "cluster1")
    assert result.exit_code == 0, result.output
    run(work, "export", "--cluster", "cluster1", "--dir", str(work / "b"))
    assert (work / "a/ca-cert.pem").read_text() != (work / "b/ca-cert.pem").read_text()
    assert (work / "a/root-cert.pem").read_text() == (work / "b/root-cert.pem").read_text()
    assert run(work, "rotate").exit_code == 2
    missing = run(work, "rotate", "--cluster", "nope")
    assert missing.exit_code == 1 and "cluster1" in missing.stderr


def test_rotate_root_in_phases(work: Path) -> None:
    run(work, "init", "-f", str(work / "mesh.yaml"))
    run(
        work,
        "export",
        "--cluster",
        "cluster1",
        "--dir",
        str(work / "p0"),
        "-f",
        str(work / "intents.yaml"),
    )
    for phase, expected in (("begin", 1), ("advance", 2), ("finish", 0)):
        if phase != "begin":  # no apply recorded what cluster1 holds: refused, then forced
            refused = run(work, "rotate-root", phase)
            assert refused.exit_code == 1 and "cluster1: no apply recorded" in refused.stderr
            assert "--force" in refused.stderr
            assert status_json(work)["rotationPhase"] == expected - 1 if expected else 2
        result = run(work, "rotate-root", phase, *(["--force"] if phase != "begin" else []))
        assert result.exit_code == 0, result.output
        assert "next:" in result.stdout
        assert status_json(work)["rotationPhase"] == expected
        run(work, "export", "--cluster", "cluster1", "--dir", str(work / phase))
        if phase != "finish":
            assert len(load_certs((work / phase / "root-cert.pem").read_bytes())) == 2
    assert len(load_certs((work / "finish/root-cert.pem").read_bytes())) == 1
    assert (work / "finish/root-cert.pem").read_text() != (work / "p0/root-cert.pem").read_text()
    wrong = run(work, "rotate-root", "advance")
    assert wrong.exit_code == 1 and "begin" in wrong.stderr
    assert run(work, "rotate-root", "sideways").exit_code == 2


def test_rotate_root_abort_says_what_the_bundle_holds(work: Path) -> None:
    run(work, "init", "-f", str(work / "mesh.yaml"))
    current = load_certs(run(work, "show", "--root").stdout)
    assert run(work, "rotate-root", "begin").exit_code == 0
    assert len(load_certs(run(work, "show", "--root").stdout)) == 2
    aborted = run(work, "rotate-root", "abort")
    assert aborted.exit_code == 0, aborted.output
    text = " ".join(aborted.stdout.split())
    root_id = fingerprint(current[0])[:16]
    assert f"root-cert.pem now carries only the current root {root_id} again" in text
    assert "new root" not in text.replace("the new root is forgotten", "")
    assert load_certs(run(work, "show", "--root").stdout) == current


def test_rotate_root_refuses_a_new_root_of_the_same_subject(work: Path) -> None:
    run(work, "init", "-f", str(work / "mesh.yaml"))
    m = Mesh.model_validate(
        {
            "apiVersion": "meshbridge.dev/v1alpha1",
            "kind": "Mesh",
            "metadata": {"name": "m"},
            "spec": {"rootCA": {"commonName": "CLI Root", "keyAlgorithm": "ECDSA-P256"}},
        }
    )
    twin = issue_root(m.spec.root_ca, datetime.now(UTC))  # same O and CN, another key
    (work / "twin.crt").write_text(twin.cert_pem)
    (work / "twin.key").write_bytes(key_pem(twin.key))
    result = run(
        work, "rotate-root", "begin", "--cert", str(work / "twin.crt"), "--key", str(work / "twin.key")
    )
    assert result.exit_code == 1
    assert "subject" in result.stderr and "CLI Root" in result.stderr
    assert status_json(work)["rotationPhase"] == 0


# ---------------------------------------------------------------------------------- import


def test_import_a_root_from_files(work: Path) -> None:
    m = Mesh.model_validate(
        {
            "apiVersion": "meshbridge.dev/v1alpha1",
            "kind": "Mesh",
            "metadata": {"name": "m"},
            "spec": {"rootCA": {"commonName": "Own Root", "keyAlgorithm": "ECDSA-P384"}},
        }
    )
    own = issue_root(m.spec.root_ca, datetime.now(UTC))
    (work / "root.crt").write_text(own.cert_pem)
    (work / "root.key").write_bytes(key_pem(own.key))
    result = run(work, "import", "--cert", str(work / "root.crt"), "--key", str(work / "root.key"))
    assert result.exit_code == 0, result.output
    assert "imported root" in result.stdout and "Own Root" in result.stdout
    run(
        work,
        "export",
        "--cluster",
        "cluster1",
        "--dir",
        str(work / "o"),
        "-f",
        str(work / "intents.yaml"),
    )
    assert (work / "o/root-cert.pem").read_text() == own.cert_pem
    # bad input is refused with a reason, and nothing is replaced
    (work / "junk.key").write_text("nope")
    bad = run(
        work, "import", "--cert", str(work / "root.crt"), "--key", str(work / "junk.key"), "--force"
    )
    assert bad.exit_code == 1 and "private key" in bad.stderr
    assert run(work, "import", "--cert", str(work / "nofile"), "--key", "x").exit_code == 2


def test_a_root_without_its_key_and_the_intermediates_it_signed(work: Path) -> None:
    # a mesh whose store, and root key, are lost: its live cacerts are what is left
    run(work, "init", "-f", str(work / "mesh.yaml"))
    run(work, "export", "--cluster", "cluster1", "--dir", str(work / "live"), "-f",
        str(work / "intents.yaml"))
    live = work / "live"
    lost = ["--state", str(work / "new" / "state.db")]
    cli = CliRunner()

    def again(*args: str) -> Result:
        return cli.invoke(app, [*args, *lost])

    assert again("import", "--cert", str(live / "root-cert.pem")).exit_code == 2  # --key?
    root = again("import", "--without-key", "--cert", str(live / "root-cert.pem"))
    assert root.exit_code == 0, root.output
    assert "without its key" in root.stdout
    # an intermediate of another root is refused; the cluster's own is taken back as it is
    other = work / "other"
    run(work, "init", "--force", "-f", str(work / "mesh.yaml"))
    run(work, "export", "--cluster", "cluster1", "--dir", str(other), "-f",
        str(work / "intents.yaml"))
    wrong = again("import", "--cluster", "cluster1", "--cert", str(other / "ca-cert.pem"),
                  "--key", str(other / "ca-key.pem"))
    assert wrong.exit_code == 1 and "not signed by the mesh's root" in wrong.stderr
    ok = again("import", "--cluster", "cluster1", "--cert", str(live / "ca-cert.pem"),
               "--key", str(live / "ca-key.pem"))
    assert ok.exit_code == 0, ok.output
    back = again("export", "--cluster", "cluster1", "--dir", str(work / "back"))
    assert back.exit_code == 0, back.output
    for name in CACERTS:
        assert (work / "back" / name).read_text() == (live / name).read_text()
    # a cluster with no intermediate cannot get one from a root without a key: say so
    (work / "two.yaml").write_text(
        MESH_YAML % 730 + INTENTS_YAML.replace("cluster1", "cluster2")
    )
    new = again("export", "--cluster", "cluster2", "--dir", str(work / "c2"), "-f",
                str(work / "two.yaml"))
    assert new.exit_code == 1
    assert "kept without its key" in new.stderr and "pki import --cluster cluster2" in new.stderr
    roots = [c for c in json.loads(again("status", "--json").stdout)["certificates"]
             if c["role"] == "root"]
    assert "kept without its key" in roots[0]["note"]


# ---------------------------------------------------------------------------------- keys


def test_wrong_state_key_is_a_clear_error(work: Path) -> None:
    run(work, "init", "-f", str(work / "mesh.yaml"))
    result = run(
        work,
        "export",
        "--cluster",
        "cluster1",
        "--dir",
        str(work / "o"),
        "-f",
        str(work / "intents.yaml"),
        env={"MESHBRIDGE_STATE_KEY": "22" * 32},
    )
    assert result.exit_code == 1
    assert "does not open this store" in result.stderr
    assert "Traceback" not in result.output
    assert not (work / "o").exists()


def test_stored_rows_carry_no_clear_key(work: Path) -> None:
    run(work, "init", "-f", str(work / "mesh.yaml"))
    store = open_store(str(work / "state.db"))
    try:
        for name, data in store.list_blobs("pki.root").items():
            assert b"PRIVATE KEY" not in data
            assert CertRecord.from_json(data, name).sealed_key
    finally:
        store.close()


def test_every_command_and_option_has_help() -> None:
    group = typer.main.get_command(app)
    assert group.help
    commands = getattr(group, "commands", {})
    assert set(commands) >= {
        "init",
        "import",
        "status",
        "show",
        "export",
        "issue-client",
        "rotate",
        "rotate-root",
    }
    for name, command in commands.items():
        assert command.help, name
        for param in command.params:
            if "--help" in getattr(param, "opts", []):
                continue
            assert getattr(param, "help", None), f"{name} {param.name}"
        help_result = CliRunner().invoke(app, [name, "--help"])
        assert help_result.exit_code == 0
