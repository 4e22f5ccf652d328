"""Comparing desired objects with live ones as the API server writes them (JSON bytes)."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from meshbridge.kube.reconcile import live_resource
from meshbridge.kube.steps import (
    HASH_ANNOTATION,
    Live,
    Ownership,
    drift_diff,
    in_sync,
    owned_shape,
    prepare,
)

OWNER = Ownership("default", "0d9c2f4e-6c1b-4f0e-9a57-3c2b1d0e9f8a")

DESIRED = prepare(
    {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "ServiceEntry",
        "metadata": {
            "name": "httpbin-bar",
            "namespace": "foo",
            "labels": {"app.kubernetes.io/managed-by": "meshbridge"},
            "annotations": {"meshbridge.dev/owners": "InboundIntent/bar/httpbin"},
        },
        "spec": {
            "hosts": ["httpbin.bar.global"],
            "addresses": ["240.0.0.2"],
            "ports": [{"number": 8000, "name": "http", "protocol": "HTTP"}],
            "location": "MESH_INTERNAL",
            "resolution": "DNS",
            "endpoints": [{"address": "172.18.0.3", "ports": {"http": 15443}}],
        },
    },
    OWNER,
)


def as_served(obj: dict[str, Any], **changes: Any) -> bytes:
    """The object as an API server answers: Go's JSON (sorted keys, HTML characters escaped),
    server-set metadata and managedFields added."""
    served = json.loads(json.dumps(obj))
    served["metadata"].update(
        uid="0b8c5e4e-2f43-4d0e-9d7e-2a3f4b5c6d7e",
        resourceVersion="4711",
        generation=1,
        managedFields=[
            {
                "manager": "meshbridge",
                "operation": "Apply",
                "fieldsType": "FieldsV1",
                "fieldsV1": {"f:spec": {"f:hosts": {}, "f:ports": {}}},
            }
        ],
    )
    served.update(changes)
    text = json.dumps(served, sort_keys=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


def live(body: bytes) -> Live:
    return msgspec.json.decode(body, type=live_resource("ServiceEntry", "v1beta1"))


def test_a_live_copy_of_the_desired_object_is_in_sync() -> None:
    copy = live(as_served(DESIRED))
    assert copy.metadata.resourceVersion == "4711"
    assert in_sync(DESIRED, copy)


def test_other_json_spelling_of_the_same_data_is_in_sync() -> None:
    desired = {**DESIRED, "spec": {**DESIRED["spec"], "hosts": ["a<b>&c.example"]}}
    body = as_served(desired)
    assert b"\\u003c" in body  # not the bytes meshbridge would write: compared as data
    assert in_sync(desired, live(body))
    spaced = json.dumps(json.loads(body), indent=2).encode()
    assert in_sync(desired, live(spaced))


def test_changed_or_missing_content_is_not_in_sync() -> None:
    changed = {**DESIRED["spec"], "resolution": "STATIC"}
    assert not in_sync(DESIRED, live(as_served({**DESIRED, "spec": changed})))
    no_spec = {k: v for k, v in DESIRED.items() if k != "spec"}
    assert not in_sync(DESIRED, live(as_served(no_spec)))


def test_fields_other_managers_added_are_no_drift() -> None:
    """``kubectl edit`` adding a field meshbridge does not set: still in sync."""
    spec = {**DESIRED["spec"], "exportTo": ["."], "workloadSelector": {"labels": {"a": "b"}}}
    assert in_sync(DESIRED, live(as_served({**DESIRED, "spec": spec})))
    assert in_sync(DESIRED, live(as_served(DESIRED, data={"x": "eQ=="})))
    # inside a value meshbridge sets: a list is compared whole
    ports = [{**DESIRED["spec"]["ports"][0], "targetPort": 9}]
    assert not in_sync(DESIRED, live(as_served({**DESIRED, "spec": {**spec, "ports": ports}})))


def test_a_diff_shows_what_meshbridge_manages_only() -> None:
    """Fields only another manager holds are not in the diff; fields meshbridge's applies own
    and no longer set are (apply removes them)."""
    spec = {**DESIRED["spec"], "resolution": "STATIC", "exportTo": ["."], "subjectAltNames": ["x"]}
    served = json.loads(as_served({**DESIRED, "spec": spec}))
    served["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:subjectAltNames"] = {}
    record = live(json.dumps(served).encode())
    text = drift_diff(DESIRED, record, owned_shape(record))
    assert "-  resolution: STATIC" in text and "+  resolution: DNS" in text
    assert "-  subjectAltNames:" in text
    assert "exportTo" not in text


def test_status_and_server_metadata_do_not_matter() -> None:
    served = as_served(DESIRED, status={"conditions": [{"type": "Reconciled"}]})
    assert in_sync(DESIRED, live(served))


def test_a_label_or_annotation_taken_away_is_not_in_sync() -> None:
    meta = DESIRED["metadata"]
    unlabelled = {**DESIRED, "metadata": {**meta, "labels": {}}}
    assert not in_sync(DESIRED, live(as_served(unlabelled)))
    other_hash = {**meta, "annotations": {**meta["annotations"], HASH_ANNOTATION: "0" * 64}}
    assert not in_sync(DESIRED, live(as_served({**DESIRED, "metadata": other_hash})))
    extra = {**meta, "labels": {**meta["labels"], "team": "x"}}  # added by someone: kept
    assert in_sync(DESIRED, live(as_served({**DESIRED, "metadata": extra})))


def test_drift_diff_shows_the_change_and_never_secret_data() -> None:
    changed = {**DESIRED["spec"], "resolution": "STATIC"}
    diff = drift_diff(DESIRED, live(as_served({**DESIRED, "spec": changed})))
    assert "-  resolution: STATIC" in diff
    assert "+  resolution: DNS" in diff
    assert HASH_ANNOTATION not in diff

    secret = prepare(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "cacerts", "namespace": "istio-system"},
            "type": "Opaque",
            "data": {"ca-key.pem": "c2VjcmV0LWtleQ=="},
        },
        OWNER,
    )
    tampered = as_served(secret, data={"ca-key.pem": "b3RoZXIta2V5"})
    record = msgspec.json.decode(tampered, type=live_resource("Secret", "v1"))
    assert not in_sync(secret, record)
    text = drift_diff(secret, record)
    assert "-  ca-key.pem: <redacted>" in text
    assert "+  ca-key.pem: <redacted, changed>" in text
    assert "c2VjcmV0LWtleQ" not in text and "b3RoZXIta2V5" not in text
