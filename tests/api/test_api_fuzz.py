"""Schemathesis fuzzing against the app's own OpenAPI document: no input makes it answer 500.

Every operation gets schema-conforming (positive) and schema-violating (negative) requests,
as an admin, on a store holding a real mesh. Bounded: a few examples per operation and mode
(``MESHBRIDGE_FUZZ_EXAMPLES`` to change it), well under a minute per backend.
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from apitest import Api
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from intents import example_yaml
from schemathesis import GenerationMode

from meshbridge.api import create_app
from meshbridge.pki.sealing import Sealer
from meshbridge.server.credentials import Credentials
from meshbridge.store import SqlStore

EXAMPLES = int(os.environ.get("MESHBRIDGE_FUZZ_EXAMPLES", "12"))


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
def test_no_request_gets_a_500(api: Api, store: SqlStore, mode: GenerationMode) -> None:
    assert api.apply(example_yaml("external-mtls")).status_code == 200
    app = create_app(store, credentials=Credentials(store, lambda: Sealer(bytes(32))))
    headers = api.as_("admin")
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=headers)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30

    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        def run(case: schemathesis.Case) -> None:
            response = case.call(headers=headers)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> "
                                f"{response.status_code}: {response.text[:300]}")
            else:
                assert "Traceback" not in response.text

        try:
            run()
        except Unsatisfiable:
            assert mode == GenerationMode.NEGATIVE  # nothing to break in, e.g., GET /healthz
    assert not failures, "\n".join(failures[:20])
