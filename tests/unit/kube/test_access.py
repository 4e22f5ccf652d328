"""kube.access: the one table of what meshbridge asks of a cluster, as docs/apply.md lists it
and as meshbridge rbac grants it (the real API servers' check: test_discovery.py)."""

from __future__ import annotations

from pathlib import Path

from meshbridge.kube.access import RULES, rbac_documents, refused

DOCS = Path(__file__).resolve().parents[3] / "docs" / "apply.md"


def test_docs_list_exactly_the_rules() -> None:
    text = DOCS.read_text()
    rows = [line for line in text.splitlines()
            if line.startswith(("| apply |", "| gateway discovery |", "| placement discovery |"))]
    expected = [f"| {r.purpose} | {r.group or 'core'} | {', '.join(r.resources)} | "
                f"{', '.join(r.verbs)} | {r.where} |" for r in RULES]
    assert rows == expected


def test_the_roles_grant_every_rule_and_nothing_else() -> None:
    docs = rbac_documents({"kind": "User", "name": "ci"})
    granted = sorted(
        (rule["apiGroups"][0], tuple(rule["resources"]), tuple(rule["verbs"]),
         d["metadata"].get("namespace"))
        for d in docs if d["kind"] in ("ClusterRole", "Role") for rule in d["rules"])
    assert granted == sorted((r.group, r.resources, r.verbs, r.namespace) for r in RULES)
    bound = {(d["kind"], d["roleRef"]["name"]) for d in docs if "roleRef" in d}
    assert bound == {("ClusterRoleBinding", "meshbridge-apply"),
                     ("RoleBinding", "meshbridge-apply"),
                     ("ClusterRoleBinding", "meshbridge-discovery")}


def test_a_refusal_names_verb_resource_namespace_and_cluster() -> None:
    assert refused("list", "discovery.k8s.io", "endpointslices", None, "east", "no") == (
        "forbidden: list endpointslices.discovery.k8s.io in every namespace (cluster east): no")
    assert refused("get", "", "secrets", "istio-system", "west") == (
        "forbidden: get secrets in namespace istio-system (cluster west)")
