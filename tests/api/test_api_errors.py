"""No stack trace, SQL or internal detail ever reaches a client."""

from __future__ import annotations

import logging

import pytest
from apitest import Api

from meshbridge.errors import StateError
from meshbridge.server import stored


def test_a_bug_is_a_bare_500_and_a_logged_traceback(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(*_a, **_k):
        raise RuntimeError("secret internals: password=hunter2")

    monkeypatch.setattr(stored, "list_objects", boom)
    monkeypatch.setattr("meshbridge.api.resources.list_objects", boom)
    with caplog.at_level(logging.ERROR, logger="meshbridge.api"):
        r = api.get("/api/v1/apps")
    assert r.status_code == 500
    assert r.json() == {"errors": [{"message": "internal error", "document": "", "path": ""}]}
    assert "hunter2" not in r.text
    assert "Traceback" in caplog.text or any(rec.exc_info for rec in caplog.records)


def test_store_failures_are_503_without_details(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(*_a, **_k):
        raise StateError("cannot use the state store: FATAL password for user x at 10.1.2.3")

    monkeypatch.setattr("meshbridge.api.resources.list_objects", down)
    r = api.get("/api/v1/apps")
    assert r.status_code == 503
    assert "10.1.2.3" not in r.text and "password" not in r.text


def test_bad_query_parameters_are_422_in_the_same_shape(api: Api) -> None:
    r = api.get("/api/v1/audit", params={"limit": "lots"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["path"].endswith("limit")


def test_unknown_routes_and_methods(api: Api) -> None:
    assert api.get("/nope").json()["errors"][0]["message"]
    r = api.http.patch("/api/v1/clusters/x", headers=api.as_("admin"))
    assert r.status_code == 405 and r.json()["errors"]
