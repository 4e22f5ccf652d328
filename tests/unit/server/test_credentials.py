"""Cluster documents name a kubeconfig file (the CLI) or a server's credential; what a
credential may hold."""

from __future__ import annotations

import pytest
from hostile import HOSTILE_KUBECONFIGS

from meshbridge.errors import InvalidInput
from meshbridge.loading import load_objects
from meshbridge.server.credentials import check_kubeconfig, parse_kubeconfig
from meshbridge.usecases.apply import file_target

API = "meshbridge.dev/v1alpha1"


def _cluster(kubeconfig: dict) -> dict:
    return {"apiVersion": API, "kind": "Cluster", "metadata": {"name": "east"},
            "spec": {"gateway": {"address": "10.0.0.1"}, "kubeconfig": kubeconfig}}


def _load(kubeconfig: dict):
    (located,) = load_objects([("mesh.yaml", 1, _cluster(kubeconfig))]).clusters
    return located.obj


def test_a_kubeconfig_file_still_works_for_the_cli() -> None:
    cluster = _load({"path": "~/.kube/east.yaml", "context": "east"})
    target = file_target(cluster)
    assert (target.kubeconfig, target.context, target.unusable) == ("~/.kube/east.yaml", "east", "")


def test_a_credential_is_named_and_explained_to_the_cli() -> None:
    cluster = _load({"credential": "prod-eu", "context": "east"})
    assert cluster.spec.kubeconfig.credential == "prod-eu"
    target = file_target(cluster)
    assert target.kubeconfig is None and "registered on a meshbridge server" in target.unusable


@pytest.mark.parametrize("ref", [{}, {"path": "x", "credential": "y"}, {"credential": "Prod_EU"},
                                 {"context": "east"}])
def test_one_of_path_or_credential(ref: dict) -> None:
    with pytest.raises(InvalidInput) as caught:
        _load(ref)
    assert all(p.path.startswith("spec.kubeconfig") for p in caught.value.problems)


def _config(**user: object) -> dict:
    return {
        "clusters": [{"name": "c", "cluster": {"server": "https://k:6443",
                                               "certificate-authority-data": "Y2E="}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
    }


def test_a_self_contained_kubeconfig_is_accepted() -> None:
    config = _config(token="t")
    assert check_kubeconfig("prod", config) == config
    check_kubeconfig("prod", _config(**{"client-certificate-data": "Y2VydA==",
                                        "client-key-data": "a2V5"}))


def test_every_problem_is_located_and_no_value_quoted() -> None:
    config = _config(**{"tokenFile": "/secret/path", "exec": {"command": "/bin/evil"},
                        "client-key-data": "k@y!"})
    config["clusters"][0]["cluster"]["certificate-authority"] = "/etc/ca-secret.pem"
    config["contexts"].append({"name": "y", "context": {"cluster": "nowhere"}})
    config["current-context"] = "z"
    with pytest.raises(InvalidInput) as caught:
        check_kubeconfig("prod", config)
    found = {p.path for p in caught.value.problems}
    assert found == {
        "users[0].user.tokenFile", "users[0].user.exec", "users[0].user.client-key-data",
        "users[0].user", "clusters[0].cluster.certificate-authority",
        "contexts[1].context.cluster", "current-context",
    }
    text = str(caught.value)
    for value in ("/secret/path", "/bin/evil", "k@y!", "ca-secret"):
        assert value not in text


# ------------------------------------------------------------------ issue 26: hostile kubeconfigs


@pytest.mark.parametrize("case", sorted(HOSTILE_KUBECONFIGS))
def test_a_hostile_kubeconfig_is_refused_with_a_located_problem(case: str) -> None:
    """Read by the one reader (parse_kubeconfig), then checked: an alias bomb is never
    expanded (nor stored: it was once sealed as 5.8 MB), a list where a name goes is a
    problem, not a TypeError."""
    text, why = HOSTILE_KUBECONFIGS[case]
    with pytest.raises(InvalidInput) as caught:
        check_kubeconfig("prod", parse_kubeconfig("prod", text.encode()))
    shown = str(caught.value)
    assert why in shown and shown.startswith("kubeconfig#1 Credential/prod")


def test_keys_of_a_kubeconfig_are_shown_bounded_and_escaped() -> None:
    config = _config(token="t")
    config["users"][0]["\x1b]0;x\x07" + "k" * 500] = 1
    with pytest.raises(InvalidInput) as caught:
        check_kubeconfig("prod", config)
    (problem,) = caught.value.problems
    assert "\x1b" not in problem.message and len(problem.message) < 200
