"""One test per validation rule: exit 2, a message naming file, document and field, and nothing
written (no output directory, no state)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import write_docs
from intents import assert_rejected, base, doc, intent


def test_valid_base_renders(cli, tmp_path: Path) -> None:
    src = write_docs(tmp_path / "in" / "mesh.yaml", [*base(), intent()])
    assert cli("validate", "-f", str(src)).exit_code == 0
    assert cli("render", "-f", str(src), "-o", str(tmp_path / "out")).exit_code == 0


def test_unknown_field_is_an_error_with_a_suggestion(cli, tmp_path: Path) -> None:
    docs = base()
    docs[2]["spec"]["serviceAcount"] = "x"
    assert_rejected(cli, tmp_path, docs, "#3 App/sleep spec.serviceAcount: unknown field",
                    "did you mean 'serviceAccount'")


def test_dangling_intent_app(cli, tmp_path: Path) -> None:
    assert_rejected(cli, tmp_path, [*base(), intent(app="nope")],
                    "InboundIntent/httpbin spec.app: no App 'nope' in namespace 'bar'")


def test_dangling_client(cli, tmp_path: Path) -> None:
    assert_rejected(cli, tmp_path, [*base(), intent(clients=[{"app": "sleep"}])],
                    "spec.clients[0].app: no App 'sleep' in namespace 'bar'")


def test_dangling_cluster_in_app(cli, tmp_path: Path) -> None:
    docs = [*base(), doc("App", "x", {"clusters": ["c9"]}, "foo")]
    assert_rejected(cli, tmp_path, docs, "App/x spec.clusters[0]: no Cluster named 'c9'")


def test_cluster_selector_matching_nothing(cli, tmp_path: Path) -> None:
    docs = [*base(), doc("App", "x", {"clusterSelector": {"matchLabels": {"region": "mars"}}}, "foo")]
    assert_rejected(cli, tmp_path, docs, "App/x spec.clusterSelector.matchLabels: selects no cluster")


def test_weights_not_summing_to_100(cli, tmp_path: Path) -> None:
    docs = base()
    docs[3]["spec"]["clusters"] = ["c1", "c2"]
    assert_rejected(cli, tmp_path, [*docs, intent(loadBalancing={"weights": {"c1": 50, "c2": 40}})],
                    "spec.loadBalancing.weights: weights sum to 90, not 100")


def test_weights_naming_a_cluster_the_app_does_not_run_in(cli, tmp_path: Path) -> None:
    docs = [*base(), doc("Cluster", "c3", {"gateway": {"address": "10.0.0.3"}})]
    docs[3]["spec"]["clusters"] = ["c1", "c2"]
    assert_rejected(
        cli, tmp_path, [*docs, intent(loadBalancing={"weights": {"c2": 50, "c3": 50}})],
        "spec.loadBalancing.weights.c3: app 'httpbin' does not run in cluster 'c3'",
    )


def test_load_balancing_an_app_in_one_cluster(cli, tmp_path: Path) -> None:
    assert_rejected(cli, tmp_path, [*base(), intent(loadBalancing={"weights": {"c2": 100}})],
                    "spec.loadBalancing: app 'httpbin' runs in 1 cluster")


def test_server_cluster_without_gateway(cli, tmp_path: Path) -> None:
    docs = base()
    del docs[1]["spec"]["gateway"]
    assert_rejected(cli, tmp_path, [*docs, intent()],
                    "Cluster/c2 spec.gateway: cluster 'c2' serves httpbin.bar to a client in "
                    "cluster 'c1'")


def test_a_gateway_apply_discovers_is_valid_but_not_renderable(cli, tmp_path: Path) -> None:
    """With a kubeconfig and no gateway address, the cluster's gateway is apply's to discover:
    validate accepts the intents and says so; render, which cannot discover, refuses them."""
    docs = base()
    docs[1]["spec"] = {"kubeconfig": {"path": str(tmp_path / "c2.kubeconfig")}}
    src = write_docs(tmp_path / "in" / "mesh.yaml", [*docs, intent()])
    checked = cli("validate", "-f", str(src))
    assert checked.exit_code == 0, checked.stderr
    assert "apply discovers the gateway address of c2 from the cluster" in checked.stderr
    assert_rejected(cli, tmp_path, [*docs, intent()],
                    "Cluster/c2 spec.gateway: cluster 'c2' serves httpbin.bar to a client in "
                    "cluster 'c1', so it needs a gateway address")


def test_two_intents_exposing_the_same_port(cli, tmp_path: Path) -> None:
    assert_rejected(cli, tmp_path, [*base(), intent(), intent("other")],
                    "InboundIntent/other spec.port: service 'httpbin' port 8000 is already exposed")


def test_http_access_points_on_a_tcp_service(cli, tmp_path: Path) -> None:
    clients = [{"app": "sleep", "namespace": "foo",
                "accessPoints": [{"action": "ALLOW", "paths": ["/status/*"]}]}]
    assert_rejected(cli, tmp_path, [*base(), intent(protocol="TCP", clients=clients)],
                    "spec.clients[0].accessPoints[0]: paths and methods need an HTTP protocol")


def test_vip_pool_too_small(cli, tmp_path: Path) -> None:
    docs = [doc("Mesh", "default", {"vipPool": "240.0.0.0/30"}), *base(),
            doc("App", "a2", {"clusters": ["c2"]}, "bar"),
            doc("App", "a3", {"clusters": ["c2"]}, "bar"),
            intent(),
            doc("InboundIntent", "a2", {"app": "a2", "port": 80, "clients": [{"app": "sleep", "namespace": "foo"}]}, "bar"),
            doc("InboundIntent", "a3", {"app": "a3", "port": 80, "clients": [{"app": "sleep", "namespace": "foo"}]}, "bar")]
    assert_rejected(cli, tmp_path, docs,
                    "Mesh/default spec.vipPool: VIP pool 240.0.0.0/30 holds 2 addresses but "
                    "cluster 'c1' needs 3")


def test_duplicate_hosts_in_external_services(cli, tmp_path: Path) -> None:
    es = {"hosts": ["db.example"], "ports": [{"number": 3306, "name": "mysql"}],
          "endpoints": [{"address": "172.16.0.1"}]}
    docs = [*base(), doc("ExternalService", "a", es, "foo"), doc("ExternalService", "b", es, "foo")]
    assert_rejected(cli, tmp_path, docs,
                    "ExternalService/b spec.hosts[0]: host 'db.example' is already declared")


def test_one_host_declared_by_external_services_of_two_namespaces(cli, tmp_path: Path) -> None:
    # Both ServiceEntries are exported to every namespace: in c1, which port is db.example's?
    a = {"hosts": ["db.example"], "ports": [{"number": 3306, "name": "mysql"}],
         "endpoints": [{"address": "172.16.0.1"}]}
    b = {"hosts": ["api.example", "db.example"],
         "ports": [{"number": 5432, "name": "pg", "protocol": "TCP"}],
         "endpoints": [{"address": "172.16.0.2"}], "clusters": ["c1"]}
    docs = [*base(), doc("ExternalService", "a", a, "foo"), doc("ExternalService", "b", b, "bar")]
    src = tmp_path / "in" / "mesh.yaml"
    stderr = assert_rejected(
        cli, tmp_path, docs,
        f"{src}#6 ExternalService/b spec.hosts[1]: host 'db.example' is already declared "
        f"for cluster 'c1' by ExternalService foo/a ({src}#5)",
    )
    assert "1 problem found" in stderr
    assert cli("validate", "-f", str(src)).exit_code == 2


def test_one_host_in_external_services_of_disjoint_clusters_is_fine(cli, tmp_path: Path) -> None:
    es = {"hosts": ["db.example"], "ports": [{"number": 3306, "name": "mysql"}],
          "endpoints": [{"address": "172.16.0.1"}]}
    docs = [*base(), doc("ExternalService", "a", {**es, "clusters": ["c1"]}, "foo"),
            doc("ExternalService", "b", {**es, "clusters": ["c2"]}, "bar")]
    src = write_docs(tmp_path / "in" / "mesh.yaml", docs)
    result = cli("validate", "-f", str(src))
    assert result.exit_code == 0, result.stderr


def test_duplicate_external_ingress_hosts(cli, tmp_path: Path) -> None:
    docs = [*base(), doc("App", "web", {"clusters": ["c2"]}, "bar"),
            intent(external={"host": "a.example.com"}),
            doc("InboundIntent", "web", {"app": "web", "port": 80, "protocol": "HTTP",
                                         "external": {"host": "a.example.com"}}, "bar")]
    assert_rejected(cli, tmp_path, docs,
                    "InboundIntent/web spec.external.host: host 'a.example.com' is already exposed")


@pytest.mark.parametrize(("protocol", "external", "message"), [
    ("HTTPS", {"tlsMode": "SIMPLE"},
     "this service is HTTPS: it speaks TLS itself, so SIMPLE would end TLS at the gateway and "
     "send plain bytes to its TLS port; write tlsMode: PASSTHROUGH"),
    ("TLS", {"tlsMode": "MUTUAL"}, "this service is TLS: it speaks TLS itself, so MUTUAL would"),
    ("HTTPS", {}, "this service is HTTPS: it speaks TLS itself, so MUTUAL (the default) would "
              "end TLS at the gateway"),
])
def test_external_tls_service_must_be_passthrough(cli, tmp_path: Path, protocol: str,
                                                  external: dict[str, str], message: str) -> None:
    docs = [*base(), intent(protocol=protocol, external={"host": "a.example.com", **external})]
    stderr = assert_rejected(cli, tmp_path, docs,
                             f"#5 InboundIntent/httpbin spec.external.tlsMode: {message}")
    assert "1 problem found" in stderr
    assert cli("validate", "-f", str(tmp_path / "in" / "mesh.yaml")).exit_code == 2


def test_passthrough_needs_a_tls_service(cli, tmp_path: Path) -> None:
    docs = [*base(), intent(protocol="HTTP",
                            external={"host": "a.example.com", "tlsMode": "PASSTHROUGH"})]
    assert_rejected(cli, tmp_path, docs,
                    "InboundIntent/httpbin spec.external.tlsMode: PASSTHROUGH hands the caller's "
                    "TLS to the service untouched, but this service is HTTP, not TLS or HTTPS")


def test_duplicate_names(cli, tmp_path: Path) -> None:
    docs = [*base(), doc("App", "sleep", {"clusters": ["c2"]}, "foo")]
    assert_rejected(cli, tmp_path, docs, "#5 App/sleep metadata.name: duplicate App 'foo/sleep'")


def test_two_meshes(cli, tmp_path: Path) -> None:
    docs = [doc("Mesh", "a", {}), doc("Mesh", "b", {}), *base()]
    assert_rejected(cli, tmp_path, docs, "Mesh/b: at most one Mesh document is allowed")


def test_every_schema_problem_is_reported_at_once(cli, tmp_path: Path) -> None:
    docs = base()
    docs[0]["spec"]["gatewy"] = {}
    docs[3]["spec"]["clusters"] = "c2"
    stderr = assert_rejected(cli, tmp_path, docs, "#1 Cluster/c1 spec.gatewy",
                             "#4 App/httpbin spec.clusters")
    assert "2 problems found" in stderr


def test_every_cross_document_problem_is_reported_at_once(cli, tmp_path: Path) -> None:
    docs = [*base(), intent(app="nope"), doc("App", "x", {"clusters": ["c9"]}, "foo")]
    stderr = assert_rejected(cli, tmp_path, docs, "#5 InboundIntent/httpbin spec.app",
                             "#6 App/x spec.clusters[0]")
    assert "2 problems found" in stderr


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"apiVersion": "v1"}, "apiVersion: must be 'meshbridge.dev/v1alpha1'"),
        ({"kind": "Appp"}, "unknown kind 'Appp' (did you mean 'App'?)"),
        ({"metadata": {"name": "Bad_Name", "namespace": "foo"}}, "metadata.name:"),
        ({"metadata": {"name": "x"}}, "metadata.namespace is required"),
    ],
)
def test_envelope_errors(cli, tmp_path: Path, patch: dict[str, Any], message: str) -> None:
    docs = base()
    docs[2] = {**docs[2], **patch}
    assert_rejected(cli, tmp_path, docs, message)


def test_yaml_syntax_error_names_line(cli, tmp_path: Path) -> None:
    src = tmp_path / "in" / "bad.yaml"
    src.parent.mkdir()
    src.write_text("apiVersion: meshbridge.dev/v1alpha1\nkind: [unclosed\n")
    result = cli("validate", "-f", str(src))
    assert result.exit_code == 2
    assert "bad.yaml#1" in result.stderr and "line" in result.stderr


def test_duplicate_yaml_keys_are_errors(cli, tmp_path: Path) -> None:
    src = tmp_path / "in" / "dup.yaml"
    src.parent.mkdir()
    src.write_text("apiVersion: meshbridge.dev/v1alpha1\nkind: Cluster\nkind: Cluster\n"
                   "metadata: {name: a}\n")
    result = cli("validate", "-f", str(src))
    assert result.exit_code == 2
    assert "duplicate key 'kind'" in result.stderr


def test_missing_file(cli, tmp_path: Path) -> None:
    result = cli("validate", "-f", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    assert "nope.yaml" in result.stderr and "no such file" in result.stderr
